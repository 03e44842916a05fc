//! Fuzzes the log's line reader: any bytes, as one line, must give a record
//! or an error, never a panic. Any text that deserializes as a record body
//! must seal to a line the reader accepts, whose body seals to that same
//! line again.
//!
//! Run: cargo +nightly fuzz run log_line -- -max_len=4096
//! (seed the corpus with log lines: split a data dir's log/*.jsonl into
//! one file per line under corpus/log_line/)
#![no_main]

use jaros::canon::Digest;
use jaros::log::record::{check_line, parse_line, seal};
use jaros::log::Body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_line(text);
    let _ = parse_line(text);
    let Ok(body) = serde_json::from_str::<Body>(text) else {
        return;
    };
    // Over the size limit: refused with an error, which is fine.
    let Ok((line, hash)) = seal(7, &Digest::ZERO, &body) else {
        return;
    };
    let record = parse_line(&line).unwrap_or_else(|e| panic!("sealed {line} does not read: {e}"));
    // The same body up to how numbers are written (1.0 is canonically 1):
    // the same kind, and it seals to the same line.
    assert_eq!(
        std::mem::discriminant(&record.body),
        std::mem::discriminant(&body)
    );
    assert_eq!((record.seq, record.hash), (7, hash));
    assert_eq!(seal(7, &Digest::ZERO, &record.body).unwrap().0, line);
});
