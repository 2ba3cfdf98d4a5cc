//! Immutable sorted index files.
//!
//! Layout: a 64-byte header, a fanout table of `2^bits` little-endian u32 (entry
//! `i` = number of entries whose id's top `bits` bits are ≤ `i`), the entries sorted
//! by id, and a 16-byte footer with a CRC-32C over table and entries. A lookup reads
//! two fanout words and binary-searches one bucket of ~8 entries: the same few
//! pages whatever the file's size.

use std::path::{Path, PathBuf};

use crate::error::{DecodeError, IoContext};
use crate::fsutil::{check_framed, le_u32, le_u64, sync_dir, Framing};
use crate::id::{ArtifactId, IdPrefix};
use crate::index::entry::{Entry, ENTRY_LEN};
use crate::index::error::{IndexError as Error, Result};
use crate::io::{Backend, Mapped, OpenMode};
use crate::version::{FormatVersion, IndexVersion};

/// Magic at the start of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"ASLIDX\0\0";
/// Magic in the index footer.
pub const INDEX_FOOTER_MAGIC: [u8; 8] = *b"ASLIEND\0";
/// Header size.
pub const INDEX_HEADER_LEN: usize = 64;
/// Footer size.
pub const INDEX_FOOTER_LEN: usize = 16;

/// File name of index file `id`.
pub fn index_file_name(id: u64) -> String {
    format!("{id:012}.idx")
}

/// Fanout width for `n` entries: about 8 entries per bucket, 8..=20 bits.
pub fn fanout_bits(n: u64) -> u32 {
    let want = (n / 8).max(1);
    (64 - want.leading_zeros()).clamp(8, 20)
}

fn bucket(id: &ArtifactId, bits: u32) -> usize {
    let b = id.as_bytes();
    let top = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (top >> (32 - bits)) as usize
}

/// The parsed, checked header of an index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// Fanout width.
    pub bits: u32,
    /// Number of entries.
    pub count: u64,
    /// The file's number.
    pub file_id: u64,
}

impl IndexHeader {
    /// Encodes with CRC.
    pub fn encode(&self) -> [u8; INDEX_HEADER_LEN] {
        let mut b = [0u8; INDEX_HEADER_LEN];
        b[0..8].copy_from_slice(&INDEX_MAGIC);
        b[8..12].copy_from_slice(&IndexVersion::CURRENT.number().to_le_bytes());
        b[12..16].copy_from_slice(&self.bits.to_le_bytes());
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        b[24..32].copy_from_slice(&self.file_id.to_le_bytes());
        b[32..36].copy_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        check_framed(
            b,
            &Framing {
                what: "index header",
                magic: &INDEX_MAGIC,
                magic_name: "ASLIDX",
                crc_at: 60,
                version: Some(|n| IndexVersion::from_number(n).map(drop)),
            },
        )?;
        let bits = le_u32(b, 12);
        if !(8..=20).contains(&bits) || le_u32(b, 32) != ENTRY_LEN as u32 {
            return Err(DecodeError::Invalid("index fanout width or entry size".into()));
        }
        if b[36..60].iter().any(|&x| x != 0) {
            return Err(DecodeError::Invalid("index header reserved bytes are not zero".into()));
        }
        Ok(Self {
            bits,
            count: le_u64(b, 16),
            file_id: le_u64(b, 24),
        })
    }

    /// File size the header implies; `None` when a hostile count overflows it.
    fn expected_len(&self) -> Option<u64> {
        self.count
            .checked_mul(ENTRY_LEN as u64)?
            .checked_add(INDEX_HEADER_LEN as u64 + (4u64 << self.bits) + INDEX_FOOTER_LEN as u64)
    }
}

/// Checks a whole index file image: header, size, footer, CRC, fanout and order.
pub fn validate(b: &[u8]) -> Result<IndexHeader, DecodeError> {
    validate_in_pieces(b, &mut |_, _| {})
}

/// Bytes [`validate_in_pieces`] reads between two calls of its `done`.
const PIECE: usize = 8 << 20;

