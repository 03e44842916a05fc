//! YAML text to JSON values, remembering where every node came from.
//!
//! Owns the byte-level checks (size, UTF-8, tabs, empty files) and the
//! conversion of each YAML document into a [`serde_json::Value`] plus a map
//! from JSON pointer to the line and column of that node, so that later
//! checks can point at the exact YAML node they refuse. It knows nothing of
//! manifest kinds.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;

/// Largest manifest file read, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences in a manifest.
pub const MAX_DEPTH: usize = 64;
/// Most collections one line may open with `- ` or `? ` indicators.
pub const MAX_COMPACT_NESTING: usize = 64;
/// Stack for the parser thread, so that whatever recursion the parser does
/// on hostile input never meets the caller's (possibly small) stack.
const PARSER_STACK_BYTES: usize = 32 * 1024 * 1024;

/// A position in a file: line and column, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn of(marker: &saphyr::Marker) -> Pos {
        Pos {
            line: marker.line().max(1),
            col: marker.col() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Why a file could not be read as YAML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    /// The file holds no document at all (so it defines nothing).
    pub empty: bool,
}

impl YamlError {
    fn at(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            pos,
            message: message.into(),
            empty: false,
        }
    }
}

/// One YAML document as JSON, with the position of each of its nodes.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: Value,
    /// JSON pointer of a node (`""` for the root) → where the node starts.
    values: HashMap<String, Pos>,
    /// JSON pointer of a mapping member → where its key starts.
    keys: HashMap<String, Pos>,
}

impl Doc {
    /// Where the node at `pointer` starts, or the nearest enclosing node that
    /// exists (a missing member is reported at its parent).
    pub fn pos(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos::START,
            }
        }
    }

    /// Where the key of the member at `pointer` starts (the value's position
    /// when there is no key, as for sequence items).
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.pos(pointer))
    }
}

/// Escapes one JSON pointer token (RFC 6901).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parses a manifest file's bytes into its documents. An empty file, or one
/// holding only comments, is an error: it is almost always a mistake.
pub fn parse(bytes: &[u8]) -> Result<Vec<Doc>, YamlError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(YamlError::at(
            Pos::START,
            format!(
                "the file is {} bytes, over the limit of {MAX_MANIFEST_BYTES} bytes for a manifest",
                bytes.len()
            ),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            return Err(YamlError::at(
                end_pos(prefix),
                format!(
                    "the file is not valid UTF-8 (byte {} is not); save it as UTF-8",
                    e.valid_up_to()
                ),
            ));
        }
    };
    check_lines(text)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let owned = text.to_string();
    let parsed = std::thread::Builder::new()
        .name("jaros-yaml".into())
        .stack_size(PARSER_STACK_BYTES)
        .spawn(move || parse_text(&owned))
        .map_err(|e| YamlError::at(Pos::START, format!("cannot start the YAML parser: {e}")))?
        .join()
        .unwrap_or_else(|_| {
            Err(YamlError::at(
                Pos::START,
                "the YAML parser failed on this file",
            ))
        })?;
    if parsed.is_empty() {
        return Err(YamlError {
            empty: true,
            ..YamlError::at(
                Pos::START,
                "the file holds no YAML document; add a manifest (apiVersion, kind, metadata, spec) or delete the file",
            )
        });
    }
    Ok(parsed)
}

fn parse_text(text: &str) -> Result<Vec<Doc>, YamlError> {
    // The parser may place an error, or an empty node at the end of input (a
    // last line `? `), one line past the file's last line; no editor can
    // show that line, so every position is kept within the text.
    let end = end_pos(text);
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let mut message = e.info().to_string();
        if message.contains("tab") {
            message.push_str("; indent YAML with spaces");
        }
        YamlError::at(Pos::of(e.marker()).min(end), message)
    })?;
    let mut out = Vec::with_capacity(docs.len());
    let mut result = Ok(());
    for doc in &docs {
        let mut d = Doc {
            value: Value::Null,
            values: HashMap::new(),
            keys: HashMap::new(),
        };
        match convert(doc, String::new(), 0, &mut d.values, &mut d.keys) {
            Ok(value) => d.value = value,
            Err(e) => {
                result = Err(YamlError {
                    pos: e.pos.min(end),
                    ..e
                });
                break;
            }
        }
        for pos in d.values.values_mut().chain(d.keys.values_mut()) {
            *pos = (*pos).min(end);
        }
        out.push(d);
    }
    drop_flat(docs);
    result.map(|()| out)
}

