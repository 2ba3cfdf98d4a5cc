//! Times in records: RFC 3339 text in UTC (`YYYY-MM-DDTHH:MM:SSZ`, an
//! optional fraction), which sorts as text in time order, and its conversion
//! to seconds since 1970 for the query index.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the epoch (0 before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Now, as record time text (whole seconds).
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format(secs)
}

/// The time now with milliseconds (`...SS.mmmZ`), for start and finish
/// times that must order events within a second.
pub fn now_millis() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = format(d.as_secs());
    format!("{}.{:03}Z", &whole[..whole.len() - 1], d.subsec_millis())
}

/// `secs` since 1970 as record time text.
pub fn format(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since 1970 of a record time (the fraction dropped), or of a
/// date `YYYY-MM-DD` (its midnight), or `None` when `t` is neither.
pub fn parse(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = t.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d == 0 || d > month_days[mo as usize - 1] || y < 1970 {
        return None;
    }
    let day_secs = days_from_civil(y as i64, mo as u32, d as u32) as u64 * 86_400;
    if b.len() == 10 {
        return Some(day_secs);
    }
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // 60 is a leap second: it sorts after :59 and counts as it.
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &t[19..t.len() - 1];
    if !frac.is_empty() && (!frac.starts_with('.') || frac.len() < 2 || !frac[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(day_secs + h * 3600 + mi * 60 + s.min(59))
}

/// A duration such as `90d`, `12h`, `30m`, `45s` or `2w`, in seconds.
pub fn parse_duration(t: &str) -> Option<u64> {
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

// Howard Hinnant's days-from-civil and its inverse, proleptic Gregorian.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
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
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("90"), None);
        assert_eq!(parse_duration("d"), None);
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
