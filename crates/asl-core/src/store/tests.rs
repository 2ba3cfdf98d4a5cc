//! Unit tests of the store's concurrency seams: what may and may not wait for
//! the writer. They hold the writer lock (or pause a streaming source) by hand
//! and check that the other operation still completes; a regression shows up
//! as the operation never finishing, caught by a generous deadline.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::index::{DomainId, Placement, Visibility};
use crate::store::options::PutOptions;
use crate::testutil::{noise, text};

const DEADLINE: Duration = Duration::from_secs(20);

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
    (dir, Arc::new(s))
}

/// Runs `f` on another thread and returns its result, or panics if it does
/// not finish before the deadline (it is waiting for something it must not).
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what} waited for the writer"))
}

#[test]
fn lookups_never_wait_for_the_writer() {
    let (_d, s) = store();
    let committed = s.put(b"committed").unwrap();
    s.commit().unwrap();
    let buffered = s.put(b"still in the pending buffer").unwrap();
    let absent = ArtifactId::of(b"never stored");
    // Another thread holds the writer, as a long put_batch would.
    let guard = s.writer.as_ref().unwrap().lock();
    let s2 = s.clone();
    let (a, b, c, d) = finishes("a lookup", move || {
        (
            s2.contains(&absent).unwrap(),
            s2.get(&buffered).unwrap(),
            s2.get(&committed).unwrap(),
            s2.resolve(&buffered.to_hex()[..10]).unwrap(),
        )
    });
    drop(guard);
    assert!(!a);
    assert_eq!(b, b"still in the pending buffer");
    assert_eq!(c, b"committed");
    assert_eq!(d, buffered);
}

/// A reader that hands out `first` bytes, then waits for the test's signal
/// before handing out the rest.
struct Paused {
    data: Vec<u8>,
    pos: usize,
    first: usize,
    go: Option<mpsc::Receiver<()>>,
    reached: Option<mpsc::Sender<()>>,
}

