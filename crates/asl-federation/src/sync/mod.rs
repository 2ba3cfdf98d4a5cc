//! Fetching what another domain publishes.
//!
//! A fetch reads the remote's latest publication manifest and its
//! signature, checks them (the key pinned for the remote, or the manifest's
//! own on first contact; a sequence number not older than the last
//! accepted), then asks only for the published artifacts this store lacks
//! (have/want against the local index) and stores each through a put that
//! must hash to the id the manifest names: bytes that do not are refused
//! and nothing of them is kept. Artifacts are committed in batches as they
//! arrive, so a fetch cut off anywhere resumes where it stopped, and
//! nothing is half-imported: an artifact is in the store whole or not at
//! all. An imported artifact carries the remote domain's local number as
//! its domain and cross-domain source, and stays internal here. The last
//! step stores the manifest, its signature and an `asl/import` record
//! (domain, manifest, sequence number, the ids fetched), pins the record
//! as `asl.import.<remote>`, and remembers the remote's key, domain and
//! sequence number.

use std::io::Read;

use super::publish::{self, Manifest};
use super::ranged::{LocalChunks, Partial, RANGED_MIN, TRANSFER_CHUNK};
use super::remote::{self, Remote};
use crate::error::{FederationError as Error, Result};
use asl_core::{ArtifactId, Meter, ProgressFn, PutOptions, Store};
use asl_core::{DomainId, Visibility};
use asl_pel::keys::hex;
use asl_records::cbor::Value;
use asl_records::{self as records, Record};

/// The record type of import records.
pub const IMPORT_TYPE: &str = "asl/import";

/// Commit after this many fetched artifacts or bytes, or this long (what a
/// cut-off fetch can lose and fetch again; a slow link still makes
/// progress that survives).
const BATCH_ARTIFACTS: usize = 256;
const BATCH_BYTES: u64 = 64 << 20;
const BATCH_TIME: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(feature = "http")]
pub use super::peers::HttpPeer;
pub use super::peers::{peer_for, DirPeer, DirSink, Peer, Sink};

mod many;
pub use many::{fetch_many, fetch_many_with};
mod push;
pub use push::{push, push_with, PushReport};

mod imports;
pub(crate) use imports::pinned_imports;
use imports::{import_record, sweep_unwanted};

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// The manifest's sequence number.
    pub seq: u64,
    /// Artifacts it lists.
    pub listed: usize,
    /// Of those, already here.
    pub present: usize,
    /// Fetched, verified and stored.
    pub fetched: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Artifacts this remote sent wrong (another remote was asked instead).
    pub refused: usize,
    /// Bytes of large artifacts an interrupted fetch had verified, which
    /// were not sent again.
    pub resumed: u64,
    /// Bytes of large artifacts copied from chunks already here (the same
    /// bytes at the same offset in another artifact), not sent.
    pub reused: u64,
    /// Listed, missing and not fetched but promised (a lazy fetch): read
    /// on demand later (see [`super::promise`]).
    pub promised: usize,
    /// The import record (`None` when the manifest was not new and nothing was fetched).
    pub import: Option<ArtifactId>,
    /// Listed by the manifest, but the remote answered that it does not
    /// have them (removed there since): reported, not fetched, and the
    /// rest of the fetch went on.
    pub unavailable: Vec<ArtifactId>,
    /// Why this remote's manifest was refused when several mirrors of one
    /// domain were asked and another's was accepted: the others did the
    /// work, and nothing of this one was used.
    pub manifest_refused: Option<String>,
}

fn read_all(peer: &dyn Peer, id: &ArtifactId, limit: u64) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    peer.reader(id)?
        .take(limit + 1)
        .read_to_end(&mut b)
        .map_err(|e| asl_core::Error::io(format!("read {id} from the remote"), e))?;
    if b.len() as u64 > limit || ArtifactId::of(&b) != *id {
        return Err(Error::Remote(format!(
            "the remote sent other bytes than {id} (refused)"
        )));
    }
    Ok(b)
}

/// How a fetch goes.
///
/// One store publishes an artifact; another adds it as a remote (a
/// directory here, or an `aslctl serve` URL) and fetches, every byte
/// checked against the signed manifest:
///
/// ```
/// use asl_federation::{publish, remote::{self, Remote}, sync, Domain};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let open = |name| asl_core::StoreOptions::new().create(true).open(dir.path().join(name));
/// let (lab, home) = (open("lab")?, open("home")?);
/// Domain::init(&lab, "lab")?;
/// let data = lab.put(&vec![7u8; 100_000])?;
/// publish::publish(&lab, &[data])?;
///
/// remote::add(&home, Remote::new("lab", dir.path().join("lab").to_str().unwrap()))?;
/// let got = AtomicU64::new(0);
/// let opts = sync::FetchOptions {
///     progress: Some(&|s| got.store(s.done, Ordering::Relaxed)),
///     ..Default::default()
/// };
/// let report = sync::fetch_with(&home, "lab", &opts)?;
/// assert_eq!((report.fetched, got.into_inner()), (1, 100_000));
/// assert_eq!(home.get(&data)?.len(), 100_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Default)]
pub struct FetchOptions<'a> {
    /// Only promise the missing artifacts instead of sending them (see
    /// [`fetch_lazy`]).
    pub lazy: bool,
    /// Told, in phase `"fetch"`, the bytes received of the missing
    /// artifacts the manifest lists (their sizes are the total; a chunk
    /// copied from here or verified by an earlier fetch counts as received).
    pub progress: Option<ProgressFn<'a>>,
}

