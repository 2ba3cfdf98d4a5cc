//! PEL through the library: the action cache (nothing re-executed, only
//! readers of a change re-executed, early cutoff), damaged cache entries,
//! trust in other stores' receipts, the exec sandbox, replay and lineage.

use std::path::Path;

use asl::pel::provenance::{lineage, Direction};
use asl::pel::{self, replay, Outcome, Pel, Program, RunOptions, RunReport, Signer, Trust};
use asl::records::query::QueryIndex;
use asl::records::{self, Source};
use asl::{ArtifactId, Store, StoreOptions};
use serde_json::json;

fn program(v: serde_json::Value) -> Program {
    Program::parse(&records::json::from_json(&v).unwrap(), &mut |_| Ok(None)).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    store: Store,
    index: QueryIndex,
    signer: Signer,
    trust: Trust,
}

impl Env {
    fn new() -> Env {
        Env::with(StoreOptions::new())
    }

    fn with(opts: StoreOptions) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = opts.create(true).open(dir.path().join("store")).unwrap();
        let (index, _) = QueryIndex::open(&store).unwrap();
        let signer = Signer::of_store(&store).unwrap();
        Env {
            dir,
            store,
            index,
            signer,
            trust: Trust::default(),
        }
    }

    fn with_store(dir: tempfile::TempDir, store: Store) -> Env {
        Env {
            index: QueryIndex::open(&store).unwrap().0,
            signer: Signer::of_store(&store).unwrap(),
            store,
            trust: Trust::default(),
            dir,
        }
    }

    fn pel(&self) -> Pel<'_> {
        Pel {
            store: &self.store,
            index: &self.index,
            signer: &self.signer,
            trust: &self.trust,
        }
    }

    fn run_as(&mut self, signer: &Signer, p: &Program, use_cache: bool) -> RunReport {
        self.index.refresh(&self.store).unwrap();
        let pel = Pel {
            store: &self.store,
            index: &self.index,
            signer,
            trust: &self.trust,
        };
        let opts = RunOptions {
            use_cache,
            ..RunOptions::default()
        };
        pel::run(&pel, p, &opts).unwrap()
    }

    fn run(&mut self, p: &Program) -> RunReport {
        let signer = Signer::of_store(&self.store).unwrap();
        self.run_as(&signer, p, true)
    }

    fn put(&self, b: &[u8]) -> String {
        let id = self.store.put(b).unwrap();
        self.store.commit().unwrap();
        format!("b3:{id}")
    }

    fn out(&self, rep: &RunReport, node: &str, output: &str) -> Vec<u8> {
        let n = rep.node(node).unwrap();
        let id = n.outputs.iter().find(|(k, _)| k == output).unwrap().1;
        self.store.get(&id).unwrap()
    }
}

fn executed(rep: &RunReport) -> Vec<&str> {
    let mut v = rep.executed();
    v.sort_unstable();
    v
}

fn diamond(x: &str, y: &str) -> Program {
    program(json!({"nodes": {
        "a": {"op": "concat", "inputs": [x, x]},
        "b": {"op": "concat", "inputs": [y]},
        "c": {"op": "concat", "inputs": ["@a", "@b"]},
        "d": {"op": "slice", "inputs": ["@b"], "params": {"offset": 1, "length": 2}},
    }}))
}

