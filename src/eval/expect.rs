//! Expectations: what an eval case says must be true of its job, checked
//! against what the run recorded. Each failed check says what was expected,
//! what happened, and where a JSON value first differs.
//!
//! Pure functions over [`Observed`]; running cases is [`super::runner`].

use crate::manifest::types::{Expect, FinalState, GateVerdict};
use crate::state::State;
use serde::Serialize;
use serde_json::Value;

/// Most characters of a JSON value quoted in a failure.
pub const SHOWN_VALUE_CHARS: usize = 300;

/// What one run of a case recorded, read back from its log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Every proposed decision in order: accepted (`decision` records) and
    /// refused (`rejected` records).
    pub proposed: Vec<Proposed>,
    /// Every executed decision's outcome in order (`effect` records).
    pub effects: Vec<EffectSeen>,
    /// The job's final state (`end` record); `None` when it never ended.
    pub state: Option<State>,
    /// Why the job failed, when it did.
    pub reason: Option<String>,
    /// The decision the job is parked on (a `waiting` record with no
    /// verdict after it), as `id (type)`: the job never ended.
    pub waiting: Option<String>,
}

/// One proposed decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    /// `check: reason` when the gate refused it.
    pub rejection: Option<String>,
}

/// One executed decision's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectSeen {
    pub decision: String,
    pub result: Value,
    pub error: Option<String>,
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Which expectation: `types`, `payloads[0]`, `state`, ...
    pub check: String,
    pub expected: String,
    pub actual: String,
    /// Where the values first differ, when that helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Failure {
    pub fn new(check: impl Into<String>, expected: String, actual: String) -> Failure {
        Failure {
            check: check.into(),
            expected,
            actual,
            detail: None,
        }
    }
}

/// Whether `expect` checks anything at all. `deterministic: false` asks for
/// nothing, so a case holding only that has no expectation.
pub fn has_expectations(expect: &Expect) -> bool {
    let Expect {
        decisions,
        types,
        payloads,
        gate,
        reason,
        results,
        state,
        deterministic,
    } = expect;
    decisions.is_some()
        || types.is_some()
        || payloads.is_some()
        || gate.is_some()
        || reason.is_some()
        || results.is_some()
        || state.is_some()
        || *deterministic == Some(true)
}

