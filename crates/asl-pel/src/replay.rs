//! Replay: execute a run's nodes again, each on the inputs its receipt
//! recorded, bypassing the action cache, and compare every output.
//!
//! Each node is re-executed in isolation from the rest of the run (its
//! recorded inputs, not what upstream nodes produce this time), so one
//! nondeterministic node shows up as itself, not as a cascade through its
//! readers, and all nodes of the run replay in parallel. Every difference
//! is reported, not the first: sizes, the first differing byte, and
//! `diffoscope`'s view when it is installed (bounded by a timeout). The
//! report is stored as an `asl/pel-divergence` record whose subject is the
//! replayed run, so `aslctl labels`-style lookups of the run find it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::program::{Input, Node, Program, Ref};
use super::receipt::{Receipt, Run, DIVERGENCE_TYPE};
use super::run::{run, Pel, RunOptions, RunReport};
use super::PelError;
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Record, Source};

/// How long `diffoscope` may take per differing output.
pub const DIFFOSCOPE_TIMEOUT: Duration = Duration::from_secs(60);

/// One output that came out different.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// The node.
    pub node: String,
    /// The output's name.
    pub output: String,
    /// What the run recorded.
    pub expected: ArtifactId,
    /// Its size.
    pub expected_size: u64,
    /// What the replay produced (none: not produced).
    pub got: Option<ArtifactId>,
    /// Its size.
    pub got_size: Option<u64>,
    /// The first byte offset where the two differ (the shorter one's length
    /// when one is a prefix of the other).
    pub first_difference: Option<u64>,
    /// Anything else worth saying (the replay failed, say).
    pub note: Option<String>,
    /// `diffoscope`'s report, stored, when it ran.
    pub diffoscope: Option<ArtifactId>,
}

/// What a replay found.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// The replayed run's record.
    pub original: ArtifactId,
    /// The replay's own run.
    pub replay: RunReport,
    /// Nodes re-executed.
    pub checked: usize,
    /// Of those, nodes whose every output matched.
    pub matched: usize,
    /// Every differing output.
    pub differences: Vec<Difference>,
    /// The stored `asl/pel-divergence` record.
    pub report: ArtifactId,
}

/// Replays run `run_rec` (all its executed or cached nodes, or only `only`).
pub fn replay(pel: &Pel<'_>, run_rec: &ArtifactId, only: Option<&str>) -> Result<ReplayReport, PelError> {
    let store = pel.store;
    let original = Run::from_record(&records::get(store as &dyn Source, run_rec)?)?;
    let program = Program::from_record(&records::get(store as &dyn Source, &original.program)?)?;
    let mut nodes = Vec::new();
    let mut expected = Vec::new();
    for rn in &original.nodes {
        if only.is_some_and(|o| o != rn.node) {
            continue;
        }
        let Some(rid) = rn.receipt else { continue };
        let receipt = Receipt::from_record(&records::get(store as &dyn Source, &rid)?)?;
        let Some(node) = program.node(&rn.node) else {
            return Err(PelError::Program(format!(
                "the run names node {:?}, its program has none",
                rn.node
            )));
        };
        // The node again, reading exactly what its receipt says it read.
        let inputs = receipt
            .inputs
            .iter()
            .map(|(i, _)| Input {
                name: i.name.clone(),
                from: if i.tree { Ref::Tree(i.id) } else { Ref::Artifact(i.id) },
                snapshot: i.snapshot.clone(),
            })
            .collect();
        nodes.push(Node {
            id: node.id.clone(),
            op: node.op,
            inputs,
            params: node.params.clone(),
        });
        expected.push(receipt);
    }
    if let Some(o) = only {
        if nodes.is_empty() {
            return Err(PelError::Program(format!(
                "run {run_rec} has no receipt for node {o:?}"
            )));
        }
    }
    if nodes.is_empty() {
        return Err(PelError::Program(format!("run {run_rec} has no receipts to replay")));
    }
    let alone = Program::new(program.name.clone(), program.salt.clone(), nodes)?;
    let opts = RunOptions {
        use_cache: false,
        replay_of: Some(*run_rec),
        ..RunOptions::default()
    };
    let rep = run(pel, &alone, &opts)?;
    let mut differences = Vec::new();
    let mut matched = 0;
    for want in &expected {
        let got = rep.node(&want.node).expect("every replayed node reports");
        let before = differences.len();
        for (name, id) in want.produced() {
            let expected_size = store.len_of(&id).ok();
            let mut d = Difference {
                node: want.node.clone(),
                output: name.clone(),
                expected: id,
                expected_size: expected_size.unwrap_or(0),
                got: None,
                got_size: None,
                first_difference: None,
                note: None,
                diffoscope: None,
            };
            match got.outputs.iter().find(|(n, _)| *n == name) {
                Some((_, g)) if *g == id => continue,
                Some((_, g)) => {
                    d.got = Some(*g);
                    d.got_size = Some(store.len_of(g)?);
                    if expected_size.is_some() {
                        d.first_difference = first_difference(store, &id, g)?;
                        d.diffoscope = diffoscope(store, &id, g);
                    } else {
                        d.note = Some("the recorded output's bytes are no longer in the store".into());
                    }
                }
                None => {
                    d.note = Some(match &got.error {
                        Some(e) => format!("the replay produced no {name:?}: {e}"),
                        None => format!("the replay produced no {name:?}"),
                    });
                }
            }
            differences.push(d);
        }
        if differences.len() == before {
            matched += 1;
        }
    }
    let record = divergence_record(run_rec, &rep.run, expected.len(), matched, &differences);
    let report = records::put(store, &record)?.id;
    store.commit()?;
    Ok(ReplayReport {
        original: *run_rec,
        replay: rep,
        checked: expected.len(),
        matched,
        differences,
        report,
    })
}