#[test]
fn a_second_run_executes_nothing_and_a_change_reruns_only_its_readers() {
    let mut e = Env::new();
    let (x, y) = (e.put(b"xx"), e.put(b"yyyy"));
    let r1 = e.run(&diamond(&x, &y));
    assert_eq!(r1.outcome, Outcome::Ok);
    assert_eq!(executed(&r1), ["a", "b", "c", "d"]);
    assert_eq!(e.out(&r1, "c", "out"), b"xxxxyyyy");
    assert_eq!(e.out(&r1, "d", "out"), b"yy");

    let r2 = e.run(&diamond(&x, &y));
    assert!(executed(&r2).is_empty(), "{:?}", r2.executed());
    assert_ne!(r1.run, r2.run, "each run has its own record");
    assert_eq!(r1.node("c").unwrap().receipt, r2.node("c").unwrap().receipt);

    let y2 = e.put(b"zyyy");
    let r3 = e.run(&diamond(&x, &y2));
    // b reads y; c and d read b. a does not.
    assert_eq!(executed(&r3), ["b", "c", "d"]);
    assert_eq!(e.out(&r3, "c", "out"), b"xxxxzyyy");
    assert_eq!(e.out(&r3, "d", "out"), b"yy", "d's slice of zyyy is yy again");

    // Nothing lost across a reopen: the cache is in the store.
    let Env { dir, store, index, .. } = e;
    drop(index);
    store.close().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let index = QueryIndex::open(&store).unwrap().0;
    let mut e2 = Env {
        signer: Signer::from_seed([1; 32]),
        trust: Trust::default(),
        dir,
        store,
        index,
    };
    let r4 = e2.run(&diamond(&x, &y2));
    assert!(r4.executed().is_empty());
}

#[test]
fn an_upstream_change_with_identical_output_stops_there() {
    let mut e = Env::new();
    let p = |src: &str| {
        program(json!({"nodes": {
            "head": {"op": "slice", "inputs": [src], "params": {"offset": 0, "length": 4}},
            "z": {"op": "zstd.compress", "inputs": ["@head"]},
            "back": {"op": "zstd.decompress", "inputs": ["@z"]},
        }}))
    };
    let a = e.put(b"same-tail-1");
    let b = e.put(b"same-tail-2");
    assert_eq!(executed(&e.run(&p(&a))), ["back", "head", "z"]);
    let r = e.run(&p(&b));
    assert_eq!(
        executed(&r),
        ["head"],
        "head's bytes did not change: z and back stay cached"
    );
    assert_eq!(e.out(&r, "back", "out"), b"same");
}

#[test]
fn the_builtins_do_what_they_say() {
    let mut e = Env::new();
    let text = e.put(b"{\"b\": [1, 2], \"a\": \"x\"}");
    let data = e.put(b"hello world");
    let p = program(json!({"nodes": {
        "cbor": {"op": "json.to_cbor", "inputs": [text]},
        "json": {"op": "cbor.to_json", "inputs": ["@cbor"]},
        "digest": {"op": "hash", "inputs": [data]},
        "sum": {"op": "hash", "inputs": [data], "params": {"format": "sha256sum", "name": "hello"}},
        "b3": {"op": "hash", "inputs": [data], "params": {"format": "b3sum"}},
        "tree": {"op": "tree.build", "inputs": {"dir/hello.txt": data, "top": "@sum"}},
        "back": {"op": "tree.extract", "inputs": ["@tree"], "params": {"path": "dir/hello.txt"}},
        "label": {"op": "label", "inputs": [data], "params": {"labels": {"k": "v"}, "media_type": "text/plain"}},
        "rec": {"op": "record", "inputs": {"subject": data},
                "params": {"type": "asl/digest", "body": {"sha256": "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9", "size": 11}}},
    }}));
    let r = e.run(&p);
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.nodes);
    let json: serde_json::Value = serde_json::from_slice(&e.out(&r, "json", "out")).unwrap();
    assert_eq!(json, json!({"a": "x", "b": [1, 2]}));
    assert_eq!(
        String::from_utf8(e.out(&r, "sum", "out")).unwrap(),
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9  hello\n"
    );
    let data_id: ArtifactId = data[3..].parse().unwrap();
    assert_eq!(
        String::from_utf8(e.out(&r, "b3", "out")).unwrap(),
        format!("{data_id}  in0\n")
    );
    assert_eq!(e.out(&r, "back", "out"), b"hello world");
    let digest = records::get(&e.store as &dyn Source, &r.node("digest").unwrap().outputs[0].1).unwrap();
    assert_eq!(digest.type_name, "asl/digest");
    let rec = records::get(&e.store as &dyn Source, &r.node("rec").unwrap().outputs[0].1).unwrap();
    assert_eq!(rec, digest, "the same record, made two ways, is one artifact");
    let label = records::get(&e.store as &dyn Source, &r.node("label").unwrap().outputs[0].1).unwrap();
    assert_eq!(label.type_name, "asl/annotation");

    // A builtin that fails is ERROR, and what reads it is BLOCKED.
    let bad = program(json!({"nodes": {
        "z": {"op": "zstd.decompress", "inputs": [data]},
        "after": {"op": "concat", "inputs": ["@z"]},
    }}));
    let r = e.run(&bad);
    assert_eq!(r.node("z").unwrap().outcome, Outcome::Error);
    assert!(r.node("z").unwrap().error.as_ref().unwrap().contains("decompress"));
    assert_eq!(r.node("after").unwrap().outcome, Outcome::Blocked);
    assert_eq!(r.outcome, Outcome::Error);
    // A failure is not cached: it runs again.
    assert_eq!(e.run(&bad).executed(), ["z"]);
}

