//! The page cache of a store living in a bucket: pages of offloaded
//! segments on local disk, each with its CRC32C, evicted least recently
//! used first once their total passes the budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::rand_suffix;

/// Pages of offloaded segments on local disk, one file each
/// (`cache/NAME.PAGE`: the bytes, then their CRC32C), evicted least
/// recently used first once their total passes the budget.
pub(super) struct PageCache {
    pub(super) dir: PathBuf,
    pub(super) budget: u64,
    pub(super) state: Mutex<CacheState>,
    /// The pages used last, in memory, newest first: reads of a large
    /// artifact come in pieces much smaller than a page, and each would
    /// otherwise read and check the whole page file again.
    pub(super) hot: Mutex<VecDeque<(PageKey, Arc<Vec<u8>>)>>,
}

/// Pages kept in memory.
pub(super) const HOT: usize = 8;

/// A cached page: (segment file name, page number).
pub(super) type PageKey = (String, u64);

#[derive(Default)]
pub(super) struct CacheState {
    /// (segment, page) → (bytes, last use).
    pub(super) pages: HashMap<(String, u64), (u64, u64)>,
    /// Last use → page, oldest first.
    pub(super) order: BTreeMap<u64, (String, u64)>,
    pub(super) tick: u64,
    pub(super) total: u64,
}

impl CacheState {
    pub(super) fn touch(&mut self, key: &(String, u64)) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, t)) = self.pages.get_mut(key) {
            self.order.remove(t);
            *t = tick;
            self.order.insert(tick, key.clone());
        }
    }

    pub(super) fn insert(&mut self, key: (String, u64), bytes: u64) {
        self.remove(&key);
        self.tick += 1;
        self.pages.insert(key.clone(), (bytes, self.tick));
        self.order.insert(self.tick, key);
        self.total += bytes;
    }

    pub(super) fn remove(&mut self, key: &(String, u64)) -> bool {
        match self.pages.remove(key) {
            Some((bytes, t)) => {
                self.order.remove(&t);
                self.total -= bytes;
                true
            }
            None => false,
        }
    }
}

impl PageCache {
    pub(super) fn open(dir: &Path, budget: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let parsed = name
                .rsplit_once('.')
                .and_then(|(seg, page)| Some((seg.to_string(), page.parse::<u64>().ok()?)))
                .filter(|(seg, _)| seg.ends_with(".seg"));
            let meta = e.metadata()?;
            match parsed {
                Some(key) => found.push((meta.modified().ok(), key, meta.len())),
                // A page being written when the process ended.
                None => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // The previous run's order of use is approximated by file times.
        found.sort_by_key(|f| f.0);
        let mut st = CacheState::default();
        for (_, key, len) in found {
            st.insert(key, len);
        }
        let c = Self {
            dir: dir.to_path_buf(),
            budget,
            state: Mutex::new(st),
            hot: Mutex::new(VecDeque::new()),
        };
        c.evict(&mut c.state.lock(), None);
        Ok(c)
    }

    pub(super) fn file(&self, name: &str, page: u64) -> PathBuf {
        self.dir.join(format!("{name}.{page}"))
    }

    pub(super) fn usage(&self) -> (u64, u64) {
        (self.state.lock().total, self.budget)
    }

    pub(super) fn has(&self, name: &str, page: u64) -> bool {
        self.state.lock().pages.contains_key(&(name.to_string(), page))
    }

    pub(super) fn remember(&self, key: (String, u64), page: Arc<Vec<u8>>) {
        let mut hot = self.hot.lock();
        hot.retain(|(k, _)| *k != key);
        hot.push_front((key, page));
        hot.truncate(HOT);
    }

    pub(super) fn get(&self, name: &str, page: u64) -> Option<Arc<Vec<u8>>> {
        let key = (name.to_string(), page);
        let hot = {
            let mut hot = self.hot.lock();
            let i = hot.iter().position(|(k, _)| *k == key);
            i.and_then(|i| hot.remove(i))
        };
        if let Some((k, p)) = hot {
            // Used, so kept on disk too.
            self.state.lock().touch(&k);
            self.hot.lock().push_front((k, p.clone()));
            return Some(p);
        }
        if !self.state.lock().pages.contains_key(&key) {
            return None;
        }
        let ok = std::fs::read(self.file(name, page)).ok().and_then(|mut b| {
            let at = b.len().checked_sub(4)?;
            let crc = u32::from_le_bytes(b[at..].try_into().ok()?);
            b.truncate(at);
            (crc32c::crc32c(&b) == crc).then_some(b)
        });
        let mut st = self.state.lock();
        match ok {
            Some(b) => {
                st.touch(&key);
                drop(st);
                let b = Arc::new(b);
                self.remember(key, b.clone());
                Some(b)
            }
            None => {
                // Damaged or gone: fetched again by the caller.
                st.remove(&key);
                let _ = std::fs::remove_file(self.file(name, page));
                None
            }
        }
    }

    /// Keeps a page; a failure to write it only costs a later fetch.
    pub(super) fn put(&self, name: &str, page: u64, bytes: &[u8]) {
        self.remember((name.to_string(), page), Arc::new(bytes.to_vec()));
        if self.budget == 0 {
            return;
        }
        let tmp = self.dir.join(format!(".{name}.{page}.{:x}", rand_suffix()));
        let mut b = Vec::with_capacity(bytes.len() + 4);
        b.extend_from_slice(bytes);
        b.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
        if std::fs::write(&tmp, &b).is_err() || std::fs::rename(&tmp, self.file(name, page)).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let key = (name.to_string(), page);
        let mut st = self.state.lock();
        st.insert(key.clone(), b.len() as u64);
        self.evict(&mut st, Some(&key));
    }

    /// Removes least recently used pages until the budget holds (never the
    /// page just added, which its reader is about to use).
    pub(super) fn evict(&self, st: &mut CacheState, keep: Option<&(String, u64)>) {
        while st.total > self.budget {
            let Some((_, key)) = st
                .order
                .iter()
                .find(|(_, k)| Some(*k) != keep)
                .map(|(t, k)| (*t, k.clone()))
            else {
                break;
            };
            st.remove(&key);
            let _ = std::fs::remove_file(self.file(&key.0, key.1));
        }
    }

    pub(super) fn drop_segment(&self, name: &str) {
        self.hot.lock().retain(|(k, _)| k.0 != name);
        let mut st = self.state.lock();
        let keys: Vec<_> = st.pages.keys().filter(|k| k.0 == name).cloned().collect();
        for k in keys {
            st.remove(&k);
            let _ = std::fs::remove_file(self.file(&k.0, k.1));
        }
    }
}
