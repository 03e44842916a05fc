//! Golden cases: an Eval manifest written from a job recorded in a data dir.
//! The case runs the same agent on the same input with the model responses
//! the job got, and expects the decisions, results and final state it
//! produced; an agent that later behaves differently fails it.
//!
//! The case is named after the job, and cases run as the job their name
//! names, so ids in payloads and results (hand-offs name their child jobs)
//! come out the same.

use super::runner::observe;
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::log::{Blobs, Body};
use crate::plan::Plan;
use crate::state::State;
use serde_json::Value;

/// Why a golden case cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[error("job '{0}' has not ended yet; a golden case records how a job ended, so wait for it (`jaros result {0} --wait 30`)")]
    NotEnded(JobId),
    #[error("the model call of turn {turn} of job '{job}' failed ({error}); a golden case needs the responses the agent got")]
    ModelFailed {
        job: JobId,
        turn: u32,
        error: String,
    },
    #[error("cannot read the response of job '{job}' turn {turn}: {error}")]
    Blob {
        job: JobId,
        turn: u32,
        error: String,
    },
}

/// The Eval manifest, as YAML, of one case from job `job` of `data`.
/// `plan` (today's) says which decision types are deterministic.
pub fn from_log(data: &DataDir, plan: &Plan, job: &JobId) -> Result<String, GoldenError> {
    let bodies = crate::replay::job_history(data, job)?;
    if bodies.is_empty() {
        return Err(GoldenError::Replay(
            crate::replay::ReplayError::UnknownJob {
                job: job.clone(),
                dir: data.root().to_path_buf(),
            },
        ));
    }
    let blobs = Blobs::new(data.root());
    let (mut agent, mut input) = (String::new(), Value::Null);
    let mut responses = Vec::new();
    let mut model = false;
    for body in &bodies {
        match body {
            Body::Job {
                agent: a, input: i, ..
            } => {
                agent = a.to_string();
                input = i.clone();
            }
            Body::Model {
                turn,
                response,
                error,
                ..
            } => {
                model = true;
                if let Some(error) = error {
                    return Err(GoldenError::ModelFailed {
                        job: job.clone(),
                        turn: *turn,
                        error: error.clone(),
                    });
                }
                let bytes = blobs.get(response).map_err(|e| GoldenError::Blob {
                    job: job.clone(),
                    turn: *turn,
                    error: e.to_string(),
                })?;
                responses.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            _ => {}
        }
    }
    let seen = observe(&bodies);
    let Some(state) = seen.state else {
        return Err(GoldenError::NotEnded(job.clone()));
    };
    let deterministic = seen
        .proposed
        .iter()
        .filter(|p| p.rejection.is_none())
        .all(|p| plan.types.get(&p.kind).is_some_and(|t| t.deterministic));

    let name: String = format!("golden-{job}")
        .chars()
        .take(crate::decision::MAX_NAME_BYTES)
        .collect();
    let mut y = String::new();
    y.push_str("# yaml-language-server: $schema=../../schemas/eval.json\n");
    y.push_str(&format!(
        "# A golden case written by `jaros eval --from-log {job}`: the agent must\n\
         # propose, and its decisions produce, what the recorded job did.\n"
    ));
    y.push_str("apiVersion: jaros/v1\nkind: Eval\nmetadata:\n");
    y.push_str(&format!("  name: {}\n", flow(&Value::from(name))));
    y.push_str(&format!(
        "  description: {}\n",
        flow(&Value::from(format!(
            "Job {job} of agent {agent}, as recorded."
        )))
    ));
    y.push_str("spec:\n  cases:\n");
    y.push_str(&format!(
        "    - name: {}\n",
        flow(&Value::from(job.as_str()))
    ));
    y.push_str(&format!("      agent: {}\n", flow(&Value::from(agent))));
    y.push_str(&format!("      input: {}\n", flow(&input)));
    if model {
        y.push_str("      responses:\n");
        for r in &responses {
            y.push_str(&format!("        - {}\n", flow(&Value::from(r.as_str()))));
        }
    }
    y.push_str("      expect:\n");
    y.push_str(&format!("        decisions: {}\n", seen.proposed.len()));
    let types: Vec<Value> = seen
        .proposed
        .iter()
        .map(|p| Value::from(p.kind.as_str()))
        .collect();
    y.push_str(&format!("        types: {}\n", flow(&Value::Array(types))));
    if !seen.proposed.is_empty() {
        y.push_str("        payloads:\n");
        for p in &seen.proposed {
            y.push_str(&format!("          - {}\n", flow(&p.payload)));
        }
    }
    match seen.proposed.iter().find_map(|p| p.rejection.as_deref()) {
        None if !seen.proposed.is_empty() => y.push_str("        gate: accept\n"),
        None => {}
        Some(reason) => {
            y.push_str("        gate: reject\n");
            // The reason without the check's name: `scope: path ...` → `path ...`.
            let reason = reason.split_once(": ").map_or(reason, |(_, r)| r);
            y.push_str(&format!("        reason: {}\n", flow(&Value::from(reason))));
        }
    }
    if !seen.effects.is_empty() {
        y.push_str("        results:\n");
        for e in &seen.effects {
            y.push_str(&format!("          - {}\n", flow(&e.result)));
        }
    }
    let state = if state == State::Done {
        "DONE"
    } else {
        "FAILED"
    };
    y.push_str(&format!("        state: {state}\n"));
    if deterministic {
        y.push_str("        deterministic: true\n");
    }
    Ok(y)
}

/// A JSON value in YAML flow style: strings double-quoted with JSON escapes
/// (which YAML reads alike), collections with `, ` and `: ` separators.
pub fn flow(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), flow(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flow_yaml_reads_back_as_the_same_json() {
        let value = json!({
            "s": "quote \" backslash \\ newline \n tab \t nul \u{0} é ✓ #not-a-comment",
            "n": [1, -2.5, 1e300, true, null, "", [], {}],
            "k: y": {"- x": "[y]", "*a": "&b", "!t": "%d", "@": "`"},
            "multi": "line one\nline two\r\n"
        });
        let text = format!("v: {}\n", flow(&value));
        let docs = crate::manifest::yaml::parse(text.as_bytes()).unwrap();
        assert_eq!(docs[0].value["v"], value, "{text}");
    }
}
