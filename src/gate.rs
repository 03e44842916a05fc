//! The gate: total and deterministic. Given the plan, the job's state and a
//! decision, it accepts or rejects with a reason, checking in order:
//! structure, registered type, grant, payload schema, scopes, budget.
//!
//! Owns the checks and their order. It performs no I/O: symlinks are resolved
//! by the executor's handles at execution time (see [`crate::harness`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::decision::Decision;
use crate::jobstate::JobState;
use crate::plan::{Plan, ScopeKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The checks, in the order the gate makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Structure,
    Registered,
    Granted,
    Schema,
    Scope,
    Budget,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Structure => "structure",
            Check::Registered => "registered",
            Check::Granted => "granted",
            Check::Schema => "schema",
            Check::Scope => "scope",
            Check::Budget => "budget",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the gate refused a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub check: Check,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.reason)
    }
}

fn reject(check: Check, reason: impl Into<String>) -> Result<(), Rejection> {
    Err(Rejection {
        check,
        reason: reason.into(),
    })
}

/// Decides whether `decision` may run for `job` under `plan`.
pub fn check(
    plan: &Plan,
    job: &JobState,
    decision: &Decision,
    turn: u32,
    position: u32,
) -> Result<(), Rejection> {
    check_structure(job, decision, turn, position)?;
    let Some(spec) = plan.types.get(&decision.kind) else {
        return reject(
            Check::Registered,
            format!(
                "decision type '{}' is not registered in the plan",
                decision.kind
            ),
        );
    };
    let agent = job.agent.as_str();
    let Some(grant) = plan.grant_of(agent) else {
        return reject(
            Check::Granted,
            format!("agent '{agent}' has no role in the plan"),
        );
    };
    if !grant.types.contains(&decision.kind) {
        let role = &plan.agents[agent].role;
        return reject(
            Check::Granted,
            format!(
                "role '{role}' of agent '{agent}' does not grant decision type '{}'",
                decision.kind
            ),
        );
    }
    match plan.payload_validator(&decision.kind) {
        None => {
            return reject(
                Check::Schema,
                format!("the payload schema of '{}' does not compile", decision.kind),
            )
        }
        Some(validator) => {
            if let Some(error) = validator.iter_errors(&decision.payload).next() {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() {
                    "payload".to_string()
                } else {
                    format!("payload{at}")
                };
                return reject(Check::Schema, format!("{at}: {error}"));
            }
        }
    }
    for scope in &spec.scopes {
        let value = decision.payload.pointer(&scope.pointer);
        let Some(text) = value.and_then(|v| v.as_str()) else {
            if value.is_none() {
                continue; // optional field absent: nothing to reach
            }
            return reject(
                Check::Scope,
                format!("payload{} must be a string", scope.pointer),
            );
        };
        let role = &plan.agents[agent].role;
        match scope.kind {
            ScopeKind::Read | ScopeKind::Write => {
                let (globs, verb) = if scope.kind == ScopeKind::Read {
                    (&grant.read, "read")
                } else {
                    (&grant.write, "write")
                };
                let path = match normalize_path(text) {
                    Ok(p) => p,
                    Err(why) => {
                        return reject(
                            Check::Scope,
                            format!("path '{}' refused: {why}", text.escape_debug()),
                        )
                    }
                };
                if let Some(p) = plan
                    .protected
                    .iter()
                    .find(|p| path == **p || path.starts_with(&format!("{p}/")))
                {
                    return reject(
                        Check::Scope,
                        format!("path '{path}' is inside '{p}/', which no grant reaches"),
                    );
                }
                if !globs.iter().any(|g| glob_match(g, &path)) {
                    return reject(
                        Check::Scope,
                        format!("role '{role}' does not grant {verb} access to '{path}'"),
                    );
                }
            }
            ScopeKind::Handoff => {
                let limit = plan.handoff.max_depth;
                if job.tree.depth >= limit {
                    return reject(
                        Check::Scope,
                        format!(
                            "hand-off to '{text}' refused: this job is at depth {} of its hand-off tree, and no tree goes deeper than {limit} (node manifest: handoff.max_depth)",
                            job.tree.depth
                        ),
                    );
                }
                if !grant.handoff.contains(text) {
                    return reject(
                        Check::Scope,
                        format!("role '{role}' does not grant hand-off to '{text}'"),
                    );
                }
                if !plan.agents.contains_key(text) {
                    return reject(
                        Check::Scope,
                        format!("hand-off target '{text}' is not an agent of the plan"),
                    );
                }
            }
            ScopeKind::Host => {
                if !grant.hosts.contains(text) {
                    return reject(
                        Check::Scope,
                        format!("role '{role}' does not grant reaching host '{text}'"),
                    );
                }
            }
        }
    }
    check_budget(plan, job, decision, &grant.budget)
}

