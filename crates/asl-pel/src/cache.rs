//! The action cache: finding a receipt that answers an action key, and
//! deciding whether it may be used.
//!
//! A receipt answers only when it is live, decodes, has outcome OK and the
//! same key, is trusted (signed by this store or by enough trusted keys,
//! directly or through a signed batch that lists it), and every output it
//! names is present and reads back verified. Receipts are found through
//! the derived query index; whatever the index says is checked against the
//! records themselves. This module also signs the receipts a run writes,
//! one batch per commit, and answers which receipts hold an artifact.

use std::io::Read;

use super::keys::{signer_of, PublicKey};
use super::receipt::{self, Outcome, Receipt};
use super::run::NodeCtx;
use super::PelError;
use asl_core::{ArtifactId, Store};
use asl_records::query::QueryIndex;
use asl_records::{self as records, Source};

impl NodeCtx<'_> {
    /// The newest trusted receipt for `key` whose outputs are all present
    /// and verify; why each other candidate was passed over goes to
    /// `rejected`, and outputs found damaged to `damaged`.
    pub(super) fn lookup(
        &self,
        key: &[u8; 32],
        rejected: &mut Vec<String>,
        damaged: &mut Vec<ArtifactId>,
    ) -> Result<Option<(ArtifactId, Receipt)>, PelError> {
        let store = self.pel.store;
        let mut candidates = self.pel.index.records_with(asl_records::query::RECEIPT_KEY, key)?;
        candidates.reverse();
        'candidates: for (_, rid) in candidates {
            let r = match records::get(store as &dyn Source, &rid) {
                Ok(r) => r,
                Err(records::RecordError::Store(asl_core::Error::NotFound(_))) => continue,
                Err(e) => {
                    rejected.push(format!("receipt {rid}: {e}"));
                    continue;
                }
            };
            let receipt = match Receipt::from_record(&r) {
                Ok(x) if x.action_key == *key => x,
                Ok(_) => {
                    rejected.push(format!("receipt {rid}: its action key differs from the index's"));
                    continue;
                }
                Err(e) => {
                    rejected.push(format!("receipt {rid}: {e}"));
                    continue;
                }
            };
            if receipt.outcome != Outcome::Ok {
                continue;
            }
            let signers = self.signers(&rid)?;
            if !self.pel.trust.accepts(&self.pel.signer.public(), &signers) {
                rejected.push(format!(
                    "receipt {rid}: not signed by this store or by {} trusted key(s) (signed by {})",
                    self.pel.trust.threshold,
                    if signers.is_empty() {
                        "nobody".to_string()
                    } else {
                        signers
                            .iter()
                            .map(|k| super::keys::hex(k))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
                continue;
            }
            for (name, id) in receipt.produced() {
                match verify(store, &id) {
                    Ok(()) => {}
                    Err(asl_core::Error::NotFound(_)) => {
                        rejected.push(format!("receipt {rid}: output {name:?} ({id}) is not in the store"));
                        continue 'candidates;
                    }
                    Err(e) if e.is_corruption() => {
                        rejected.push(format!("receipt {rid}: output {name:?} ({id}) is damaged: {e}"));
                        damaged.push(id);
                        continue 'candidates;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Some((rid, receipt)));
        }
        Ok(None)
    }

    /// Signs the receipts written since the last call: one `asl/pel-batch`
    /// record listing them and one signature over it, put before the commit
    /// that makes the receipts durable (a receipt committed unsigned would
    /// only be untrusted, never wrongly trusted).
    pub(super) fn sign_batch(&self) -> Result<(), PelError> {
        let receipts = std::mem::take(&mut *self.unsigned.lock());
        if receipts.is_empty() {
            return Ok(());
        }
        let batch = records::put(self.pel.store, &receipt::batch_record(self.run_id, &receipts))?.id;
        self.pel.signer.sign(self.pel.store, &batch)?;
        Ok(())
    }

    /// The keys that signed receipt `rid`: directly (an `asl/signature` on
    /// it) or through a signed batch that lists it. A batch's signatures are
    /// checked once per run.
    fn signers(&self, rid: &ArtifactId) -> Result<Vec<PublicKey>, PelError> {
        let store = self.pel.store as &dyn Source;
        let signed = |subject: &ArtifactId| -> Result<Vec<PublicKey>, PelError> {
            let mut keys = Vec::new();
            for sid in self.pel.index.annotations_of(subject)? {
                if let Ok(r) = records::get(store, &sid) {
                    if let Some(k) = signer_of(&r, subject) {
                        keys.push(k);
                    }
                }
            }
            Ok(keys)
        };
        let mut keys = signed(rid)?;
        for (_, bid) in self
            .pel
            .index
            .records_with(asl_records::query::RECEIPT_BATCH, rid.as_bytes())?
        {
            let known = self.batches.lock().get(&bid).cloned();
            let entry = match known {
                Some(e) => e,
                None => {
                    let members = records::get(store, &bid).ok().and_then(|r| receipt::batch_members(&r));
                    let e = match members {
                        Some(m) => Some((signed(&bid)?, m.into_iter().collect())),
                        None => None,
                    };
                    self.batches.lock().insert(bid, e.clone());
                    e
                }
            };
            // The index says the batch lists the receipt; the batch itself
            // must say so too.
            if let Some((signers, members)) = entry {
                if members.contains(rid) {
                    keys.extend(signers);
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// Reads an artifact through to its end: every byte is checked against
/// its id on the way.
fn verify(store: &Store, id: &ArtifactId) -> asl_core::Result<()> {
    let mut r = store.open_reader(id)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(asl_core::Error::from_reader_io(e)),
        }
    }
}

/// The receipts in CURRENT that hold artifact `id` as an output: while one
/// is kept, [`check_removable`] refuses to let `id` go.
pub fn held_by(index: &QueryIndex, store: &Store, id: &ArtifactId) -> Result<Vec<ArtifactId>, PelError> {
    let mut out = Vec::new();
    for (_, rid) in index.records_with(asl_records::query::RECEIPT_OUT, id.as_bytes())? {
        if store.contains(&rid)? {
            out.push(rid);
        }
    }
    Ok(out)
}

/// Refuses the removal of any of `ids` that a live receipt holds as an
/// output (the error names the receipt), so that a cache entry never points
/// at bytes the store let go. `aslctl rm` asks this unless `--force`;
/// `Store::remove` itself does not.
pub fn check_removable(index: &QueryIndex, store: &Store, ids: &[ArtifactId]) -> Result<(), PelError> {
    for id in ids {
        let held = held_by(index, store, id)?;
        if let Some(r) = held.first() {
            let more = match held.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            return Err(PelError::Held(format!(
                "{id} is an output of PEL receipt {r}{more}, which holds it; nothing removed"
            )));
        }
    }
    Ok(())
}
