//! The conventions a shell user expects of `aslctl`, run on the real
//! binary: `init` and the hint where there is no store, `-q` and `-v`,
//! `--lock-wait`, several ids per `cat`/`get`, ambiguous prefixes that
//! name their candidates, completions, man pages and `--version`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{aslctl, aslctl_bin, aslctl_ok, stderr_of, stdout_of};

#[test]
fn init_makes_a_store_and_missing_stores_point_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let none = aslctl(&store, &["ls"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr_of(&none).contains("aslctl init"), "{}", stderr_of(&none));
    assert!(!store.exists(), "a read must not create a store");

    let made = aslctl_ok(&store, &["init"]);
    assert!(made.starts_with("created an empty store"), "{made}");
    assert!(store.join("STORE").is_file());
    let again: serde_json::Value = serde_json::from_str(&aslctl_ok(&store, &["--json", "init"])).unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["store_id"].as_str().unwrap().len(), 16);
    assert_eq!(aslctl_ok(&store, &["ls"]), "");

    // A command that stores something still creates a store, and says so.
    let f = dir.path().join("f");
    fs::write(&f, b"first").unwrap();
    let other = dir.path().join("t");
    let o = aslctl(&other, &["ingest", f.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stderr_of(&o).contains("created a new store"), "{}", stderr_of(&o));
}

#[test]
fn quiet_keeps_stdout_and_drops_summaries_and_verbose_adds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let f = dir.path().join("f");
    fs::write(&f, b"quiet please").unwrap();
    let loud = aslctl(&store, &["ingest", f.to_str().unwrap()]);
    assert!(stderr_of(&loud).contains("ingested 1 files"));
    let quiet = aslctl(&store, &["-q", "ingest", "--no-cache", f.to_str().unwrap()]);
    assert!(quiet.status.success());
    assert_eq!(stdout_of(&quiet), stdout_of(&loud), "-q changes stderr only");
    assert_eq!(stderr_of(&quiet), "", "-q prints no summary");
    let verbose = aslctl(&store, &["-v", "ls"]);
    assert!(stderr_of(&verbose).contains("done in"), "{}", stderr_of(&verbose));
    // Errors are never quiet.
    let err = aslctl(&store, &["-q", "get", "not-hex"]);
    assert!(stderr_of(&err).contains("invalid artifact id"));
}

#[test]
fn a_writer_waits_for_the_lock_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let f = dir.path().join("f");
    fs::write(&f, b"to remove").unwrap();
    let id = common::ingest_file(&store, &f);

    // This process holds the writer lock (no server: the CLI cannot act
    // through one).
    let held = asl::Store::open(&store).unwrap();
    let refused = aslctl(&store, &["rm", &id]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr_of(&refused).contains("--lock-wait"), "{}", stderr_of(&refused));

    let t0 = Instant::now();
    let waiter = std::thread::spawn({
        let store = store.clone();
        let id = id.clone();
        move || aslctl(&store, &["--lock-wait", "30s", "rm", &id])
    });
    std::thread::sleep(Duration::from_millis(800));
    drop(held);
    let o = waiter.join().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(t0.elapsed() >= Duration::from_millis(800), "it waited for the lock");
    assert_eq!(aslctl_ok(&store, &["ls"]), "");
}

#[test]
fn several_ids_per_cat_and_get_and_ambiguous_prefixes_list_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let mut ids = Vec::new();
    for i in 0..40u32 {
        let p = dir.path().join(format!("g{i}"));
        fs::write(&p, format!("content {i}\n")).unwrap();
        let line = aslctl_ok(&store, &["ingest", p.to_str().unwrap()]);
        ids.push((
            line.split_whitespace().next().unwrap().to_string(),
            format!("content {i}\n"),
        ));
    }
    let (a, b) = (&ids[3], &ids[7]);
    assert_eq!(aslctl_ok(&store, &["cat", &a.0, &b.0]), format!("{}{}", a.1, b.1));

    let mut child = Command::new(aslctl_bin())
        .args(["--store", store.to_str().unwrap(), "cat", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}\n\n{}", b.0, a.0).unwrap();
    let piped = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(piped.stdout).unwrap(), format!("{}{}", b.1, a.1));

    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    aslctl_ok(&store, &["get", &a.0[..12], &b.0, "-o", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(out.join(&a.0)).unwrap(), a.1);
    assert_eq!(fs::read_to_string(out.join(&b.0)).unwrap(), b.1);
    let not_dir = aslctl(
        &store,
        &["get", &a.0, &b.0, "-o", dir.path().join("nope").to_str().unwrap()],
    );
    assert_eq!(not_dir.status.code(), Some(2));
    let range = aslctl(&store, &["cat", "--range", "0-1", &a.0, &b.0]);
    assert_eq!(range.status.code(), Some(2));

    // 40 ids over 16 first digits: some digit starts several.
    let first = |d: &str| ids.iter().filter(|(id, _)| id.starts_with(d)).count();
    let digit = (0..16).map(|d| format!("{d:x}")).max_by_key(|d| first(d)).unwrap();
    let amb = aslctl(&store, &["cat", &digit]);
    assert_eq!(amb.status.code(), Some(2));
    let msg = stderr_of(&amb);
    let named: Vec<&String> = ids
        .iter()
        .map(|(id, _)| id)
        .filter(|id| msg.contains(id.as_str()))
        .collect();
    assert_eq!(named.len(), first(&digit).min(asl::AMBIGUOUS_SHOWN), "{msg}");
    assert!(named.iter().all(|id| id.starts_with(&digit)));
}

