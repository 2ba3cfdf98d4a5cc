//! Parsers for argument values shared by several commands.

use asl::{Error, Result};

/// Parses a size like `64K`, `1M`, `256MiB`, `2G` or a plain byte count.
pub(crate) fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("{s:?} is not a size like 64K or 1M")))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(Error::InvalidArgument(format!("unknown unit in size {s:?}"))),
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::InvalidArgument(format!("size {s:?} is too large")))
}

/// Parses a compression setting: `off` or a zstd level 1..=22.
pub(crate) fn parse_compression(s: &str) -> Result<Option<i32>> {
    match s.trim() {
        "off" | "none" | "0" => Ok(None),
        t => match t.parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => Ok(Some(l)),
            _ => Err(Error::InvalidArgument(format!(
                "compression {s:?}: use off or a zstd level 1-22"
            ))),
        },
    }
}

/// Parses an HTTP-style byte range of an artifact of `size` bytes into
/// (offset, length): `A-B` (both included), `A-` (to the end), `-N` (the
/// last N bytes), read by the same parser as the server's `Range` header.
/// A range starting past the end is refused; any range of an empty
/// artifact is the empty whole.
pub(crate) fn parse_range(spec: &str, size: u64) -> Result<(u64, u64)> {
    let bad = || {
        Error::InvalidArgument(format!(
            "range {spec:?}: use A-B, A- or -N (byte offsets, B included) within the {size}-byte artifact"
        ))
    };
    let parsed = http_range_header::parse_range_header(&format!("bytes={}", spec.trim())).map_err(|_| bad())?;
    if size == 0 {
        return Ok((0, 0));
    }
    match parsed.validate(size).map_err(|_| bad())?.as_slice() {
        [r] => Ok((*r.start(), r.end() - r.start() + 1)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_levels() {
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("1X").is_err() && parse_size("").is_err());
        assert_eq!(parse_compression("off").unwrap(), None);
        assert_eq!(parse_compression("19").unwrap(), Some(19));
        assert!(parse_compression("23").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-9", 100).unwrap(), (0, 10));
        assert_eq!(parse_range("90-", 100).unwrap(), (90, 10));
        assert_eq!(parse_range("-5", 100).unwrap(), (95, 5));
        assert_eq!(parse_range("-500", 100).unwrap(), (0, 100));
        assert_eq!(parse_range("50-500", 100).unwrap(), (50, 50));
        assert_eq!(parse_range("0-", 0).unwrap(), (0, 0));
        for bad in ["", "-", "5", "9-3", "a-b", "100-", "100-200"] {
            assert!(parse_range(bad, 100).is_err(), "{bad:?} accepted");
        }
    }
}

/// `--domain` and `--visibility`: a listing's view per domain (seed 004).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Only {
    /// Only artifacts owned by this domain: `local` (or the store's own
    /// domain name), or a domain it imported from, by name, id or number.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Only artifacts with this visibility.
    #[arg(long, value_parser = ["internal", "published"])]
    pub visibility: Option<String>,
}

impl Only {
    /// The library's filter, the domain looked up in `store`'s tables.
    pub(crate) fn filter(&self, store: &asl::Store) -> std::result::Result<asl::ListFilter, crate::error::CliError> {
        Ok(asl::ListFilter {
            domain: match &self.domain {
                Some(d) => Some(asl::federation::remote::domain_named(store, d)?),
                None => None,
            },
            visibility: self.visibility.as_deref().and_then(asl::Visibility::from_name),
        })
    }
}

/// `verify`'s scope: everything, or a budget's worth in rotation.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Scrub {
    /// Read at most this much segment data (`10G`, `512M`), least recently
    /// verified first, so that repeated runs cover the store in rotation
    /// (index and snapshot files are read every time).
    #[arg(long, value_name = "SIZE", conflicts_with = "sample")]
    pub budget: Option<String>,
    /// Read at most this share of the segment data (`1%`), least recently
    /// verified first.
    #[arg(long, value_name = "PERCENT")]
    pub sample: Option<String>,
    /// Read only data no scrub has read yet: new segments, and what the
    /// open segment gained since it was last read.
    #[arg(long)]
    pub since_last: bool,
}

impl Scrub {
    /// The library's options.
    pub(crate) fn options(&self) -> Result<asl::ScrubOptions> {
        let budget = match (&self.budget, &self.sample) {
            (Some(b), _) => Some(asl::ScrubBudget::Bytes(parse_size(b)?)),
            (None, Some(p)) => {
                let bad = || Error::InvalidArgument(format!("--sample {p:?} is not a percentage like 1% or 0.5%"));
                let f: f64 = p.trim().trim_end_matches('%').trim().parse().map_err(|_| bad())?;
                if !(f > 0.0 && f <= 100.0) {
                    return Err(bad());
                }
                Some(asl::ScrubBudget::Fraction(f / 100.0))
            }
            (None, None) => None,
        };
        Ok(asl::ScrubOptions {
            budget,
            since_last: self.since_last,
        })
    }
}
