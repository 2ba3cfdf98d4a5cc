//! Framed packed blocks: small artifacts compressed one by one, each against
//! a zstd dictionary trained for its segment, so that reading one artifact
//! decompresses that artifact and nothing else.
//!
//! A packed block compressed whole (block kind 1 with zstd) costs a reader the
//! whole block — 256 KiB of decompression to return 1 KiB — which made small
//! reads of compressible data 30–140× slower than the key-value stores users
//! compare with. Compressing each artifact alone loses most of the ratio
//! (1 KiB of text: 0.47 of its size instead of 0.28); a dictionary trained on
//! the segment's first compressible block wins it back (0.29), and decoding
//! one 1 KiB frame with it takes about 1.3 µs on the reference machine.
//!
//! Layout (segment version 3, `spec/format.md`): a *dictionary block* (kind 6)
//! holds a trained zstd dictionary; a *framed block* (kind 7) names the
//! dictionary block's offset in the same segment, then an entry table (id, raw
//! length, stored length with a compressed bit) and the frames in table
//! order. The block header's CRC covers the whole body as for every block;
//! a reader of one artifact checks its bytes against its BLAKE3 instead.

use super::kept::Kept;

use zstd::zstd_safe::{CCtx, CDict, DCtx, DDict};

use crate::error::DecodeError;
use crate::fsutil::{le_u32, le_u64};
use crate::id::ArtifactId;

/// Bytes of a trained dictionary, at most: a quarter of the samples when
/// they are fewer (small blocks), which zstd's trainer needs.
pub const DICT_SIZE: usize = 16 << 10;
/// Fewest sample bytes worth training on.
const MIN_TRAINING: usize = 4 << 10;
/// Bytes before a framed block's table: the dictionary's offset, reserved.
pub const FRAMED_HEAD_LEN: usize = 16;
/// Bytes of one framed table entry: id, raw length, stored length.
pub const FRAMED_ENTRY_LEN: usize = 40;
/// The stored-length bit that marks a zstd frame (else the bytes are raw).
const ZSTD_BIT: u32 = 1 << 31;
/// Artifacts shorter than this are stored raw: a frame's own header and the
/// table entry cost more than compression saves.
const MIN_FRAME: usize = 32;
/// Fewest samples zstd's trainer is given; fewer give it nothing to learn.
const MIN_SAMPLES: usize = 8;

/// One artifact of a framed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramedEntry {
    /// The artifact.
    pub id: ArtifactId,
    /// Its length.
    pub raw_len: u32,
    /// Bytes of its frame.
    pub stored_len: u32,
    /// Whether the frame is zstd (else it is the raw bytes).
    pub compressed: bool,
    /// Where the frame starts, from the start of the body.
    pub offset: u32,
}

/// A dictionary ready for compression at one level.
pub struct Dictionary {
    /// The dictionary's bytes, as stored in its block.
    pub bytes: Vec<u8>,
    cdict: CDict<'static>,
}

impl Dictionary {
    /// Prepares `bytes` (a trained zstd dictionary) for compressing at `level`.
    pub fn new(bytes: Vec<u8>, level: i32) -> Self {
        let cdict = CDict::create(&bytes, level);
        Self { bytes, cdict }
    }
}

/// Trains a dictionary on `samples` (the artifacts of one packed block).
/// `None` when there is too little to learn from or zstd declines.
pub fn train(samples: &[&[u8]]) -> Option<Vec<u8>> {
    let total: usize = samples.iter().map(|s| s.len()).sum();
    if samples.len() < MIN_SAMPLES || total < MIN_TRAINING {
        return None;
    }
    zstd::dict::from_samples(samples, DICT_SIZE.min(total / 4)).ok()
}

static CCTX: Kept<CCtx<'static>> = Kept::new();
static DCTX: Kept<DCtx<'static>> = Kept::new();

/// One artifact's frame: zstd against the dictionary when that is smaller,
/// else the raw bytes.
fn frame(bytes: &[u8], dict: &Dictionary) -> (Option<Vec<u8>>, u32) {
    if bytes.len() >= MIN_FRAME {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(bytes.len()));
        let r = CCTX.with(
            || Ok(CCtx::create()),
            |c| c.compress_using_cdict(&mut out, bytes, &dict.cdict),
        );
        if matches!(r, Ok(Ok(_))) && out.len() < bytes.len() {
            let n = out.len() as u32;
            return (Some(out), n | ZSTD_BIT);
        }
    }
    (None, bytes.len() as u32)
}

