//! Selections: numpy's basic slicing parsed, resolved per dimension to an
//! arithmetic progression, split at chunk boundaries, and the copy of the
//! selected elements out of a decoded chunk.

use asl_records::RecordError;

/// One dimension of a selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// One index: the dimension is dropped from the result.
    Index(i64),
    /// `start:stop:step`; a missing bound means the dimension's end.
    Range {
        /// First index (default 0).
        start: Option<i64>,
        /// One past the last (default the length).
        stop: Option<i64>,
        /// Step (default 1, never below 1).
        step: u64,
    },
}

/// Parses a selection such as `0:10,5,::2` (empty: everything).
pub fn parse_selection(s: &str) -> Result<Vec<Dim>, RecordError> {
    let bad = |why: String| RecordError::Input(format!("slice {s:?}: {why}"));
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let part = part.trim();
            let num = |t: &str| -> Result<Option<i64>, RecordError> {
                let t = t.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                t.parse().map(Some).map_err(|_| bad(format!("{t:?} is not an integer")))
            };
            let bits: Vec<&str> = part.split(':').collect();
            match bits.as_slice() {
                [i] => num(i)?
                    .map(Dim::Index)
                    .ok_or_else(|| bad("an empty part (write `:` for a whole dimension)".into())),
                [a, b] => Ok(Dim::Range {
                    start: num(a)?,
                    stop: num(b)?,
                    step: 1,
                }),
                [a, b, c] => {
                    let step = num(c)?.unwrap_or(1);
                    if step < 1 {
                        return Err(bad(format!("step {step}: only positive steps are supported")));
                    }
                    Ok(Dim::Range {
                        start: num(a)?,
                        stop: num(b)?,
                        step: step as u64,
                    })
                }
                _ => Err(bad(format!("{part:?} has more than two colons"))),
            }
        })
        .collect()
}

/// What a selection takes from one dimension: `count` indices from
/// `start`, `step` apart; `keep` says whether the dimension stays in the
/// result (an index drops it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pick {
    pub(super) start: u64,
    pub(super) step: u64,
    pub(super) count: u64,
    pub(super) keep: bool,
}

/// What `d` selects from a dimension of `n`.
pub(super) fn resolve(d: &Dim, n: u64, axis: usize) -> Result<Pick, RecordError> {
    let n_i = n as i64;
    let wrap = |i: i64| if i < 0 { i + n_i } else { i };
    match d {
        Dim::Index(i) => {
            let j = wrap(*i);
            if j < 0 || j >= n_i {
                return Err(RecordError::Input(format!(
                    "index {i} is out of bounds for axis {axis} of length {n}"
                )));
            }
            Ok(Pick {
                start: j as u64,
                step: 1,
                count: 1,
                keep: false,
            })
        }
        Dim::Range { start, stop, step } => {
            let a = start.map_or(0, |s| wrap(s).clamp(0, n_i)) as u64;
            let b = stop.map_or(n_i, |s| wrap(s).clamp(0, n_i)) as u64;
            let count = if b > a { (b - a).div_ceil(*step) } else { 0 };
            Ok(Pick {
                start: a,
                step: *step,
                count,
                keep: true,
            })
        }
    }
}

/// One block of a pick within one chunk (or the whole source): `n`
/// selected indices from output index `out`, the first at `at` in the
/// source (relative to its start), `step` apart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    pub(super) out: usize,
    pub(super) at: usize,
    pub(super) n: usize,
    pub(super) step: usize,
}

/// Splits `p` at chunk boundaries of `c`: (chunk coordinate, its run).
pub(super) fn split(p: &Pick, c: u64) -> Vec<(u64, Run)> {
    let mut v = Vec::new();
    let mut o = 0u64;
    while o < p.count {
        let i = p.start + o * p.step;
        let k = i / c;
        let end = (k + 1) * c; // one past the chunk's last index
        let n = ((end - 1 - i) / p.step + 1).min(p.count - o);
        v.push((
            k,
            Run {
                out: o as usize,
                at: (i - k * c) as usize,
                n: n as usize,
                step: p.step as usize,
            },
        ));
        o += n;
    }
    v
}