/// Flips a byte in the middle of the only copy of `needle` in the store's
/// segment files.
fn damage(store_dir: &Path, needle: &[u8]) {
    let mut hits = 0;
    for f in std::fs::read_dir(store_dir.join("segments")).unwrap() {
        let p = f.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        if let Some(at) = b.windows(needle.len()).position(|w| w == needle) {
            b[at + needle.len() / 2] ^= 0x55;
            std::fs::write(&p, &b).unwrap();
            hits += 1;
        }
    }
    assert_eq!(hits, 1, "the bytes are stored once, uncompressed");
}

#[test]
fn a_damaged_cache_entry_is_found_reported_and_executed_again() {
    let mut e = Env::with(StoreOptions::new().compression(None));
    let a = e.put(b"first half of a distinctive output / ");
    let b = e.put(b"second half of it");
    let p = program(json!({"nodes": {"c": {"op": "concat", "inputs": [a, b]}}}));
    let r1 = e.run(&p);
    let want = e.out(&r1, "c", "out");
    let path = e.dir.path().join("store");
    let Env { store, index, .. } = e;
    drop(index);
    store.close().unwrap();
    damage(&path, &want);

    let mut e = Env::with_store(e.dir, Store::open(&path).unwrap());
    let id = r1.node("c").unwrap().outputs[0].1;
    assert!(e.store.get(&id).unwrap_err().is_corruption());
    let r2 = e.run(&p);
    let n = r2.node("c").unwrap();
    assert!(!n.cached, "a damaged output is no cache hit");
    assert!(
        n.rejected.iter().any(|r| r.contains("damaged")),
        "the damage is reported: {:?}",
        n.rejected
    );
    assert_eq!(n.outputs[0].1, id, "the same bytes came out");
    assert_eq!(
        e.store.get(&id).unwrap(),
        want,
        "and were written again, not deduplicated"
    );
    assert!(e.run(&p).executed().is_empty());
}

#[test]
fn a_store_failure_under_a_node_fails_the_run_and_signs_no_error_receipt() {
    let e = Env::with(StoreOptions::new().compression(None));
    let damaged: &[u8] = b"an input whose stored bytes a disk will damage / ";
    let a = e.put(damaged);
    let b = e.put(b"and its partner");
    let p = program(json!({"nodes": {"c": {"op": "concat", "inputs": [a, b]}}}));
    let path = e.dir.path().join("store");
    let Env { store, index, dir, .. } = e;
    drop(index);
    store.close().unwrap();
    damage(&path, damaged);

    let mut e = Env::with_store(dir, Store::open(&path).unwrap());
    e.index.refresh(&e.store).unwrap();
    let err = pel::run(&e.pel(), &p, &RunOptions::default()).unwrap_err();
    // The node did nothing wrong: the store failed under it. The run says
    // so, and no signed receipt claims the node failed.
    assert_eq!(err.kind(), asl::ErrorKind::Corrupt, "{err}");
    e.store.commit().unwrap();
    let receipts = e
        .store
        .iter()
        .unwrap()
        .map(|a| a.unwrap().id)
        .filter(|id| records::get(&e.store as &dyn Source, id).is_ok_and(|r| r.type_name == pel::receipt::RECEIPT_TYPE))
        .count();
    assert_eq!(receipts, 0);
}