#[test]
fn completions_man_pages_and_version_come_from_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("unused");
    let bash = aslctl_ok(&store, &["completions", "bash"]);
    assert!(bash.contains("ingest") && bash.contains("--lock-wait"));
    let script = dir.path().join("aslctl.bash");
    fs::write(&script, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr_of(&check));
    for shell in ["zsh", "fish"] {
        assert!(aslctl_ok(&store, &["completions", shell]).contains("snapshot"));
    }
    let man = dir.path().join("man");
    aslctl_ok(&store, &["man", man.to_str().unwrap()]);
    for page in ["aslctl.1", "aslctl-ingest.1", "aslctl-snapshot-create.1"] {
        let text = fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let v = aslctl_ok(&store, &["--version"]);
    assert!(
        v.starts_with("aslctl ") && v.contains("commit ") && v.contains("features: "),
        "{v}"
    );
    assert!(!store.exists());
}

/// Long commands draw a progress bar on a terminal (here a pseudo-terminal
/// made by `script`), and never into a pipe or under `-q`.
#[test]
fn long_commands_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let store = at("s");
    fs::create_dir(at("t")).unwrap();
    fs::write(at("t").join("big"), common::noise(5, 3 << 20)).unwrap();
    let tree_id = common::ingest_tree(&store, &at("t"));
    let big = common::ingest_file(&store, &at("t").join("big"));
    // What fetch and push move: a published artifact.
    common::aslctl_ok(&store, &["domain", "init", "--name", "demo"]);
    common::aslctl_ok(&store, &["publish", &big]);
    let up = store.display().to_string();
    for d in ["o1", "o2", "m1", "m2"] {
        common::aslctl_ok(&at(d), &["init"]);
    }
    for (d, m) in [("down1", "m1"), ("down2", "m2")] {
        common::aslctl_ok(&store, &["remote", "add", d, &at(m).display().to_string()]);
    }
    for o in ["o1", "o2"] {
        common::aslctl_ok(&at(o), &["remote", "add", "up", &up]);
    }
    let co = |d: &str| format!("checkout {tree_id} {}", at(d).display());
    let get = |f: &str| format!("get {big} -o {}", at(f).display());
    // Each command runs with -q first, then without; where the first run
    // would leave the second nothing to move, the second gets its own
    // target (another store, directory or remote).
    let (s, o1, o2) = (&store, &at("o1"), &at("o2"));
    let cases = [
        (s, s, "verify".to_string(), "verify".to_string(), "artifacts"),
        (s, s, "gc --threshold 1".into(), "gc --threshold 1".into(), "segments"),
        (s, s, co("co-q"), co("co"), "files"),
        (s, s, "repair".into(), "repair".into(), "segments"),
        (o1, o2, "fetch up".into(), "fetch up".into(), "fetch"),
        (s, s, "push down1".into(), "push down2".into(), "push"),
        (s, s, get("g-q"), get("g"), "get"),
    ];
    let tty = |st: &Path, args: &str| common::on_tty(&common::aslctl_cmd(st, &args.split(' ').collect::<Vec<_>>()));
    for (quiet_at, shown_at, quiet, shown, phase) in cases {
        let q = tty(quiet_at, &format!("-q {quiet}"));
        assert!(!common::shows_bar(&q, phase), "-q {quiet}: a bar in {q}");
        let out = tty(shown_at, &shown);
        assert!(common::shows_bar(&out, phase), "{shown}: no {phase} bar in {out}");
    }
    let piped = aslctl(&store, &["verify"]);
    assert!(!stderr_of(&piped).contains(" eta "), "a bar into a pipe");
}
