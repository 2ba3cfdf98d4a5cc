//! Times in records: RFC 3339 text in UTC (`YYYY-MM-DDTHH:MM:SSZ`, an
//! optional fraction), which sorts as text in time order, and its conversion
//! to seconds since 1970 for the query index.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Now, in nanoseconds since the epoch (0 before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Now, as record time text (whole seconds).
pub fn now() -> String {
    format(Timestamp::now().as_second().max(0) as u64)
}

/// Milliseconds since the epoch of a record time, with or without a
/// fraction (`...SSZ`, `...SS.fffZ`; digits past the third are ignored).
pub fn parse_millis(t: &str) -> Option<u64> {
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (format!("{w}Z"), f.strip_suffix('Z')?),
        None => (t.to_string(), ""),
    };
    let secs = parse(&whole)?;
    let mut ms = 0u64;
    for (i, c) in frac.bytes().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            ms += u64::from(c - b'0') * [100, 10, 1][i];
        }
    }
    Some(secs * 1000 + ms)
}

/// The time now with milliseconds (`...SS.mmmZ`), for start and finish
/// times that must order events within a second.
pub fn now_millis() -> String {
    let ms = Timestamp::now().as_millisecond().max(0);
    let t = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    format!("{t:.3}")
}

/// `secs` since 1970 as record time text (a time past year 9999, which no
/// record holds, is written as the last second jiff knows).
pub fn format(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX);
    // Whole seconds print without a fraction.
    Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

/// Seconds since 1970 of a record time (the fraction dropped), or of a
/// date `YYYY-MM-DD` (its midnight), or `None` when `t` is neither. Only
/// UTC (`Z`) with a `T` between date and time: the form records keep, so
/// that times sort as text.
pub fn parse(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let secs = if b.len() == 10 {
        let d: Date = t.parse().ok()?;
        TimeZone::UTC
            .to_timestamp(d.to_datetime(Time::midnight()))
            .ok()?
            .as_second()
    } else {
        if b[10] != b'T' || b.last() != Some(&b'Z') || b.len() < 20 {
            return None;
        }
        // A leap second (:60) reads as :59, which it sorts after.
        t.parse::<Timestamp>().ok()?.as_second()
    };
    u64::try_from(secs).ok()
}

/// Seconds since 1970 of a time as other programs write it: RFC 3339 or
/// ISO 8601 with any UTC offset, `T` or a space between date and time
/// (Python's `str(datetime)`), or a plain date. Records keep [`parse`]'s
/// form; this reads what they quote from elsewhere.
pub fn parse_any(t: &str) -> Option<u64> {
    if let Some(s) = parse(t) {
        return Some(s);
    }
    let mut s = t.trim().to_string();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    u64::try_from(s.parse::<Timestamp>().ok()?.as_second()).ok()
}

/// A duration as people type it: `90d`, `12h`, `30m`, `45s`, `2w`,
/// `1h 30m` (humantime's units). A bare number is refused rather than read
/// in a unit the user may not have meant.
pub fn parse_duration(t: &str) -> Result<std::time::Duration, String> {
    let t = t.trim();
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{t:?} has no unit: say 30s, 30m, 12h, 30d or 2w"));
    }
    humantime::parse_duration(t).map_err(|e| format!("{t:?} is not a duration like 30d or 12h: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_times() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2000-03-01"), Some(951_868_800));
        assert_eq!(parse("2026-12-01T22:08:15.5Z"), Some(1_796_162_895));
        assert_eq!(format(1_796_162_895), "2026-12-01T22:08:15Z");
        assert_eq!(parse("2016-12-31T23:59:60Z"), parse("2016-12-31T23:59:59Z"));
        assert!(now_millis().len() == 24 && now_millis().ends_with('Z'));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "26-01-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01 10:00:00",
            "1969-12-31",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90d"), Ok(90 * 86_400));
        assert_eq!(secs("1h 30m"), Ok(5400));
        assert!(secs("90").unwrap_err().contains("has no unit"));
        assert!(secs("d").is_err() && secs("3 parsecs").is_err());
    }

    proptest! {
        #[test]
        fn format_and_parse_agree(secs in 0u64..253_402_300_799) {
            let t = format(secs);
            prop_assert_eq!(parse(&t), Some(secs));
            prop_assert_eq!(&t[..10], &format(secs - secs % 86_400)[..10]);
        }
    }
}
