//! The cache of decompressed packed blocks: reading several small artifacts
//! of one compressed block decompresses it once.
//!
//! It is bounded in bytes, not entries (a block's decompressed size is up to
//! the block target), and evicts with CLOCK (second chance): a hit only sets
//! a bit, so readers never reorder a list under the lock, and a block read
//! again since the hand last passed survives a scan of blocks read once.
//!
//! Decoded frames (one small artifact each) share the budget but are only
//! admitted on a second read: a frame costs a few µs to decode again, while
//! keeping every frame read once (a scan, a random pass over a store larger
//! than the budget) costs a copy and fresh heap on every read and pushes out
//! what is read again. First reads are remembered as fingerprints in a
//! direct-mapped table, one slot per KiB of budget, so a frame read again
//! within about that many other reads gets in.
//!
//! Verified pieces of large artifacts (a grid chunk each, proven against
//! the artifact's chunk tree when read from disk) share it on the same
//! terms. A reader serves a cached piece without hashing it again, as ZFS
//! serves its ARC: the check is of what the disk gave back, and these
//! bytes have not been back to the disk since. Held as `Arc`s, they are
//! handed to an HTTP response without a copy.

use std::collections::HashMap;
use std::sync::Arc;

/// What the cache holds an entry for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Key {
    /// A decompressed block, or a decoded frame: segment id and offset.
    Block(u32, u64),
    /// A verified piece of a large artifact: its id, its grid (the chunk
    /// size, which one artifact stored twice may have two of) and the
    /// piece's number. Content-addressed, so never stale, wherever (and
    /// however often) the artifact is stored.
    Piece([u8; 32], u32, u32),
}

struct Slot {
    key: Key,
    block: Arc<Vec<u8>>,
    referenced: bool,
}

/// Decompressed blocks, at most `budget` bytes of them.
pub(crate) struct BlockCache {
    budget: usize,
    bytes: usize,
    slots: Vec<Slot>,
    index: HashMap<Key, usize>,
    hand: usize,
    /// Fingerprints of frames read once (0: empty).
    seen: Vec<u64>,
    /// Which full candidate slot the next first read overwrites.
    turn: bool,
}

/// Budget bytes per remembered first read.
const BYTES_PER_SEEN: usize = 1 << 10;

fn fingerprint(key: &Key) -> u64 {
    // splitmix64's finaliser: every bit of segment and offset (or of the
    // piece's number and grid, over bits of the id) reaches the slot.
    let mut z = match key {
        Key::Block(seg, at) => ((*seg as u64) << 40) ^ at,
        Key::Piece(id, grid, idx) => {
            u64::from_le_bytes(id[..8].try_into().expect("8 bytes")) ^ ((*grid as u64) << 32) ^ *idx as u64
        }
    };
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

impl BlockCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            slots: Vec::new(),
            index: HashMap::new(),
            hand: 0,
            seen: vec![0; (budget / BYTES_PER_SEEN).clamp(1, 1 << 20)],
            turn: false,
        }
    }

    /// Whether a decoded frame (or a verified piece) just read should be
    /// kept: true when its first read is still remembered, else that read
    /// is remembered now.
    /// Each fingerprint has two candidate slots, so two frames that share
    /// one are not kept out for good by taking turns at it.
    pub(crate) fn admit(&mut self, key: &Key) -> bool {
        let f = fingerprint(key);
        let n = self.seen.len() as u64;
        let (a, b) = ((f % n) as usize, ((f >> 32) % n) as usize);
        for i in [a, b] {
            if self.seen[i] == f {
                self.seen[i] = 0;
                return true;
            }
        }
        // Into an empty candidate if there is one, else over either in
        // turn: two frames that share a slot then part within a few reads.
        self.turn = !self.turn;
        let i = match (self.seen[a], self.seen[b]) {
            (0, _) => a,
            (_, 0) => b,
            _ if self.turn => b,
            _ => a,
        };
        self.seen[i] = f;
        false
    }

    pub(crate) fn get(&mut self, key: &Key) -> Option<Arc<Vec<u8>>> {
        let &i = self.index.get(key)?;
        let s = &mut self.slots[i];
        s.referenced = true;
        Some(s.block.clone())
    }

    /// Adds a block, evicting until it fits; a block larger than the whole
    /// budget is not kept.
    pub(crate) fn insert(&mut self, key: Key, block: Arc<Vec<u8>>) {
        let size = block.len();
        if size > self.budget || self.index.contains_key(&key) {
            return;
        }
        while self.bytes + size > self.budget && !self.slots.is_empty() {
            self.evict_one();
        }
        self.bytes += size;
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot {
            key,
            block,
            referenced: false,
        });
    }

    /// Advances the hand: a referenced slot loses its bit and is passed, the
    /// first unreferenced one is removed.
    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            if self.slots[self.hand].referenced {
                self.slots[self.hand].referenced = false;
                self.hand += 1;
                continue;
            }
            let gone = self.slots.swap_remove(self.hand);
            self.index.remove(&gone.key);
            self.bytes -= gone.block.len();
            if let Some(moved) = self.slots.get(self.hand) {
                self.index.insert(moved.key, self.hand);
            }
            return;
        }
    }

    /// Drops every block (cold-read measurements, tests).
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.bytes = 0;
        self.hand = 0;
        self.seen.fill(0);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![0; n])
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_read_again() {
        let mut c = BlockCache::new(10_000);
        for i in 0..5 {
            c.insert(Key::Block(1, i), block(2000));
        }
        assert_eq!(c.bytes(), 10_000);
        // The hot block is read again; a scan of blocks read once follows.
        assert!(c.get(&Key::Block(1, 0)).is_some());
        for i in 100..103 {
            c.insert(Key::Block(1, i), block(2000));
            assert!(c.bytes() <= 10_000);
        }
        assert!(
            c.get(&Key::Block(1, 0)).is_some(),
            "a block read again was evicted by a scan"
        );
        assert!(c.get(&Key::Block(1, 1)).is_none());
        // Too large for the whole budget: not kept, nothing evicted for it.
        c.insert(Key::Block(2, 0), block(20_000));
        assert!(c.get(&Key::Block(2, 0)).is_none());
        assert!(c.get(&Key::Block(1, 0)).is_some());
        // Index and slots agree after many evictions.
        for i in 0..1000u64 {
            c.insert(Key::Block(3, i), block(100 + (i as usize * 37) % 3000));
            if i % 3 == 0 {
                c.get(&Key::Block(3, i / 2));
            }
            assert!(c.bytes() <= 10_000);
        }
        for (k, &i) in &c.index {
            assert_eq!(c.slots[i].key, *k);
        }
        assert_eq!(c.index.len(), c.slots.len());
        c.clear();
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn frames_get_in_on_a_second_read_within_the_remembered_window() {
        let mut c = BlockCache::new(64 << 10);
        // Read once each: none admitted.
        assert!((0..1000u64).all(|i| !c.admit(&Key::Block(1, i))));
        // A frame read again soon is admitted, once.
        assert!(!c.admit(&Key::Block(7, 4096)));
        assert!(c.admit(&Key::Block(7, 4096)));
        assert!(!c.admit(&Key::Block(7, 4096)));
        // A working set of a quarter of the table's slots (64 here) read
        // round and round gets in, all but a few of it within four rounds.
        let mut kept = std::collections::HashSet::new();
        for _round in 0..4 {
            for i in 0..16u64 {
                if !kept.contains(&i) && c.admit(&Key::Block(2, i * 977)) {
                    kept.insert(i);
                }
            }
        }
        let admitted = kept.len();
        assert!(admitted >= 15, "only {admitted} of 16 admitted");
    }
}
