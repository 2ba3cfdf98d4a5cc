//! How long small puts and lookups wait while a slow source streams a large
//! artifact in (a 60 MiB stream at about 50 MB/s). Measured and printed, not
//! asserted: timings on a shared machine are not a test. Run with
//! `--nocapture` to see them; the correctness checks are asserted.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asl::{ArtifactId, Store};

/// Hands out its bytes in 1 MiB reads, sleeping so that the rate is about
/// `rate` bytes per second.
struct Slow {
    data: Vec<u8>,
    pos: usize,
    rate: f64,
    start: Instant,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let due = Duration::from_secs_f64(self.pos as f64 / self.rate);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
        let n = buf.len().min(1 << 20).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn small_puts_beside_a_slow_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::create(dir.path()).unwrap());
    let big = common::noise(11, 60 << 20);
    let big_id = ArtifactId::of(&big);
    let done = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let r = Slow {
                data: big,
                pos: 0,
                rate: 50e6,
                start: Instant::now(),
            };
            let put = store.put_reader(r);
            done.store(true, Ordering::SeqCst);
            put
        })
    };
    let mut put_waits = Vec::new();
    let mut miss_waits = Vec::new();
    let mut ids = Vec::new();
    let mut i = 0u64;
    while !done.load(Ordering::SeqCst) {
        let bytes = format!("small artifact {i}, 22+ bytes");
        let t = Instant::now();
        ids.push((store.put(bytes.as_bytes()).unwrap(), bytes));
        put_waits.push(t.elapsed());
        let t = Instant::now();
        assert!(!store.contains(&ArtifactId::of(&i.to_le_bytes())).unwrap());
        miss_waits.push(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(streamer.join().unwrap().unwrap(), big_id);
    store.commit().unwrap();
    for (id, bytes) in &ids {
        assert_eq!(store.get(id).unwrap(), bytes.as_bytes());
    }
    assert_eq!(store.len_of(&big_id).unwrap(), 60 << 20);
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() * 99 / 100], *v.last().unwrap())
    };
    let (p50, p99, max) = stats(&mut put_waits);
    eprintln!(
        "small put beside a 60 MiB stream at 50 MB/s: {} puts, p50 {p50:?}, p99 {p99:?}, max {max:?}",
        ids.len()
    );
    let (p50, p99, max) = stats(&mut miss_waits);
    eprintln!("lookup miss beside it: p50 {p50:?}, p99 {p99:?}, max {max:?}");
}