#[test]
fn receipts_from_untrusted_keys_are_not_used_and_k_of_n_trusted_ones_are() {
    let mut e = Env::new();
    let x = e.put(b"input");
    let p = program(json!({"nodes": {"n": {"op": "concat", "inputs": [x, x]}}}));
    let other = Signer::from_seed([7; 32]);
    let third = Signer::from_seed([8; 32]);
    // A receipt made and signed elsewhere (here: under another key).
    let r = e.run_as(&other, &p, true);
    assert_eq!(r.executed(), ["n"]);
    let receipt = r.node("n").unwrap().receipt.unwrap();

    e.trust = Trust {
        threshold: 2,
        keys: vec![("other".into(), other.public()), ("third".into(), third.public())],
    };
    let own = Signer::of_store(&e.store).unwrap();
    let mine = Signer::from_seed([9; 32]);
    let r = e.run_as(&mine, &p, true);
    let n = r.node("n").unwrap();
    assert!(!n.cached, "one trusted signature of the two required");
    assert!(
        n.rejected
            .iter()
            .any(|r| r.contains("not signed by this store or by 2 trusted")),
        "{:?}",
        n.rejected
    );
    let _ = own;

    // A second trusted key vouches for the same receipt: 2 of 2.
    third.sign(&e.store, &receipt).unwrap();
    e.store.commit().unwrap();
    let fresh = Signer::from_seed([10; 32]);
    let r = e.run_as(&fresh, &p, true);
    // The newest receipt (mine, signed only by `mine`) is not trusted by
    // `fresh`; the older one now is.
    assert!(r.node("n").unwrap().cached, "{:?}", r.node("n"));
    assert_eq!(r.node("n").unwrap().receipt, Some(receipt));

    // A receipt nobody trusted signed is refused outright.
    e.trust = Trust::default();
    let r = e.run_as(&Signer::from_seed([11; 32]), &p, true);
    assert!(!r.node("n").unwrap().cached);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn exec_runs_sandboxed_and_collects_outputs_and_streams() {
    let mut e = Env::new();
    let words = e.put(b"pear\napple\nfig\n");
    let store_dir = e.dir.path().join("store");
    let escape = e.dir.path().join("escaped.txt");
    let p = program(json!({"nodes": {
        "sort": {"op": "exec", "inputs": {"in/words.txt": words},
                 "params": {"cmd": "sort in/words.txt > sorted.txt; echo done; echo warn >&2",
                            "outputs": ["sorted.txt"], "env": {"MODE": "fast"}}},
        "env": {"op": "exec", "params": {"cmd": "env | sort", "env": {"MODE": "fast"}}},
        "escape": {"op": "exec", "params": {"cmd": format!("echo x > {}", escape.display())}},
        "store": {"op": "exec", "params": {"cmd": format!("ls -A {} | wc -l", store_dir.display())}},
        "input_ro": {"op": "exec", "inputs": {"w": words}, "params": {"cmd": "echo more >> w"}},
        "undeclared": {"op": "exec", "inputs": {"w": words}, "params": {"cmd": "cat other.txt"}},
        "net": {"op": "exec", "params": {"cmd": "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"}},
        "missing": {"op": "exec", "params": {"cmd": "true", "outputs": ["never.txt"]}},
        "fails": {"op": "exec", "params": {"argv": ["sh", "-c", "echo oops >&2; exit 3"]}},
    }}));
    std::env::set_var("ASL_TEST_SECRET", "leaked");
    let r = e.run(&p);
    let sort = r.node("sort").unwrap();
    assert_eq!(sort.outcome, Outcome::Ok, "{:?}", sort.error);
    assert_eq!(e.out(&r, "sort", "sorted.txt"), b"apple\nfig\npear\n");
    assert_eq!(e.out(&r, "sort", "stdout"), b"done\n");
    assert_eq!(e.out(&r, "sort", "stderr"), b"warn\n");
    let env = String::from_utf8(e.out(&r, "env", "stdout")).unwrap();
    assert!(
        env.contains("MODE=fast\n") && env.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"),
        "{env}"
    );
    assert!(!env.contains("ASL_TEST_SECRET") && !env.contains("HOME="), "{env}");
    assert_eq!(
        r.node("undeclared").unwrap().outcome,
        Outcome::Error,
        "only declared inputs are there"
    );
    assert!(e
        .out(&r, "undeclared", "stderr")
        .ends_with(b"No such file or directory\n"));
    let missing = r.node("missing").unwrap();
    assert_eq!(missing.outcome, Outcome::Error);
    assert!(missing
        .error
        .as_ref()
        .unwrap()
        .contains("declared output \"never.txt\" was not produced"));
    let fails = r.node("fails").unwrap();
    assert_eq!(fails.error.as_deref(), Some("exited with status 3"));
    assert_eq!(e.out(&r, "fails", "stderr"), b"oops\n");
    let receipt =
        pel::Receipt::from_record(&records::get(&e.store as &dyn Source, &fails.receipt.unwrap()).unwrap()).unwrap();
    assert_eq!(receipt.exit_code, Some(3));
    assert_eq!(receipt.outcome, Outcome::Error);

    if !is_root() {
        eprintln!("not root: namespaces are not asserted");
        return;
    }
    assert_eq!(receipt.isolation.as_deref(), Some("namespaces"));
    assert_eq!(r.node("escape").unwrap().outcome, Outcome::Error);
    assert!(String::from_utf8_lossy(&e.out(&r, "escape", "stderr")).contains("Read-only file system"));
    assert!(!escape.exists(), "nothing was written outside the work directory");
    assert_eq!(e.out(&r, "store", "stdout"), b"0\n", "the store is hidden");
    assert_eq!(
        r.node("input_ro").unwrap().outcome,
        Outcome::Error,
        "inputs are read-only, even to root"
    );
    assert_eq!(
        e.store.get(&words[3..].parse().unwrap()).unwrap(),
        b"pear\napple\nfig\n"
    );
    assert_eq!(e.out(&r, "net", "stdout"), b"lo\n", "no network but a loopback");
}

#[test]
fn a_hanging_command_is_killed_at_its_timeout() {
    let mut e = Env::new();
    let p = program(json!({"nodes": {
        "hang": {"op": "exec", "params": {"cmd": "echo started; sleep 60 & sleep 60", "timeout": 1}},
    }}));
    let t = std::time::Instant::now();
    let r = e.run(&p);
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "{:?}", t.elapsed());
    let n = r.node("hang").unwrap();
    assert_eq!(n.outcome, Outcome::Error);
    assert_eq!(n.error.as_deref(), Some("timed out after 1 s"));
    assert_eq!(e.out(&r, "hang", "stdout"), b"started\n");
}

