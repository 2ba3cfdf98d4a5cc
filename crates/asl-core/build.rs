//! Embeds the git commit the binary was built from, so benchmark results
//! (`aslctl bench`) say which code produced them.

fn main() {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=ASL_GIT_COMMIT={rev}");
        }
    }
    for p in ["../../.git/HEAD", "../../.git/refs/heads", "../../.git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
