#![no_main]
//! Fuzzes the canonical CBOR decoder; see `asl::codec::fuzz_target`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| asl::codec::fuzz_target("cbor", data));