/// Builds a framed block body over `items` (id and bytes, in order) whose
/// dictionary block sits at `dict_offset` in the same segment. Frames are
/// compressed on all cores.
pub fn encode_framed(
    dict_offset: u64,
    items: &[(ArtifactId, &[u8])],
    dict: &Dictionary,
) -> (Vec<u8>, Vec<FramedEntry>) {
    let frames: Vec<(Option<Vec<u8>>, u32)> = crate::par::map(items, 32, |_, (_, b)| frame(b, dict));
    let table = FRAMED_HEAD_LEN + items.len() * FRAMED_ENTRY_LEN;
    let data: usize = frames.iter().map(|(_, s)| (s & !ZSTD_BIT) as usize).sum();
    let mut body = Vec::with_capacity(table + data);
    body.extend_from_slice(&dict_offset.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    let mut entries = Vec::with_capacity(items.len());
    let mut offset = table as u32;
    for ((id, bytes), (_, stored)) in items.iter().zip(&frames) {
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        body.extend_from_slice(&stored.to_le_bytes());
        let stored_len = stored & !ZSTD_BIT;
        entries.push(FramedEntry {
            id: *id,
            raw_len: bytes.len() as u32,
            stored_len,
            compressed: stored & ZSTD_BIT != 0,
            offset,
        });
        offset += stored_len;
    }
    for ((_, bytes), (z, _)) in items.iter().zip(&frames) {
        body.extend_from_slice(z.as_deref().unwrap_or(bytes));
    }
    (body, entries)
}

/// Decodes a framed body's head and table: the dictionary's offset and each
/// frame's place. The frames must tile the rest of the body exactly.
pub fn decode_framed_table(body: &[u8], count: u32) -> Result<(u64, Vec<FramedEntry>), DecodeError> {
    let table = FRAMED_HEAD_LEN as u64 + count as u64 * FRAMED_ENTRY_LEN as u64;
    if table > body.len() as u64 {
        return Err(DecodeError::Truncated {
            what: "framed entry table",
            need: table,
            have: body.len() as u64,
        });
    }
    if le_u64(body, 8) != 0 {
        return Err(DecodeError::Invalid("framed block reserved bytes are not zero".into()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut offset = table;
    for i in 0..count as usize {
        let e = &body[FRAMED_HEAD_LEN + i * FRAMED_ENTRY_LEN..][..FRAMED_ENTRY_LEN];
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[..32]);
        let raw_len = le_u32(e, 32);
        let stored = le_u32(e, 36);
        let (stored_len, compressed) = (stored & !ZSTD_BIT, stored & ZSTD_BIT != 0);
        if !compressed && stored_len != raw_len {
            return Err(DecodeError::Invalid(format!("raw frame {i} with stored != raw length")));
        }
        entries.push(FramedEntry {
            id: ArtifactId::from_bytes(id),
            raw_len,
            stored_len,
            compressed,
            offset: offset as u32,
        });
        offset += stored_len as u64;
        if offset > body.len() as u64 {
            return Err(DecodeError::Invalid(format!("framed entry {i} out of bounds")));
        }
    }
    if offset != body.len() as u64 {
        return Err(DecodeError::Invalid("frames do not fill the framed block".into()));
    }
    Ok((le_u64(body, 0), entries))
}

/// A dictionary prepared for decompression.
pub fn decoder(bytes: &[u8]) -> DDict<'static> {
    DDict::create(bytes)
}

/// Decompresses the zstd frame at the start of `src` (which may run on past
/// it) into exactly `raw_len` bytes.
pub fn decompress(src: &[u8], raw_len: usize, dict: &DDict<'_>) -> Result<Vec<u8>, DecodeError> {
    let bad = |what: &str| DecodeError::Invalid(format!("zstd frame: {what}"));
    let n = zstd::zstd_safe::find_frame_compressed_size(src).map_err(|_| bad("no complete frame"))?;
    let mut out = Vec::with_capacity(raw_len);
    DCTX.with(
        || Ok(DCtx::create()),
        |d| d.decompress_using_ddict(&mut out, &src[..n], dict),
    )
    .map_err(|e| bad(&e.to_string()))?
    .map_err(|c| bad(zstd::zstd_safe::get_error_name(c)))?;
    if out.len() != raw_len {
        return Err(bad("decompressed length differs from the entry's"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::text;

    #[test]
    fn frames_round_trip_and_the_table_is_checked() {
        let items: Vec<(ArtifactId, Vec<u8>)> = (0..64u64)
            .map(|i| {
                let b = if i == 5 { vec![7u8; 10] } else { text(i + 1, 1024) };
                (ArtifactId::of(&b), b)
            })
            .collect();
        let refs: Vec<(ArtifactId, &[u8])> = items.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let samples: Vec<&[u8]> = refs.iter().map(|(_, b)| *b).collect();
        let dict = Dictionary::new(train(&samples).expect("trains"), 3);
        let (body, entries) = encode_framed(4096, &refs, &dict);
        let raw_total: usize = items.iter().map(|(_, b)| b.len()).sum();
        assert!(body.len() < raw_total / 2, "{} of {raw_total}", body.len());
        let (at, decoded) = decode_framed_table(&body, entries.len() as u32).unwrap();
        assert_eq!((at, &decoded), (4096, &entries));
        assert!(!entries[5].compressed, "a 10-byte artifact stays raw");
        let dd = decoder(&dict.bytes);
        for (e, (_, b)) in entries.iter().zip(&items) {
            let f = &body[e.offset as usize..];
            let got = if e.compressed {
                decompress(f, e.raw_len as usize, &dd).unwrap()
            } else {
                f[..e.raw_len as usize].to_vec()
            };
            assert_eq!(&got, b);
        }
        // Wrong lengths, a table past the end and stray bytes are refused.
        assert!(decode_framed_table(&body, entries.len() as u32 + 1).is_err());
        assert!(decode_framed_table(&body[..body.len() - 1], entries.len() as u32).is_err());
        let mut extra = body.clone();
        extra.push(0);
        assert!(decode_framed_table(&extra, entries.len() as u32).is_err());
        let e = entries[0];
        assert!(decompress(&body[e.offset as usize..][..3], e.raw_len as usize, &dd).is_err());
        assert!(decompress(&body[e.offset as usize..], e.raw_len as usize + 1, &dd).is_err());
        assert!(train(&samples[..4]).is_none());
    }
}
