//! Manifest parts: a large artifact's chunk list handed over in parts as the
//! put goes (so a writer's memory does not grow with the artifact). Lists in
//! parts read back verified, the chunk sweep keeps what parts name (of stored
//! artifacts and of puts in flight) and drops what an abandoned or killed put
//! had handed over.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;

use asl::{ArtifactId, GcOptions, StoreOptions};
use common::noise;

const CHILD_ENV: &str = "ASL_PARTS_CHILD_DIR";

/// Parts of two chunks, so that a few MiB make dozens of parts.
fn opts() -> StoreOptions {
    StoreOptions::new()
        .create(true)
        .chunk_size(64 << 10)
        .segment_target(4 << 20)
        .part_chunks(2)
}

/// A GC that copies every segment holding any garbage.
fn gc_all(s: &asl::Store) -> asl::GcReport {
    s.maintenance()
        .gc(&GcOptions {
            threshold: 1.0,
            ..GcOptions::default()
        })
        .unwrap()
}

/// Every manifest stored in the store's segment files.
fn manifests(dir: &std::path::Path) -> Vec<asl::codec::Manifest> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("segments")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        let mut off = 32;
        while off + asl::codec::BLOCK_HEADER_LEN <= bytes.len() {
            let Ok(h) = asl::codec::BlockHeader::decode(&bytes[off..]) else {
                break;
            };
            if h.kind == asl::codec::BlockKind::Manifest {
                let body = &bytes[off + asl::codec::BLOCK_HEADER_LEN..][..h.stored_len as usize];
                out.push(asl::codec::Manifest::decode(body).unwrap());
            }
            off += h.total_len() as usize;
        }
    }
    out
}

/// Yields `data`; when it has handed out `gate` bytes it says so on
/// `reached`, then waits for `go` (or fails the read when `go` says false or
/// is dropped).
struct Gated {
    data: Vec<u8>,
    at: usize,
    gate: usize,
    reached: Option<mpsc::Sender<()>>,
    go: mpsc::Receiver<bool>,
}

impl Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.gate {
            if let Some(r) = self.reached.take() {
                r.send(()).unwrap();
                if !self.go.recv().unwrap_or(false) {
                    return Err(std::io::Error::other("the source went away"));
                }
            }
        }
        let end = if self.at < self.gate {
            self.gate
        } else {
            self.data.len()
        };
        let n = buf.len().min(end - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_list_in_parts_reads_back_verified_and_is_swept_when_nothing_names_it() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let base = noise(7, 6 << 20);
    let mut second = base.clone();
    second.splice(3_000_000..3_000_000, noise(8, 5000));
    let ids: Vec<ArtifactId> = [&base, &second].iter().map(|v| s.put(v).unwrap()).collect();
    s.commit().unwrap();
    assert_eq!(ids[0], ArtifactId::of(&base));
    let ms = manifests(d.path());
    assert_eq!(ms.len(), 2);
    for m in &ms {
        assert!(m.chunks.is_empty() && m.parts.len() >= 30, "{} parts", m.parts.len());
        assert!(m.parts.iter().all(|p| p.count <= 2));
    }
    assert_eq!(s.get(&ids[0]).unwrap(), base);
    assert_eq!(s.get(&ids[1]).unwrap(), second);
    // Ranges across many parts, proven against the id.
    let r = s.read_range(&ids[1], 1_500_000, 3_000_000).unwrap();
    assert_eq!(r, second[1_500_000..4_500_000]);
    assert!(s.maintenance().verify().unwrap().is_clean());
    // The versions share chunks: the second cost far less than its size.
    assert!(s.maintenance().stat().unwrap().physical_bytes < (6 << 20) + (2 << 20));
    // One version gone: the other keeps every chunk it shares.
    assert!(s.remove(&ids[0]).unwrap());
    s.commit().unwrap();
    let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert!(rep.chunks_swept > 0, "the chunks only the first version had");
    assert_eq!(s.get(&ids[1]).unwrap(), second);
    // Both gone: every chunk and part is swept and the space comes back.
    assert!(s.remove(&ids[1]).unwrap());
    s.commit().unwrap();
    let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(rep.chunks_swept >= 100, "{} swept", rep.chunks_swept);
    assert!(s.maintenance().stat().unwrap().physical_bytes < 1 << 20);
    drop(s);
    let s = opts().open(d.path()).unwrap();
    assert!(s.maintenance().verify().unwrap().is_clean());
    assert!(s.get(&ids[1]).is_err());
}

