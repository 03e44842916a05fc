//! Verdict agents: a model that answers with one enumerated word, and the
//! declarative mapping from that word to the decisions the runtime proposes.
//!
//! Owns the JSON Schema of a verdict answer, reading an answer, rendering a
//! verdict's decision templates, and the checks `jaros validate` makes of a
//! mapping. A live turn and a resumed one both map the recorded answer here,
//! under the plan's mapping, so they derive the same decisions; what they
//! derive is then gated like any proposal. It does not ask the model (that
//! is [`crate::model`]) and decides nothing about what runs (that is
//! [`crate::gate`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::decision::Proposal;
use crate::plan::{DecisionTemplate, Verdicts};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The one field of a verdict answer: `{"verdict": "spam"}`.
pub const ANSWER_FIELD: &str = "verdict";
/// Most verdicts one agent may give.
pub const MAX_VERDICTS: usize = 16;
/// Most decisions one verdict may stand for.
pub const MAX_VERDICT_DECISIONS: usize = 8;
/// Most worked examples one agent may show its model.
pub const MAX_VERDICT_EXAMPLES: usize = 32;
/// How much of an answer an error quotes.
const SHOWN_CHARS: usize = 200;

/// Why an answer gave no decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    /// The model's fault: its answer is not one of the verdicts.
    #[error("the answer is not one of the verdicts {known} as {{\"verdict\": ...}}: {answer}")]
    Unknown { known: String, answer: String },
    /// The mapping's fault: a template of the verdict does not render for
    /// this job.
    #[error("verdict '{verdict}': decision {index} ({kind}) does not render: {reason}")]
    Render {
        verdict: String,
        index: usize,
        kind: String,
        reason: String,
    },
}

/// The JSON Schema a verdict agent's answer must follow: one object whose
/// only field is one of the verdicts.
pub fn schema(verdicts: &Verdicts) -> Value {
    let names: Vec<&String> = verdicts.map.keys().collect();
    json!({
        "type": "object",
        "properties": {ANSWER_FIELD: {"type": "string", "enum": names}},
        "required": [ANSWER_FIELD],
        "additionalProperties": false
    })
}

/// The answer that gives `verdict`, as an example shows it to the model.
pub fn answer_text(verdict: &str) -> String {
    // Spaced as a model writes JSON: the examples show the shape it copies.
    let name = Value::String(verdict.to_string());
    format!("{{\"{ANSWER_FIELD}\": {name}}}")
}

/// What a verdict's templates see: the job's input, the agent, the job id
/// and the verdict itself.
pub fn context(input: &Value, agent: &str, job: &str, verdict: &str) -> Value {
    json!({"input": input, "agent": agent, "job": job, "verdict": verdict})
}

/// The verdict an answer gives: `{"verdict": NAME}` with NAME one of the
/// agent's verdicts, nothing else.
pub fn read_answer<'a>(verdicts: &'a Verdicts, text: &str) -> Result<&'a str, VerdictError> {
    let unknown = || VerdictError::Unknown {
        known: verdicts
            .map
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        answer: crate::decision::excerpt(text, SHOWN_CHARS),
    };
    let value: Value = serde_json::from_str(text.trim()).map_err(|_| unknown())?;
    let Value::Object(map) = value else {
        return Err(unknown());
    };
    match (map.len(), map.get(ANSWER_FIELD)) {
        (1, Some(Value::String(name))) => verdicts
            .map
            .get_key_value(name)
            .map(|(k, _)| k.as_str())
            .ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

/// The decisions an answer stands for: its verdict's templates rendered for
/// this job (`input`, `agent`, `job`), in order.
pub fn proposals(
    verdicts: &Verdicts,
    text: &str,
    input: &Value,
    agent: &str,
    job: &str,
) -> Result<Vec<Proposal>, VerdictError> {
    let verdict = read_answer(verdicts, text)?;
    let templates = &verdicts.map[verdict];
    render(verdict, templates, &context(input, agent, job, verdict))
}

/// Renders `templates` (the decisions of `verdict`) with `context`.
pub fn render(
    verdict: &str,
    templates: &[DecisionTemplate],
    context: &Value,
) -> Result<Vec<Proposal>, VerdictError> {
    let env = crate::template::environment();
    let ctx = minijinja::Value::from(minijinja::value::Serde(context));
    templates
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let payload =
                render_value(&env, &t.payload, &ctx).map_err(|reason| VerdictError::Render {
                    verdict: verdict.to_string(),
                    index,
                    kind: t.kind.clone(),
                    reason,
                })?;
            Ok(Proposal {
                kind: t.kind.clone(),
                payload,
            })
        })
        .collect()
}