impl Read for Paused {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.first {
            if let Some(tx) = self.reached.take() {
                let _ = tx.send(());
            }
            if let Some(rx) = self.go.take() {
                let _ = rx.recv();
            }
        }
        let end = if self.pos < self.first {
            self.first.min(self.pos + buf.len())
        } else {
            self.data.len().min(self.pos + buf.len())
        };
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

/// Starts a `put_reader` of `data` that pauses after `first` bytes; returns
/// the signal that resumes it and its join handle, once it is paused.
fn paused_stream(
    s: &Arc<Store>,
    data: Vec<u8>,
    first: usize,
    opts: PutOptions,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<Result<Put>>) {
    let (go_tx, go_rx) = mpsc::channel();
    let (reached_tx, reached_rx) = mpsc::channel();
    let reader = Paused {
        data,
        pos: 0,
        first,
        go: Some(go_rx),
        reached: Some(reached_tx),
    };
    let s2 = s.clone();
    let h = std::thread::spawn(move || s2.put_reader_with(reader, &opts));
    reached_rx.recv_timeout(DEADLINE).unwrap();
    (go_tx, h)
}

#[test]
fn a_slow_stream_does_not_block_small_puts_commits_or_other_streams() {
    let (_d, s) = store();
    let big = noise(1, 20 << 20);
    let big_id = ArtifactId::of(&big);
    let published = PutOptions::new().visibility(Visibility::Published);
    let (go, h) = paused_stream(&s, big.clone(), 9 << 20, published);
    let s2 = s.clone();
    let (small, other) = finishes("a small put and a second stream beside a paused stream", move || {
        let small = s2.put(b"small beside a stream").unwrap();
        let other = s2.put_reader(std::io::Cursor::new(noise(2, 3 << 20))).unwrap();
        s2.commit().unwrap();
        (small, other)
    });
    go.send(()).unwrap();
    let put = h.join().unwrap().unwrap();
    assert!(put.new && put.id == big_id);
    s.commit().unwrap();
    assert_eq!(s.get(&big_id).unwrap(), big);
    assert_eq!(s.get(&small).unwrap(), b"small beside a stream");
    assert_eq!(s.get(&other).unwrap(), noise(2, 3 << 20));
    let info = s.list().unwrap();
    let vis = |id| info.iter().find(|a| a.id == id).unwrap().visibility;
    assert_eq!(vis(big_id), Visibility::Published);
    assert_eq!(vis(small), Visibility::Internal);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn seal_waits_for_a_stream_and_a_duplicate_stream_leaves_counted_garbage() {
    // Fixed chunk blocks: a duplicate stream writes its chunks before it
    // knows. (In content-defined chunks it writes none; see the next test.)
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(
        StoreOptions::new()
            .create(true)
            .chunk_dedup(false)
            .open(d.path())
            .unwrap(),
    );
    let big = noise(3, 12 << 20);
    let id = s.put(&big).unwrap();
    s.commit().unwrap();
    // The same bytes again, paused mid-way; meanwhile a small put lands after
    // its chunks and a commit covers them, so they cannot be cut off.
    let (go, h) = paused_stream(&s, big.clone(), 9 << 20, PutOptions::new());
    s.put(b"after the chunks").unwrap();
    s.commit().unwrap();
    let s2 = s.clone();
    let sealer = std::thread::spawn(move || s2.maintenance().seal());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!sealer.is_finished(), "seal did not wait for the stream");
    go.send(()).unwrap();
    let dup = h.join().unwrap().unwrap();
    assert!(!dup.new && dup.id == id);
    sealer.join().unwrap().unwrap();
    let st = s.maintenance().stat().unwrap();
    assert!(st.garbage_bytes >= 8 << 20, "orphaned chunks not counted: {st:?}");
    s.maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert_eq!(s.maintenance().stat().unwrap().garbage_bytes, 0);
    assert_eq!(s.get(&id).unwrap(), big);
    drop(s);
    let s = Store::open(d.path()).unwrap();
    assert_eq!(s.get(&id).unwrap(), big);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn a_duplicate_stream_in_chunks_writes_nothing_and_a_sweep_waits_for_its_references() {
    let (d, s) = store();
    let big = noise(3, 24 << 20);
    let id = s.put(&big).unwrap();
    s.commit().unwrap();
    // The same bytes with a different tail, paused mid-way: its first
    // windows referenced the stored chunks. Meanwhile the only artifact
    // naming them is removed and GC sweeps: the paused put's references are
    // roots, so the chunks stay.
    let mut other = big.clone();
    other.extend_from_slice(b"a different tail");
    let other_id = ArtifactId::of(&other);
    // Paused while reading its third 8 MiB window: the first window's
    // chunks are stored (referenced) by then; the second's may still be on
    // their way (the put stores one window while it reads the next).
    let (go, h) = paused_stream(&s, other.clone(), 17 << 20, PutOptions::new());
    assert!(s.remove(&id).unwrap());
    // The sweep runs while the put is paused (it waits for nothing but the
    // writer lock): the chunks past what the put has referenced are named
    // by nothing and go; the put writes them again from the bytes it reads.
    let swept = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(
        swept.chunks_swept > 0 && swept.chunk_bytes_swept <= 17 << 20,
        "{swept:?}"
    );
    go.send(()).unwrap();
    let put = h.join().unwrap().unwrap();
    assert!(put.new && put.id == other_id);
    // Rewrite every segment with garbage: a chunk the paused put referenced
    // but the sweep dropped would be gone now.
    s.maintenance().seal().unwrap();
    s.maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            dry_run: false,
        })
        .unwrap();
    assert_eq!(s.get(&other_id).unwrap(), other);
    drop(s);
    let s = Store::open(d.path()).unwrap();
    assert_eq!(s.get(&other_id).unwrap(), other);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

#[test]
fn every_put_entry_point_takes_placement_and_a_live_artifact_keeps_its_own() {
    let (d, s) = store();
    let p = Placement {
        domain: DomainId(7),
        visibility: Visibility::Published,
        source: Some(DomainId(3)),
    };
    let opts = PutOptions::new().placement(p);
    let small = s.put_with(b"one", &opts).unwrap();
    let batch = s.put_batch_with(&[b"two".to_vec(), noise(4, 300_000)], &opts).unwrap();
    let read = s
        .put_reader_with(std::io::Cursor::new(noise(5, 200_000)), &opts)
        .unwrap();
    let path = d.path().join("input");
    std::fs::write(&path, noise(6, 500_000)).unwrap();
    let file = s.put_file_with(&path, &opts).unwrap();
    let all = [small, batch[0], batch[1], read, file];
    for put in &all {
        assert!(put.new);
        assert_eq!(put.placement, p);
    }
    // Deduplicated puts keep what is stored, in the buffer and on disk.
    let again = s.put_with(b"one", &PutOptions::new()).unwrap();
    assert!(!again.new && again.placement == p);
    s.commit().unwrap();
    let again = s.put_with(b"one", &PutOptions::new()).unwrap();
    assert!(!again.new && again.placement == p);
    let big_again = s.put_file_with(&path, &PutOptions::new()).unwrap();
    assert!(!big_again.new && big_again.placement == p);
    drop(s);
    let s = Store::open(d.path()).unwrap();
    for a in s.list().unwrap() {
        assert_eq!((a.domain, a.visibility), (p.domain, p.visibility), "{}", a.id);
    }
    assert_eq!(s.list().unwrap().len(), all.len());
    let e = s.lookup(&small.id).unwrap().unwrap();
    assert_eq!(e.cross_domain_source(), Some(DomainId(3)));
}

#[test]
fn concurrent_large_streams_from_a_rayon_loop_keep_their_segment() {
    use rayon::prelude::*;
    let d = tempfile::tempdir().unwrap();
    // Small chunks and segments: many windows per artifact, interleaved
    // between the streams, and a segment full long before they end (it must
    // not be rotated under them).
    let s = StoreOptions::new()
        .create(true)
        .chunk_size(64 << 10)
        .segment_target(1 << 20)
        .open(d.path().join("store"))
        .unwrap();
    let paths: Vec<std::path::PathBuf> = (0..32u64)
        .map(|i| {
            let p = d.path().join(format!("in{i}"));
            std::fs::write(&p, noise(100 + i, 3 << 20)).unwrap();
            p
        })
        .collect();
    // Each put also hashes and compresses on rayon, from inside the caller's
    // rayon loop.
    let puts: Vec<Put> = paths
        .par_iter()
        .map(|p| s.put_file_with(p, &PutOptions::new()).unwrap())
        .collect();
    let streamed: Vec<ArtifactId> = (0..32u64)
        .into_par_iter()
        .map(|i| s.put_reader(std::io::Cursor::new(noise(200 + i, 2 << 20))).unwrap())
        .collect();
    s.commit().unwrap();
    for (p, put) in paths.iter().zip(&puts) {
        assert_eq!(s.get(&put.id).unwrap(), std::fs::read(p).unwrap());
    }
    for (i, id) in streamed.iter().enumerate() {
        assert_eq!(s.get(id).unwrap(), noise(200 + i as u64, 2 << 20));
    }
}

#[test]
fn put_file_writes_a_new_length_in_one_pass_and_cuts_back_a_late_duplicate() {
    let d = tempfile::tempdir().unwrap();
    // 64 KiB chunks: files of 16 chunks or more take the one-pass path.
    let s = StoreOptions::new()
        .create(true)
        .chunk_size(64 << 10)
        .open(d.path().join("s"))
        .unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::write(&a, noise(1, 1_100_000)).unwrap();
    std::fs::write(&b, noise(2, 1_100_000)).unwrap();
    let active_len = |s: &Store| s.writer.as_ref().unwrap().lock().active.as_ref().unwrap().len;
    // Nothing stored is 1,100,000 bytes long: `a` is new for certain.
    assert!(!s.may_hold_length(1_100_000).unwrap());
    let pa = s.put_file_with(&a, &PutOptions::new()).unwrap();
    assert!(pa.new && s.may_hold_length(1_100_000).unwrap());
    // `b` has a stored artifact's length: hashed first, then written.
    let pb = s.put_file_with(&b, &PutOptions::new()).unwrap();
    assert!(pb.new && pb.id != pa.id);
    // A duplicate the length probe misses (a concurrent put of the same bytes
    // can do that) is written in one pass, found at the end and cut off again.
    let before = active_len(&s);
    *s.large_lengths.lock() = Some(std::collections::HashSet::new());
    let again = s.put_file_with(&a, &PutOptions::new()).unwrap();
    assert!(!again.new && again.id == pa.id);
    assert_eq!(active_len(&s), before, "the duplicate's chunks were not cut back");
    s.commit().unwrap();
    assert_eq!(s.get(&pa.id).unwrap(), std::fs::read(&a).unwrap());
    assert_eq!(s.get(&pb.id).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_writer_on_a_plain_thread_never_waits_for_rayon_workers_blocked_on_it() {
    // Every worker of rayon's global pool runs a put and blocks on the writer
    // lock, while a plain thread holds it and frames a packed block on all
    // cores: that work must not need the blocked workers.
    let (_d, s) = store();
    finishes("puts from rayon's workers and from a plain thread", move || {
        use rayon::prelude::*;
        let plain = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..4000u64 {
                    s.put(&text(i, 900)).unwrap();
                }
            })
        };
        (0..4000u64).into_par_iter().for_each(|i| {
            s.put(&text(1_000_000 + i, 900)).unwrap();
        });
        plain.join().unwrap();
        s.commit().unwrap();
    });
}

