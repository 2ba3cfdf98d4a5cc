//! Says whether this crate is built inside its repository, where the
//! README, the manual and the design it compiles as doctests are; a
//! packaged copy (crates.io, `cargo package`) has none of them and skips
//! those doctests rather than fail to build.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(asl_repo_docs)");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = [
        "README.md",
        "docs/manual/02-library.md",
        "docs/manual/04-pel.md",
        "docs/design.md",
    ];
    println!("cargo::rerun-if-changed=build.rs");
    if docs.iter().all(|d| root.join(d).is_file()) {
        for d in docs {
            println!("cargo::rerun-if-changed={}", root.join(d).display());
        }
        println!("cargo::rustc-cfg=asl_repo_docs");
    }
}
