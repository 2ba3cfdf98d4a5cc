//! The checkpoint: which index files hold the state up to a log position, which
//! segments exist, and where the log continues. Replaced as a whole by
//! temp + fsync + rename, so a crash leaves the old checkpoint or the new one.

use crate::error::DecodeError;
use crate::fsutil::{le_u32, le_u64};
use crate::id::ArtifactId;
use crate::version::{CheckpointVersion, FormatVersion};

use super::catalog::{decode_pin, encode_pin, SnapshotMeta};

/// Magic at the start of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"ASLCKPT\0";

/// A segment as the checkpoint records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentState {
    /// Segment id.
    pub id: u32,
    /// Sealed length, or committed length for the open segment.
    pub len: u64,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Logical bytes of reachable artifacts whose newest record points into it.
    pub live: u64,
    /// Logical bytes of every artifact written into it.
    pub total: u64,
}

impl SegmentState {
    /// A segment with no usage recorded yet.
    pub fn new(id: u32, len: u64, sealed: bool) -> Self {
        Self {
            id,
            len,
            sealed,
            live: 0,
            total: 0,
        }
    }
}

/// The decoded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The format it was read in (encoding always writes the current one).
    pub version: CheckpointVersion,
    /// Store identity.
    pub store_id: u64,
    /// Every log record with a smaller sequence number is in the index files.
    pub next_seq: u64,
    /// The log file records continue in.
    pub log_file: u64,
    /// Next segment id to allocate.
    pub next_segment: u32,
    /// Next index file id to allocate.
    pub next_index: u64,
    /// Index files, newest first.
    pub index_files: Vec<u64>,
    /// All segments, in id order.
    pub segments: Vec<SegmentState>,
    /// Named snapshots, in name order.
    pub snapshots: Vec<SnapshotMeta>,
    /// Pins `(name, artifact)`, in name order.
    pub pins: Vec<(String, ArtifactId)>,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self {
            version: CheckpointVersion::CURRENT,
            store_id: 0,
            next_seq: 0,
            log_file: 0,
            next_segment: 0,
            next_index: 0,
            index_files: Vec::new(),
            segments: Vec::new(),
            snapshots: Vec::new(),
            pins: Vec::new(),
        }
    }
}

/// Bytes of one segment record: id, length, sealed, then (from version 2) live
/// and total.
fn segment_record_len(v: CheckpointVersion) -> usize {
    if v.has_usage_counters() {
        29
    } else {
        13
    }
}