/// GC looks up a victim's artifacts in one pass before it copies any (see
/// `store::gc::lookup`); what a writer changes after that pass must win
/// over what the pass saw. Here the changes land between the pass and the
/// first batch of each victim, to the victim's own artifacts: removals must
/// not come back, a visibility change must not be lost, and a removed and
/// re-put artifact stays readable.
#[test]
fn gc_copies_what_writers_changed_after_its_lookup_pass() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreOptions::new()
        .create(true)
        .block_target(8 << 10)
        .small_threshold(16 << 10)
        .segment_target(64 << 10)
        .memtable_limit(300)
        .max_index_files(2)
        .open(dir.path())
        .unwrap();
    let ids: Vec<ArtifactId> = (0..600).map(|i| s.put(&noise(i, 1500)).unwrap()).collect();
    s.commit().unwrap();
    s.maintenance().seal().unwrap();
    // Garbage in every segment, so that every one is a victim.
    for id in ids.iter().step_by(10) {
        s.remove(id).unwrap();
    }
    s.commit().unwrap();
    let removed: Vec<ArtifactId> = ids.iter().skip(1).step_by(10).copied().collect();
    let published: Vec<ArtifactId> = ids.iter().skip(2).step_by(10).copied().collect();
    {
        let ids = ids.clone();
        let mut touched = 0;
        gc::lookup::AFTER_PASS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |s: &Store, here: &[ArtifactId]| {
                for (i, id) in ids.iter().enumerate().filter(|(_, id)| here.contains(id)) {
                    match i % 10 {
                        1 => drop(s.remove(id).unwrap()),
                        2 => drop(s.set_visibility(&[*id], Visibility::Published).unwrap()),
                        3 => {
                            s.remove(id).unwrap();
                            assert_eq!(s.put(&noise(i as u64, 1500)).unwrap(), *id);
                        }
                        _ => continue,
                    }
                    touched += 1;
                }
                s.commit().unwrap();
                assert!(touched > 0 || here.is_empty());
            }))
        });
    }
    let rep = s.maintenance().gc(&gc::GcOptions::default()).unwrap();
    gc::lookup::AFTER_PASS.with(|h| *h.borrow_mut() = None);
    assert!(rep.segments_deleted > 1, "{rep:?}");
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 10 == 0 || i % 10 == 1 {
            None
        } else if i % 10 == 2 {
            Some(Visibility::Published)
        } else {
            Some(Visibility::Internal)
        };
        let got = s.info(id).unwrap().map(|a| a.visibility);
        assert_eq!(got, want, "artifact {i}");
        if want.is_some() {
            assert_eq!(s.get(id).unwrap(), noise(i as u64, 1500), "artifact {i}");
        }
    }
    drop(s);
    let s = StoreOptions::new().open(dir.path()).unwrap();
    assert!(s.maintenance().verify().unwrap().is_clean());
    assert_eq!(
        s.info(&published[0]).unwrap().map(|a| a.visibility),
        Some(Visibility::Published)
    );
    assert!(!s.contains(&removed[0]).unwrap());
}