/// Fetches what remote `name` publishes (see the module docs).
pub fn fetch(store: &Store, name: &str) -> Result<FetchReport> {
    fetch_with(store, name, &FetchOptions::default())
}

/// [`fetch`] with options: lazily, or reporting its progress.
pub fn fetch_with(store: &Store, name: &str, opts: &FetchOptions<'_>) -> Result<FetchReport> {
    let mut r = remote::get(store, name)?;
    let peer = peer_for(&r)?;
    fetch_checked(store, &mut r, &*peer, opts)
}

/// A remote's manifest, read and checked.
struct Checked {
    mid: ArtifactId,
    sid: ArtifactId,
    mb: Vec<u8>,
    sb: Vec<u8>,
    /// The co-signatures that verified and count under the policy.
    cosigs: Vec<Vec<u8>>,
    m: Manifest,
    key: asl_pel::keys::PublicKey,
}

fn check(r: &Remote, peer: &dyn Peer) -> Result<Checked> {
    let p = peer
        .publication()?
        .ok_or_else(|| Error::NotFound(format!("remote {} publishes nothing", r.name)))?;
    let (mid, sid) = (p.manifest, p.signature);
    let mb = read_all(peer, &mid, 1 << 30)?;
    let sb = read_all(peer, &sid, 1 << 20)?;
    let claimed = Manifest::from_record(&Record::decode(&mb)?)
        .map_err(|e| Error::Refused(format!("remote {}: manifest {mid}: {e}", r.name)))?;
    // First contact trusts the manifest's own key and domain (and says so);
    // afterwards both must stay the same.
    let key = r.key.unwrap_or(claimed.key);
    if r.domain.is_some_and(|d| d != claimed.domain) {
        return Err(Error::Refused(format!(
            "remote {}: the manifest is domain {}'s, not {}'s",
            r.name,
            hex(&claimed.domain),
            hex(&r.domain.unwrap_or_default())
        )));
    }
    // The same manifest again is fine (a cut-off fetch resumes); an older
    // one is a replay.
    let after = if claimed.seq == r.seq {
        r.seq.saturating_sub(1)
    } else {
        r.seq
    };
    let m = publish::check_manifest(&mb, &sb, &key, after)
        .map_err(|e| Error::Refused(format!("remote {}: manifest {mid}: {e}; nothing stored", r.name)))?;
    // Co-signatures: only those the policy counts are read (a remote
    // cannot make a fetch read an unbounded list of records).
    let mut cosigs = Vec::new();
    if !r.policy.cosigners.is_empty() {
        for cid in p.cosignatures.iter().take(64) {
            let Ok(b) = read_all(peer, cid, 1 << 20) else {
                continue;
            };
            let signers = super::cosign::signers_of(&mid, std::slice::from_ref(&b));
            if signers.iter().any(|k| r.policy.cosigners.contains(k)) {
                cosigs.push(b);
            }
        }
    }
    let mut signers = super::cosign::signers_of(&mid, &cosigs);
    signers.insert(key);
    r.policy
        .meets(&key, &signers)
        .map_err(|e| Error::Refused(format!("remote {}: manifest {mid}: {e}; nothing stored", r.name)))?;
    Ok(Checked {
        mid,
        sid,
        mb,
        sb,
        cosigs,
        m,
        key,
    })
}

/// What storing one fetched artifact took.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Got {
    /// Its length.
    pub len: u64,
    /// Bytes an earlier, interrupted attempt had verified.
    pub resumed: u64,
    /// Bytes copied from chunks of artifacts already here.
    pub reused: u64,
}

/// The chunks already here, indexed once per fetch when a large artifact
/// first needs them, and grown by each large artifact the fetch stores.
pub(super) type LocalCache = parking_lot::Mutex<Option<LocalChunks>>;

/// What the artifacts of one fetch share: the chunks here, and the meter
/// of bytes received.
pub(super) struct Shared<'a> {
    pub local: LocalCache,
    pub meter: Meter<'a>,
}

