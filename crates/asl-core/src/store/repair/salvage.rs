//! What repair keeps of damaged bytes: every artifact that still proves
//! itself by its BLAKE3, from a block whose checksum failed, a range with no
//! readable block header, or a tail cut short. Bytes are always the artifact
//! their own hash names, so keeping what proves itself never keeps a wrong
//! byte; everything else is reported lost.

use std::collections::BTreeMap;

use crate::block::format::Compression;
use crate::block::segment::ScannedBlock;
use crate::id::ArtifactId;
use crate::index::entry::Entry;

use super::report::RepairReport;

/// Keeps what a block whose checksum failed still proves: each artifact of an
/// uncompressed packed block whose bytes hash to its id (reads check exactly
/// that, so it stays readable); the ids of the rest are reported lost.
pub(super) fn salvage(
    bytes: &[u8],
    seg: u32,
    b: &ScannedBlock,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
    rep: &mut RepairReport,
) {
    use crate::block::format::{BlockKind, LargeTrailer, BLOCK_HEADER_LEN};
    let start = b.offset as usize + BLOCK_HEADER_LEN;
    let stored = &bytes[start..start + b.header.stored_len as usize];
    let what = format!("segment {seg}, block at {}", b.offset);
    match (b.header.kind, b.header.compression) {
        (BlockKind::Packed, Compression::None) => {
            let (proven, failed) = proven_entries(stored, Some(b.header.count as usize));
            if proven.is_empty() && failed.is_empty() {
                rep.lost
                    .push(format!("{what}: {} artifacts (entry table damaged)", b.header.count));
            }
            for (id, off, len) in proven {
                *totals.entry(seg).or_default() += len as u64;
                map.insert(id, Entry::packed(id, seg, b.offset, off as u32, len as u64, false));
                rep.salvaged += 1;
            }
            rep.lost.extend(failed.iter().map(|i| i.to_hex()));
        }
        (BlockKind::Packed, _) => rep.lost.push(format!(
            "{what}: {} artifacts (compressed body damaged)",
            b.header.count
        )),
        (BlockKind::Framed, _) => salvage_frames(bytes, seg, b, stored, map, totals, rep),
        (BlockKind::Dictionary, _) => rep.lost.push(format!(
            "{what}: a dictionary (the compressed frames that use it are reported with their blocks)"
        )),
        (k @ (BlockKind::LargeTrailer | BlockKind::TreeTrailer), _) => match LargeTrailer::decode_kind(k, stored) {
            Ok(t) => rep.lost.push(t.id.to_hex()),
            Err(_) => rep.lost.push(format!("{what}: a large artifact (trailer damaged)")),
        },
        // A damaged chunk is reported through the trailer or the manifests
        // that name it.
        (BlockKind::LargeChunk | BlockKind::CdcChunk, _) => {}
        (BlockKind::Manifest, _) => match crate::block::manifest::Manifest::decode(stored) {
            Ok(m) => rep.lost.push(m.id.to_hex()),
            Err(_) => rep.lost.push(format!("{what}: a large artifact (manifest damaged)")),
        },
        (BlockKind::Tombstones, _) => rep.lost.push(format!(
            "{what}: {} removals (the artifacts may be live again)",
            b.header.count
        )),
    }
}

/// Keeps each frame of a damaged framed block that still proves itself: a
/// raw frame whose bytes hash to its id, a compressed one that decompresses
/// (against the segment's dictionary, if that still reads) to such bytes. The
/// header's count is trusted (its CRC checks); the table's lengths are not:
/// frames are walked by what each one turns out to be (a zstd frame knows its
/// own length), so one damaged length does not misplace every frame after it.
/// Bytes that hash a few bits away from the table's id had the id damaged,
/// and are kept under their own hash, as for raw blocks.
fn salvage_frames(
    bytes: &[u8],
    seg: u32,
    b: &ScannedBlock,
    stored: &[u8],
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
    rep: &mut RepairReport,
) {
    use crate::block::frames::{FRAMED_ENTRY_LEN, FRAMED_HEAD_LEN};
    let count = b.header.count as usize;
    let table = FRAMED_HEAD_LEN + count * FRAMED_ENTRY_LEN;
    if table > stored.len() {
        rep.lost.push(format!(
            "segment {seg}, block at {}: {count} artifacts (framed entry table cut off)",
            b.offset
        ));
        return;
    }
    let dict_at = u64::from_le_bytes(stored[..8].try_into().expect("8 bytes"));
    let dict = crate::block::scan::read_dictionary(bytes, dict_at).ok();
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
                *totals.entry(seg).or_default() += n as u64;
                map.insert(got, Entry::framed(got, seg, b.offset, pos as u32, n as u64, compressed));
                rep.salvaged += 1;
                pos += len;
            }
            None => {
                rep.lost.push(id.to_hex());
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
        if size <= crate::block::format::MAX_BODY_LEN as u64 {
            if let Ok(out) = crate::block::frames::decompress(&rest[..n], size as usize, d) {
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
    use crate::block::format::PACKED_ENTRY_LEN;
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

/// Reads the damaged range `from..to` of segment `seg` as a raw packed block
/// whose header is unreadable, and keeps every artifact it proves, at the
/// place reads look for it (`from + header + offset`, which needs no
/// header). Returns how many.
pub(super) fn salvage_headerless(
    bytes: &[u8],
    seg: u32,
    from: u64,
    to: u64,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
) -> u64 {
    use crate::block::format::BLOCK_HEADER_LEN;
    let start = from as usize + BLOCK_HEADER_LEN;
    let end = (to as usize).min(bytes.len());
    if start >= end {
        return 0;
    }
    let (found, _) = proven_entries(&bytes[start..end], None);
    for (id, off, len) in &found {
        *totals.entry(seg).or_default() += *len as u64;
        map.insert(*id, Entry::packed(*id, seg, from, *off as u32, *len as u64, false));
    }
    found.len() as u64
}

/// The artifacts a torn or cut-off tail still proves: the tail begins with a
/// raw packed block whose body is incomplete (or whose header is damaged).
/// They are copied out before the tail is cut.
pub(super) fn tail_survivors(tail: &[u8]) -> Vec<(ArtifactId, Vec<u8>)> {
    use crate::block::format::{BlockHeader, BlockKind, Compression, BLOCK_HEADER_LEN};
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