/// A string with template syntax in it.
fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The expression of a string that is one `{{ expression }}` and nothing else.
fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

fn render_value(
    env: &minijinja::Environment<'_>,
    value: &Value,
    ctx: &minijinja::Value,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) if is_template(text) => match whole_expression(text) {
            Some(expr) => {
                let out = env
                    .compile_expression(expr)
                    .and_then(|e| e.eval(ctx.clone()))
                    .map_err(|e| format!("'{text}': {e}"))?;
                if out.is_undefined() {
                    return Err(format!("'{text}': '{expr}' is undefined"));
                }
                serde_json::to_value(&out).map_err(|e| format!("'{text}': {e}"))?
            }
            None => Value::String(
                env.render_str(text, ctx.clone())
                    .map_err(|e| format!("'{text}': {e}"))?,
            ),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(env, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(env, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Every template string in `value` that does not parse, with its JSON pointer.
fn unparsable(value: &Value, pointer: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) if is_template(text) => {
            let env = crate::template::environment();
            let parsed = match whole_expression(text) {
                Some(expr) => env.compile_expression(expr).map(|_| ()),
                None => env.template_from_str(text).map(|_| ()),
            };
            if let Err(e) = parsed {
                out.push((
                    pointer.to_string(),
                    format!("template '{text}' does not parse: {e}"),
                ));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                unparsable(v, &format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let token = k.replace('~', "~0").replace('/', "~1");
                unparsable(v, &format!("{pointer}/{token}"), out);
            }
        }
        _ => {}
    }
}

/// What `jaros validate` finds wrong with an agent's verdicts: each problem
/// with the JSON pointer (under the agent's `/spec`) it is at. `granted`
/// says whether the agent's role grants a decision type (`None`: the role
/// is unknown, already reported elsewhere). Checks: at least one verdict and
/// at most [`MAX_VERDICTS`], names, types the role grants, templates that
/// parse, examples that name a verdict and render for their input.
pub fn check(
    map: &BTreeMap<String, Vec<DecisionTemplate>>,
    examples: &[crate::plan::VerdictExample],
    model_agent: bool,
    granted: &dyn Fn(&str) -> Option<bool>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !model_agent {
        if !map.is_empty() {
            out.push((
                "/spec/verdicts".into(),
                "verdicts are for a model agent (one with 'model' and 'prompt'); a template agent renders its decisions itself".into(),
            ));
        }
        if !examples.is_empty() {
            out.push((
                "/spec/examples".into(),
                "examples are for a model agent with verdicts".into(),
            ));
        }
        return out;
    }
    if map.is_empty() {
        if !examples.is_empty() {
            out.push((
                "/spec/examples".into(),
                "examples need verdicts: each example shows the model an input and the verdict it deserves".into(),
            ));
        }
        return out;
    }
    if map.len() > MAX_VERDICTS {
        out.push((
            "/spec/verdicts".into(),
            format!("{} verdicts, at most {MAX_VERDICTS} are allowed", map.len()),
        ));
    }
    if examples.len() > MAX_VERDICT_EXAMPLES {
        out.push((
            "/spec/examples".into(),
            format!(
                "{} examples, at most {MAX_VERDICT_EXAMPLES} are allowed",
                examples.len()
            ),
        ));
    }
    for (name, templates) in map {
        let at = match crate::decision::check_name("verdict", name) {
            Ok(()) => format!("/spec/verdicts/{name}"),
            Err(e) => {
                out.push(("/spec/verdicts".into(), e.to_string()));
                continue;
            }
        };
        if templates.len() > MAX_VERDICT_DECISIONS {
            out.push((
                at.clone(),
                format!(
                    "verdict '{name}' stands for {} decisions, at most {MAX_VERDICT_DECISIONS} are allowed",
                    templates.len()
                ),
            ));
        }
        for (i, t) in templates.iter().enumerate() {
            if granted(&t.kind) == Some(false) {
                out.push((
                    format!("{at}/{i}/type"),
                    format!(
                        "verdict '{name}' stands for a '{}' decision, which the agent's role does not grant",
                        t.kind
                    ),
                ));
            }
            unparsable(&t.payload, &format!("{at}/{i}/payload"), &mut out);
        }
    }
    if out.iter().any(|(p, _)| p.contains("/payload")) {
        return out; // examples would only repeat the parse errors
    }
    for (i, example) in examples.iter().enumerate() {
        let Some(templates) = map.get(&example.verdict) else {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            out.push((
                format!("/spec/examples/{i}/verdict"),
                format!(
                    "verdict '{}' is not one of the agent's verdicts: {}",
                    example.verdict,
                    known.join(", ")
                ),
            ));
            continue;
        };
        let ctx = context(&example.input, "example", "example", &example.verdict);
        if let Err(e) = render(&example.verdict, templates, &ctx) {
            out.push((
                format!("/spec/examples/{i}/input"),
                format!("the example's verdict does not render for its input: {e}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triage() -> Verdicts {
        let t = |kind: &str, payload: Value| DecisionTemplate {
            kind: kind.into(),
            payload,
        };
        Verdicts {
            map: [
                (
                    "spam".to_string(),
                    vec![t(
                        "advance",
                        json!({"events": ["fail"], "note": "spam: {{ input.id }}"}),
                    )],
                ),
                (
                    "request".to_string(),
                    vec![t(
                        "handoff",
                        json!({"agent": "worker", "input": "{{ input }}"}),
                    )],
                ),
            ]
            .into(),
            examples: vec![],
        }
    }

    #[test]
    fn a_verdict_renders_its_decisions_with_the_job_input_kept_whole() {
        let input = json!({"id": "T1", "ticket": "help", "n": 3});
        let got = proposals(
            &triage(),
            r#" {"verdict": "request"} "#,
            &input,
            "planner",
            "T1",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![Proposal {
                kind: "handoff".into(),
                payload: json!({"agent": "worker", "input": input}),
            }]
        );
        let got = proposals(&triage(), r#"{"verdict":"spam"}"#, &input, "planner", "T1").unwrap();
        assert_eq!(
            got[0].payload,
            json!({"events": ["fail"], "note": "spam: T1"})
        );
    }

    #[test]
    fn an_answer_outside_the_verdicts_is_refused() {
        for answer in [
            r#"{"verdict": "maybe"}"#,
            r#"{"verdict": "spam", "also": 1}"#,
            r#"{"decisions": []}"#,
            r#"["spam"]"#,
            "spam",
            "",
        ] {
            let e = proposals(&triage(), answer, &json!({}), "a", "j").unwrap_err();
            assert!(
                matches!(&e, VerdictError::Unknown { known, .. } if known == "request, spam"),
                "{answer}: {e}"
            );
        }
    }

    #[test]
    fn an_undefined_value_is_a_render_error_naming_the_verdict() {
        let e = proposals(&triage(), r#"{"verdict":"spam"}"#, &json!({}), "a", "j").unwrap_err();
        assert!(
            matches!(&e, VerdictError::Render { verdict, index: 0, .. } if verdict == "spam"),
            "{e}"
        );
        let e = proposals(
            &triage(),
            r#"{"verdict":"request"}"#,
            &json!(null),
            "a",
            "j",
        );
        assert!(e.is_ok(), "a null input is a value: {e:?}");
    }

    #[test]
    fn the_answer_schema_enumerates_the_verdicts() {
        let s = schema(&triage());
        assert_eq!(
            s["properties"]["verdict"]["enum"],
            json!(["request", "spam"])
        );
        assert_eq!(s["required"], json!(["verdict"]));
        assert_eq!(answer_text("spam"), r#"{"verdict": "spam"}"#);
    }

    #[test]
    fn validation_names_ungranted_types_unparsable_templates_and_stray_examples() {
        let mut v = triage();
        v.map.get_mut("spam").unwrap()[0].payload = json!({"note": "{{ input.id "});
        v.map.get_mut("request").unwrap().push(DecisionTemplate {
            kind: "fs.write".into(),
            payload: json!({}),
        });
        let granted = |t: &str| Some(t == "advance" || t == "handoff");
        let errors = check(&v.map, &[], true, &granted);
        let at: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            at,
            [
                "/spec/verdicts/request/1/type",
                "/spec/verdicts/spam/0/payload/note"
            ],
            "{errors:?}"
        );
        let examples = vec![crate::plan::VerdictExample {
            input: json!({"id": "X"}),
            verdict: "ham".into(),
        }];
        let errors = check(&triage().map, &examples, true, &granted);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "/spec/examples/0/verdict");
        assert!(check(&triage().map, &[], true, &granted).is_empty());
        assert_eq!(check(&triage().map, &[], false, &granted).len(), 1);
    }
}
