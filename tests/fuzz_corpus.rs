//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through
//! the same function the fuzz targets run, on stable, as ordinary tests.

use std::fs;
use std::path::Path;

#[test]
fn replay_fuzz_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
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
