//! Workloads for the packing harness: generated ones from a seed, or a real
//! directory. Everything is held in memory so that ingest timings measure the
//! store, not the generator or the source disk.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};

/// Which artifacts a run stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Many tiny artifacts (16 B to 1 KiB), half text, half random.
    Tiny,
    /// A log-normal mix of sizes like a source tree (median ~4 KiB), text-like.
    Source,
    /// A few huge random artifacts (a quarter of the size each).
    Huge,
    /// Compressible text, log-normal sizes (median ~16 KiB).
    Text,
    /// Incompressible bytes, log-normal sizes (median ~16 KiB).
    Random,
    /// A source-like tree and versions of it, each changing ~3 % of the files.
    Versioned,
    /// The files under a directory.
    Corpus(String),
}

impl Workload {
    /// The generated workloads, by name.
    pub const GENERATED: &'static [&'static str] = &["tiny", "source", "huge", "text", "random", "versioned"];

    /// Parses a generated workload's name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "tiny" => Workload::Tiny,
            "source" => Workload::Source,
            "huge" => Workload::Huge,
            "text" => Workload::Text,
            "random" => Workload::Random,
            "versioned" => Workload::Versioned,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown workload {other:?}; one of {}",
                    Self::GENERATED.join(", ")
                )))
            }
        })
    }

    /// Its name in tables.
    pub fn name(&self) -> String {
        match self {
            Workload::Tiny => "tiny".into(),
            Workload::Source => "source".into(),
            Workload::Huge => "huge".into(),
            Workload::Text => "text".into(),
            Workload::Random => "random".into(),
            Workload::Versioned => "versioned".into(),
            Workload::Corpus(p) => format!("corpus:{p}"),
        }
    }

    /// The artifacts: about `size` bytes generated from `seed`, or the corpus's
    /// files (at most `size` bytes of them, in path order).
    pub fn artifacts(&self, size: u64, seed: u64) -> Result<Vec<Vec<u8>>> {
        // Each workload gets its own stream from the same seed.
        let salt = self.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut g = Gen::new(seed ^ salt);
        let mut out = Vec::new();
        let mut total = 0u64;
        let mut push = |v: Vec<u8>, out: &mut Vec<Vec<u8>>| {
            total += v.len() as u64;
            out.push(v);
            total < size
        };
        match self {
            Workload::Tiny => loop {
                let n = g.range(16, 1024);
                let v = if g.next().is_multiple_of(2) {
                    g.text(n)
                } else {
                    g.random(n)
                };
                if !push(v, &mut out) {
                    break;
                }
            },
            Workload::Source => loop {
                let n = g.lognormal(4096.0, 1.4, 4 << 20);
                if !push(g.text(n), &mut out) {
                    break;
                }
            },
            Workload::Huge => {
                for _ in 0..4 {
                    push(g.random((size / 4).max(1) as usize), &mut out);
                }
            }
            Workload::Text => loop {
                let n = g.lognormal(16_384.0, 1.2, 8 << 20);
                if !push(g.text(n), &mut out) {
                    break;
                }
            },
            Workload::Random => loop {
                let n = g.lognormal(16_384.0, 1.2, 8 << 20);
                if !push(g.random(n), &mut out) {
                    break;
                }
            },
            Workload::Versioned => {
                // One tree of a tenth of the size, then versions until the
                // logical total is reached; each version edits ~3 % of files.
                let mut tree: Vec<Vec<u8>> = Vec::new();
                let mut t = 0u64;
                while t < size / 10 {
                    let n = g.lognormal(4096.0, 1.2, 1 << 20);
                    let f = g.text(n);
                    t += f.len() as u64;
                    tree.push(f);
                }
                'versions: loop {
                    for f in &tree {
                        if !push(f.clone(), &mut out) {
                            break 'versions;
                        }
                    }
                    let edits = (tree.len() / 33).max(1);
                    for _ in 0..edits {
                        let i = (g.next() % tree.len() as u64) as usize;
                        let f = &mut tree[i];
                        let at = (g.next() % f.len().max(1) as u64) as usize;
                        let n = g.range(8, 200);
                        let patch = g.text(n);
                        f.splice(at..(at + patch.len()).min(f.len()), patch);
                    }
                }
            }
            Workload::Corpus(dir) => {
                let mut files = Vec::new();
                list_files(Path::new(dir), &mut files)?;
                files.sort();
                for p in files {
                    let v = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
                    if !push(v, &mut out) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn list_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let e = e.ctx(|| format!("list {}", dir.display()))?;
        let t = e.file_type().ctx(|| format!("stat {}", e.path().display()))?;
        if t.is_dir() {
            list_files(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Deterministic generator (xorshift64*).
struct Gen(u64);

const WORDS: &[&str] = &[
    "fn", "let", "mut", "self", "impl", "struct", "return", "match", "Some", "None", "Ok", "Err", "if", "else", "for",
    "in", "while", "loop", "pub", "use", "mod", "const", "static", "where", "type", "trait", "enum", "as", "u64",
    "usize", "Vec", "String", "Result", "Option", "new", "len", "push", "iter", "map", "collect", "into", "from",
    "unwrap", "store", "segment", "block", "index", "entry", "artifact", "commit", "write", "read", "buffer", "offset",
    "length", "checksum", "error", "value", "key", "data", "count", "total", "start", "end",
];

impl Gen {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A log-normal size with the given median and sigma, clamped to 1..=cap.
    fn lognormal(&mut self, median: f64, sigma: f64, cap: usize) -> usize {
        // Box–Muller for one standard normal sample.
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        ((median * (sigma * z).exp()) as usize).clamp(1, cap)
    }

    fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// Text made of words, identifiers and numbers: compresses ~3-4x with zstd.
    fn text(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 16);
        while v.len() < n {
            let r = self.next();
            match r % 16 {
                0 => v.extend_from_slice(b"\n    "),
                1 => v.extend_from_slice(format!("{}", r >> 40).as_bytes()),
                2 => v.extend_from_slice(b"();"),
                _ => v.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes()),
            }
            v.push(b' ');
        }
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_workloads_are_deterministic_and_sized() {
        for name in Workload::GENERATED {
            let w = Workload::parse(name).unwrap();
            let a = w.artifacts(1 << 20, 7).unwrap();
            let total: u64 = a.iter().map(|v| v.len() as u64).sum();
            assert!((1 << 20..12 << 20).contains(&total), "{name}: {total}");
            assert_eq!(a, w.artifacts(1 << 20, 7).unwrap(), "{name}");
        }
        let v = Workload::Versioned.artifacts(1 << 20, 1).unwrap();
        let unique: std::collections::HashSet<&Vec<u8>> = v.iter().collect();
        assert!(unique.len() * 3 < v.len(), "versions share most files");
        assert!(Workload::parse("nope").is_err());
    }
}
