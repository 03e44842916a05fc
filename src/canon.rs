//! Canonical JSON (RFC 8785, "JCS") and the sha256 digests built on it.
//!
//! Owns the one encoder every hash in Jaros goes through: log records, plans,
//! job states and blobs. It does not own hashing of raw bytes for anything else
//! than digests (see [`Digest::of_bytes`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Largest canonical encoding of a single decision payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Why a JSON value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("number {0} is not finite; canonical JSON has no NaN or Infinity")]
    NonFinite(String),
    #[error("value is {actual} bytes once canonical, over the limit of {limit} bytes")]
    TooLarge { actual: usize, limit: usize },
    #[error("{field} is {value}, past 2^53: canonical JSON cannot write it exactly, so it would not read back as written")]
    Inexact { field: &'static str, value: u64 },
    #[error("{at} is {value}, an integer no double holds: canonical JSON would record it as {recorded}; send it as a string")]
    InexactNumber {
        /// Where, as a JSON Pointer (`/` for the value itself).
        at: String,
        value: String,
        recorded: String,
    },
}

/// Encodes `value` as RFC 8785 canonical JSON.
///
/// Keys are sorted by their UTF-16 code units, strings use the minimal escapes,
/// numbers use ECMAScript's shortest round-trip form.
pub fn to_string(value: &Value) -> Result<String, CanonError> {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Encodes `value` canonically and refuses encodings longer than `limit` bytes.
pub fn to_string_limited(value: &Value, limit: usize) -> Result<String, CanonError> {
    let text = to_string(value)?;
    if text.len() > limit {
        return Err(CanonError::TooLarge {
            actual: text.len(),
            limit,
        });
    }
    Ok(text)
}

/// The first integer in `value` that no double holds (`9007199254740993`),
/// with where it is. Canonical JSON writes a number through the double it
/// rounds to, so such an integer would be recorded as another number: what
/// the gate judged or a tool returned would not be what the log says.
/// Integers a double holds exactly, 2^60 among them, are fine.
pub fn inexact_integer(value: &Value) -> Option<CanonError> {
    fn walk(value: &Value, at: &mut String) -> Option<CanonError> {
        match value {
            Value::Number(n) => {
                let exact = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => (u as f64) as u128 == u128::from(u),
                    (None, Some(i)) => (i as f64) as i128 == i128::from(i),
                    _ => true, // already a double
                };
                (!exact).then(|| CanonError::InexactNumber {
                    at: if at.is_empty() {
                        "/".into()
                    } else {
                        at.clone()
                    },
                    value: n.to_string(),
                    recorded: n
                        .as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(|f| {
                            let mut out = String::new();
                            let _ = write_number(&mut out, &f);
                            out
                        })
                        .unwrap_or_default(),
                })
            }
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                let found = walk(item, at);
                at.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(key, item)| {
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let found = walk(item, at);
                at.truncate(len);
                found
            }),
            _ => None,
        }
    }
    walk(value, &mut String::new())
}

/// Canonical encoding of any serializable value.
pub fn to_string_of<T: serde::Serialize>(value: &T) -> Result<String, CanonError> {
    // Serializing our own types into a `Value` cannot fail: they hold no maps
    // with non-string keys. A failure here is a programming error.
    let value = serde_json::to_value(value).expect("internal types serialize to JSON");
    to_string(&value)
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write_value(out: &mut String, value: &Value) -> Result<(), CanonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            if in_canonical_order(map) {
                write_members(out, map.iter())?;
            } else {
                write_members(out, sorted_entries(map).into_iter())?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_members<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<(), CanonError> {
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, item)?;
    }
    Ok(())
}

/// Whether the map already iterates in canonical order, so encoding needs
/// no sort: its keys ascend bytewise (a sorted map's do) and hold no
/// character from U+E000 up, below which UTF-8's byte order and UTF-16's
/// code-unit order agree (they differ only between U+E000..U+FFFF and the
/// characters past U+FFFF, which UTF-16 writes as surrogates).
fn in_canonical_order(map: &serde_json::Map<String, Value>) -> bool {
    let mut prev: Option<&[u8]> = None;
    for key in map.keys() {
        let key = key.as_bytes();
        if key.iter().any(|&b| b >= 0xEE) || prev.is_some_and(|p| p >= key) {
            return false;
        }
        prev = Some(key);
    }
    true
}

