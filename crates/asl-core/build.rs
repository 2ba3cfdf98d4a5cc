//! Embeds the git commit the library was built from, so benchmark results
//! (`aslctl bench`) say which code produced them. Only this workspace's own
//! repository counts (a `.git` at the workspace root, two levels up): built
//! from a package, or inside another project's repository, it embeds none.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = Path::new(&manifest).join("../..");
    let ours = root.join("crates/asl-core/Cargo.toml").is_file();
    let git = root.join(".git");
    if ours && git.exists() {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "--short=12", "HEAD"])
            .output();
        if let Ok(o) = out {
            if o.status.success() {
                let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
                println!("cargo:rustc-env=ASL_GIT_COMMIT={rev}");
            }
        }
        for p in ["HEAD", "refs/heads", "packed-refs"] {
            let p = git.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
