//! Removing artifacts the way a user asks for it (`aslctl rm`, `DELETE` on
//! the server): [`Store::remove`] drops an id from CURRENT and nothing more,
//! while a removal asked for by a person or a service first keeps the
//! promises the store has made — an artifact this domain publishes, or one
//! a live PEL receipt holds as an output, is refused unless forced, and a
//! forced removal withdraws it from the publication first so that no signed
//! manifest lists what the store no longer sends.

use asl_core::{ArtifactId, Store, Visibility};
use asl_records::query::QueryIndex;

use crate::error::{FederationError, Result};
use crate::publish::{withdraw, Published};

/// What a removal did.
#[derive(Debug, Default)]
pub struct Removal {
    /// Removed from CURRENT.
    pub removed: Vec<ArtifactId>,
    /// Not live, so not removed.
    pub not_found: Vec<ArtifactId>,
    /// The publication's new manifest, when a forced removal took published
    /// artifacts out of it.
    pub withdrawn: Option<Published>,
}

/// Removes `ids` from CURRENT and commits. Without `force`, refuses with
/// nothing changed when one of them is published or held by a live
/// receipt; with it, withdraws the published ones from the publication and
/// removes them all.
pub fn remove(store: &Store, index: &QueryIndex, ids: &[ArtifactId], force: bool) -> Result<Removal> {
    let mut out = Removal::default();
    if force {
        out.withdrawn = withdraw(store, ids)?;
    } else {
        for id in ids {
            if store.info(id)?.is_some_and(|i| i.visibility == Visibility::Published) {
                return Err(FederationError::Refused(format!(
                    "{id} is published (other domains may rely on it): unpublish it first, or force the \
                     removal, which unpublishes it with a new manifest; nothing removed"
                )));
            }
        }
        asl_pel::check_removable(index, store, ids)?;
    }
    for id in ids {
        if store.remove(id)? {
            out.removed.push(*id);
        } else {
            out.not_found.push(*id);
        }
    }
    store.commit()?;
    Ok(out)
}
