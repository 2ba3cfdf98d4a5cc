//! Helpers shared by the unit tests.

/// Text like source or logs (words and numbers, about 3x with zstd) that a
/// trained dictionary frames well.
pub(crate) fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "segment", "block", "index", "commit", "reader", "writer", "offset", "length", "error", "value", "store", "fn",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 24);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(6) {
            out.extend_from_slice(format!("{} ", x >> 44).as_bytes());
        } else {
            out.extend_from_slice(WORDS[(x >> 8) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// Deterministic incompressible bytes (xorshift).
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
