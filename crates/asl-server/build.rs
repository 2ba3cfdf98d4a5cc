//! Turns the REAPI and ByteStream .proto files in `proto/` into Rust at
//! build time. protox compiles them in Rust, so a fresh machine needs no
//! `protoc`; the messages the server passes through untouched (an action
//! result) are mapped to `RawMessage`, which keeps every byte a client sent.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/reapi.proto", "proto/bytestream.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .extern_path(
            ".build.bazel.remote.execution.v2.ActionResult",
            "crate::reapi::raw::RawMessage",
        )
        .compile_fds(fds)?;
    Ok(())
}
