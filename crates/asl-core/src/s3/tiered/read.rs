//! Reading an offloaded segment: a sealed segment is read from its local copy
//! while there is one, from the bucket through the page cache after, with
//! several missing pages fetched at once and sequential reads read ahead.

use super::*;

/// A sealed segment: read from its local copy while there is one, from the
/// bucket through the page cache after.
pub(super) struct TieredFile {
    pub(super) shared: Arc<Shared>,
    pub(super) name: String,
    pub(super) len: u64,
}

impl StoreFile for TieredFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let local = self.shared.locals.read().get(&self.name).cloned();
        if let Some(f) = local {
            return f.read_exact_at(buf, offset);
        }
        self.shared.read_remote(&self.name, self.len, buf, offset)
    }

    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a sealed segment is not written",
        ))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a sealed segment is not written",
        ))
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    /// Writes the deferred deletions locally and to the bucket.
    pub(super) fn save_deferred(&self, d: &super::Deferred) -> io::Result<()> {
        d.save()?;
        if d.due.is_empty() {
            self.bucket.delete(super::DELETES_FILE)
        } else {
            self.bucket.put(super::DELETES_FILE, d.encode())
        }
    }

    /// Whether this directory may still change the bucket.
    pub(super) fn check_lease(&self) -> io::Result<()> {
        if !self.writer {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the store is open to read: the bucket is not changed",
            ));
        }
        let lease = self.bucket.get(LEASE)?;
        match lease.as_deref().map(decode_lease) {
            Some(Ok((holder, _))) if holder == self.holder => Ok(()),
            Some(Ok((_, who))) => Err(lease_lost(self.bucket.url(), &who)),
            Some(Err(e)) => Err(io::Error::other(format!("{}/{LEASE}: {e}", self.bucket.url()))),
            None => Err(io::Error::other(format!("{}/{LEASE} is gone", self.bucket.url()))),
        }
    }

    /// The segments in the bucket, listed now if no listing succeeded yet.
    pub(super) fn remote(&self) -> io::Result<parking_lot::MappedRwLockReadGuard<'_, BTreeMap<String, u64>>> {
        if self.remote.read().is_none() {
            let mut listed = self.bucket.list("segments")?;
            let deferred = self.deferred.lock();
            listed.retain(|n, _| !deferred.due.contains_key(n));
            self.remote.write().get_or_insert(listed);
        }
        Ok(parking_lot::RwLockReadGuard::map(self.remote.read(), |r| {
            r.as_ref().expect("listed above")
        }))
    }

    pub(super) fn remote_len(&self, name: &str) -> Option<u64> {
        self.remote().ok().and_then(|r| r.get(name).copied())
    }

    pub(super) fn remote_insert(&self, name: &str, len: u64) {
        if let Some(r) = self.remote.write().as_mut() {
            r.insert(name.to_string(), len);
        }
    }

    pub(super) fn remote_remove(&self, name: &str) {
        if let Some(r) = self.remote.write().as_mut() {
            r.remove(name);
        }
    }

    pub(super) fn read_remote(&self, name: &str, len: u64, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name}: read past its end")))?;
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE;
            let at = (pos - offset) as usize;
            if let Some(p) = self.cache.get(name, page) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let n = ((page + 1) * PAGE).min(end) - pos;
                let from = (pos - page * PAGE) as usize;
                let part = p.get(from..from + n as usize).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name}: cached page {page} is short"),
                    )
                })?;
                buf[at..at + n as usize].copy_from_slice(part);
                pos += n;
                continue;
            }
            // The missing pages this read needs next, fetched together; a
            // read that keeps continuing where the fetches of this segment
            // ended gets a whole run (read-ahead), since it will want the
            // rest. Two steps are not enough: one chunk straddling a page
            // boundary makes one.
            let streak = match self.last_fetched.lock().get(name) {
                Some((l, n)) if page == l + 1 => n + 1,
                _ => 0,
            };
            let sequential = streak >= 2;
            let pages = len.div_ceil(PAGE);
            let last_needed = if sequential { pages - 1 } else { (end - 1) / PAGE };
            let mut last = page;
            while last < last_needed && last - page + 1 < RUN && !self.cache.has(name, last + 1) {
                last += 1;
            }
            let from = page * PAGE;
            let to = ((last + 1) * PAGE).min(len);
            let ranges: Vec<_> = (from..to)
                .step_by((PER_REQUEST * PAGE) as usize)
                .map(|a| a..(a + PER_REQUEST * PAGE).min(to))
                .collect();
            let parts = self.bucket.get_ranges(&format!("segments/{name}"), &ranges)?;
            let bytes = parts.concat();
            self.last_fetched.lock().insert(name.to_string(), (last, streak));
            self.fetches.fetch_add(ranges.len() as u64, Ordering::Relaxed);
            self.fetched_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            for (i, p) in bytes.chunks(PAGE as usize).enumerate() {
                self.cache.put(name, page + i as u64, p);
            }
            let stop = to.min(end);
            buf[at..at + (stop - pos) as usize].copy_from_slice(&bytes[(pos - from) as usize..(stop - from) as usize]);
            pos = stop;
        }
        Ok(())
    }
}
