//! Format versions as types: each kind of file has an enum of the versions this
//! build can read, the one it writes (`CURRENT`), and methods that say what a
//! version holds. Readers accept every version they know; a version from the
//! future is refused with [`DecodeError::UnsupportedVersion`], never guessed at.
//! `spec/format.md` lists the same versions with their differences.

use crate::error::DecodeError;

/// A file format's version.
pub trait FormatVersion: Copy + Eq + std::fmt::Debug + 'static {
    /// The structure, for error messages.
    const WHAT: &'static str;
    /// Every version this build reads, oldest first.
    const KNOWN: &'static [Self];
    /// The version this build writes.
    const CURRENT: Self;

    /// The number stored on disk.
    fn number(self) -> u32;

    /// The version stored as `n`, if this build knows it.
    fn from_number(n: u32) -> Result<Self, DecodeError> {
        Self::KNOWN
            .iter()
            .copied()
            .find(|v| v.number() == n)
            .ok_or(DecodeError::UnsupportedVersion {
                what: Self::WHAT,
                version: n,
            })
    }
}

macro_rules! single_version {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            /// The first and current version.
            V1,
        }

        impl FormatVersion for $name {
            const WHAT: &'static str = $what;
            const KNOWN: &'static [Self] = &[Self::V1];
            const CURRENT: Self = Self::V1;

            fn number(self) -> u32 {
                1
            }
        }
    };
}

single_version!(
    /// The `STORE` identity file.
    StoreVersion,
    "store file"
);
single_version!(
    /// Sorted index files (the main index and snapshot files).
    IndexVersion,
    "index"
);
single_version!(
    /// Log files. Record kinds 5–10 were added without a version change: a
    /// reader that does not know a kind stops there as at a torn tail, and a
    /// log is only ever replayed by the build that wrote it or a newer one.
    LogVersion,
    "log"
);

/// An enum of numbered versions with its [`FormatVersion`] impl.
macro_rules! numbered_versions {
    ($(#[$doc:meta])* $name:ident, $what:literal, current $cur:ident,
     $($(#[$vdoc:meta])* $v:ident = $n:literal),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $v),+
        }

        impl FormatVersion for $name {
            const WHAT: &'static str = $what;
            const KNOWN: &'static [Self] = &[$(Self::$v),+];
            const CURRENT: Self = Self::$cur;

            fn number(self) -> u32 {
                match self {
                    $(Self::$v => $n),+
                }
            }
        }
    };
}

numbered_versions!(
    /// The `CHECKPOINT` file.
    CheckpointVersion,
    "checkpoint",
    current V2,
    /// Index files and segments (id, length, sealed); no usage counters, no
    /// snapshot catalog, no pins.
    V1 = 1,
    /// Adds per-segment usage counters (live and total logical bytes), the
    /// snapshot catalog and pins.
    V2 = 2,
);

impl CheckpointVersion {
    /// Whether segments carry live/total usage counters (else they must be
    /// recomputed on open).
    pub fn has_usage_counters(self) -> bool {
        self != Self::V1
    }

    /// Whether the checkpoint holds the snapshot catalog and pins.
    pub fn has_catalog(self) -> bool {
        self != Self::V1
    }
}

numbered_versions!(
    /// Segment files: header, blocks, footer. Version 2 adds the tree trailer
    /// (block kind 5: a large artifact's trailer with its verified chunk
    /// tree); version 3 adds dictionary and framed blocks (kinds 6 and 7:
    /// small artifacts compressed one by one); version 4 adds content-defined
    /// chunks and manifests (kinds 8 and 9: large artifacts stored as shared
    /// chunks); version 5 lets a manifest keep its chunk list in parts
    /// (chunks listing chunks), which older readers would refuse. A writer
    /// never appends to a segment of an older version: it seals it and starts
    /// a current one.
    SegmentVersion,
    "segment",
    current V5,
    /// The first format: kind-3 trailers without a chunk tree.
    V1 = 1,
    /// Tree trailers (block kind 5).
    V2 = 2,
    /// Dictionary and framed blocks (kinds 6 and 7).
    V3 = 3,
    /// Content-defined chunk and manifest blocks (kinds 8 and 9).
    V4 = 4,
    /// Manifests whose chunk list is kept in parts.
    V5 = 5,
);

impl SegmentVersion {
    /// Whether segments of this version may hold tree trailers.
    pub fn has_tree_trailers(self) -> bool {
        self != Self::V1
    }

    /// Whether segments of this version may hold framed blocks.
    pub fn has_framed_blocks(self) -> bool {
        !matches!(self, Self::V1 | Self::V2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_versions_round_trip_and_future_ones_are_refused() {
        for v in CheckpointVersion::KNOWN {
            assert_eq!(CheckpointVersion::from_number(v.number()).unwrap(), *v);
        }
        assert_eq!(CheckpointVersion::CURRENT.number(), 2);
        assert!(matches!(
            CheckpointVersion::from_number(3),
            Err(DecodeError::UnsupportedVersion { version: 3, .. })
        ));
        assert!(SegmentVersion::from_number(0).is_err());
        assert!(SegmentVersion::from_number(6).is_err());
        assert!(SegmentVersion::from_number(5).unwrap().has_framed_blocks());
        assert!(SegmentVersion::from_number(4).unwrap().has_framed_blocks());
        assert!(SegmentVersion::from_number(3).unwrap().has_framed_blocks());
        assert!(!SegmentVersion::from_number(1).unwrap().has_tree_trailers());
        assert_eq!(LogVersion::from_number(1).unwrap(), LogVersion::CURRENT);
    }
}
