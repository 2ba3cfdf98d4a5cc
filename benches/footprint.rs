//! Memory footprint harness (not criterion: it measures bytes, not time).
//!
//! 1. Heap bytes held per sealed artifact by an open store of 1 M artifacts,
//!    counted by a global allocator wrapper.
//! 2. Peak RSS while streaming a large artifact through `put_reader`
//!    (default 10 GiB; `ASL_FOOTPRINT_GIB` to change), from `/proc/self/status`.
//!
//! Run: `cargo bench --bench footprint`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use asl::{Store, StoreOptions};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An endless pseudo-random byte source of a given length.
struct Gen {
    left: u64,
    x: u64,
}

impl Read for Gen {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = (out.len() as u64).min(self.left) as usize;
        for c in out[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            c.copy_from_slice(&self.x.to_le_bytes()[..c.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Puts `n` distinct 1 KiB artifacts, committing every 10 000.
fn fill(s: &Store, n: u64) {
    let mut buf = vec![0u8; 1024];
    for i in 0..n {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        s.put(&buf).unwrap();
        if i % 10_000 == 9_999 {
            s.commit().unwrap();
        }
    }
    s.commit().unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::var_os("ASL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(&base).unwrap();
    let n = 1_000_000u64;
    {
        let s = StoreOptions::new()
            .create(true)
            .compression(None)
            .open(dir.path())
            .unwrap();
        fill(&s, n);
        s.maintenance().seal().unwrap();
        s.close().unwrap();
    }
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let s = Store::open(dir.path()).unwrap();
    let open_time = t.elapsed();
    let held = LIVE.load(Ordering::Relaxed) - before;
    let st = s.maintenance().stat().unwrap();
    let disk_index = st.index_bytes;
    println!("open of {n} artifacts: {open_time:?}");
    println!(
        "heap held by the open store: {held} B = {:.4} B per sealed artifact",
        held as f64 / n as f64
    );
    println!(
        "on-disk index: {disk_index} B = {:.1} B per artifact",
        disk_index as f64 / n as f64
    );
    drop(s);
    drop(dir);

    // After a crash, open replays the log tail since the last checkpoint: at most
    // `memtable_limit` records (default 200 000). Measure a 150 000-record tail.
    let dir = tempfile::tempdir_in(&base).unwrap();
    let s = StoreOptions::new()
        .create(true)
        .compression(None)
        .open(dir.path())
        .unwrap();
    fill(&s, 150_000);
    std::mem::forget(s); // a crash: no checkpoint on close
    let t = Instant::now();
    let r = Store::open_read_only(dir.path()).unwrap();
    println!("open after a crash with a 150000-record log tail: {:?}", t.elapsed());
    drop(r);
    drop(dir);

    let gib: u64 = std::env::var("ASL_FOOTPRINT_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir_in(&base).unwrap();
    let s = StoreOptions::new().create(true).open(dir.path()).unwrap();
    // Reset the high-water mark so the 1 M-artifact phase above does not mask
    // the streaming peak (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = status("VmHWM:");
    let t = Instant::now();
    let id = s.put_reader(Gen { left: gib << 30, x: 99 }).unwrap();
    assert_eq!(s.len_of(&id).unwrap(), gib << 30, "the generator must yield every byte");
    s.commit().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "streamed {gib} GiB through put_reader in {secs:.1}s ({:.0} MB/s, generator included): peak RSS {} MiB (was {} MiB before)",
        (gib << 30) as f64 / secs / 1e6,
        status("VmHWM:") / 1024,
        rss0 / 1024
    );
    println!("id {id}");
}
