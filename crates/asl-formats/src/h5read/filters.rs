//! HDF5's filter pipeline undone on one chunk: deflate (zlib), shuffle,
//! fletcher32; any other filter is refused by name.

use asl_records::RecordError;

/// Undoes the filter pipeline `filters` (in the order they were applied on
/// write) on one chunk; `mask` bit i set means filter i was skipped.
pub(super) fn unfilter(
    mut b: Vec<u8>,
    filters: &[String],
    mask: u64,
    es: usize,
    path: &str,
) -> Result<Vec<u8>, RecordError> {
    for (i, f) in filters.iter().enumerate().rev() {
        if i < 64 && mask & (1 << i) != 0 {
            continue;
        }
        b = if f == "Shuffle" {
            unshuffle(&b, es)
        } else if f.starts_with("Deflate") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&b[..])
                .read_to_end(&mut out)
                .map_err(|e| RecordError::Input(format!("{path}: a deflate chunk does not decode: {e}")))?;
            out
        } else if f == "Fletcher32" {
            // The checksum trails the data; the bytes were already proven
            // against the BLAKE3 taken when the file was ingested.
            let n = b.len().saturating_sub(4);
            b.truncate(n);
            b
        } else {
            return Err(RecordError::Input(format!(
                "{path}: filter {f} is not supported here (supported: deflate, shuffle, fletcher32)"
            )));
        };
    }
    Ok(b)
}

/// HDF5's shuffle filter stores byte 0 of every element, then byte 1...
fn unshuffle(b: &[u8], es: usize) -> Vec<u8> {
    if es <= 1 {
        return b.to_vec();
    }
    let n = b.len() / es;
    let mut out = vec![0u8; b.len()];
    for k in 0..es {
        for (j, &x) in b[k * n..(k + 1) * n].iter().enumerate() {
            out[j * es + k] = x;
        }
    }
    // Bytes past the last whole element are left as they were.
    out[n * es..].copy_from_slice(&b[n * es..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_inverts_hdf5_shuffle() {
        let plain: Vec<u8> = (0..24).collect();
        let es = 4;
        let n = plain.len() / es;
        let mut shuffled = vec![0; plain.len()];
        for j in 0..n {
            for k in 0..es {
                shuffled[k * n + j] = plain[j * es + k];
            }
        }
        assert_eq!(unshuffle(&shuffled, es), plain);
    }
}