/// A sweep while a put is blocked after handing over parts (their chunks
/// indexed and committed, named by no manifest yet) must keep all of them:
/// the put's parts are roots. A second GC afterwards rewrites every segment
/// with garbage, so a chunk the first had dropped would be gone for good.
#[test]
fn a_sweep_during_a_put_keeps_the_chunks_its_parts_name() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let data = noise(21, 24 << 20);
    // Something for GC to do, and a sweep due.
    let other = s.put(&noise(22, 3 << 20)).unwrap();
    s.commit().unwrap();
    assert!(s.remove(&other).unwrap());
    s.commit().unwrap();
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let src = Gated {
        data: data.clone(),
        at: 0,
        gate: 20 << 20,
        reached: Some(reached_tx),
        go: go_rx,
    };
    let id = std::thread::scope(|sc| {
        // Owned here, so that a failed assertion drops it and the put ends.
        let go = go;
        let put = sc.spawn(|| s.put_reader(src));
        reached.recv().unwrap();
        let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
        assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
        // Only the removed artifact's chunks were garbage.
        let theirs = (3u64 << 20) / (16 << 10) + 1;
        assert!(rep.chunks_swept <= theirs, "{} chunks swept", rep.chunks_swept);
        go.send(true).unwrap();
        put.join().unwrap().unwrap()
    });
    s.commit().unwrap();
    assert_eq!(id, ArtifactId::of(&data));
    let rep = gc_all(&s);
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(s.get(&id).unwrap(), data);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// A put that fails after handing over parts leaves its indexed chunks to
/// the sweep; nothing else changes.
#[test]
fn an_abandoned_put_leaves_what_it_handed_over_to_the_sweep() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let keep = noise(31, 2 << 20);
    let kept = s.put(&keep).unwrap();
    s.commit().unwrap();
    // The sweep due since the store opened runs now: only the abandoned put
    // can make the next one due.
    assert_eq!(s.maintenance().gc(&GcOptions::default()).unwrap().chunks_swept, 0);
    let before = s.maintenance().stat().unwrap().physical_bytes;
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let src = Gated {
        data: noise(32, 24 << 20),
        at: 0,
        gate: 20 << 20,
        reached: Some(reached_tx),
        go: go_rx,
    };
    std::thread::scope(|sc| {
        let put = sc.spawn(|| s.put_reader(src));
        reached.recv().unwrap();
        go.send(false).unwrap();
        drop(go);
        assert!(put.join().unwrap().is_err());
    });
    assert!(s.maintenance().verify().unwrap().is_clean());
    let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(rep.chunks_swept >= 100, "{} swept", rep.chunks_swept);
    let after = s.maintenance().stat().unwrap().physical_bytes;
    assert!(after < before + (1 << 20), "{before} before, {after} after");
    assert_eq!(s.get(&kept).unwrap(), keep);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// The child: commits one artifact, then streams a large one and is killed
/// while it blocks after 20 MiB (parts committed by then).
#[test]
fn parts_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let s = opts().open(&dir).unwrap();
    let id = s.put(&noise(41, 1 << 20)).unwrap();
    s.commit().unwrap();
    println!("kept {id}");
    let (reached_tx, reached) = mpsc::channel();
    let (_go, go_rx) = mpsc::channel::<bool>();
    let src = Gated {
        data: noise(42, 24 << 20),
        at: 0,
        gate: 20 << 20,
        reached: Some(reached_tx),
        go: go_rx,
    };
    std::thread::scope(|sc| {
        sc.spawn(|| s.put_reader(src));
        reached.recv().unwrap();
        // Let the window before the gate be stored, then say so and wait.
        std::thread::sleep(std::time::Duration::from_millis(300));
        println!("gate");
        loop {
            std::thread::park();
        }
    });
}

#[test]
fn a_put_killed_after_handing_over_parts_leaves_a_clean_store_and_garbage_the_sweep_drops() {
    use std::process::{Command, Stdio};
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "parts_crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, d.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kept = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The harness may have begun the line with the test's name.
        if let Some(at) = line.find("kept ") {
            kept = Some(line[at + 5..].trim().parse::<ArtifactId>().unwrap());
        }
        if line.ends_with("gate") {
            break;
        }
    }
    let st = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = child.wait();
    let kept = kept.expect("the child committed an artifact");
    let s = opts().open(d.path()).unwrap();
    assert_eq!(s.get(&kept).unwrap(), noise(41, 1 << 20));
    assert!(s.maintenance().verify().unwrap().is_clean());
    let rep = s.maintenance().gc(&GcOptions::default()).unwrap();
    assert!(rep.chunks_swept >= 100, "{} swept", rep.chunks_swept);
    assert!(s.maintenance().stat().unwrap().physical_bytes < 2 << 20);
    assert_eq!(s.get(&kept).unwrap(), noise(41, 1 << 20));
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// Inside an atomic section a put hands over its parts without committing:
/// the section's one commit takes all of it, or none if it is abandoned.
#[test]
fn a_put_in_parts_inside_an_atomic_section_commits_with_it_or_not_at_all() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let data = noise(51, 6 << 20);
    let section = s.begin_atomic().unwrap();
    let lost = s.put(&data).unwrap();
    drop(section);
    assert!(s.commit().is_err(), "an abandoned section poisons the writer");
    drop(s);
    let s = opts().open(d.path()).unwrap();
    assert!(!s.contains(&lost).unwrap());
    assert!(s.maintenance().verify().unwrap().is_clean());
    assert_eq!(
        s.maintenance().gc(&GcOptions::default()).unwrap().chunks_swept,
        0,
        "no chunk record was committed"
    );
    let section = s.begin_atomic().unwrap();
    let id = s.put(&data).unwrap();
    section.commit().unwrap();
    drop(s);
    let s = opts().open(d.path()).unwrap();
    assert_eq!(s.get(&id).unwrap(), data);
    assert!(s.maintenance().verify().unwrap().is_clean());
}

