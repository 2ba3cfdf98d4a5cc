//! GC's part for content-defined chunks: the chunk sweep that drops chunk
//! records no retained manifest names, the copies of chunk blocks and
//! manifests out of a victim, the proofs taken before copying, and giving
//! back the index pages GC's lookups touch.

use std::collections::HashSet;
use std::sync::Arc;

use crate::block::cdc::decode_chunk;
use crate::block::manifest::Manifest;
use crate::block::reader::{self, Fault, Layout};
use crate::block::segment::Segment;
use crate::block::writer::BlockImage;
use crate::error::{Error, Result};
use crate::id::ArtifactId;
use crate::index::entry::Entry;
use crate::index::merge::Merged;
use crate::snapshot::log::Record;

use super::report::{status_bytes, GcReport};
use crate::store::{Store, Writer};

impl Store {
    /// The chunk sweep (see `docs/chunking.md`): under the writer lock, marks
    /// every chunk a retained manifest names, itself or through its parts
    /// (CURRENT, snapshots, pins, publication: the rule GC copies by), or a
    /// put in flight has referenced or handed over in a part,
    /// then drops every other chunk record, so that the segments holding them
    /// show the garbage and are collected like any other. It runs when
    /// something may have stopped naming chunks since the last sweep. The
    /// mark is a set of 64-bit key prefixes: a collision keeps a dead chunk,
    /// never drops a live one.
    /// With `dry_run`, finds the same chunks and changes nothing. Returns
    /// the bytes it frees (or would free) in each segment, for a dry run to
    /// predict which segments the sweep leaves collectable.
    pub(super) fn sweep_chunks(&self, rep: &mut GcReport, dry_run: bool) -> Result<Vec<(u32, u64)>> {
        let mut w = self.writer_to_commit()?;
        if !w.sweep_due {
            return Ok(Vec::new());
        }
        w.commit(self)?;
        if let Some(d) = self.state.read().snapshots.values().find_map(|h| h.damaged()) {
            rep.skipped.push(format!(
                "chunk sweep: not run, a damaged snapshot may name any chunk ({d})"
            ));
            return Ok(Vec::new());
        }
        let merged = || -> Result<Merged> {
            let st = self.state.read();
            Ok(Merged::new(crate::store::sorted(&st.memtable), &st.indexes, None)?)
        };
        let mut manifests = Vec::new();
        let mut any_chunk = false;
        for e in merged()? {
            let e = e?;
            any_chunk |= e.is_chunk();
            if e.is_manifest() && e.segment != 0 && self.state.read().retains(&e)? {
                manifests.push(e);
            }
        }
        if !any_chunk {
            w.sweep_due = dry_run;
            return Ok(Vec::new());
        }
        let read: Vec<Result<Vec<u64>>> = crate::par::map(&manifests, 4, |_, e| {
            let seg = self.segment(e)?;
            let m = read_manifest(&seg, e)?;
            let mut keys: Vec<u64> = m.chunks.iter().map(|c| prefix(&c.key)).collect();
            for p in &m.parts {
                keys.push(prefix(&p.key));
                keys.extend(self.read_part(&m.id, p)?.iter().map(|c| prefix(&c.key)));
            }
            Ok(keys)
        });
        // Roots: what puts in flight refer to, one part of their list by its
        // chunks and the parts they handed over by what those list.
        let mut marked: HashSet<u64> = w.chunk_refs.keys().map(prefix).collect();
        for (key, (part, _)) in &w.part_refs {
            marked.insert(prefix(key));
            match self.read_part(key, part) {
                Ok(list) => marked.extend(list.iter().map(|c| prefix(&c.key))),
                Err(err) if err.is_corruption() => {
                    rep.skipped.push(format!(
                        "chunk sweep: not run, a part of a put in flight is damaged ({err})"
                    ));
                    return Ok(Vec::new());
                }
                Err(err) => return Err(err),
            }
        }
        for (r, e) in read.into_iter().zip(&manifests) {
            match r {
                Ok(keys) => marked.extend(keys),
                Err(err) if err.is_corruption() => {
                    // What a damaged manifest names is unknown: drop nothing.
                    rep.skipped.push(format!(
                        "chunk sweep: not run, the manifest of {} is damaged ({err})",
                        e.id
                    ));
                    return Ok(Vec::new());
                }
                Err(err) => return Err(err),
            }
        }
        drop(manifests);
        let mut dead = Vec::new();
        for e in merged()? {
            let e = e?;
            if e.is_chunk() && !e.is_tombstone() && !marked.contains(&prefix(&e.id)) {
                dead.push(e);
            }
        }
        rep.chunks_swept = dead.len() as u64;
        rep.chunk_bytes_swept = dead.iter().map(|e| e.len).sum();
        let freed = dead.iter().map(|e| (e.segment, e.len)).collect();
        if dry_run {
            return Ok(freed);
        }
        w.guard(|w| {
            {
                let mut st = self.state.write();
                for e in &dead {
                    st.memtable.insert(e.id, e.removed());
                }
            }
            for e in &dead {
                w.watched(e.id);
                w.batch.push(Record::Entry(e.removed()));
                w.add_usage(e.segment, -(e.len as i64), 0);
            }
            w.sweep_due = false;
            w.commit(self)
        })?;
        Ok(freed)
    }