/// Every expectation of `expect` that `seen` does not meet (`deterministic`
/// needs two runs and is checked by the runner).
pub fn check(expect: &Expect, seen: &Observed) -> Vec<Failure> {
    let mut out = Vec::new();
    if let Some(n) = expect.decisions {
        if seen.proposed.len() != n as usize {
            out.push(Failure::new(
                "decisions",
                n.to_string(),
                format!("{} ({})", seen.proposed.len(), types_text(seen)),
            ));
        }
    }
    if let Some(types) = &expect.types {
        let actual: Vec<&str> = seen.proposed.iter().map(|p| p.kind.as_str()).collect();
        if actual != types.iter().map(String::as_str).collect::<Vec<_>>() {
            out.push(Failure::new(
                "types",
                show(&serde_json::json!(types)),
                show(&serde_json::json!(actual)),
            ));
        }
    }
    if let Some(payloads) = &expect.payloads {
        for (i, want) in payloads.iter().enumerate() {
            let check = format!("payloads[{i}]");
            match seen.proposed.get(i) {
                None => out.push(Failure::new(
                    check,
                    format!("a payload containing {}", show(want)),
                    format!("only {} decision(s) were proposed", seen.proposed.len()),
                )),
                Some(p) => {
                    if let Err(m) = subset(want, &p.payload) {
                        let of = format!("payload of {} ({})", p.id, p.kind);
                        out.push(mismatch(check, want, &p.payload, &m, of));
                    }
                }
            }
        }
    }
    let rejections: Vec<&Proposed> = seen
        .proposed
        .iter()
        .filter(|p| p.rejection.is_some())
        .collect();
    match expect.gate {
        Some(GateVerdict::Accept) if !rejections.is_empty() => out.push(Failure::new(
            "gate",
            "accept (no decision refused)".into(),
            format!("rejected: {}", rejection_text(rejections[0])),
        )),
        Some(GateVerdict::Reject) if rejections.is_empty() => out.push(Failure::new(
            "gate",
            "reject (a decision refused)".into(),
            format!(
                "every one of {} decision(s) accepted ({})",
                seen.proposed.len(),
                types_text(seen)
            ),
        )),
        _ => {}
    }
    if let Some(want) = &expect.reason {
        // With `gate: reject` the reason is the gate's; otherwise the gate's
        // or the job's failure reason.
        let mut reasons: Vec<String> = rejections.iter().map(|p| rejection_text(p)).collect();
        if expect.gate != Some(GateVerdict::Reject) {
            reasons.extend(seen.reason.clone());
        }
        if !reasons.iter().any(|r| r.contains(want.as_str())) {
            let actual = if reasons.is_empty() {
                "no rejection or failure reason".to_string()
            } else {
                reasons
                    .iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push(Failure::new(
                "reason",
                format!("a reason containing \"{want}\""),
                actual,
            ));
        }
    }
    if let Some(results) = &expect.results {
        for (i, want) in results.iter().enumerate() {
            let check = format!("results[{i}]");
            match seen.effects.get(i) {
                None => out.push(Failure::new(
                    check,
                    format!("a result containing {}", show(want)),
                    format!("only {} decision(s) were executed", seen.effects.len()),
                )),
                Some(e) => {
                    if let Err(m) = subset(want, &e.result) {
                        let of = match &e.error {
                            Some(error) => format!("{} failed: {error}", e.decision),
                            None => format!("result of {}", e.decision),
                        };
                        out.push(mismatch(check, want, &e.result, &m, of));
                    }
                }
            }
        }
    }
    if let Some(want) = expect.state {
        let want = match want {
            FinalState::Done => Some(State::Done),
            FinalState::Failed => Some(State::Failed),
            FinalState::Waiting => None,
        };
        let parked = seen.waiting.is_some() && seen.state.is_none();
        if seen.state != want || (want.is_none() && !parked) {
            let mut actual = match (seen.state, &seen.waiting) {
                (Some(s), _) => s.to_string(),
                (None, Some(d)) => format!("WAITING on {d} (no verdict given)"),
                (None, None) => "the job never ended".into(),
            };
            if let Some(reason) = &seen.reason {
                actual = format!("{actual} ({reason})");
            }
            let want = want.map_or("WAITING".to_string(), |s| s.to_string());
            out.push(Failure::new("state", want, actual));
        }
    }
    out
}

fn types_text(seen: &Observed) -> String {
    let kinds: Vec<&str> = seen.proposed.iter().map(|p| p.kind.as_str()).collect();
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.join(", ")
    }
}

fn rejection_text(p: &Proposed) -> String {
    format!(
        "{} ({}) {}",
        p.id,
        p.kind,
        p.rejection.as_deref().unwrap_or_default()
    )
}

fn mismatch(check: String, want: &Value, actual: &Value, m: &Mismatch, of: String) -> Failure {
    Failure {
        check,
        expected: format!("{} (a subset)", show(want)),
        actual: format!("{} ({of})", show(actual)),
        // Where they differ, unless that is the whole value.
        detail: (!m.at.is_empty()).then(|| m.to_string()),
    }
}

/// A JSON value as compact JSON, cut at [`SHOWN_VALUE_CHARS`].
pub fn show(value: &Value) -> String {
    crate::decision::excerpt(&value.to_string(), SHOWN_VALUE_CHARS)
}

/// Where an expected value first differs from the actual one.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// JSON pointer into the actual value (`""` for the whole value).
    pub at: String,
    pub expected: Value,
    /// `None` when the member is missing.
    pub actual: Option<Value>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() { "/" } else { &self.at };
        match &self.actual {
            None => write!(f, "at {at}: missing, expected {}", show(&self.expected)),
            Some(a) => write!(
                f,
                "at {at}: expected {}, got {}",
                show(&self.expected),
                show(a)
            ),
        }
    }
}

/// Whether `actual` contains `expected`: objects by member (recursively, extra
/// members allowed), arrays element by element with equal lengths, anything
/// else by equality.
pub fn subset(expected: &Value, actual: &Value) -> Result<(), Mismatch> {
    subset_at(expected, actual, String::new())
}

fn subset_at(expected: &Value, actual: &Value, at: String) -> Result<(), Mismatch> {
    let differ = |at: String| Mismatch {
        at,
        expected: expected.clone(),
        actual: Some(actual.clone()),
    };
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, w) in want {
                let here = format!("{at}/{}", crate::manifest::yaml::pointer_token(key));
                match got.get(key) {
                    None => {
                        return Err(Mismatch {
                            at: here,
                            expected: w.clone(),
                            actual: None,
                        })
                    }
                    Some(g) => subset_at(w, g, here)?,
                }
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return Err(differ(at));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                subset_at(w, g, format!("{at}/{i}"))?;
            }
            Ok(())
        }
        // 1 and 1.0 are the same number in a payload.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        _ if expected == actual => Ok(()),
        _ => Err(differ(at)),
    }
}

