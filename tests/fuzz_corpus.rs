//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through
//! the same function the fuzz targets run, on stable, as ordinary tests.
//! The corpus lives in the repository's `fuzz/` crate, which a packaged
//! `aslctl` does not carry: there the test says so and replays nothing; in
//! a checkout (a `.git` beside `Cargo.toml`) a missing corpus fails it.

use std::fs;
use std::path::Path;

#[test]
fn replay_fuzz_corpora() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.join("fuzz/corpus");
    if !root.is_dir() && !here.join(".git").exists() {
        eprintln!("no fuzz corpus in this packaged source: nothing replayed (run the tests in a checkout)");
        return;
    }
    let mut total = 0;
    for target in asl::codec::FUZZ_TARGETS {
        let dir = root.join(target);
        let mut n = 0;
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let bytes = fs::read(e.unwrap().path()).unwrap();
            asl::codec::fuzz_target(target, &bytes);
            n += 1;
        }
        assert!(n > 0, "corpus for {target} is empty");
        total += n;
    }
    eprintln!("replayed {total} corpus files");
}