/// A reader of a list in parts resolves a part when a read first reaches
/// it, not all of them when it opens: with the last part's block damaged,
/// the first bytes still read (proven), and only a read reaching the damage
/// fails, naming the part. Resolving every part at open would refuse the
/// first read too, and hold the whole list for the reader's lifetime.
#[test]
fn a_reader_resolves_parts_only_when_reads_reach_them() {
    use asl::codec::{BlockHeader, BlockKind, Compression, BLOCK_HEADER_LEN};
    let d = tempfile::tempdir().unwrap();
    let data = noise(11, 6 << 20);
    let id = {
        let s = opts().compression(None).open(d.path()).unwrap();
        let id = s.put(&data).unwrap();
        s.commit().unwrap();
        id
    };
    let m = manifests(d.path()).pop().unwrap();
    let last = m.parts.last().unwrap().key;
    let mut hit = 0;
    for e in std::fs::read_dir(d.path().join("segments")).unwrap() {
        let path = e.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mut off = 32;
        while off + BLOCK_HEADER_LEN <= bytes.len() {
            let Ok(h) = BlockHeader::decode(&bytes[off..]) else {
                break;
            };
            let body = off + BLOCK_HEADER_LEN;
            if h.kind == BlockKind::CdcChunk
                && h.compression == Compression::None
                && bytes[body..body + 32] == last.as_bytes()[..]
            {
                bytes[body + 40] ^= 0x55;
                hit += 1;
            }
            off += h.total_len() as usize;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    assert_eq!(hit, 1, "the last part's block");
    let s = opts().read_only(true).open(d.path()).unwrap();
    assert_eq!(s.read_range(&id, 0, 100_000).unwrap(), data[..100_000]);
    let mut r = s.open_reader(&id).unwrap();
    let mut head = vec![0u8; 1 << 20];
    r.read_exact(&mut head).unwrap();
    assert_eq!(head, data[..1 << 20]);
    let err = s.get(&id).unwrap_err().to_string();
    assert!(err.contains(&format!("manifest part {last}")), "{err}");
}

/// A reader resolves parts as it goes, so an artifact removed and collected
/// under an open reader cannot be read on past what the reader had reached:
/// it must fail there, saying the artifact is gone (it is not damage), and
/// never hand out other bytes.
#[test]
fn a_reader_of_an_artifact_collected_under_it_stops_with_an_error() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let data = noise(12, 6 << 20);
    let id = s.put(&data).unwrap();
    s.put(&noise(13, 1 << 20)).unwrap();
    s.commit().unwrap();
    let mut r = s.open_reader(&id).unwrap();
    let mut head = vec![0u8; 256 << 10];
    r.read_exact(&mut head).unwrap();
    assert_eq!(head, data[..256 << 10]);
    assert!(s.remove(&id).unwrap());
    s.commit().unwrap();
    let rep = gc_all(&s);
    assert!(rep.chunks_swept > 0 && rep.segments_deleted > 0, "{rep:?}");
    let mut rest = Vec::new();
    let err = r.read_to_end(&mut rest).unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        rest,
        data[256 << 10..][..rest.len()],
        "what was handed out is the artifact's"
    );
}

/// A live artifact's chunks moved by GC while a reader is open: the parts
/// the reader had not reached yet are resolved to the copies, so the read
/// goes on, proven, to the end.
#[test]
fn a_reader_goes_on_across_a_gc_that_moves_the_chunks_it_has_not_reached() {
    let d = tempfile::tempdir().unwrap();
    let s = opts().open(d.path()).unwrap();
    let data = noise(14, 6 << 20);
    // Put first, so that the artifact's chunks follow it in its segment.
    let other = s.put(&noise(15, 1 << 20)).unwrap();
    let id = s.put(&data).unwrap();
    s.commit().unwrap();
    let mut r = s.open_reader(&id).unwrap();
    let mut got = vec![0u8; 256 << 10];
    r.read_exact(&mut got).unwrap();
    // Garbage beside the artifact's chunks, so that a GC at 1.0 copies them.
    assert!(s.remove(&other).unwrap());
    s.commit().unwrap();
    let rep = gc_all(&s);
    assert!(rep.segments_repacked > 0 && rep.repacked_bytes >= 6 << 20, "{rep:?}");
    r.read_to_end(&mut got).unwrap();
    assert!(got == data, "the artifact, whole");
}