/// [`validate`], calling `done(offset, len)` for each stretch of `b` it has
/// finished with, so that a caller reading a map can give those pages back
/// as it goes (a whole index need not be resident at once).
fn validate_in_pieces(b: &[u8], done: &mut dyn FnMut(usize, usize)) -> Result<IndexHeader, DecodeError> {
    let h = IndexHeader::decode(b)?;
    if Some(b.len() as u64) != h.expected_len() {
        return Err(DecodeError::Invalid(format!(
            "index file is {} bytes, header implies {:?}",
            b.len(),
            h.expected_len()
        )));
    }
    let foot = &b[b.len() - INDEX_FOOTER_LEN..];
    if foot[8..16] != INDEX_FOOTER_MAGIC {
        return Err(DecodeError::BadMagic { expected: "ASLIEND" });
    }
    if le_u32(foot, 4) != 0 {
        return Err(DecodeError::Invalid("index footer reserved bytes are not zero".into()));
    }
    let stored = le_u32(foot, 0);
    let body = INDEX_HEADER_LEN..b.len() - INDEX_FOOTER_LEN;
    let mut computed = 0u32;
    for at in body.clone().step_by(PIECE) {
        let end = (at + PIECE).min(body.end);
        computed = crc32c::crc32c_append(computed, &b[at..end]);
        done(at, end - at);
    }
    if stored != computed {
        return Err(DecodeError::Checksum {
            what: "index body",
            stored,
            computed,
        });
    }
    let fan = &b[INDEX_HEADER_LEN..INDEX_HEADER_LEN + (4 << h.bits)];
    let entries = &b[INDEX_HEADER_LEN + (4 << h.bits)..b.len() - INDEX_FOOTER_LEN];
    let mut prev: Option<ArtifactId> = None;
    let mut expect_bucket_end = vec![0u32; 1 << h.bits];
    let entries_at = INDEX_HEADER_LEN + (4 << h.bits);
    let per_piece = PIECE / ENTRY_LEN;
    for (i, chunk) in entries.chunks_exact(ENTRY_LEN).enumerate() {
        if i > 0 && i % per_piece == 0 {
            done(entries_at + (i - per_piece) * ENTRY_LEN, per_piece * ENTRY_LEN);
        }
        let e = Entry::decode(chunk)?;
        if prev.is_some_and(|p| p >= e.id) {
            return Err(DecodeError::Invalid(format!("index entry {i} out of order")));
        }
        prev = Some(e.id);
        expect_bucket_end[bucket(&e.id, h.bits)] = i as u32 + 1;
    }
    let mut running = 0u32;
    for (i, end) in expect_bucket_end.iter().enumerate() {
        running = running.max(*end);
        if le_u32(fan, i * 4) != running {
            return Err(DecodeError::Invalid(format!("fanout entry {i} is wrong")));
        }
    }
    Ok(h)
}

/// An open, mapped index file.
pub(crate) struct IndexFile {
    pub(crate) file_id: u64,
    pub(crate) path: PathBuf,
    header: IndexHeader,
    map: Mapped,
}

impl IndexFile {
    /// Gives the pages of this file's map that lookups touched back to the
    /// OS (see [`Mapped::release_pages`]).
    /// The fanout table stays: every lookup reads it, and it is small
    /// (4 bytes per bucket).
    pub(crate) fn release_pages(&self) {
        let at = self.entries_start();
        self.map.release_range(at, self.map.bytes().len().saturating_sub(at));
    }

    /// Gives back the pages holding entries `from..to` (whole pages only).
    pub(crate) fn release_entries(&self, from: u64, to: u64) {
        let at = self.entries_start() + from as usize * ENTRY_LEN;
        self.map.release_range(at, to.saturating_sub(from) as usize * ENTRY_LEN);
    }