/// Drops parsed trees without recursion: block sequences (`- - - x`) nest
/// without limit in the parser, and a recursive drop of a deep tree would
/// overflow the stack.
fn drop_flat(docs: Vec<MarkedYaml<'_>>) {
    let mut stack = docs;
    while let Some(mut node) = stack.pop() {
        match &mut node.data {
            YamlData::Sequence(items) => stack.append(items),
            YamlData::Mapping(map) => {
                for (k, v) in std::mem::take(map) {
                    stack.push(k);
                    stack.push(v);
                }
            }
            YamlData::Tagged(_, inner) => stack.push(std::mem::replace(
                &mut **inner,
                MarkedYaml::value_from_str(""),
            )),
            _ => {}
        }
    }
}

/// The position just after `text`.
fn end_pos(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let last = text.rsplit('\n').next().unwrap_or("");
    Pos {
        line,
        col: last.chars().count() + 1,
    }
}

/// Refuses a tab in a line's indentation (YAML indents with spaces, and a
/// tab there is the most common way a manifest goes wrong in an editor), and
/// a line that opens more than [`MAX_COMPACT_NESTING`] compact collections
/// (`- - - x`): the parser recurses once per level, and this is the one way
/// to nest deeply in few bytes (indentation costs a column per level, and
/// flow collections have the parser's own limit).
fn check_lines(text: &str) -> Result<(), YamlError> {
    for (i, line) in text.split('\n').enumerate() {
        let mut compact = 0usize;
        let mut rest = line.trim_start_matches(' ');
        while let Some(after) = rest.strip_prefix(['-', '?']) {
            if !after.starts_with([' ', '\t']) {
                break;
            }
            compact += 1;
            rest = after.trim_start_matches([' ', '\t']);
        }
        if compact > MAX_COMPACT_NESTING {
            return Err(YamlError::at(
                Pos {
                    line: i + 1,
                    col: 1,
                },
                format!("this line nests more than {MAX_COMPACT_NESTING} collections"),
            ));
        }
        let indent: &str = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        let rest = &line[indent.len()..];
        if rest.is_empty() || rest == "\r" {
            continue;
        }
        if let Some(col) = indent.find('\t') {
            return Err(YamlError::at(
                Pos {
                    line: i + 1,
                    col: col + 1,
                },
                "a tab character indents this line; YAML indents with spaces",
            ));
        }
    }
    Ok(())
}

fn convert(
    node: &MarkedYaml<'_>,
    pointer: String,
    depth: usize,
    values: &mut HashMap<String, Pos>,
    keys: &mut HashMap<String, Pos>,
) -> Result<Value, YamlError> {
    let pos = Pos::of(&node.span.start);
    if depth > MAX_DEPTH {
        return Err(YamlError::at(
            pos,
            format!("nesting deeper than {MAX_DEPTH} levels"),
        ));
    }
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar, pos)?,
        YamlData::Representation(text, style, tag) => {
            match Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref()) {
                Some(scalar) => scalar_value(&scalar, pos)?,
                None => {
                    return Err(YamlError::at(
                        pos,
                        format!("'{text}' does not match its tag"),
                    ))
                }
            }
        }
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(convert(
                    item,
                    format!("{pointer}/{i}"),
                    depth + 1,
                    values,
                    keys,
                )?);
            }
            Value::Array(out)
        }
        YamlData::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key_pos = Pos::of(&k.span.start);
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    YamlData::Value(Scalar::Null) => "null".to_string(),
                    _ => {
                        return Err(YamlError::at(
                            key_pos,
                            "a mapping key must be a plain string",
                        ))
                    }
                };
                let child = format!("{pointer}/{}", pointer_token(&key));
                if out.contains_key(&key) {
                    return Err(YamlError::at(
                        key_pos,
                        format!("the key '{key}' appears twice in this mapping"),
                    ));
                }
                keys.insert(child.clone(), key_pos);
                let value = convert(v, child, depth + 1, values, keys)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(tag, _) => {
            return Err(YamlError::at(
                pos,
                format!(
                    "YAML tags such as '{}{}' are not used in manifests; remove it",
                    tag.handle, tag.suffix
                ),
            ))
        }
        YamlData::Alias(_) => return Err(YamlError::at(pos, "this alias names no anchor")),
        YamlData::BadValue => return Err(YamlError::at(pos, "this value does not match its tag")),
    };
    values.insert(pointer, pos);
    Ok(value)
}