/// Processes of this test's commands still alive: those whose command
/// line holds `marker`.
fn alive(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Nothing a command starts outlives its node, not even a process that
/// left its process group and session (`setsid`) or double-forked: on
/// timeout and after a normal exit alike, with or without namespaces.
#[test]
fn nothing_a_command_starts_outlives_its_node() {
    let mut e = Env::new();
    let p = program(json!({"nodes": {
        "hang": {"op": "exec", "params": {"cmd": "setsid sleep 611 & (setsid sh -c 'sleep 612 & sleep 613' &); echo started; sleep 60", "timeout": 2}},
        "done": {"op": "exec", "params": {"cmd": "setsid sleep 614 & (setsid sleep 615 &); echo done"}},
    }}));
    let r = e.run(&p);
    let n = r.node("hang").unwrap();
    assert_eq!(n.error.as_deref(), Some("timed out after 2 s"));
    assert_eq!(e.out(&r, "hang", "stdout"), b"started\n");
    let n = r.node("done").unwrap();
    assert_eq!(n.outcome, Outcome::Ok, "{:?}", n.error);
    assert_eq!(e.out(&r, "done", "stdout"), b"done\n");
    // Killed processes may take a moment to be reaped.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = ["sleep 611", "sleep 612", "sleep 613", "sleep 614", "sleep 615"]
            .iter()
            .flat_map(|m| alive(m))
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(left.is_empty(), "outlived their node: {left:?}");
}

#[test]
fn bad_programs_are_refused_before_anything_runs() {
    let e = Env::new();
    let x = e.put(b"x");
    let parse = |v: serde_json::Value| {
        Program::parse(&records::json::from_json(&v).unwrap(), &mut |_| Ok(None))
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            json!({"nodes": {"a": {"op": "concat", "inputs": ["@b"]}, "b": {"op": "concat", "inputs": ["@a"]}}}),
            "cycle through nodes a, b",
        ),
        (
            json!({"nodes": {"a": {"op": "concat", "inputs": ["@nope"]}}}),
            "does not have",
        ),
        (
            json!({"nodes": {"a": {"op": "frobnicate", "inputs": [x]}}}),
            "unknown operation \"frobnicate\"",
        ),
        (
            json!({"nodes": {"a": {"op": "exec", "params": {"cmd": "true", "outputs": ["o", "o"]}}}}),
            "output \"o\" is declared twice",
        ),
        (
            json!({"nodes": [{"id": "a", "op": "concat", "inputs": [x]}, {"id": "a", "op": "concat", "inputs": [x]}]}),
            "node \"a\" is declared twice",
        ),
        (
            json!({"nodes": {"a": {"op": "exec", "params": {"cmd": "true"}}, "b": {"op": "concat", "inputs": ["@a:nope"]}}}),
            "output \"nope\" of node \"a\"",
        ),
        (
            json!({"nodes": {"a": {"op": "slice", "inputs": [x]}}}),
            "slice needs `offset`",
        ),
        (
            json!({"nodes": {"a": {"op": "concat", "inputs": [x], "params": {"level": 3}}}}),
            "concat takes no parameter",
        ),
        (
            json!({"nodes": {"a": {"op": "exec", "inputs": {"../up": x}, "params": {"cmd": "true"}}}}),
            "not a relative path",
        ),
    ];
    for (v, want) in cases {
        let got = parse(v);
        assert!(got.contains(want), "{got:?} lacks {want:?}");
    }
    // A missing artifact is found before any node runs.
    let mut e = e;
    let p = program(json!({"nodes": {
        "ok": {"op": "exec", "params": {"cmd": format!("touch {}/ran", e.dir.path().display())}},
        "b": {"op": "concat", "inputs": [format!("b3:{}", ArtifactId::of(b"absent"))]},
    }}));
    e.index.refresh(&e.store).unwrap();
    let err = pel::run(&e.pel(), &p, &RunOptions::default()).unwrap_err().to_string();
    assert!(err.contains("missing inputs, nothing ran"), "{err}");
    assert!(!e.dir.path().join("ran").exists());
}

