//! The lossy decoder repair uses on damaged blocks: every artifact a block
//! whose checksum failed (or whose header is unreadable, or which a torn
//! write cut short) still proves by its BLAKE3, and what it held that is lost.
//! Bytes are always the artifact their own hash names, so keeping what proves
//! itself never keeps a wrong byte.

use super::format::{BlockHeader, BlockKind, Compression, LargeTrailer, BLOCK_HEADER_LEN, PACKED_ENTRY_LEN};
use super::frames::{FRAMED_ENTRY_LEN, FRAMED_HEAD_LEN};
use super::manifest::Manifest;
use super::scan::Contents;
use super::segment::ScannedBlock;
use crate::id::ArtifactId;
use crate::version::SegmentVersion;

/// An artifact a damaged block still proves, placed as an index record
/// places it: `inner` bytes into the block's body, `len` bytes long.
pub(crate) struct Proven {
    pub id: ArtifactId,
    pub inner: u32,
    pub len: u64,
    /// For a frame of a framed block: whether it is compressed.
    pub frame: Option<bool>,
}

/// What a damaged block held that it no longer proves.
pub(crate) enum Lost {
    /// An artifact, by its id.
    Id(ArtifactId),
    /// What the block held, said in words (its place is the caller's to add).
    Note(String),
}

/// What [`salvage_block`] finds.
#[derive(Default)]
pub(crate) struct Salvage {
    pub proven: Vec<Proven>,
    pub lost: Vec<Lost>,
}

/// Keeps what the block `b` of the segment image `bytes`, whose checksum
/// failed, still proves: each artifact of an uncompressed packed block whose
/// bytes hash to its id (reads check exactly that, so it stays readable),
/// each frame of a framed block that does; the rest is reported lost.
pub(crate) fn salvage_block(bytes: &[u8], b: &ScannedBlock) -> Salvage {
    let start = b.offset as usize + BLOCK_HEADER_LEN;
    let stored = &bytes[start..start + b.header.stored_len as usize];
    let mut out = Salvage::default();
    let note = |s: String| Lost::Note(s);
    match (b.header.kind, b.header.compression) {
        (BlockKind::Packed, Compression::None) => {
            let (proven, failed) = proven_entries(stored, Some(b.header.count as usize));
            if proven.is_empty() && failed.is_empty() {
                out.lost
                    .push(note(format!("{} artifacts (entry table damaged)", b.header.count)));
            }
            out.proven.extend(proven.into_iter().map(|(id, off, len)| Proven {
                id,
                inner: off as u32,
                len: len as u64,
                frame: None,
            }));
            out.lost.extend(failed.into_iter().map(Lost::Id));
        }
        (BlockKind::Packed, _) => out
            .lost
            .push(note(format!("{} artifacts (compressed body damaged)", b.header.count))),
        (BlockKind::Framed, _) => salvage_frames(bytes, b.header.count as usize, stored, &mut out),
        (BlockKind::Dictionary, _) => out.lost.push(note(
            "a dictionary (the compressed frames that use it are reported with their blocks)".into(),
        )),
        (k @ (BlockKind::LargeTrailer | BlockKind::TreeTrailer), _) => {
            out.lost.push(match LargeTrailer::decode_kind(k, stored) {
                Ok(t) => Lost::Id(t.id),
                Err(_) => note("a large artifact (trailer damaged)".into()),
            })
        }
        // A damaged chunk is reported through the trailer or the manifests
        // that name it.
        (BlockKind::LargeChunk | BlockKind::CdcChunk, _) => {}
        (BlockKind::Manifest, _) => out.lost.push(match Manifest::decode(stored) {
            Ok(m) => Lost::Id(m.id),
            Err(_) => note("a large artifact (manifest damaged)".into()),
        }),
        (BlockKind::Tombstones, _) => out.lost.push(note(format!(
            "{} removals (the artifacts may be live again)",
            b.header.count
        ))),
    }
    out
}