    /// Maps an index file and checks its header, size and footer magic. The body
    /// CRC is checked by `verify` (reading every byte on open would make open time
    /// grow with the store).
    pub(crate) fn open(io: &dyn Backend, path: &Path) -> Result<Self> {
        let map = io.map(path).ctx(|| format!("open index {}", path.display()))?;
        // Lookups touch a page or two each, anywhere: reading around them
        // only fills this process's memory.
        map.expect_random();
        let b = map.bytes();
        let header = IndexHeader::decode(b).map_err(|e| Error::corrupt(path, e))?;
        if Some(b.len() as u64) != header.expected_len() || b[b.len() - 8..] != INDEX_FOOTER_MAGIC {
            return Err(Error::corrupt(
                path,
                "index file size or footer does not match its header",
            ));
        }
        Ok(Self {
            file_id: header.file_id,
            path: path.to_path_buf(),
            header,
            map,
        })
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> u64 {
        self.header.count
    }

    /// Full check of the file (for `verify`).
    pub(crate) fn validate(&self) -> Result<()> {
        validate_in_pieces(self.map.bytes(), &mut |at, len| self.map.release_range(at, len))
            .map(|_| ())
            .map_err(|e| Error::corrupt(&self.path, e))
    }

    fn fan(&self, i: usize) -> u64 {
        le_u32(self.map.bytes(), INDEX_HEADER_LEN + i * 4) as u64
    }

    fn entries_start(&self) -> usize {
        INDEX_HEADER_LEN + (4usize << self.header.bits)
    }

    fn id_at(&self, i: u64) -> &[u8; 32] {
        let at = self.entries_start() + i as usize * ENTRY_LEN;
        self.map.bytes()[at..at + 32].try_into().expect("32 bytes")
    }

    /// Decodes entry `i`.
    pub(crate) fn entry(&self, i: u64) -> Result<Entry> {
        let at = self.entries_start() + i as usize * ENTRY_LEN;
        Entry::decode(&self.map.bytes()[at..at + ENTRY_LEN]).map_err(|e| Error::corrupt(&self.path, e))
    }

    fn bucket_range(&self, b: usize) -> Result<(u64, u64)> {
        let start = if b == 0 { 0 } else { self.fan(b - 1) };
        let end = self.fan(b);
        if start > end || end > self.header.count {
            return Err(Error::corrupt(&self.path, format!("fanout bucket {b} is out of range")));
        }
        Ok((start, end))
    }

    /// Finds the record for `id`, if this file has one.
    pub(crate) fn get(&self, id: &ArtifactId) -> Result<Option<Entry>> {
        self.get_from(id, &mut 0)
    }

    /// [`IndexFile::get`] for ids asked in ascending order: `from` is where
    /// the previous one's search ended (start at 0). When the entry before
    /// it is below this id, so are all before it, and the search starts
    /// there: consecutive ids search forward from each other through memory
    /// the last search brought in, instead of from the middle of their
    /// buckets. Any order finds the same records; ascending is the fast one.
    pub(crate) fn get_from(&self, id: &ArtifactId, from: &mut u64) -> Result<Option<Entry>> {
        let (mut lo, mut hi) = self.bucket_range(bucket(id, self.header.bits))?;
        let key = &id.as_bytes()[..];
        if (lo + 1..=hi).contains(from) && cmp_ids(self.id_at(*from - 1), key).is_lt() {
            lo = *from;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp_ids(self.id_at(mid), key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    *from = mid;
                    return self.entry(mid).map(Some);
                }
            }
        }
        *from = lo;
        Ok(None)
    }

    /// Looks up ids given in ascending order, calling `hit(tag, entry)` for
    /// each one this file holds. In that order the lookups walk the file front
    /// to back, each page faulted in once, and the pages behind the walk are
    /// given back every [`PIECE`] bytes: a pass over every id of a segment
    /// (GC) keeps about one piece of the file resident, not the whole file.
    pub(crate) fn get_ascending<'a, T: Copy>(
        &self,
        ids: impl IntoIterator<Item = (T, &'a ArtifactId)>,
        mut hit: impl FnMut(T, Entry),
    ) -> Result<()> {
        let entries = self.entries_start();
        let (mut kept_from, mut reached) = (entries, entries);
        let mut from = 0;
        for (tag, id) in ids {
            if let Some(e) = self.get_from(id, &mut from)? {
                hit(tag, e);
            }
            // The end of the id's bucket: the walk has read no further.
            reached = entries + self.fan(bucket(id, self.header.bits)) as usize * ENTRY_LEN;
            if reached >= kept_from + PIECE {
                // (Whole pages only are given back: the one the walk is on stays.)
                self.map.release_range(kept_from, reached - kept_from);
                kept_from = reached;
            }
        }
        self.map.release_range(kept_from, reached.saturating_sub(kept_from));
        Ok(())
    }