/// Calls `f` with every combination of indices into lists of `lens`, the
/// last varying fastest.
pub(super) fn odometer(lens: &[usize], mut f: impl FnMut(&[usize])) {
    if lens.contains(&0) {
        return;
    }
    let mut at = vec![0usize; lens.len()];
    loop {
        f(&at);
        let mut d = lens.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            at[d] += 1;
            if at[d] < lens[d] {
                break;
            }
            at[d] = 0;
        }
    }
}

/// Copies the elements `runs` select (one run per dimension) from `src`
/// (C order, strides `sstride`) into `out` (strides `ostride`),
/// byte-swapping each when `swap`. The last dimension goes as one copy
/// when its step is 1.
pub(super) fn copy_runs(
    runs: &[Run],
    ostride: &[usize],
    sstride: &[usize],
    es: usize,
    swap: bool,
    src: &[u8],
    out: &mut [u8],
) {
    let Some((last, outer)) = runs.split_last() else {
        // A scalar: one element.
        out[..es].copy_from_slice(&src[..es]);
        if swap {
            out[..es].reverse();
        }
        return;
    };
    let d = runs.len() - 1;
    let lens: Vec<usize> = outer.iter().map(|r| r.n).collect();
    odometer(&lens, |at| {
        let (mut o, mut l) = (0, 0);
        for (k, &j) in at.iter().enumerate() {
            o += (outer[k].out + j) * ostride[k];
            l += (outer[k].at + j * outer[k].step) * sstride[k];
        }
        o = (o + last.out * ostride[d]) * es;
        l = (l + last.at * sstride[d]) * es;
        if last.step == 1 {
            let dst = &mut out[o..o + last.n * es];
            dst.copy_from_slice(&src[l..l + last.n * es]);
        } else {
            let hop = last.step * sstride[d] * es;
            for j in 0..last.n {
                out[o + j * es..o + (j + 1) * es].copy_from_slice(&src[l + j * hop..l + j * hop + es]);
            }
        }
        if swap {
            for e in out[o..o + last.n * es].chunks_exact_mut(es) {
                e.reverse();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_like_numpy() {
        let r = |a: Option<i64>, b: Option<i64>, s: u64| Dim::Range {
            start: a,
            stop: b,
            step: s,
        };
        assert_eq!(parse_selection("").unwrap(), vec![]);
        assert_eq!(
            parse_selection("3, 1:4, ::2, -2:").unwrap(),
            vec![
                Dim::Index(3),
                r(Some(1), Some(4), 1),
                r(None, None, 2),
                r(Some(-2), None, 1)
            ]
        );
        for bad in ["1:2:0", "a", "1:2:3:4", "1,,2", "::-1"] {
            assert!(parse_selection(bad).is_err(), "{bad}");
        }
        let got = |d: Dim| {
            let p = resolve(&d, 10, 0).unwrap();
            ((0..p.count).map(|j| p.start + j * p.step).collect::<Vec<_>>(), p.keep)
        };
        assert_eq!(got(r(Some(-3), None, 1)), (vec![7, 8, 9], true));
        assert_eq!(got(r(Some(2), Some(100), 3)), (vec![2, 5, 8], true));
        assert_eq!(got(r(Some(5), Some(2), 1)), (vec![], true));
        assert!(resolve(&Dim::Index(10), 10, 0).is_err());
        assert_eq!(got(Dim::Index(-1)), (vec![9], false));
    }

    #[test]
    fn picks_split_at_chunk_boundaries() {
        let p = Pick {
            start: 3,
            step: 4,
            count: 6,
            keep: true,
        }; // 3 7 11 15 19 23
        let got: Vec<(u64, usize, usize, usize)> =
            split(&p, 8).into_iter().map(|(k, r)| (k, r.out, r.at, r.n)).collect();
        assert_eq!(got, [(0, 0, 3, 2), (1, 2, 3, 2), (2, 4, 3, 2)]);
        let p = Pick {
            start: 5,
            step: 1,
            count: 10,
            keep: true,
        };
        let got: Vec<(u64, usize, usize, usize)> =
            split(&p, 4).into_iter().map(|(k, r)| (k, r.out, r.at, r.n)).collect();
        assert_eq!(got, [(1, 0, 1, 3), (2, 3, 0, 4), (3, 7, 0, 3)]);
    }
}
