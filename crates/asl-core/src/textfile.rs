//! Small text files a store keeps beside its binary ones (`BUCKET`,
//! `DELETES`, `domain`, `remotes`, `domains`, and the bucket's `LEASE` and
//! `WRITER` objects): a magic and version line, `key=value` or free-form lines, and a closing
//! `crc32c=` line over every byte before it, so a torn or edited file is
//! told from a good one.

/// The file's bytes: `MAGIC 1`, the lines, the CRC line.
pub fn frame(magic: &str, lines: &[String]) -> Vec<u8> {
    let mut body = format!("{magic} 1\n");
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    format!("{body}crc32c={:08x}\n", crc32c::crc32c(body.as_bytes())).into_bytes()
}

/// The lines between the magic line and the CRC line; a one-line reason
/// when the bytes are not a good version-1 file of this kind.
pub fn unframe(b: &[u8], magic: &str) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(b).map_err(|_| "not UTF-8".to_string())?;
    let at = text.rfind("crc32c=").ok_or("no crc32c line")?;
    let (body, crc) = text.split_at(at);
    let crc = u32::from_str_radix(crc.trim_start_matches("crc32c=").trim_end(), 16)
        .map_err(|_| "unreadable crc32c line".to_string())?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    let mut lines = body.lines();
    match lines.next() {
        Some(l) if l == format!("{magic} 1") => Ok(lines.map(String::from).collect()),
        Some(l) if l.starts_with(magic) => Err(format!("unsupported version ({l})")),
        _ => Err(format!("not a {magic} file")),
    }
}

/// The value of `key=` among `lines`.
pub fn field<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_told() {
        let b = frame("ASLTEST", &["a=1".into(), "b=two".into()]);
        let lines = unframe(&b, "ASLTEST").unwrap();
        assert_eq!(
            (field(&lines, "a"), field(&lines, "b"), field(&lines, "c")),
            (Some("1"), Some("two"), None)
        );
        let mut bad = b.clone();
        bad[12] ^= 1;
        assert!(unframe(&bad, "ASLTEST").unwrap_err().contains("checksum"));
        assert!(unframe(&b, "ASLOTHER").is_err());
        let v2 = frame("ASLTEST", &[])
            .iter()
            .map(|&c| if c == b'1' { b'2' } else { c })
            .collect::<Vec<_>>();
        assert!(unframe(&v2, "ASLTEST").is_err());
    }
}
