//! What repair keeps of damaged bytes: the artifacts the block layer's
//! lossy decoder ([`crate::block::lossy`]) finds still proving themselves, as
//! index records, and what it finds lost, as the report's lines.

use std::collections::BTreeMap;

use crate::block::lossy::{self, Lost, Proven};
use crate::block::segment::ScannedBlock;
use crate::id::ArtifactId;
use crate::index::entry::Entry;

use super::report::RepairReport;

pub(super) use crate::block::lossy::tail_survivors;

/// Keeps what the block `b` of segment `seg`, whose checksum failed, still
/// proves; reports the rest lost.
pub(super) fn salvage(
    bytes: &[u8],
    seg: u32,
    b: &ScannedBlock,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
    rep: &mut RepairReport,
) {
    let found = lossy::salvage_block(bytes, b);
    rep.salvaged += keep(seg, b.offset, found.proven, map, totals);
    rep.lost.extend(found.lost.into_iter().map(|l| match l {
        Lost::Id(id) => id.to_hex(),
        Lost::Note(n) => format!("segment {seg}, block at {}: {n}", b.offset),
    }));
}

/// Keeps every artifact the damaged range `from..to` of segment `seg` proves
/// as a raw packed block with an unreadable header. Returns how many.
pub(super) fn salvage_headerless(
    bytes: &[u8],
    seg: u32,
    from: u64,
    to: u64,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
) -> u64 {
    keep(seg, from, lossy::headerless(bytes, from, to), map, totals)
}

/// Records each proven artifact of the block at `block` of segment `seg`.
fn keep(
    seg: u32,
    block: u64,
    proven: Vec<Proven>,
    map: &mut BTreeMap<ArtifactId, Entry>,
    totals: &mut BTreeMap<u32, u64>,
) -> u64 {
    let n = proven.len() as u64;
    for p in proven {
        *totals.entry(seg).or_default() += p.len;
        let e = match p.frame {
            Some(compressed) => Entry::framed(p.id, seg, block, p.inner, p.len, compressed),
            None => Entry::packed(p.id, seg, block, p.inner, p.len, false),
        };
        map.insert(p.id, e);
    }
    n
}
