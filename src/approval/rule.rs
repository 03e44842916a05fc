//! The payload rule of an approval (`when: "amount > 100"`): one comparison
//! of a field of the payload with a literal. Owns parsing and evaluation; it
//! is total (every payload gets an answer) and fails closed: a payload the
//! rule cannot answer needs a verdict. The grammar is in `docs/approval.md`.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// Longest rule accepted, in bytes: a rule is a line, not a program.
pub const MAX_RULE_BYTES: usize = 256;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, order: Ordering) -> bool {
        match self {
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Eq => order == Ordering::Equal,
            Op::Ne => order != Ordering::Equal,
        }
    }
}

/// A parsed rule: `path op literal`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Field names and list indices, outermost first.
    path: Vec<String>,
    op: Op,
    literal: Value,
}

/// Why a rule does not parse, and at which byte (0-based) of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

fn error(offset: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        offset,
        message: message.into(),
    }
}

const SHAPE: &str = "write one comparison such as 'amount > 100' or 'tier == \"gold\"': a field path, one of > >= < <= == !=, and a number, a double-quoted string, true, false or null";

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        if text.len() > MAX_RULE_BYTES {
            return Err(error(
                MAX_RULE_BYTES,
                format!("a rule is at most {MAX_RULE_BYTES} bytes"),
            ));
        }
        let bytes = text.as_bytes();
        let skip_space = |mut i: usize| {
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            i
        };
        // The field path.
        let mut i = skip_space(0);
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-' | b'.'))
        {
            i += 1;
        }
        if i == start {
            return Err(error(start, format!("expected a field path; {SHAPE}")));
        }
        let mut path = Vec::new();
        let mut at = start;
        for segment in text[start..i].split('.') {
            let ok = !segment.is_empty()
                && (segment.bytes().all(|b| b.is_ascii_digit())
                    || segment
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_'));
            if !ok {
                return Err(error(
                    at,
                    format!("'{segment}' is not a field name or a list index; {SHAPE}"),
                ));
            }
            path.push(segment.to_string());
            at += segment.len() + 1;
        }
        // The operator.
        i = skip_space(i);
        let op = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'>'), Some(b'=')) => Op::Ge,
            (Some(b'<'), Some(b'=')) => Op::Le,
            (Some(b'='), Some(b'=')) => Op::Eq,
            (Some(b'!'), Some(b'=')) => Op::Ne,
            (Some(b'>'), _) => Op::Gt,
            (Some(b'<'), _) => Op::Lt,
            _ => return Err(error(i, format!("expected a comparison; {SHAPE}"))),
        };
        i += op.as_str().len();
        // The literal: exactly one JSON scalar, then nothing.
        i = skip_space(i);
        let rest = text[i..].trim_end_matches(' ');
        let literal: Value = serde_json::from_str(rest)
            .map_err(|_| error(i, format!("expected a literal; {SHAPE}")))?;
        match &literal {
            Value::Array(_) | Value::Object(_) => {
                return Err(error(
                    i,
                    format!("a literal is a number, a string, true, false or null; {SHAPE}"),
                ))
            }
            Value::Bool(_) | Value::Null if !matches!(op, Op::Eq | Op::Ne) => {
                return Err(error(
                    i,
                    format!("true, false and null compare only with == and !=; {SHAPE}"),
                ))
            }
            // A payload holding one is refused by the gate, so a rule
            // naming one would compare with a number no payload can hold.
            Value::Number(_) if crate::canon::inexact_integer(&literal).is_some() => {
                return Err(error(
                    i,
                    format!("{literal} is an integer no double holds, and no payload may hold one; {SHAPE}"),
                ))
            }
            _ => {}
        }
        Ok(Rule { path, op, literal })
    }

    /// Whether the payload needs a verdict under this rule. `true` where the
    /// payload cannot answer it (field missing, another JSON type): a
    /// person looks rather than the decision slipping through.
    pub fn applies(&self, payload: &Value) -> bool {
        let mut value = payload;
        for segment in &self.path {
            let next = match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|n| items.get(n)),
                _ => None,
            };
            match next {
                Some(v) => value = v,
                None => return true,
            }
        }
        let order = match (value, &self.literal) {
            (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            },
            (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            _ => None,
        };
        match order {
            Some(order) => self.op.holds(order),
            None => true,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.path.join("."),
            self.op.as_str(),
            self.literal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applies(rule: &str, payload: Value) -> bool {
        Rule::parse(rule).unwrap().applies(&payload)
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(applies("amount > 100", json!({"amount": 100.5})));
        assert!(!applies("amount > 100", json!({"amount": 100})));
        assert!(applies("amount >= 100", json!({"amount": 100})));
        assert!(!applies("amount < 5", json!({"amount": 7})));
        assert!(applies("amount != 5", json!({"amount": 7})));
    }

    #[test]
    fn strings_nested_fields_and_indices() {
        assert!(applies(
            "customer.tier == \"gold\"",
            json!({"customer": {"tier": "gold"}})
        ));
        assert!(!applies(
            "customer.tier == \"gold\"",
            json!({"customer": {"tier": "tin"}})
        ));
        assert!(applies(
            "items.1.qty >= 10",
            json!({"items": [{"qty": 1}, {"qty": 10}]})
        ));
        assert!(applies("flag == true", json!({"flag": true})));
    }

    #[test]
    fn a_payload_the_rule_cannot_answer_needs_a_verdict() {
        assert!(applies("amount > 100", json!({})));
        assert!(applies("amount > 100", json!({"amount": "5"})));
        assert!(applies("a.b > 1", json!({"a": 3})));
        assert!(applies("items.9.qty > 1", json!({"items": []})));
    }

    #[test]
    fn bad_rules_say_where() {
        let e = Rule::parse("amount >> 100").unwrap_err();
        assert_eq!(e.offset, 8, "{e}");
        assert_eq!(Rule::parse("> 3").unwrap_err().offset, 0);
        assert_eq!(Rule::parse("amount ~ 3").unwrap_err().offset, 7);
        assert!(Rule::parse("amount > [1]").is_err());
        assert!(Rule::parse("amount > true").is_err());
        assert!(Rule::parse("amount > 1 and x").is_err());
        assert!(Rule::parse("a..b > 1").is_err());
        assert!(Rule::parse("1a > 1").is_err());
        assert!(Rule::parse(&"a".repeat(300)).is_err());
        let e = Rule::parse("account != 9007199254740993").unwrap_err();
        assert_eq!(e.offset, 11, "{e}");
        assert!(e.to_string().contains("no double holds"), "{e}");
        // 2^53 and 2^53 + 2 are doubles.
        assert!(Rule::parse("account != 9007199254740992").is_ok());
        assert!(Rule::parse("account != 9007199254740994").is_ok());
    }
}