fn divergence_record(
    original: &ArtifactId,
    replay: &ArtifactId,
    checked: usize,
    matched: usize,
    diffs: &[Difference],
) -> Record {
    let id = |x: &ArtifactId| Value::Bytes(x.as_bytes().to_vec());
    let items = diffs
        .iter()
        .map(|d| {
            let mut m = vec![
                (Value::text("node"), Value::text(&d.node)),
                (Value::text("output"), Value::text(&d.output)),
                (Value::text("expected"), id(&d.expected)),
                (Value::text("expected_size"), Value::Unsigned(d.expected_size)),
            ];
            if let Some(g) = &d.got {
                m.push((Value::text("got"), id(g)));
            }
            if let Some(s) = d.got_size {
                m.push((Value::text("got_size"), Value::Unsigned(s)));
            }
            if let Some(f) = d.first_difference {
                m.push((Value::text("first_difference"), Value::Unsigned(f)));
            }
            if let Some(n) = &d.note {
                m.push((Value::text("note"), Value::text(n)));
            }
            if let Some(x) = &d.diffoscope {
                m.push((Value::text("diffoscope"), id(x)));
            }
            Value::Map(m)
        })
        .collect();
    Record::new(
        DIVERGENCE_TYPE,
        1,
        Value::Map(vec![
            (Value::text("subject"), id(original)),
            (Value::text("replay"), id(replay)),
            (Value::text("created_at"), Value::text(records::time::now_millis())),
            (Value::text("checked"), Value::Unsigned(checked as u64)),
            (Value::text("matched"), Value::Unsigned(matched as u64)),
            (Value::text("differences"), Value::Array(items)),
        ]),
    )
}

/// The first offset where `a` and `b` differ, streaming both.
fn first_difference(store: &Store, a: &ArtifactId, b: &ArtifactId) -> Result<Option<u64>, PelError> {
    let mut ra = store.open_reader(a)?;
    let mut rb = store.open_reader(b)?;
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut at = 0u64;
    loop {
        let na = read_full(&mut ra, &mut ba)?;
        let nb = read_full(&mut rb, &mut bb)?;
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(at + i as u64));
        }
        if na != nb {
            return Ok(Some(at + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        at += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, PelError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(asl_core::Error::from_reader_io(e).into()),
        }
    }
    Ok(n)
}

/// `diffoscope A B` when it is installed, its text report stored; none when
/// it is not installed, fails to start or overruns [`DIFFOSCOPE_TIMEOUT`].
fn diffoscope(store: &Store, a: &ArtifactId, b: &ArtifactId) -> Option<ArtifactId> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("diffoscope").is_file()))
        .unwrap_or(false);
    if !found {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("asl-replay-{}-{}", std::process::id(), &a.to_string()[..16]));
    std::fs::create_dir_all(&dir).ok()?;
    let result = (|| {
        let (pa, pb) = (dir.join("expected"), dir.join("got"));
        for (id, p) in [(a, &pa), (b, &pb)] {
            let mut f = std::fs::File::create(p).ok()?;
            std::io::copy(&mut store.open_reader(id).ok()?, &mut f).ok()?;
        }
        let out = dir.join("report.txt");
        let mut child = Command::new("diffoscope")
            .arg("--text")
            .arg(&out)
            .arg(&pa)
            .arg(&pb)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let start = std::time::Instant::now();
        loop {
            if child.try_wait().ok()?.is_some() {
                break;
            }
            if start.elapsed() > DIFFOSCOPE_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        store
            .put_file_with(Path::new(&out), &asl_core::PutOptions::default())
            .ok()
            .map(|p| p.id)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