#[test]
fn replay_reports_every_differing_output_and_stores_the_report() {
    let mut e = Env::new();
    let x = e.put(b"stable");
    let p = program(json!({"nodes": {
        "same": {"op": "zstd.compress", "inputs": [x]},
        "rand1": {"op": "exec", "params": {"cmd": "head -c 64 /dev/urandom > r.bin", "outputs": ["r.bin"]}},
        "rand2": {"op": "exec", "params": {"cmd": "date +%N"}},
        "after": {"op": "concat", "inputs": ["@rand1", "@same"]},
    }}));
    let r = e.run(&p);
    assert_eq!(r.outcome, Outcome::Ok);
    e.index.refresh(&e.store).unwrap();
    let rep = replay::replay(&e.pel(), &r.run, None).unwrap();
    assert_eq!(rep.checked, 4);
    assert_eq!(rep.matched, 2, "same and after (replayed on its recorded inputs) match");
    let mut diffs: Vec<(&str, &str)> = rep
        .differences
        .iter()
        .map(|d| (d.node.as_str(), d.output.as_str()))
        .collect();
    diffs.sort_unstable();
    assert_eq!(diffs, [("rand1", "r.bin"), ("rand2", "stdout")]);
    let d = &rep.differences.iter().find(|d| d.node == "rand1").unwrap();
    assert_eq!((d.expected_size, d.got_size), (64, Some(64)));
    assert!(d.first_difference.unwrap() < 64);
    // diffoscope (installed by .ci/run) compared the two, and its report
    // was stored.
    let report = d
        .diffoscope
        .expect("diffoscope on PATH compares differing outputs (see .ci/run)");
    let text = String::from_utf8(e.store.get(&report).unwrap()).unwrap();
    assert!(text.contains("expected") && text.contains("got"), "{text}");
    let stored = records::get(&e.store as &dyn Source, &rep.report).unwrap();
    assert_eq!(stored.type_name, "asl/pel-divergence");
    // Linked to the run: found as a record about it.
    e.index.refresh(&e.store).unwrap();
    assert!(e.index.annotations_of(&r.run).unwrap().contains(&rep.report));

    // One chosen node, which is deterministic: no difference.
    let rep = replay::replay(&e.pel(), &r.run, Some("same")).unwrap();
    assert_eq!((rep.checked, rep.matched, rep.differences.len()), (1, 1, 0));
}

