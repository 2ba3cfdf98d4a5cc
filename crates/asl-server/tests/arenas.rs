//! The server caps glibc's malloc arenas at one per core when it builds its
//! router. Its own binary, so that no other test's threads have made arenas
//! before the cap is set.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[allow(unsafe_code)]
fn router_caps_malloc_arenas_at_the_core_count() {
    use std::sync::{Arc, Barrier};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(asl_core::Store::create(dir.path().join("s")).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = rt.block_on(async { asl_server::router(store, asl_server::Config::default()) });
    let _router = router.unwrap();

    // Threads that allocate at the same moment make glibc open a new arena
    // each time the ones it has are busy, up to its cap (eight per core by
    // default).
    let threads = 64;
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut kept = Vec::new();
                for i in 0..20_000usize {
                    kept.push(vec![i as u8; 64 + i % 512]);
                    if kept.len() > 64 {
                        kept.swap_remove(i % 64);
                    }
                }
                kept.len()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    let report = dir.path().join("malloc_info.xml");
    let path = std::ffi::CString::new(report.to_str().unwrap()).unwrap();
    // SAFETY: fopen gets a valid NUL-terminated path and mode; malloc_info
    // writes glibc's own report to the stream, which is closed once.
    unsafe {
        let f = libc::fopen(path.as_ptr(), c"w".as_ptr());
        assert!(!f.is_null());
        assert_eq!(libc::malloc_info(0, f), 0);
        libc::fclose(f);
    }
    let xml = std::fs::read_to_string(&report).unwrap();
    let arenas = xml.matches("<heap nr=").count();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(arenas >= 1, "no arenas in glibc's report: {xml}");
    assert!(arenas <= cores, "{arenas} malloc arenas on {cores} cores");
}