impl Checkpoint {
    /// Encodes in the current version: magic, version, body length, body,
    /// CRC-32C of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.store_id.to_le_bytes());
        body.extend_from_slice(&self.next_seq.to_le_bytes());
        body.extend_from_slice(&self.log_file.to_le_bytes());
        body.extend_from_slice(&self.next_segment.to_le_bytes());
        body.extend_from_slice(&self.next_index.to_le_bytes());
        body.extend_from_slice(&(self.index_files.len() as u32).to_le_bytes());
        for f in &self.index_files {
            body.extend_from_slice(&f.to_le_bytes());
        }
        body.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            body.extend_from_slice(&s.id.to_le_bytes());
            body.extend_from_slice(&s.len.to_le_bytes());
            body.push(s.sealed as u8);
            body.extend_from_slice(&s.live.to_le_bytes());
            body.extend_from_slice(&s.total.to_le_bytes());
        }
        body.extend_from_slice(&(self.snapshots.len() as u32).to_le_bytes());
        for m in &self.snapshots {
            m.encode(&mut body);
        }
        body.extend_from_slice(&(self.pins.len() as u32).to_le_bytes());
        for (name, id) in &self.pins {
            encode_pin(&mut body, name, id);
        }
        let mut b = Vec::with_capacity(body.len() + 20);
        b.extend_from_slice(&CHECKPOINT_MAGIC);
        b.extend_from_slice(&CheckpointVersion::CURRENT.number().to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a checkpoint image.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let short = |need: usize| DecodeError::Truncated {
            what: "checkpoint",
            need: need as u64,
            have: b.len() as u64,
        };
        if b.len() < 20 {
            return Err(short(20));
        }
        if b[0..8] != CHECKPOINT_MAGIC {
            return Err(DecodeError::BadMagic { expected: "ASLCKPT" });
        }
        let version = CheckpointVersion::from_number(le_u32(b, 8))?;
        let body_len = le_u32(b, 12) as usize;
        if b.len() != 16 + body_len + 4 {
            return Err(short(16 + body_len + 4));
        }
        let stored = le_u32(b, 16 + body_len);
        let computed = crc32c::crc32c(&b[..16 + body_len]);
        if stored != computed {
            return Err(DecodeError::Checksum {
                what: "checkpoint",
                stored,
                computed,
            });
        }
        let p = &b[16..16 + body_len];
        let bad = || DecodeError::Invalid("checkpoint body length".into());
        if p.len() < 40 {
            return Err(bad());
        }
        let mut c = Checkpoint {
            version,
            store_id: le_u64(p, 0),
            next_seq: le_u64(p, 8),
            log_file: le_u64(p, 16),
            next_segment: le_u32(p, 24),
            next_index: le_u64(p, 28),
            ..Default::default()
        };
        let n = le_u32(p, 36) as usize;
        let mut at = 40;
        if p.len() < at + n * 8 + 4 {
            return Err(bad());
        }
        for _ in 0..n {
            c.index_files.push(le_u64(p, at));
            at += 8;
        }
        let m = le_u32(p, at) as usize;
        at += 4;
        let rec_len = segment_record_len(version);
        let tail = if version.has_catalog() { 8 } else { 0 };
        if p.len() < at + m * rec_len + tail {
            return Err(bad());
        }
        for _ in 0..m {
            let sealed = match p[at + 12] {
                0 => false,
                1 => true,
                v => return Err(DecodeError::Invalid(format!("checkpoint sealed flag {v}"))),
            };
            let mut st = SegmentState::new(le_u32(p, at), le_u64(p, at + 4), sealed);
            if version.has_usage_counters() {
                st.live = le_u64(p, at + 13);
                st.total = le_u64(p, at + 21);
            }
            c.segments.push(st);
            at += rec_len;
        }
        if !version.has_catalog() {
            return if at == p.len() { Ok(c) } else { Err(bad()) };
        }
        let n = le_u32(p, at) as usize;
        at += 4;
        // Each meta takes at least 58 bytes: a count beyond that is damage.
        if n > p.len() / 58 {
            return Err(bad());
        }
        for _ in 0..n {
            c.snapshots.push(SnapshotMeta::decode(p, &mut at)?);
        }
        if p.len() < at + 4 {
            return Err(bad());
        }
        let n = le_u32(p, at) as usize;
        at += 4;
        if n > p.len() / 34 {
            return Err(bad());
        }
        for _ in 0..n {
            c.pins.push(decode_pin(p, &mut at)?);
        }
        if at != p.len() {
            return Err(bad());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::current::CurrentId;

    #[test]
    fn version_1_is_read() {
        // A version-1 image as the code before checkpoint v2 wrote it: no usage
        // counters, no catalog.
        let mut body = Vec::new();
        for v in [1u64, 2, 3] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&5u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&9u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&100u64.to_le_bytes());
        body.push(1);
        let mut b = CHECKPOINT_MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let c = Checkpoint::decode(&b).unwrap();
        assert_eq!(c.version, CheckpointVersion::V1);
        assert_eq!(
            (c.store_id, c.next_seq, c.log_file, c.next_segment, c.next_index),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(c.index_files, vec![9]);
        assert_eq!(c.segments, vec![SegmentState::new(1, 100, true)]);
        assert!(c.snapshots.is_empty() && c.pins.is_empty());
        // Re-encoding writes the current version.
        assert_eq!(
            Checkpoint::decode(&c.encode()).unwrap().version,
            CheckpointVersion::CURRENT
        );
        let mut future = b.clone();
        future[8] = 9;
        let n = future.len() - 4;
        let crc = crc32c::crc32c(&future[..n]);
        future[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Checkpoint::decode(&future),
            Err(DecodeError::UnsupportedVersion { version: 9, .. })
        ));
    }

    #[test]
    fn round_trip_and_flip() {
        let c = Checkpoint {
            version: CheckpointVersion::CURRENT,
            store_id: 1,
            next_seq: 2,
            log_file: 3,
            next_segment: 4,
            next_index: 5,
            index_files: vec![9, 8],
            segments: vec![SegmentState {
                id: 1,
                len: 100,
                sealed: true,
                live: 40,
                total: 60,
            }],
            snapshots: vec![SnapshotMeta {
                name: "s1".into(),
                identity: CurrentId([3; 32]),
                created: 17,
                artifacts: 2,
                bytes: 40,
            }],
            pins: vec![("p".into(), ArtifactId::of(b"p"))],
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b).unwrap(), c);
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x10;
            assert!(Checkpoint::decode(&x).is_err(), "flip at {i}");
        }
    }
}