/// The first place two values differ, both ways (for two runs that should
/// have recorded the same thing).
pub fn first_difference(a: &Value, b: &Value) -> Option<Mismatch> {
    subset(a, b).err().or_else(|| {
        subset(b, a).err().map(|m| Mismatch {
            at: m.at,
            expected: m.actual.unwrap_or(Value::Null),
            actual: Some(m.expected),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen() -> Observed {
        Observed {
            proposed: vec![Proposed {
                id: "j#1.0".into(),
                kind: "greet".into(),
                payload: json!({"name": "Ada", "loud": false}),
                rejection: None,
            }],
            effects: vec![EffectSeen {
                decision: "j#1.0".into(),
                result: json!({"greeting": "Hello, Ada!"}),
                error: None,
            }],
            state: Some(State::Done),
            reason: None,
            waiting: None,
        }
    }

    #[test]
    fn subsets_allow_extra_members_but_not_extra_elements() {
        assert!(subset(&json!({"a": 1}), &json!({"a": 1.0, "b": 2})).is_ok());
        assert!(subset(
            &json!({"a": {"b": [1, {"c": 2}]}}),
            &json!({"a": {"b": [1, {"c": 2, "d": 3}]}})
        )
        .is_ok());
        let m = subset(&json!({"a": [1, 2]}), &json!({"a": [1, 2, 3]})).unwrap_err();
        assert_eq!(m.at, "/a");
        let m = subset(&json!({"a": {"b": "x"}}), &json!({"a": {"b": "y"}})).unwrap_err();
        assert_eq!(m.to_string(), r#"at /a/b: expected "x", got "y""#);
        let m = subset(&json!({"a/b": 1}), &json!({})).unwrap_err();
        assert_eq!(m.to_string(), "at /a~1b: missing, expected 1");
    }

    #[test]
    fn a_met_expectation_passes_and_each_unmet_one_is_named() {
        let good = Expect {
            decisions: Some(1),
            types: Some(vec!["greet".into()]),
            payloads: Some(vec![json!({"name": "Ada"})]),
            gate: Some(GateVerdict::Accept),
            results: Some(vec![json!({"greeting": "Hello, Ada!"})]),
            state: Some(FinalState::Done),
            ..Expect::default()
        };
        assert_eq!(check(&good, &seen()), vec![]);
        let bad = Expect {
            decisions: Some(2),
            types: Some(vec!["advance".into()]),
            payloads: Some(vec![json!({"name": "Bob"}), json!({})]),
            gate: Some(GateVerdict::Reject),
            reason: Some("scope".into()),
            results: Some(vec![json!({"greeting": "Hi"})]),
            state: Some(FinalState::Failed),
            ..Expect::default()
        };
        let checks: Vec<String> = check(&bad, &seen()).into_iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            [
                "decisions",
                "types",
                "payloads[0]",
                "payloads[1]",
                "gate",
                "reason",
                "results[0]",
                "state"
            ]
        );
    }

    #[test]
    fn a_rejection_is_quoted_with_its_decision() {
        let mut s = seen();
        s.proposed[0].rejection = Some("scope: path 'manifests' is protected".into());
        s.effects.clear();
        s.state = Some(State::Failed);
        let expect = Expect {
            gate: Some(GateVerdict::Accept),
            ..Expect::default()
        };
        let f = &check(&expect, &s)[0];
        assert_eq!(
            f.actual,
            "rejected: j#1.0 (greet) scope: path 'manifests' is protected"
        );
        let expect = Expect {
            gate: Some(GateVerdict::Reject),
            reason: Some("is protected".into()),
            ..Expect::default()
        };
        assert_eq!(check(&expect, &s), vec![]);
    }

    #[test]
    fn deterministic_false_alone_is_no_expectation() {
        assert!(!has_expectations(&Expect::default()));
        let only_false = Expect {
            deterministic: Some(false),
            ..Expect::default()
        };
        assert!(!has_expectations(&only_false));
        let state = Expect {
            state: Some(FinalState::Done),
            ..Expect::default()
        };
        assert!(has_expectations(&state));
    }
}
