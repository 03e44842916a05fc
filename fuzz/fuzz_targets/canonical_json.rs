//! Fuzzes the canonical JSON encoder: any JSON text that parses must encode,
//! and its encoding must be a fixed point (parsed and encoded again, the same
//! bytes) that parses to the same value, numbers compared as the f64 they
//! denote.
//!
//! Run: cargo +nightly fuzz run canonical_json -- -max_len=4096
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let once = jaros::canon::to_string(&value).expect("parsed JSON holds only finite numbers");
    let reparsed: Value = serde_json::from_str(&once).expect("canonical JSON parses");
    let twice = jaros::canon::to_string(&reparsed).unwrap();
    assert_eq!(once, twice, "encoding is not a fixed point");
    assert!(same(&value, &reparsed), "{value} encoded as {once}");
});

/// Equal JSON values, numbers by the f64 they denote (canonical numbers are
/// ECMAScript's doubles).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