/// An object's entries in canonical order: by UTF-16 code units of the keys.
pub fn sorted_entries(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    entries
}

fn write_number(out: &mut String, n: &serde_json::Number) -> Result<(), CanonError> {
    // Integers that a double holds exactly print as integers; everything else
    // goes through the IEEE double, as RFC 8785 prescribes.
    if let Some(u) = n.as_u64() {
        write_u64(out, u);
        return Ok(());
    }
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= (1u64 << 53)) {
        out.push('-'); // negative: a non-negative one is a u64
        push_digits(out, i.unsigned_abs());
        return Ok(());
    }
    let f = n
        .as_f64()
        .ok_or_else(|| CanonError::NonFinite(n.to_string()))?;
    if !f.is_finite() {
        return Err(CanonError::NonFinite(n.to_string()));
    }
    if f == 0.0 {
        out.push('0'); // -0 prints as 0
        return Ok(());
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format_finite(f));
    Ok(())
}

/// Largest integer canonical JSON writes exactly (2^53): past it, a number
/// is written as the double it rounds to.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Appends `n` as a canonical JSON number: its digits up to 2^53, through
/// the double above (what `write_value` does, without building a `Value`).
pub fn write_u64(out: &mut String, n: u64) {
    if n <= MAX_EXACT_INTEGER {
        push_digits(out, n);
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(n as f64));
    }
}

/// Appends `n` in decimal, without allocating.
fn push_digits(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `s` as a canonical JSON string.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs of bytes that need no escape are copied whole; the bytes that do
    // are all ASCII, so a run never ends inside a character.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        run = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// A JSON value kept as its text, for values that are mostly compared,
/// printed and written back rather than read into (an `effect`'s and an
/// `end`'s result): reading the text from a log costs one copy, where a
/// `Value` costs an allocation for every key, string and object in it.
///
/// [`from_value`](Self::from_value) gives the canonical text; one read from
/// a log is the text the log holds, which is canonical in every line the
/// writer wrote. Two are equal when their texts are. Only ever built from
/// JSON, by encoding a value or by reading one (the reader checks the
/// syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    pub fn from_value(value: &Value) -> Result<JsonText, CanonError> {
        Ok(JsonText(to_string(value)?.into()))
    }

    /// Wraps text the caller wrote in canonical form.
    pub(crate) fn from_canonical_text(text: String) -> JsonText {
        JsonText(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the text encodes. An error for JSON that no `Value` holds
    /// (a number out of range, a lone surrogate), which only a line made by
    /// hand can carry: the reader checks the syntax, not the values.
    pub fn to_value(&self) -> Result<Value, String> {
        serde_json::from_str(&self.0).map_err(|e| e.to_string())
    }
}

impl serde::Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The text as it is, in JSON output.
        serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(d).map(|raw| JsonText(raw.into()))
    }
}

/// A sha256 digest, printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev` of the first record of a chain.
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// sha256 of the canonical encoding of `value`.
    pub fn of_json(value: &Value) -> Result<Digest, CanonError> {
        Ok(Digest::of_bytes(to_string(value)?.as_bytes()))
    }

    /// sha256 of the canonical encoding of a serializable value.
    pub fn of<T: serde::Serialize>(value: &T) -> Result<Digest, CanonError> {
        Ok(Digest::of_bytes(to_string_of(value)?.as_bytes()))
    }

    pub fn to_hex(&self) -> String {
        let hex = self.hex_bytes();
        std::str::from_utf8(&hex)
            .expect("hex digits are ASCII")
            .to_string()
    }

    /// The 64 lowercase hex digits, without allocating.
    pub fn hex_bytes(&self) -> [u8; 64] {
        // Nibbles first, then digits: two plain loops the compiler turns into
        // vector code (the writer computes this for every record while
        // holding its lock), twice as fast as eight digits at a time in a
        // u64 (measured: 15 against 27 ns).
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            (pair[0], pair[1]) = (byte >> 4, byte & 15);
        }
        for digit in &mut out {
            *digit += if *digit > 9 { b'a' - 10 } else { b'0' };
        }
        out
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 {
            return None;
        }
        // By table, without a branch per digit (replay reads two digests a
        // record); a digit outside 0-9a-f has the high bit set.
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            bad |= hi | lo;
            *byte = hi << 4 | (lo & 15);
        }
        (bad & 0x80 == 0).then_some(Digest(out))
    }

    /// A short form for humans: the first 12 hex digits.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