impl<'a> Shared<'a> {
    pub fn new(progress: Option<ProgressFn<'a>>, expected: u64) -> Self {
        Shared {
            local: LocalCache::default(),
            meter: Meter::new(progress, "fetch", expected),
        }
    }
}

/// Runs `f` over the index of chunks here, building it on first use.
fn with_local<T>(store: &Store, cache: &LocalCache, f: impl FnOnce(&mut LocalChunks) -> T) -> Result<T> {
    let mut g = cache.lock();
    if g.is_none() {
        *g = Some(LocalChunks::of_store(store)?);
    }
    Ok(f(g.as_mut().expect("set above")))
}

/// Stores artifact `id` from `peer`, which must send exactly its bytes. A
/// large one goes through a staging file, chunk-verified: resumed from what
/// an earlier attempt verified, its chunks that are already here (same
/// bytes at the same offset in another artifact) copied, and only the runs
/// of other chunks asked of the peer.
pub(super) fn put_one(
    store: &Store,
    peer: &dyn Peer,
    name: &str,
    id: &ArtifactId,
    size: Option<u64>,
    placed: PutOptions,
    shared: &Shared<'_>,
) -> Result<Got> {
    let (local, meter) = (&shared.local, &shared.meter);
    if let Some(mut p) = Partial::resume(store, id)? {
        let resumed = p.verified();
        meter.add(resumed);
        let reused = fill_large(store, peer, name, id, &mut p, shared)?;
        let cvs = p.cvs().to_vec();
        let len = p.finish(store, placed)?;
        with_local(store, local, |l| l.add(*id, &cvs))?;
        return Ok(Got { len, resumed, reused });
    }
    // The manifest's size says whether to go chunk by chunk; without one
    // (an older manifest, a promise) the answer to a plain GET does.
    let (len, reader) = match size {
        Some(n) if n >= RANGED_MIN => (n, None),
        _ => {
            let (n, r) = peer.reader_at(id, 0, None)?;
            (n, Some(r))
        }
    };
    if len >= RANGED_MIN {
        // A stream opened to learn the length is closed before the tree is
        // asked for: a server that answers one request at a time would
        // otherwise wait on us while we wait on it. What it had sent ahead
        // is the cost, paid only when the manifest lists no sizes.
        drop(reader);
        let cvs = peer.tree(id)?;
        let mut p = Partial::create(store, id, len, cvs)
            .map_err(|e| Error::Remote(format!("remote {name}: {e}; nothing stored")))?;
        let reused = fill_large(store, peer, name, id, &mut p, shared)?;
        let cvs = p.cvs().to_vec();
        let len = p.finish(store, placed)?;
        with_local(store, local, |l| l.add(*id, &cvs))?;
        return Ok(Got {
            len,
            resumed: 0,
            reused,
        });
    }
    let reader = reader.expect("opened for a small artifact");
    let put = store
        .put_reader_with(meter.reader(reader), &placed.expect(Some(*id)))
        .map_err(|e| match e {
            asl_core::Error::IdMismatch { .. } => Error::Remote(format!(
                "remote {name}: the bytes sent for {id} do not hash to it; nothing of them is stored"
            )),
            e => e.into(),
        })?;
    Ok(Got {
        len: put.len,
        ..Got::default()
    })
}

/// Stages the rest of a large artifact: each chunk from an artifact here
/// when one holds it, the runs of other chunks from the peer (one ranged
/// request per run). Returns the bytes copied locally.
fn fill_large(
    store: &Store,
    peer: &dyn Peer,
    name: &str,
    id: &ArtifactId,
    p: &mut Partial,
    shared: &Shared<'_>,
) -> Result<u64> {
    let (local, meter) = (&shared.local, &shared.meter);
    let n = p.len().div_ceil(TRANSFER_CHUNK as u64);
    let mut reused = 0;
    while p.verified() < p.len() {
        let idx = p.next_index();
        let source = with_local(store, local, |l| l.get(p.cv(idx)).copied())?;
        if let Some(src) = source {
            let len = p.chunk_len(idx) as u64;
            // A verified read: the store proves the bytes against the same
            // chaining value. A damaged or vanished source is no source.
            if let Ok(bytes) = store.read_range(&src, idx * TRANSFER_CHUNK as u64, len) {
                p.push_verified(&bytes)?;
                reused += len;
                meter.add(len);
                continue;
            }
        }
        // The run of chunks not here, asked for in one request.
        let end = with_local(store, local, |l| {
            let mut j = idx + 1;
            while j < n && l.get(p.cv(j)).is_none() {
                j += 1;
            }
            (j * TRANSFER_CHUNK as u64).min(p.len())
        })?;
        let (len, reader) = peer.reader_at(id, p.verified(), Some(end))?;
        if len != p.len() {
            return Err(Error::Remote(format!(
                "remote {name}: {id} is {len} bytes there, {} by its tree",
                p.len()
            )));
        }
        p.fill_until(&mut meter.reader(reader), end, name)?;
    }
    Ok(reused)
}

