//! SIGKILL during `aslctl pel run`: after every kill, no receipt in the
//! store lacks an output, every output reads back, and running the program
//! again finishes the work, executing only what the killed run did not
//! commit.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use asl::pel::Receipt;
use asl::records::{self, Source};
use asl::{Store, StoreOptions};

mod common;
use common::{aslctl, aslctl_bin, stdout_of as out};

/// A chain of `n` exec nodes, each ~50 ms, each appending to its input.
fn chain(n: usize) -> String {
    let mut s = String::from("nodes:\n");
    for i in 0..n {
        let input = if i == 0 {
            "b3:SEED".to_string()
        } else {
            format!("'@s{}'", i - 1)
        };
        s.push_str(&format!(
            "  s{i}:\n    op: exec\n    inputs: {{in: {input}}}\n    params: {{cmd: 'sleep 0.05; cat in > out; echo {i} >> out', outputs: [out]}}\n"
        ));
    }
    s
}

/// Every receipt in the store names only outputs that are present and read.
fn receipts_hold_their_outputs(dir: &Path) -> usize {
    let s = StoreOptions::new().read_only(true).open(dir).unwrap();
    let mut n = 0;
    for info in s.list().unwrap() {
        let Ok(r) = records::get(&s as &dyn Source, &info.id) else {
            continue;
        };
        let Ok(rc) = Receipt::from_record(&r) else { continue };
        for (name, id) in rc.produced() {
            let bytes = s
                .get(&id)
                .unwrap_or_else(|e| panic!("receipt {} output {name}: {e}", info.id));
            assert_eq!(
                bytes.len() as u64,
                rc.outputs
                    .iter()
                    .find(|o| o.id == id)
                    .map_or(bytes.len() as u64, |o| o.size)
            );
        }
        n += 1;
    }
    n
}

#[test]
fn a_killed_run_leaves_no_receipt_without_outputs_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let seed = {
        let s = StoreOptions::new().create(true).open(&store).unwrap();
        let id = s.put(b"seed\n").unwrap();
        s.commit().unwrap();
        s.close().unwrap();
        id
    };
    let nodes = 80;
    let prog = dir.path().join("chain.yaml");
    fs::write(&prog, chain(nodes).replace("SEED", &seed.to_string())).unwrap();
    let mut done_before = 0;
    for kill_ms in [700u64, 1500, 2300] {
        let mut child = Command::new(aslctl_bin())
            .arg("--store")
            .arg(&store)
            .args(["pel", "run", prog.to_str().unwrap()])
            .env_remove("ASL_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(kill_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let receipts = receipts_hold_their_outputs(&store);
        assert!(receipts >= done_before, "committed receipts are never lost");
        done_before = receipts;
    }
    assert!(
        done_before > 0 && done_before < nodes,
        "the kills landed mid-run, after some commits ({done_before} receipts)"
    );
    // The rerun executes only what no committed receipt covers.
    let o = aslctl(&store, &["--json", "pel", "run", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::stderr_of(&o));
    let rep: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let executed = rep["executed"].as_array().unwrap().len();
    assert_eq!(rep["outcome"], "OK");
    assert!(
        executed < nodes,
        "the killed runs' committed work was reused ({executed} executed)"
    );
    assert_eq!(
        executed + done_before,
        nodes,
        "each node executed once after its last kill"
    );
    let last = rep["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == format!("s{}", nodes - 1))
        .unwrap()["outputs"]["out"]
        .as_str()
        .unwrap()
        .to_string();
    let s = Store::open(&store).unwrap();
    let text = String::from_utf8(s.get(&last.parse().unwrap()).unwrap()).unwrap();
    let want: String = std::iter::once("seed\n".to_string())
        .chain((0..nodes).map(|i| format!("{i}\n")))
        .collect();
    assert_eq!(text, want);
}