/// Each byte's value as a lowercase hex digit, or 0x80 if it is none.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read from the borrowed text, not a copy: replay reads millions.
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                Digest::from_hex(v).ok_or_else(|| E::custom("expected 64 lowercase hex digits"))
            }
        }
        d.deserialize_str(Hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_no_double_holds_are_found_with_where_they_are() {
        let found = |v: Value| inexact_integer(&v).map(|e| e.to_string());
        let two53 = 1u64 << 53;
        for fine in [
            json!(two53),
            json!(two53 + 2),
            json!(1u64 << 60),
            json!(i64::MIN),
            json!(-(two53 as i64)),
            json!(0.1),
            json!(1e300),
            json!({"a": [1, "9007199254740993"]}),
        ] {
            assert_eq!(found(fine.clone()), None, "{fine}");
        }
        let e = found(json!({"a/b": [0, {"n~": two53 + 1}]})).unwrap();
        assert!(
            e.starts_with("/a~1b/1/n~0 is 9007199254740993, an integer no double holds: canonical JSON would record it as 9007199254740992"),
            "{e}"
        );
        assert!(found(json!(u64::MAX))
            .unwrap()
            .starts_with("/ is 18446744073709551615"));
        assert!(found(json!(-(two53 as i64) - 1)).is_some());
        // What canonical JSON records reads back as a number a double holds.
        let recorded: Value = serde_json::from_str(&to_string(&json!(two53 + 1)).unwrap()).unwrap();
        assert_eq!(inexact_integer(&recorded), None);
    }
    use serde_json::json;

    fn canon(text: &str) -> String {
        to_string(&serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn json_text_keeps_the_text_it_was_read_from_and_reads_back_only_values() {
        let value = json!({"b": [1.0, "\u{e9}"], "a": null});
        let text = JsonText::from_value(&value).unwrap();
        assert_eq!(text.as_str(), r#"{"a":null,"b":[1,"é"]}"#);
        assert_eq!(text.to_value().unwrap(), json!({"a": null, "b": [1, "é"]}));
        // Read and written back as the same bytes, whatever their form.
        let line = r#"{"t":{ "b" :1.50,"a":2}}"#;
        let read: std::collections::BTreeMap<String, JsonText> =
            serde_json::from_str(line).unwrap();
        assert_eq!(read["t"].as_str(), r#"{ "b" :1.50,"a":2}"#);
        assert_eq!(serde_json::to_string(&read).unwrap(), line);
        assert!(serde_json::from_str::<JsonText>("{\"a\":").is_err());
        // Syntax is checked on reading; values only when read into.
        for unreadable in ["1e400", r#""\ud800""#] {
            let text: JsonText = serde_json::from_str(unreadable).unwrap();
            assert!(text.to_value().is_err(), "{unreadable}");
        }
    }

    #[test]
    fn rfc8785_sorting_vector() {
        // RFC 8785 section 3.2.3: keys sorted by UTF-16 code units.
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn a_map_in_canonical_order_is_written_without_sorting_and_the_same() {
        let keys = [
            "b", "a", "\u{e9}", "\u{20ac}", "\u{4e00}", "\u{d7ff}", "A", "aa", "",
        ];
        let map: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.to_string(), Value::from(*k)))
            .collect();
        assert!(in_canonical_order(&map));
        let mut sorted = String::new();
        write_members(&mut sorted, sorted_entries(&map).into_iter()).unwrap();
        assert_eq!(
            to_string(&Value::Object(map)).unwrap(),
            format!("{{{sorted}}}")
        );
        for past in ["\u{e000}", "\u{fb33}", "\u{1f600}"] {
            let map: serde_json::Map<String, Value> =
                [(past.to_string(), Value::Null)].into_iter().collect();
            assert!(!in_canonical_order(&map), "{past:?} needs the sort");
        }
    }

    #[test]
    fn strings_escape_as_json_requires_and_nothing_more() {
        // RFC 8785 escapes exactly what serde_json escapes, the same way:
        // the two-character forms, other controls as lowercase \u00xx.
        let mut cases: Vec<String> = (0u8..0x80)
            .map(|b| format!("a{}b\u{e9}", char::from(b)))
            .collect();
        cases.extend(
            [
                "",
                "\"",
                "\u{1f}\u{1f}",
                "\u{20ac}\n\u{1f600}\\",
                "end\u{7f}\u{0}",
            ]
            .map(String::from),
        );
        for s in cases {
            let mut out = String::new();
            write_string(&mut out, &s);
            assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn digest_hex_is_its_display_and_parses_back() {
        let d = Digest::of_bytes(b"jaros");
        let hex = d.hex_bytes();
        assert_eq!(std::str::from_utf8(&hex).unwrap(), d.to_string());
        assert_eq!(Digest::from_hex(&d.to_string()), Some(d));
        let every_byte: Vec<u8> = (0..=255).collect();
        for bytes in every_byte.chunks(32) {
            let d = Digest(bytes.try_into().unwrap());
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&d.hex_bytes()[..], expected.as_bytes());
        }
    }

    #[test]
    fn rfc8785_main_example() {
        // RFC 8785 section 3.2.2.
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn rfc8785_number_vectors() {
        // RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
        let vectors: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in vectors {
            let f = f64::from_bits(*bits);
            let value = Value::Number(serde_json::Number::from_f64(f).unwrap());
            assert_eq!(to_string(&value).unwrap(), *expected, "bits {bits:#x}");
        }
    }

    #[test]
    fn integers_beyond_doubles_go_through_the_double() {
        assert_eq!(
            to_string(&json!(9007199254740993u64)).unwrap(),
            "9007199254740992"
        );
        assert_eq!(to_string(&json!(-42)).unwrap(), "-42");
        // Digits up to 2^53 either side, the double's shortest form past it:
        // what the number's own double prints (ECMAScript's Number::toString).
        let edge = 1u64 << 53;
        for u in [
            0,
            1,
            9,
            10,
            99,
            100,
            edge - 1,
            edge,
            edge + 1,
            edge + 3,
            u64::MAX,
        ] {
            let double = ryu_js::Buffer::new().format_finite(u as f64).to_string();
            let expected = if u <= edge { u.to_string() } else { double };
            let mut out = String::new();
            write_u64(&mut out, u);
            assert_eq!(out, expected, "{u}");
            assert_eq!(to_string(&json!(u)).unwrap(), expected, "{u}");
        }
        for i in [-1i64, -10, -(edge as i64), -(edge as i64) - 1, i64::MIN] {
            let expected = if i.unsigned_abs() <= edge {
                i.to_string()
            } else {
                ryu_js::Buffer::new().format_finite(i as f64).to_string()
            };
            assert_eq!(to_string(&json!(i)).unwrap(), expected, "{i}");
        }
    }

    #[test]
    fn non_finite_numbers_have_no_canonical_form() {
        // serde_json cannot hold NaN in a Value; arbitrary precision text can overflow.
        let n: Value = serde_json::from_str("1e400").unwrap_or(Value::Null);
        if let Value::Number(_) = n {
            assert!(matches!(to_string(&n), Err(CanonError::NonFinite(_))));
        }
        assert!(serde_json::Number::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn payloads_over_the_limit_are_refused() {
        let big = json!({"text": "x".repeat(100)});
        let err = to_string_limited(&big, 50).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value is 111 bytes once canonical, over the limit of 50 bytes"
        );
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = Digest::of_bytes(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("ABC"), None);
        // Every position refuses every byte that is not a lowercase digit.
        let hex = d.to_hex();
        for at in [0, 1, 31, 62, 63] {
            for bad in ["A", "F", "g", "G", "/", ":", "`", " ", "\u{0}"] {
                let text = format!("{}{bad}{}", &hex[..at], &hex[at + 1..]);
                assert_eq!(Digest::from_hex(&text), None, "{text:?}");
            }
        }
        let non_ascii = format!("\u{e9}{}", &hex[2..]); // 64 bytes, not hex
        assert_eq!(Digest::from_hex(&non_ascii), None);
        let all: String = "0123456789abcdef".repeat(4);
        assert_eq!(Digest::from_hex(&all).unwrap().to_hex(), all);
    }
}
