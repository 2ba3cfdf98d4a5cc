#![no_main]
//! Fuzzes the manifest parser; see `asl::codec::fuzz_target`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| asl::codec::fuzz_target("manifest", data));