#[test]
fn a_listing_shows_buffered_puts_without_writing_them() {
    let (_d, s) = store();
    let on_disk = s.put(b"committed first").unwrap();
    s.commit().unwrap();
    // Buffered: not in a block yet. One of them is also on disk already.
    let fresh: Vec<ArtifactId> = [&b"buffered a"[..], b"buffered b"]
        .iter()
        .map(|b| s.put(b).unwrap())
        .collect();
    assert_eq!(s.put(b"committed first").unwrap(), on_disk);
    assert!(fresh.iter().all(|id| s.pending.read().contains(id)));
    let mut want = vec![on_disk, fresh[0], fresh[1]];
    want.sort();
    let listed: Vec<ArtifactId> = s.iter().unwrap().map(|a| a.unwrap().id).collect();
    assert_eq!(listed, want, "in id order, each once");
    let from: Vec<ArtifactId> = s.iter_from(&want[1]).unwrap().map(|a| a.unwrap().id).collect();
    assert_eq!(from, want[1..]);
    let mut stored = s.ids_in_storage_order().unwrap();
    assert_eq!(stored[0], on_disk, "what is on disk first");
    stored.sort();
    assert_eq!(stored, want);
    // Listing wrote nothing: the puts are still only in the buffer.
    assert!(fresh.iter().all(|id| s.pending.read().contains(id)));
}