/// Commits every so many artifacts, bytes or seconds.
struct Batches {
    n: usize,
    bytes: u64,
    since: std::time::Instant,
}

impl Batches {
    fn new() -> Self {
        Batches {
            n: 0,
            bytes: 0,
            since: std::time::Instant::now(),
        }
    }

    fn add(&mut self, store: &Store, len: u64) -> Result<()> {
        self.n += 1;
        self.bytes += len;
        if self.n >= BATCH_ARTIFACTS || self.bytes >= BATCH_BYTES || self.since.elapsed() >= BATCH_TIME {
            store.commit()?;
            *self = Batches::new();
        }
        Ok(())
    }
}

/// Stores the manifest, signature and import record, and remembers the
/// remote's key, domain and sequence number.
fn finish(
    store: &Store,
    r: &mut Remote,
    c: &Checked,
    n: DomainId,
    placed: PutOptions,
    fetched: &[ArtifactId],
    promised: &[ArtifactId],
) -> Result<ArtifactId> {
    // Where the imports came from, kept with them.
    store.put_with(&c.mb, &placed)?;
    store.put_with(&c.sb, &placed)?;
    let mut cosigs = Vec::new();
    for b in &c.cosigs {
        cosigs.push(store.put_with(b, &placed)?.id);
    }
    let rec = import_record(&c.m, n, &c.mid, &c.sid, &cosigs, fetched, promised);
    let stored = records::put(store, &rec)?;
    store.commit()?;
    store.pins().set(&format!("asl.import.{}", r.name), &stored.id)?;
    r.key = Some(c.key);
    r.domain = Some(c.m.domain);
    r.seq = c.m.seq;
    remote::update(store, r)?;
    Ok(stored.id)
}

/// [`fetch`] from a given peer, updating `r`.
pub fn fetch_from(store: &Store, r: &mut Remote, peer: &dyn Peer) -> Result<FetchReport> {
    fetch_checked(store, r, peer, &FetchOptions::default())
}

/// A lazy fetch: the manifest checked and recorded as for [`fetch`], but
/// the artifacts it lists that are missing here are only promised, not
/// sent: the import record names them, and reading one later fetches it
/// then ([`super::promise`]), like a partial clone.
pub fn fetch_lazy(store: &Store, name: &str) -> Result<FetchReport> {
    let opts = FetchOptions {
        lazy: true,
        ..FetchOptions::default()
    };
    fetch_with(store, name, &opts)
}

/// The bytes a fetch expects to receive: the listed sizes of what it
/// wants (an older manifest without sizes counts as nothing).
fn expected(m: &Manifest, wanted: impl Iterator<Item = usize>) -> u64 {
    wanted.filter_map(|k| m.sizes.get(k)).sum()
}

fn fetch_checked(store: &Store, r: &mut Remote, peer: &dyn Peer, opts: &FetchOptions<'_>) -> Result<FetchReport> {
    let lazy = opts.lazy;
    super::ranged::sweep(store)?;
    let c = check(r, peer)?;
    let n = remote::domain_number(store, &c.m.domain, &c.m.name)?;
    let placed = PutOptions::new().domain(n).source(Some(n));
    let mut rep = FetchReport {
        seq: c.m.seq,
        listed: c.m.published.len(),
        ..Default::default()
    };
    let mut fetched = Vec::new();
    let mut promised = Vec::new();
    let mut batches = Batches::new();
    let mut wanted = Vec::new();
    for (k, id) in c.m.published.iter().enumerate() {
        if store.contains(id)? {
            rep.present += 1;
        } else if lazy {
            promised.push(*id);
        } else {
            wanted.push(k);
        }
    }
    let shared = Shared::new(opts.progress, expected(&c.m, wanted.iter().copied()));
    for k in wanted {
        let id = &c.m.published[k];
        let got = match put_one(store, peer, &r.name, id, c.m.sizes.get(k).copied(), placed, &shared) {
            Ok(g) => g,
            Err(Error::Store(asl_core::Error::NotFound(x))) if x == *id => {
                rep.unavailable.push(*id);
                continue;
            }
            Err(e) => return Err(e),
        };
        rep.fetched += 1;
        rep.bytes += got.len;
        rep.resumed += got.resumed;
        rep.reused += got.reused;
        let len = got.len;
        fetched.push(*id);
        batches.add(store, len)?;
    }
    shared.meter.finish();
    rep.promised = promised.len();
    if c.m.seq == r.seq && fetched.is_empty() && r.key.is_some() && !lazy {
        store.commit()?;
        return Ok(rep);
    }
    rep.import = Some(finish(store, r, &c, n, placed, &fetched, &promised)?);
    sweep_unwanted(store)?;
    Ok(rep)
}
