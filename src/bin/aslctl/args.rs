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
}