fn scalar_value(scalar: &Scalar<'_>, pos: Pos) -> Result<Value, YamlError> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
            Some(n) => Value::Number(n),
            None => {
                return Err(YamlError::at(
                    pos,
                    "a number here must be finite (not .inf or .nan)",
                ))
            }
        },
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_node_has_its_position() {
        let docs = parse(b"a: 1\nb:\n  - x\n  - {c: true}\n---\nd: ~\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value, json!({"a": 1, "b": ["x", {"c": true}]}));
        assert_eq!(docs[0].pos("/a"), Pos { line: 1, col: 4 });
        assert_eq!(docs[0].key_pos("/b"), Pos { line: 2, col: 1 });
        assert_eq!(docs[0].pos("/b/1/c"), Pos { line: 4, col: 9 });
        assert_eq!(docs[0].pos("/b/1/missing"), Pos { line: 4, col: 5 });
        assert_eq!(docs[1].pos("/d"), Pos { line: 6, col: 4 });
    }

    #[test]
    fn a_position_past_the_end_of_the_file_is_placed_at_its_end() {
        // The parser reports this one on line 3 of a two-line file (found by
        // tests/fuzz_stable.rs); the error names the end of the file instead.
        let error = parse(b"- # a comment\na").unwrap_err();
        assert_eq!(error.pos, Pos { line: 2, col: 2 }, "{}", error.message);
        let error = parse(b"a: [1, 2\n").unwrap_err();
        assert!(error.pos <= Pos { line: 2, col: 1 }, "{error:?}");
        // An empty key on the last line: the parser places it on the next.
        let docs = parse(b"a: 1\n? ").unwrap();
        assert_eq!(docs[0].value, json!({"a": 1, "null": null}));
        assert_eq!(docs[0].key_pos("/null"), Pos { line: 2, col: 3 });
        assert_eq!(docs[0].pos("/null"), Pos { line: 2, col: 3 });
    }

    #[test]
    fn bad_files_get_clean_errors() {
        assert_eq!(parse(b"").unwrap_err().pos, Pos::START);
        assert_eq!(parse(b"# only a comment\n").unwrap_err().pos, Pos::START);
        assert_eq!(
            parse(b"a:\n\tb: 1\n").unwrap_err().pos,
            Pos { line: 2, col: 1 }
        );
        assert_eq!(
            parse(b"a: 1\nb: \xff\n").unwrap_err().pos,
            Pos { line: 2, col: 4 }
        );
        let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
        assert!(parse(&big).unwrap_err().message.contains("over the limit"));
        assert!(parse(b"a: 1\na: 2\n").is_err());
        assert!(parse(b"a: .nan\n").is_err());
        assert!(parse(b"a: !custom x\n").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let deep = "[".repeat(MAX_MANIFEST_BYTES / 2) + &"]".repeat(MAX_MANIFEST_BYTES / 2);
        assert!(parse(deep.as_bytes()).is_err());
        let block = "- ".repeat(MAX_MANIFEST_BYTES / 2 - 1) + "x";
        assert!(parse(block.as_bytes()).is_err());
    }
}
