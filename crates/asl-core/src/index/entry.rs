//! The fixed 56-byte index record shared by index files and the log.

use crate::error::DecodeError;
use crate::fsutil::{le_u16, le_u32, le_u40, put_u40};
use crate::id::ArtifactId;

/// Size of an encoded entry.
pub const ENTRY_LEN: usize = 56;
/// Largest segment offset or artifact length an entry can hold (40 bits).
pub const MAX_U40: u64 = (1 << 40) - 1;

/// A domain: one store's namespace. `DomainId::LOCAL` is this store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DomainId(pub u16);

impl DomainId {
    /// The store's own domain.
    pub const LOCAL: DomainId = DomainId(0);
}

/// Who may see an artifact outside its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Visibility {
    /// Only this domain.
    #[default]
    Internal,
    /// Published to other domains.
    Published,
}

impl Visibility {
    fn to_u8(self) -> u8 {
        match self {
            Visibility::Internal => 0,
            Visibility::Published => 1,
        }
    }

    /// Name used in CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Internal => "internal",
            Visibility::Published => "published",
        }
    }

    /// The visibility [`as_str`](Self::as_str) names.
    pub fn from_name(name: &str) -> Option<Visibility> {
        match name {
            "internal" => Some(Visibility::Internal),
            "published" => Some(Visibility::Published),
            _ => None,
        }
    }
}

/// Flag: the record removes its id from CURRENT.
pub const FLAG_TOMBSTONE: u8 = 1;
/// Flag: the artifact is large; `block_offset` points at its trailer block.
pub const FLAG_LARGE: u8 = 2;
/// Flag: the packed block holding the artifact is compressed.
pub const FLAG_COMPRESSED: u8 = 4;
/// Flag: the artifact has a frame of its own in a framed block; `inner` is
/// the frame's offset in the block body, and with [`FLAG_COMPRESSED`] the
/// frame is zstd against the block's dictionary (else it is the raw bytes).
pub const FLAG_FRAMED: u8 = 8;
/// Flag: the record is a content-defined chunk, not an artifact: its id is
/// the chunk's key and `block_offset` points at its chunk block (segment
/// version 4). Listings, CURRENT's identity and reads by id skip it.
pub const FLAG_CHUNK: u8 = 16;
/// Flag (with [`FLAG_LARGE`]): `block_offset` points at a manifest, and the
/// artifact's bytes are in shared chunks (segment version 4).
pub const FLAG_MANIFEST: u8 = 32;
const KNOWN_FLAGS: u8 = FLAG_TOMBSTONE | FLAG_LARGE | FLAG_COMPRESSED | FLAG_FRAMED | FLAG_CHUNK | FLAG_MANIFEST;

/// What a manifest record counts in its segment's usage: about the
/// manifest's own size, not the artifact's length, whose bytes sit in chunk
/// records counted where they are. A function of the length alone, so that
/// adding and releasing a record count the same.
pub fn manifest_usage(len: u64) -> u64 {
    64 + len / 1024
}
/// `source` value meaning "not imported from another domain".
pub const NO_SOURCE: u16 = u16::MAX;

/// One index record: where an artifact's bytes are, and to whom it belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The artifact.
    pub id: ArtifactId,
    /// Segment holding it.
    pub segment: u32,
    /// Offset of its block (packed) or trailer block (large) in the segment.
    pub block_offset: u64,
    /// Offset of its bytes inside the packed block's raw body (0 for large).
    pub inner: u32,
    /// Length of the artifact.
    pub len: u64,
    /// Owning domain.
    pub domain: DomainId,
    /// Cross-domain source, when imported (`NO_SOURCE` otherwise).
    pub source: u16,
    /// Visibility.
    pub visibility: Visibility,
    /// `FLAG_*` bits.
    pub flags: u8,
}