/// Budgets, checked for every decision of every agent kind just before it
/// would run: the job's decisions, tokens and wall time (against the clock
/// reading recorded with the decision), and the room left in its hand-off
/// tree. The rejection is recorded with the decision, and the job's end
/// names it ("decision J#1.2 (fs.write) was rejected: budget: …").
fn check_budget(
    plan: &Plan,
    job: &JobState,
    decision: &Decision,
    budget: &crate::plan::Budget,
) -> Result<(), Rejection> {
    if job.accepted >= budget.decisions {
        return reject(
            Check::Budget,
            format!(
                "the job has used its budget of {} decisions",
                budget.decisions
            ),
        );
    }
    if job.tokens > budget.tokens {
        return reject(
            Check::Budget,
            format!(
                "the job has used {} tokens, over its budget of {}",
                job.tokens, budget.tokens
            ),
        );
    }
    if let Some(clock_ms) = job.clock_ms.filter(|ms| *ms >= budget.wall_ms) {
        return reject(
            Check::Budget,
            format!(
                "the job has run {clock_ms} ms, past its wall-time budget of {} ms",
                budget.wall_ms
            ),
        );
    }
    if plan.is_handoff(&decision.kind) && job.tree_room(plan) == 0 {
        return reject(
            Check::Budget,
            format!(
                "the hand-off tree has no room left for this job to hand off: its part of the tree holds at most {} jobs, itself and those it handed off already (node manifest: handoff.max_jobs, {} per tree)",
                job.tree.share(plan),
                plan.handoff.max_jobs
            ),
        );
    }
    Ok(())
}

fn check_structure(
    job: &JobState,
    d: &Decision,
    turn: u32,
    position: u32,
) -> Result<(), Rejection> {
    if d.source != job.agent {
        return reject(
            Check::Structure,
            format!(
                "source '{}' is not the job's agent '{}'",
                d.source, job.agent
            ),
        );
    }
    if !d.id.is_for(&job.job, turn, position) {
        return reject(
            Check::Structure,
            format!("id '{}' is not the runtime's id for this position", d.id),
        );
    }
    if crate::decision::check_name("decision type", &d.kind).is_err() {
        return reject(
            Check::Structure,
            format!("'{}' is not a decision type name", d.kind.escape_debug()),
        );
    }
    if let Err(e) = crate::decision::check_payload(&d.payload) {
        return reject(Check::Structure, format!("payload: {e}"));
    }
    if job.state.is_terminal() {
        return reject(
            Check::Structure,
            format!("the job is already {}; no further decisions run", job.state),
        );
    }
    Ok(())
}

/// Normalizes a hive-relative path lexically: refuses absolute paths, NUL
/// bytes, `..`, and empty paths; drops `.` components and repeated slashes.
pub fn normalize_path(text: &str) -> Result<String, &'static str> {
    if text.contains('\0') {
        return Err("it contains a NUL byte");
    }
    if text.starts_with('/') || text.starts_with('\\') {
        return Err("absolute paths are not allowed; use a path relative to the hive");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("'..' is not allowed"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        // "." (or "./") names the hive itself; "" names nothing.
        return if text.is_empty() {
            Err("it names no file")
        } else {
            Ok(".".into())
        };
    }
    Ok(parts.join("/"))
}

/// Matches a hive-relative path against a glob: `*` and `?` stay within one
/// path component, `**` spans any number of components.
pub fn glob_match(glob: &str, path: &str) -> bool {
    let g: Vec<&str> = glob.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').collect();
    match_components(&g, &p)
}

fn match_components(g: &[&str], p: &[&str]) -> bool {
    match g.first() {
        None => p.is_empty(),
        Some(&"**") => (0..=p.len()).any(|skip| match_components(&g[1..], &p[skip..])),
        Some(seg) => {
            !p.is_empty()
                && match_segment(seg.as_bytes(), p[0].as_bytes())
                && match_components(&g[1..], &p[1..])
        }
    }
}

fn match_segment(g: &[u8], s: &[u8]) -> bool {
    match g.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|k| match_segment(&g[1..], &s[k..])),
        Some(b'?') => !s.is_empty() && match_segment(&g[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && match_segment(&g[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_components() {
        assert!(glob_match("notes/*.md", "notes/a.md"));
        assert!(!glob_match("notes/*.md", "notes/sub/a.md"));
        assert!(glob_match("notes/**", "notes/sub/a.md"));
        assert!(glob_match("**", "a/b/c"));
        assert!(glob_match("**/*.txt", "a.txt"));
        assert!(glob_match("data/?.csv", "data/x.csv"));
        assert!(!glob_match("data/?.csv", "data/xy.csv"));
    }

    #[test]
    fn paths_are_normalized_or_refused() {
        assert_eq!(normalize_path("./a//b/./c").unwrap(), "a/b/c");
        assert_eq!(normalize_path("a/../b"), Err("'..' is not allowed"));
        assert!(normalize_path("/etc/passwd").is_err());
        assert_eq!(normalize_path("a\0b"), Err("it contains a NUL byte"));
        assert_eq!(normalize_path("./").unwrap(), ".");
        assert_eq!(normalize_path(""), Err("it names no file"));
    }
}