#[test]
fn a_read_only_handle_refreshed_sees_what_the_writer_committed_since() {
    let dir = tempfile::tempdir().unwrap();
    let w = Store::create(dir.path()).unwrap();
    let a = w.put(b"before").unwrap();
    w.commit().unwrap();
    let r = StoreOptions::new().read_only(true).open(dir.path()).unwrap();
    let big = vec![7u8; 3 << 20];
    let b = w.put(b"after").unwrap();
    let c = w.put(&big).unwrap();
    w.pins().add("keep", &b).unwrap();
    w.commit().unwrap();
    assert!(r.contains(&a).unwrap() && !r.contains(&b).unwrap());
    assert!(r.maintenance().refresh().unwrap(), "something changed");
    assert_eq!(r.get(&b).unwrap(), b"after");
    assert_eq!(r.get(&c).unwrap(), big);
    assert_eq!(r.pins().list(), vec![("keep".to_string(), b)]);
    // Across a seal and a checkpoint (new log, index and segment files),
    // a removal included.
    w.remove(&a).unwrap();
    w.maintenance().publish().unwrap();
    assert!(r.maintenance().refresh().unwrap());
    assert!(!r.contains(&a).unwrap());
    assert_eq!(r.get(&c).unwrap(), big);
    assert!(!r.maintenance().refresh().unwrap(), "nothing new");
    assert!(!w.maintenance().refresh().unwrap(), "a writer is always current");
    assert!(r.maintenance().verify().unwrap().problems.is_empty());
}