/// Who an artifact belongs to and who may see it: the fields of an entry that
/// say nothing about where its bytes are. Every put takes one (through
/// `PutOptions`); the default is this store's own domain, internal, not
/// imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// Owning domain.
    pub domain: DomainId,
    /// Visibility outside the domain.
    pub visibility: Visibility,
    /// Cross-domain source when imported.
    pub source: Option<DomainId>,
}

impl Default for Placement {
    fn default() -> Self {
        Self::LOCAL
    }
}

impl Placement {
    /// This store's domain, internal, not imported.
    pub const LOCAL: Placement = Placement {
        domain: DomainId::LOCAL,
        visibility: Visibility::Internal,
        source: None,
    };

    fn source_field(&self) -> u16 {
        self.source.map(|d| d.0).unwrap_or(NO_SOURCE)
    }
}

impl Entry {
    /// A small artifact inside the packed block at `block_offset` of `segment`,
    /// its bytes at `inner` in the block's raw body.
    pub fn packed(id: ArtifactId, segment: u32, block_offset: u64, inner: u32, len: u64, compressed: bool) -> Self {
        Self {
            id,
            segment,
            block_offset,
            inner,
            len,
            domain: DomainId::LOCAL,
            source: NO_SOURCE,
            visibility: Visibility::Internal,
            flags: if compressed { FLAG_COMPRESSED } else { 0 },
        }
    }

    /// A small artifact with a frame of its own at `frame` in the body of the
    /// framed block at `block_offset`; `compressed` when the frame is zstd.
    pub fn framed(id: ArtifactId, segment: u32, block_offset: u64, frame: u32, len: u64, compressed: bool) -> Self {
        let e = Self::packed(id, segment, block_offset, frame, len, compressed);
        Self {
            flags: e.flags | FLAG_FRAMED,
            ..e
        }
    }

    /// Whether the artifact sits in a framed block.
    pub fn is_framed(&self) -> bool {
        self.flags & FLAG_FRAMED != 0
    }

    /// A large artifact whose trailer block is at `trailer_offset` of `segment`.
    pub fn large(id: ArtifactId, segment: u32, trailer_offset: u64, len: u64) -> Self {
        Self {
            flags: FLAG_LARGE,
            ..Self::packed(id, segment, trailer_offset, 0, len, false)
        }
    }

    /// A record for a content-defined chunk stored in its own block.
    pub fn chunk(key: ArtifactId, segment: u32, block_offset: u64, len: u64, compressed: bool) -> Self {
        let mut e = Self::large(key, segment, block_offset, len);
        e.flags = FLAG_CHUNK | if compressed { FLAG_COMPRESSED } else { 0 };
        e
    }

    /// A record for a large artifact whose bytes are in shared chunks.
    pub fn manifest(id: ArtifactId, segment: u32, manifest_offset: u64, len: u64) -> Self {
        let mut e = Self::large(id, segment, manifest_offset, len);
        e.flags |= FLAG_MANIFEST;
        e
    }

    /// Whether this is a chunk record rather than an artifact.
    pub fn is_chunk(&self) -> bool {
        self.flags & FLAG_CHUNK != 0
    }

    /// Whether a large artifact's record points at a manifest.
    pub fn is_manifest(&self) -> bool {
        self.flags & FLAG_MANIFEST != 0
    }

    /// Logical bytes the record counts in its segment's usage counters.
    pub fn usage(&self) -> u64 {
        if self.is_manifest() {
            manifest_usage(self.len)
        } else {
            self.len
        }
    }

    /// The same record with `placement`'s domain, visibility and source.
    pub fn placed(self, placement: &Placement) -> Self {
        Self {
            domain: placement.domain,
            visibility: placement.visibility,
            source: placement.source_field(),
            ..self
        }
    }

    /// The domain, visibility and source of this record.
    pub fn placement(&self) -> Placement {
        Placement {
            domain: self.domain,
            visibility: self.visibility,
            source: self.cross_domain_source(),
        }
    }

    /// The same record with another visibility.
    pub fn with_visibility(self, visibility: Visibility) -> Self {
        Self { visibility, ..self }
    }

