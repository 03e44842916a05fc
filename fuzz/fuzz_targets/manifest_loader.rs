//! Fuzzes the manifest loader: any bytes, as one manifest file, must give
//! errors or manifests, never a panic, a hang or a stack overflow.
//!
//! Run: cargo +nightly fuzz run manifest_loader -- -max_len=65536
//! (seed the corpus with the example hive: cp ../manifests/**/*.yaml corpus/manifest_loader/)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jaros::manifest::check_file_bytes(data);
});