#[test]
fn lineage_walks_both_ways_and_survives_deletion() {
    let mut e = Env::new();
    let x = e.put(b"source bytes");
    let p = program(json!({"nodes": {
        "z": {"op": "zstd.compress", "inputs": [x]},
        "sum": {"op": "hash", "inputs": ["@z"], "params": {"format": "b3sum"}},
    }}));
    let r = e.run(&p);
    let sum = r.node("sum").unwrap().outputs[0].1;
    let z = r.node("z").unwrap().outputs[0].1;
    let xid: ArtifactId = x[3..].parse().unwrap();
    e.index.refresh(&e.store).unwrap();
    let g = lineage(&e.store, &e.index, &sum, Direction::Ancestors, 100).unwrap();
    assert_eq!(g.steps.len(), 2);
    assert!(g.to_text().contains("made by node \"z\" (zstd.compress)"));
    let d = lineage(&e.store, &e.index, &xid, Direction::Descendants, 100).unwrap();
    assert_eq!(d.steps.len(), 2);
    assert!(d.to_dot().contains(&format!("\"a{sum}\"")));

    // The middle artifact's bytes go; its story stays.
    assert!(e.store.remove(&z).unwrap());
    e.store.commit().unwrap();
    e.index.refresh(&e.store).unwrap();
    let g = lineage(&e.store, &e.index, &sum, Direction::Ancestors, 100).unwrap();
    assert_eq!(g.steps.len(), 2);
    assert!(
        g.to_text().contains(&format!("{z} (content removed)")),
        "{}",
        g.to_text()
    );
    assert!(g.to_dot().contains("content removed"));
    let g = lineage(&e.store, &e.index, &z, Direction::Ancestors, 100).unwrap();
    assert_eq!(g.artifacts.get(&z), Some(&false));
    assert_eq!(g.steps.len(), 1);
    // And the cache knows the bytes are gone: z runs again.
    let r = e.run(&p);
    assert_eq!(r.executed(), ["z"]);
    assert!(pel::held_by(&e.index, &e.store, &sum).unwrap().len() == 1);
}

#[test]
fn exec_reads_trees_as_directories_and_stores_directories_as_trees() {
    let mut e = Env::new();
    let (a, b) = (e.put(b"alpha\n"), e.put(b"beta\n"));
    let p = program(json!({"nodes": {
        "src": {"op": "tree.build", "inputs": {"a.txt": a, "sub/b.txt": b}},
        "use": {"op": "exec", "inputs": {"in": "@src"},
                "params": {"cmd": "cat in/a.txt in/sub/b.txt > both; mkdir -p d/e && cp in/sub/b.txt d/e/ && touch in/new",
                           "outputs": ["both", "d"]}},
        "use_ok": {"op": "exec", "inputs": {"in": "@src"},
                   "params": {"cmd": "cat in/a.txt in/sub/b.txt > both; mkdir -p d/e && cp in/sub/b.txt d/e/",
                              "outputs": ["both", "d"]}},
        "pick": {"op": "tree.extract", "inputs": ["@use_ok:d"], "params": {"path": "e/b.txt"}},
    }}));
    let r = e.run(&p);
    // The input tree is read-only: creating a file in it fails the command.
    assert_eq!(r.node("use").unwrap().outcome, Outcome::Error);
    assert_eq!(r.node("use_ok").unwrap().outcome, Outcome::Ok, "{:?}", r.node("use_ok"));
    assert_eq!(e.out(&r, "use_ok", "both"), b"alpha\nbeta\n");
    assert_eq!(e.out(&r, "pick", "out"), b"beta\n", "the directory output is a tree");
}