    /// A tombstone that removes this record's id and keeps its location (a
    /// snapshot or pin may still read the bytes through it).
    pub fn removed(self) -> Self {
        Self {
            flags: self.flags | FLAG_TOMBSTONE,
            ..self
        }
    }

    /// The same artifact, moved to a new location by GC: flags, domain,
    /// visibility and source stay; only a tombstone flag carries over from the
    /// old flags, the layout flags are those of the new location.
    pub fn relocated(self, to: Entry) -> Self {
        Self {
            segment: to.segment,
            block_offset: to.block_offset,
            inner: to.inner,
            flags: (self.flags & FLAG_TOMBSTONE) | to.flags,
            ..self
        }
    }

    /// A tombstone for `id` in `domain`.
    pub fn tombstone(id: ArtifactId, domain: DomainId) -> Self {
        Self {
            id,
            segment: 0,
            block_offset: 0,
            inner: 0,
            len: 0,
            domain,
            source: NO_SOURCE,
            visibility: Visibility::Internal,
            flags: FLAG_TOMBSTONE,
        }
    }

    /// Whether this record removes its id.
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// Whether the artifact is stored as a large artifact.
    pub fn is_large(&self) -> bool {
        self.flags & FLAG_LARGE != 0
    }

    /// Cross-domain source, if any.
    pub fn cross_domain_source(&self) -> Option<DomainId> {
        (self.source != NO_SOURCE).then_some(DomainId(self.source))
    }

    /// Encodes into exactly `ENTRY_LEN` bytes.
    pub fn encode(&self, out: &mut [u8]) {
        out[0..32].copy_from_slice(self.id.as_bytes());
        out[32..36].copy_from_slice(&self.segment.to_le_bytes());
        put_u40(out, 36, self.block_offset);
        out[41..45].copy_from_slice(&self.inner.to_le_bytes());
        put_u40(out, 45, self.len);
        out[50..52].copy_from_slice(&self.domain.0.to_le_bytes());
        out[52..54].copy_from_slice(&self.source.to_le_bytes());
        out[54] = self.visibility.to_u8();
        out[55] = self.flags;
    }

    /// Decodes one entry, rejecting unknown flags and visibilities.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < ENTRY_LEN {
            return Err(DecodeError::Truncated {
                what: "index entry",
                need: ENTRY_LEN as u64,
                have: b.len() as u64,
            });
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let visibility = match b[54] {
            0 => Visibility::Internal,
            1 => Visibility::Published,
            v => return Err(DecodeError::Invalid(format!("visibility {v}"))),
        };
        let flags = b[55];
        if flags & !KNOWN_FLAGS != 0
            || (flags & FLAG_FRAMED != 0 && flags & FLAG_LARGE != 0)
            || (flags & FLAG_CHUNK != 0 && flags & (FLAG_LARGE | FLAG_FRAMED) != 0)
            || (flags & FLAG_MANIFEST != 0 && flags & FLAG_LARGE == 0)
        {
            return Err(DecodeError::Invalid(format!("entry flags {flags:#x}")));
        }
        Ok(Self {
            id: ArtifactId::from_bytes(id),
            segment: le_u32(b, 32),
            block_offset: le_u40(b, 36),
            inner: le_u32(b, 41),
            len: le_u40(b, 45),
            domain: DomainId(le_u16(b, 50)),
            source: le_u16(b, 52),
            visibility,
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Entry {
            id: ArtifactId::of(b"a"),
            segment: 3,
            block_offset: MAX_U40,
            inner: 77,
            len: 1 << 39,
            domain: DomainId(5),
            source: 9,
            visibility: Visibility::Published,
            flags: FLAG_LARGE,
        };
        let mut b = [0u8; ENTRY_LEN];
        e.encode(&mut b);
        assert_eq!(Entry::decode(&b).unwrap(), e);
        b[55] = 0x80;
        assert!(Entry::decode(&b).is_err());
    }
}
