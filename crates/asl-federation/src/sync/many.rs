//! Fetching from several remotes of one domain at once (mirrors): each
//! wanted artifact asked of one of the remotes that list it, round-robin,
//! and what one sends wrong or lacks asked of another.

use super::{
    check, expected, finish, peer_for, put_one, sweep_unwanted, Batches, Checked, FetchOptions, FetchReport, Got, Peer,
    Shared,
};
use crate::error::{FederationError as Error, Result};
use crate::remote::{self, Remote};
use asl_core::{ArtifactId, PutOptions, Store};
use asl_pel::keys::hex;

/// Fetches from several remotes of one domain at once (mirrors of it, say a
/// directory and a server): each manifest is checked as for one, the newest
/// decides what is wanted, and the missing artifacts are spread over the
/// remotes whose manifest lists them, one thread each. An artifact a remote
/// fails to send whole — wrong bytes, a cut stream, an error — is asked of
/// the others; the fetch fails only for artifacts no remote sent right.
/// Reports per remote, in the order given.
pub fn fetch_many(store: &Store, names: &[String]) -> Result<Vec<(String, FetchReport)>> {
    fetch_many_with(store, names, &FetchOptions::default())
}

/// [`fetch_many`] reporting its progress; a lazy fetch takes one remote.
pub fn fetch_many_with(store: &Store, names: &[String], opts: &FetchOptions<'_>) -> Result<Vec<(String, FetchReport)>> {
    if opts.lazy {
        return Err(Error::Invalid("a lazy fetch takes one remote".into()));
    }
    crate::ranged::sweep(store)?;
    let (remotes, refused, first_error) = checked_remotes(store, names)?;
    let Some(first) = remotes.first() else {
        return match first_error {
            Some(e) => Err(e),
            None => Ok(Vec::new()),
        };
    };
    let domain = first.2.m.domain;
    if let Some((r, _, c)) = remotes.iter().find(|(_, _, c)| c.m.domain != domain) {
        return Err(Error::Invalid(format!(
            "remote {} publishes domain {}, not {}: fetch remotes of one domain together",
            r.name,
            hex(&c.m.domain),
            hex(&domain)
        )));
    }
    let newest = (0..remotes.len()).max_by_key(|i| remotes[*i].2.m.seq).unwrap_or(0);
    let n = remote::domain_number(store, &domain, &remotes[newest].2.m.name)?;
    let placed = PutOptions::new().domain(n).source(Some(n));
    let lists: Vec<std::collections::HashSet<ArtifactId>> = remotes
        .iter()
        .map(|(_, _, c)| c.m.published.iter().copied().collect())
        .collect();
    let mut reps: Vec<FetchReport> = remotes
        .iter()
        .map(|(_, _, c)| FetchReport {
            seq: c.m.seq,
            listed: c.m.published.len(),
            ..Default::default()
        })
        .collect();
    // Round-robin over the remotes that list each wanted artifact.
    let mut work: Vec<Vec<ArtifactId>> = vec![Vec::new(); remotes.len()];
    let mut present = 0;
    let mut wanted = Vec::new();
    for (k, id) in remotes[newest].2.m.published.iter().enumerate() {
        if store.contains(id)? {
            present += 1;
            continue;
        }
        wanted.push(k);
        let sources: Vec<usize> = (0..remotes.len()).filter(|i| lists[*i].contains(id)).collect();
        work[sources[k % sources.len()]].push(*id);
    }
    let shared = Shared::new(opts.progress, expected(&remotes[newest].2.m, wanted.into_iter()));
    let sizes: std::collections::HashMap<ArtifactId, u64> = remotes[newest]
        .2
        .m
        .published
        .iter()
        .copied()
        .zip(remotes[newest].2.m.sizes.iter().copied())
        .collect();
    let sizes = &sizes;
    let done = parking_lot::Mutex::new(vec![Vec::<(ArtifactId, Got)>::new(); remotes.len()]);
    // (artifact, remote, why, whether the remote said it does not have it)
    let failed = parking_lot::Mutex::new(Vec::<(ArtifactId, usize, String, bool)>::new());
    let batches = parking_lot::Mutex::new(Batches::new());
    std::thread::scope(|scope| {
        for (i, ids) in work.iter().enumerate() {
            let (r, peer, _) = &remotes[i];
            let (done, failed, batches, shared) = (&done, &failed, &batches, &shared);
            scope.spawn(move || {
                for id in ids {
                    match put_one(store, &**peer, &r.name, id, sizes.get(id).copied(), placed, shared) {
                        Ok(got) => {
                            done.lock()[i].push((*id, got));
                            // A commit failure shows again at the final commit.
                            let _ = batches.lock().add(store, got.len);
                        }
                        Err(e) => {
                            let absent = matches!(e, Error::Store(asl_core::Error::NotFound(x)) if x == *id);
                            failed.lock().push((*id, i, e.to_string(), absent));
                        }
                    }
                }
            });
        }
    });
    let mut done = done.into_inner();
    let retry = Retry {
        store,
        remotes: &remotes,
        lists: &lists,
        sizes,
        placed,
        shared: &shared,
    };
    let lost = retry.elsewhere(failed.into_inner(), &mut done, &mut reps);
    shared.meter.finish();
    store.commit()?;
    if !lost.is_empty() {
        return Err(Error::Remote(format!(
            "no remote sent {} artifacts whole: {}; what was verified is kept",
            lost.len(),
            lost.join("; ")
        )));
    }
    let mut out = Vec::new();
    for (i, (mut r, _, c)) in remotes.into_iter().enumerate() {
        let ids: Vec<ArtifactId> = done[i].iter().map(|(id, _)| *id).collect();
        reps[i].fetched = ids.len();
        reps[i].bytes = done[i].iter().map(|(_, g)| g.len).sum();
        reps[i].resumed = done[i].iter().map(|(_, g)| g.resumed).sum();
        reps[i].reused = done[i].iter().map(|(_, g)| g.reused).sum();
        reps[i].present = present;
        if !(c.m.seq == r.seq && ids.is_empty() && r.key.is_some()) {
            reps[i].import = Some(finish(store, &mut r, &c, n, placed, &ids, &[])?);
        }
        out.push((r.name.clone(), reps[i].clone()));
    }
    for (name, why) in refused {
        let rep = FetchReport {
            manifest_refused: Some(why),
            ..FetchReport::default()
        };
        out.push((name, rep));
    }
    // Back in the order the remotes were given.
    out.sort_by_key(|(name, _)| names.iter().position(|n| n == name));
    sweep_unwanted(store)?;
    Ok(out)
}