    /// Position of the first entry with id ≥ `id`.
    pub(crate) fn lower_bound(&self, id: &ArtifactId) -> Result<u64> {
        let (mut lo, mut hi) = self.bucket_range(bucket(id, self.header.bits))?;
        let key = &id.as_bytes()[..];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if cmp_ids(self.id_at(mid), key).is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Entries whose id carries `prefix`.
    pub(crate) fn prefix_matches(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut i = self.lower_bound(&prefix.lower_bound())?;
        while i < self.header.count && out.len() < limit {
            let e = self.entry(i)?;
            if !prefix.matches(&e.id) {
                break;
            }
            out.push(e);
            i += 1;
        }
        Ok(out)
    }
}

/// Writes a new index file from entries sorted by id (no duplicates), durably:
/// temp file, fsync, rename, directory fsync. `upper` bounds the entry count, to
/// size the fanout before the entries are counted.
pub(crate) fn write_index<I>(io: &dyn Backend, dir: &Path, file_id: u64, upper: u64, entries: I) -> Result<PathBuf>
where
    I: Iterator<Item = Result<Entry>>,
{
    let path = dir.join(index_file_name(file_id));
    write_index_at(io, &path, file_id, upper, entries)?;
    Ok(path)
}

/// [`write_index`] to a given path (snapshot index files are named by identity).
pub(crate) fn write_index_at<I>(io: &dyn Backend, path: &Path, file_id: u64, upper: u64, entries: I) -> Result<u64>
where
    I: Iterator<Item = Result<Entry>>,
{
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("idx.tmp");
    let f = io
        .open(&tmp, OpenMode::CreateTruncate)
        .ctx(|| format!("create {}", tmp.display()))?;
    let bits = fanout_bits(upper);
    let mut fan = vec![0u32; 1 << bits];
    let werr = |e| Error::io(format!("write {}", tmp.display()), e);
    // Entries are written at their final offsets through a 1 MiB buffer; the
    // header and fanout, known only at the end, go in front last.
    let mut w = PosWriter {
        file: &*f,
        at: (INDEX_HEADER_LEN + (4 << bits)) as u64,
        buf: Vec::with_capacity(1 << 20),
    };
    let mut crc_entries = 0u32;
    let mut count = 0u64;
    let mut prev: Option<ArtifactId> = None;
    let mut buf = [0u8; ENTRY_LEN];
    for e in entries {
        let e = e?;
        debug_assert!(prev.is_none_or(|p| p < e.id), "index entries must be sorted and unique");
        prev = Some(e.id);
        e.encode(&mut buf);
        crc_entries = crc32c::crc32c_append(crc_entries, &buf);
        w.write(&buf).map_err(werr)?;
        fan[bucket(&e.id, bits)] += 1;
        count += 1;
    }
    let mut running = 0u32;
    let mut fan_bytes = Vec::with_capacity(4 << bits);
    for c in &fan {
        running += c;
        fan_bytes.extend_from_slice(&running.to_le_bytes());
    }
    let crc = crc32c::crc32c_combine(crc32c::crc32c(&fan_bytes), crc_entries, count as usize * ENTRY_LEN);
    let mut foot = [0u8; INDEX_FOOTER_LEN];
    foot[0..4].copy_from_slice(&crc.to_le_bytes());
    foot[8..16].copy_from_slice(&INDEX_FOOTER_MAGIC);
    w.write(&foot).map_err(werr)?;
    w.flush().map_err(werr)?;
    let header = IndexHeader { bits, count, file_id };
    f.write_all_at(&header.encode(), 0)
        .and_then(|_| f.write_all_at(&fan_bytes, INDEX_HEADER_LEN as u64))
        .and_then(|_| f.sync_all())
        .map_err(werr)?;
    drop(f);
    io.rename(&tmp, path).ctx(|| format!("rename {}", tmp.display()))?;
    sync_dir(io, dir)?;
    Ok(count)
}

/// Buffered positioned writes (the backend has no file cursor).
struct PosWriter<'a> {
    file: &'a dyn crate::io::StoreFile,
    at: u64,
    buf: Vec<u8>,
}