/// Keeps each frame of a damaged framed block that still proves itself: a
/// raw frame whose bytes hash to its id, a compressed one that decompresses
/// (against the segment's dictionary, if that still reads) to such bytes. The
/// header's count is trusted (its CRC checks); the table's lengths are not:
/// frames are walked by what each one turns out to be (a zstd frame knows its
/// own length), so one damaged length does not misplace every frame after it.
/// Bytes that hash a few bits away from the table's id had the id damaged,
/// and are kept under their own hash, as for raw blocks.
fn salvage_frames(bytes: &[u8], count: usize, stored: &[u8], out: &mut Salvage) {
    let table = FRAMED_HEAD_LEN + count * FRAMED_ENTRY_LEN;
    if table > stored.len() {
        out.lost
            .push(Lost::Note(format!("{count} artifacts (framed entry table cut off)")));
        return;
    }
    let dict_at = u64::from_le_bytes(stored[..8].try_into().expect("8 bytes"));
    let dict = super::scan::read_dictionary(bytes, dict_at).ok();
    let mut pos = table;
    for e in stored[FRAMED_HEAD_LEN..table].chunks_exact(FRAMED_ENTRY_LEN) {
        let id = ArtifactId::from_bytes(e[..32].try_into().expect("32 bytes"));
        let raw_len = u32::from_le_bytes(e[32..36].try_into().expect("4 bytes")) as usize;
        let stored_len = (u32::from_le_bytes(e[36..40].try_into().expect("4 bytes")) & !(1 << 31)) as usize;
        let rest = &stored[pos.min(stored.len())..];
        let found =
            frame_here(rest, raw_len, dict.as_ref()).filter(|(got, ..)| *got == id || bits_apart(got, &id) <= 8);
        match found {
            Some((got, len, compressed, n)) => {
                out.proven.push(Proven {
                    id: got,
                    inner: pos as u32,
                    len: n as u64,
                    frame: Some(compressed),
                });
                pos += len;
            }
            None => {
                out.lost.push(Lost::Id(id));
                pos += stored_len;
            }
        }
    }
}

/// What the frame at the start of `rest` is: a zstd frame (its own length,
/// decompressed against `dict`) or `raw_len` raw bytes; returns the hash of
/// the bytes it holds, the frame's length, whether it is compressed and the
/// length of the bytes.
fn frame_here(
    rest: &[u8],
    raw_len: usize,
    dict: Option<&zstd::zstd_safe::DDict<'static>>,
) -> Option<(ArtifactId, usize, bool, usize)> {
    if let (Some(d), Ok(n)) = (dict, zstd::zstd_safe::find_frame_compressed_size(rest)) {
        let size = zstd::zstd_safe::get_frame_content_size(rest).ok().flatten()?;
        if size <= super::format::MAX_BODY_LEN as u64 {
            if let Ok(out) = super::frames::decompress(&rest[..n], size as usize, d) {
                return Some((ArtifactId::of(&out), n, true, out.len()));
            }
        }
    }
    rest.get(..raw_len)
        .map(|r| (ArtifactId::of(r), raw_len, false, raw_len))
}