    /// Gives back the pages of index, snapshot and segment maps this
    /// process holds once its mapped file pages pass `budget` bytes: a pass
    /// of lookups over a million artifacts (GC's) would otherwise keep the
    /// whole index resident (~120 MiB at a million), and a server's reads
    /// every segment they touched, though the kernel could drop them at
    /// will. The pages stay in the page cache; the next reads fault them in
    /// again.
    pub(crate) fn release_mapped_pages_over(&self, budget: u64) {
        // Where the OS does not say (not Linux), release every time.
        if status_bytes("RssFile:").is_some_and(|b| b <= budget) {
            return;
        }
        let st = self.state.read();
        for f in &st.indexes {
            f.release_pages();
        }
        for h in st.snapshots.values() {
            if let Some(f) = h.opened() {
                f.release_pages();
            }
        }
        for seg in st.segments.values() {
            seg.release_pages();
        }
    }
}

impl Writer {
    /// Copies a content-defined chunk's block as it is stored (checked by
    /// `check_block` before, and by its CRC again here).
    pub(super) fn copy_chunk(&mut self, s: &Store, rec: &Entry, victim: &Arc<Segment>) -> Result<()> {
        self.ensure_active(s)?;
        let (h, stored) = reader::stored_block(victim, rec.block_offset)?;
        let img = BlockImage::verbatim(h, stored);
        let a = self.active.as_mut().ok_or(Error::Poisoned)?;
        let at = a.write(&img)?;
        let to = Entry::chunk(rec.id, a.id, at, rec.len, img.is_compressed());
        self.moved(s, rec, rec.relocated(to));
        Ok(())
    }

    /// Copies a manifest; its chunks are records of their own and move (or
    /// not) on their own.
    pub(super) fn copy_manifest(&mut self, s: &Store, rec: &Entry, victim: &Arc<Segment>) -> Result<()> {
        self.ensure_active(s)?;
        let m = read_manifest(victim, rec)?;
        let img = BlockImage::manifest(&m);
        let a = self.active.as_mut().ok_or(Error::Poisoned)?;
        let at = a.write(&img)?;
        let to = Entry::manifest(rec.id, a.id, at, rec.len);
        self.moved(s, rec, rec.relocated(to));
        self.flush_tombstones(s)
    }
}

/// The first 8 bytes of a key, for the sweep's mark.
fn prefix(key: &ArtifactId) -> u64 {
    u64::from_le_bytes(key.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The manifest `rec` points at in `seg`, checked against the record.
fn read_manifest(seg: &Segment, rec: &Entry) -> Result<Manifest> {
    let bad = |detail: String| Error::CorruptArtifact {
        id: rec.id,
        file: seg.path.clone(),
        detail,
    };
    let not_manifest = || bad(format!("block at {} is not a manifest", rec.block_offset));
    let m = match reader::layout(seg, rec.block_offset) {
        Ok((_, Layout::Manifest(m))) => m,
        Ok((_, Layout::Trailer(_))) | Err(Fault::Unexpected) => return Err(not_manifest()),
        Err(Fault::Read(e)) => return Err(crate::store::artifact_error(e, rec.id)),
        Err(Fault::Body(e)) => return Err(bad(e.to_string())),
    };
    if m.id != rec.id || m.len != rec.len {
        return Err(bad("manifest names another artifact".into()));
    }
    Ok(m)
}

/// Proves a chunk block (its bytes hash to its key) or a manifest (it holds
/// together and names the record's artifact) before GC copies it.
pub(super) fn check_block(seg: &Segment, rec: &Entry) -> Result<()> {
    if rec.is_manifest() {
        return read_manifest(seg, rec).map(drop);
    }
    let bad = |detail: String| Error::CorruptArtifact {
        id: rec.id,
        file: seg.path.clone(),
        detail: format!("chunk at {}: {detail}", rec.block_offset),
    };
    let raw = reader::cdc_chunk_block(seg, rec.block_offset).map_err(|f| match f {
        Fault::Read(e) => crate::store::artifact_error(e, rec.id),
        Fault::Unexpected => bad("not a chunk block".into()),
        Fault::Body(e) => bad(e.to_string()),
    })?;
    let (key, bytes) = decode_chunk(&raw).map_err(|e| bad(e.to_string()))?;
    if key != rec.id || bytes.len() as u64 != rec.len {
        return Err(bad("holds another chunk".into()));
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::path::Path;

    use crate::StoreOptions;

    /// This process's resident bytes of its maps of `path`, from
    /// `/proc/self/smaps`.
    fn resident(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_str().unwrap();
        let mut inside = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if inside {
                    kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
                }
            } else if line
                .split_whitespace()
                .next()
                .is_some_and(|range| range.contains('-') && !range.ends_with(':'))
            {
                // A mapping's first line: address, perms, offset, dev, inode, path.
                inside = line.ends_with(name);
            }
        }
        kib << 10
    }

    #[test]
    fn released_segment_pages_leave_the_process_not_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreOptions::new().create(true).open(dir.path()).unwrap();
        let mut data = vec![0u8; 2 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        let id = store.put(&data).unwrap();
        store.maintenance().seal().unwrap();
        assert_eq!(store.get(&id).unwrap(), data);
        let segments = dir.path().join(crate::store::layout::SEGMENT_DIR);
        let mut held = Vec::new();
        for e in std::fs::read_dir(&segments).unwrap() {
            let p = e.unwrap().path();
            if resident(&p) > 0 {
                held.push(p);
            }
        }
        assert_eq!(held.len(), 1, "the read mapped one segment's pages: {held:?}");
        assert!(resident(&held[0]) >= 1 << 20);
        store.maintenance().release_mapped_pages_over(0);
        // Whole pages only: the file's last, partial page may stay.
        assert!(resident(&held[0]) <= 4096, "pages still resident after the release");
        // Read again, from the page cache.
        assert_eq!(store.get(&id).unwrap(), data);
    }
}