impl PosWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + b.len() > self.buf.capacity() {
            self.flush()?;
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.buf, self.at)?;
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Orders two ids as their bytes do, deciding on the first eight (read as a
/// big-endian integer) when they differ, which for hashes is nearly always:
/// a lookup's comparisons then cost an integer compare, not a `memcmp` call.
fn cmp_ids(a: &[u8; 32], b: &[u8]) -> std::cmp::Ordering {
    let head = |x: &[u8]| u64::from_be_bytes(x[..8].try_into().expect("8 bytes"));
    head(a).cmp(&head(b)).then_with(|| a[8..].cmp(&b[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::{DomainId, Visibility, NO_SOURCE};

    fn entry(i: u32) -> Entry {
        Entry {
            id: ArtifactId::of(&i.to_le_bytes()),
            segment: i,
            block_offset: i as u64 * 3,
            inner: 0,
            len: i as u64,
            domain: DomainId::LOCAL,
            source: NO_SOURCE,
            visibility: Visibility::Internal,
            flags: 0,
        }
    }

    #[test]
    fn searches_from_a_position_find_what_get_finds_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut es: Vec<Entry> = (0..3000).map(entry).collect();
        // Ids that share their first 8 bytes, where the order by those
        // bytes alone says nothing: 40 in one bucket.
        for k in 0..40u8 {
            let mut b = *entry(9).id.as_bytes();
            b[20] = k.wrapping_mul(77);
            es.push(Entry {
                id: ArtifactId::from_bytes(b),
                ..entry(10_000 + k as u32)
            });
        }
        es.sort_by_key(|e| e.id);
        let p = write_index(
            &crate::io::LocalBackend,
            dir.path(),
            1,
            es.len() as u64,
            es.iter().copied().map(Ok),
        )
        .unwrap();
        let f = IndexFile::open(&crate::io::LocalBackend, &p).unwrap();
        // Present and absent ids, in ascending, descending, shuffled and
        // shared-prefix-reversed orders.
        let mut asked: Vec<ArtifactId> = es
            .iter()
            .map(|e| e.id)
            .chain((5000..6000).map(|i| entry(i).id))
            .collect();
        asked.sort();
        let mut orders = vec![asked.clone(), asked.iter().rev().copied().collect()];
        let mut shuffled = asked.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (i * 7919 + 13) % (i + 1));
        }
        orders.push(shuffled);
        let mut by_head = asked.clone();
        by_head.sort_by(|a, b| a.order_key().cmp(&b.order_key()).then_with(|| b.cmp(a)));
        orders.push(by_head);
        for order in orders {
            let mut from = 0;
            for id in &order {
                assert_eq!(f.get_from(id, &mut from).unwrap(), f.get(id).unwrap(), "{id}");
            }
        }
        assert!(es.iter().all(|e| f.get(&e.id).unwrap() == Some(*e)));
    }

    #[test]
    fn write_open_lookup() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0u32, 1, 100, 5000] {
            let mut es: Vec<Entry> = (0..n).map(entry).collect();
            es.sort_by_key(|e| e.id);
            let p = write_index(
                &crate::io::LocalBackend,
                dir.path(),
                n as u64,
                n as u64,
                es.iter().copied().map(Ok),
            )
            .unwrap();
            let f = IndexFile::open(&crate::io::LocalBackend, &p).unwrap();
            f.validate().unwrap();
            assert_eq!(f.len(), n as u64);
            for e in &es {
                assert_eq!(f.get(&e.id).unwrap(), Some(*e));
            }
            assert_eq!(f.get(&ArtifactId::of(b"missing")).unwrap(), None);
            if let Some(e) = es.first() {
                let p = IdPrefix::parse(&e.id.to_hex()[..6]).unwrap();
                assert!(f.prefix_matches(&p, 10).unwrap().contains(e));
            }
        }
    }

    #[test]
    fn validate_rejects_flips() {
        let dir = tempfile::tempdir().unwrap();
        let mut es: Vec<Entry> = (0..50).map(entry).collect();
        es.sort_by_key(|e| e.id);
        let p = write_index(&crate::io::LocalBackend, dir.path(), 1, 50, es.into_iter().map(Ok)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        validate(&bytes).unwrap();
        for at in [0, 20, 70, 2000, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 1;
            assert!(validate(&b).is_err(), "flip at {at} accepted");
        }
        // Reserved bytes set with their checksums recomputed: still refused.
        let mut b = bytes.clone();
        b[40] = 1;
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        assert!(IndexHeader::decode(&b).is_err(), "header reserved byte accepted");
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 12] = 1;
        assert!(validate(&b).is_err(), "footer reserved byte accepted");
    }
}