/// The given remotes with their manifests checked; the names of those
/// whose manifest was refused, with why; and the first such error.
type CheckedRemotes = (
    Vec<(Remote, Box<dyn Peer>, Checked)>,
    Vec<(String, String)>,
    Option<Error>,
);

/// Reads and checks each remote's manifest. A mirror whose manifest is
/// refused (wrong bytes, a bad signature, a replayed one) is left out while
/// another mirror's is accepted: what one mirror sends wrong is asked of
/// another, the manifest included.
fn checked_remotes(store: &Store, names: &[String]) -> Result<CheckedRemotes> {
    let mut remotes = Vec::new();
    let mut refused = Vec::new();
    let mut first_error = None;
    for name in names {
        let r = remote::get(store, name)?;
        let peer = peer_for(&r)?;
        match check(&r, &*peer) {
            Ok(c) => remotes.push((r, peer, c)),
            Err(e) => {
                refused.push((name.clone(), e.to_string()));
                first_error.get_or_insert(e);
            }
        }
    }
    Ok((remotes, refused, first_error))
}

/// What a second attempt at the artifacts a remote failed to send needs.
struct Retry<'a> {
    store: &'a Store,
    remotes: &'a [(Remote, Box<dyn Peer>, Checked)],
    lists: &'a [std::collections::HashSet<ArtifactId>],
    sizes: &'a std::collections::HashMap<ArtifactId, u64>,
    placed: PutOptions,
    shared: &'a Shared<'a>,
}

impl Retry<'_> {
    /// Asks the other remotes that list each failed artifact for it.
    /// `failed` holds (artifact, remote, why, whether the remote said it
    /// lacks it). Returns what no remote sent whole; an artifact every
    /// remote asked says it lacks is reported unavailable instead (a
    /// removal there, not a lie: the rest of the fetch stands).
    fn elsewhere(
        &self,
        failed: Vec<(ArtifactId, usize, String, bool)>,
        done: &mut [Vec<(ArtifactId, Got)>],
        reps: &mut [FetchReport],
    ) -> Vec<String> {
        let mut lost = Vec::new();
        for (id, bad, why, mut absent) in failed {
            if !absent {
                reps[bad].refused += 1;
            }
            let mut sent = false;
            for i in (0..self.remotes.len()).filter(|i| *i != bad && self.lists[*i].contains(&id)) {
                let (r, peer, _) = &self.remotes[i];
                let size = self.sizes.get(&id).copied();
                match put_one(self.store, &**peer, &r.name, &id, size, self.placed, self.shared) {
                    Ok(got) => {
                        done[i].push((id, got));
                        sent = true;
                        break;
                    }
                    Err(Error::Store(asl_core::Error::NotFound(x))) if x == id => {}
                    Err(_) => {
                        reps[i].refused += 1;
                        absent = false;
                    }
                }
            }
            if sent {
                continue;
            }
            if absent {
                reps[bad].unavailable.push(id);
            } else {
                lost.push(format!("{id} ({why})"));
            }
        }
        lost
    }
}