/// The artifacts a raw packed block body proves by their BLAKE3, as (id,
/// offset in the body, length), and the ids of the entries it cannot prove:
/// `count` entries when the header said so, else as many as the first
/// entry's offset implies (the bytes start right after the table).
///
/// An entry whose bytes hash to an id a few bits away from the one in the
/// table had its id field damaged, not its bytes: bytes are always the
/// artifact named by their own hash, and so are kept under it. (Random bytes
/// would differ from the table's id in about half of its 256 bits.)
fn proven_entries(body: &[u8], count: Option<usize>) -> (Vec<(ArtifactId, usize, usize)>, Vec<ArtifactId>) {
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
    let table = match count {
        Some(n) => n.saturating_mul(PACKED_ENTRY_LEN),
        None if body.len() >= PACKED_ENTRY_LEN => le32(body, 32),
        None => return (Vec::new(), Vec::new()),
    };
    if table == 0 || !table.is_multiple_of(PACKED_ENTRY_LEN) || table > body.len() {
        return (Vec::new(), Vec::new());
    }
    let entries: Vec<(ArtifactId, usize, usize)> = body[..table]
        .chunks_exact(PACKED_ENTRY_LEN)
        .map(|e| {
            let id = ArtifactId::from_bytes(e[..32].try_into().expect("32 bytes"));
            (id, le32(e, 32), le32(e, 36))
        })
        .collect();
    let check = |id: &ArtifactId, off: usize, len: usize| -> Option<ArtifactId> {
        let h = ArtifactId::of(body.get(off..off.checked_add(len)?).filter(|_| off >= table)?);
        (h == *id || bits_apart(&h, id) <= 8).then_some(h)
    };
    let mut proven = Vec::new();
    let mut failed = Vec::new();
    for (i, (id, off, len)) in entries.iter().enumerate() {
        if let Some(h) = check(id, *off, *len) {
            proven.push((h, *off, *len));
            continue;
        }
        // A damaged offset or length: the artifacts' bytes tile the area
        // after the table, so the neighbours say where this one starts (the
        // end of another) and ends (the start of the next, or the body's end).
        let others = entries.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, e)| e);
        let next = others
            .clone()
            .map(|e| e.1)
            .filter(|o| o > off)
            .min()
            .unwrap_or(body.len());
        let by_len = check(id, *off, next.saturating_sub(*off)).map(|h| (h, *off, next - off));
        let by_off = || {
            others
                .map(|e| e.1.saturating_add(e.2))
                .chain([table])
                .find_map(|o| check(id, o, *len).map(|h| (h, o, *len)))
        };
        match by_len.or_else(by_off) {
            Some(p) => proven.push(p),
            None => failed.push(*id),
        }
    }
    (proven, failed)
}

fn bits_apart(a: &ArtifactId, b: &ArtifactId) -> u32 {
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum()
}

/// The artifacts the damaged range `from..to` of the segment image `bytes`
/// proves when read as a raw packed block whose header is unreadable, placed
/// where reads look for them (`from + header + inner`, which needs no header).
pub(crate) fn headerless(bytes: &[u8], from: u64, to: u64) -> Vec<Proven> {
    let start = from as usize + BLOCK_HEADER_LEN;
    let end = (to as usize).min(bytes.len());
    if start >= end {
        return Vec::new();
    }
    proven_entries(&bytes[start..end], None)
        .0
        .into_iter()
        .map(|(id, off, len)| Proven {
            id,
            inner: off as u32,
            len: len as u64,
            frame: None,
        })
        .collect()
}

/// The artifacts a torn or cut-off tail still proves: the tail begins with a
/// raw packed block whose body is incomplete (or whose header is damaged).
/// They are copied out before the tail is cut.
pub(crate) fn tail_survivors(tail: &[u8]) -> Vec<(ArtifactId, Vec<u8>)> {
    if tail.len() <= BLOCK_HEADER_LEN {
        return Vec::new();
    }
    let body = &tail[BLOCK_HEADER_LEN..];
    let found = match BlockHeader::decode(tail) {
        Ok(h) if h.kind == BlockKind::Packed && h.compression == Compression::None => {
            proven_entries(body, Some(h.count as usize)).0
        }
        Ok(_) => Vec::new(),
        Err(_) => proven_entries(body, None).0,
    };
    found
        .into_iter()
        .map(|(id, off, len)| (id, body[off..off + len].to_vec()))
        .collect()
}

/// The oldest segment version that can hold the blocks found in a segment
/// whose header is lost (a rebuilt header claims no more than it needs).
pub(crate) fn oldest_version_holding(blocks: &[ScannedBlock]) -> SegmentVersion {
    let any = |f: &dyn Fn(&ScannedBlock) -> bool| blocks.iter().any(f);
    if any(&|b| matches!(&b.contents, Ok(Contents::Manifest(m)) if !m.parts.is_empty())) {
        SegmentVersion::V5
    } else if any(&|b| matches!(b.header.kind, BlockKind::CdcChunk | BlockKind::Manifest)) {
        SegmentVersion::V4
    } else if any(&|b| matches!(b.header.kind, BlockKind::Framed | BlockKind::Dictionary)) {
        SegmentVersion::V3
    } else if any(&|b| b.header.kind == BlockKind::TreeTrailer) {
        SegmentVersion::V2
    } else {
        SegmentVersion::V1
    }
}
