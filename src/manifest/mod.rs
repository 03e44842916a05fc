//! Manifests: the YAML files under a hive's `manifests/` that declare its
//! node, roles, agents, tools, schedules and evals, and their compilation
//! into the [`crate::plan::Plan`] the gate and executor read.
//!
//! A hive loads in four steps, each reporting every error it finds as
//! `file:line:col: message` at the YAML node at fault:
//! [`yaml`] (bytes to JSON with positions), [`validate::Schemas::check`]
//! (each document's typed parse, which accepts what its kind's JSON Schema,
//! generated from [`types`], accepts; the schema's errors for one refused),
//! [`validate::cross_check`] (references between manifests), and
//! [`compile`] (the files manifests name, then the plan).
//!
//! Owns the manifest types, their schemas and the example hive the binary
//! embeds ([`embedded`]). It does not own what the plan means at run time
//! (that is the gate and executor) nor how schedules fire or evals run.

pub mod compile;
pub mod embedded;
pub mod mcp;
pub mod types;
pub mod validate;
pub mod yaml;

pub use types::Kind;
pub use validate::Diagnostic;

use crate::plan::Plan;
use chrono::{DateTime, Utc};
use std::path::Path;

/// A hive whose manifests all passed, and its plan.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: Plan,
    pub manifests: validate::Manifests,
}

impl Loaded {
    /// What was loaded, for people: `12 documents in 9 files: 1 Node, ...`.
    pub fn summary(&self) -> String {
        let m = &self.manifests;
        let cases: usize = m.evals.iter().map(|e| e.m.spec.cases.len()).sum();
        let count = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        format!(
            "{} in {}: {}, {}, {}, {}, {}, {} ({})",
            count(m.documents(), "document"),
            count(m.files, "file"),
            count(m.nodes.len(), "Node"),
            count(m.roles.len(), "Role"),
            count(m.agents.len(), "Agent"),
            count(m.tools.len(), "Tool"),
            count(m.schedules.len(), "Schedule"),
            count(m.evals.len(), "Eval"),
            count(cases, "case"),
        )
    }

    /// Counts by kind, for `--json`.
    pub fn counts(&self) -> serde_json::Value {
        let m = &self.manifests;
        serde_json::json!({
            "files": m.files,
            "documents": m.documents(),
            "Node": m.nodes.len(),
            "Role": m.roles.len(),
            "Agent": m.agents.len(),
            "Tool": m.tools.len(),
            "Schedule": m.schedules.len(),
            "Eval": m.evals.len(),
            "eval_cases": m.evals.iter().map(|e| e.m.spec.cases.len()).sum::<usize>(),
        })
    }
}

/// Loads, checks and compiles the manifests of `hive`. On failure, returns
/// every error found, sorted by file, line and column.
///
/// Schedule triggers (cron, time zone, interval, `at`, jitter) are not
/// checked here: a node skips a broken schedule and runs the rest, so one
/// bad trigger never stops a hive. [`validate_hive`] checks them too.
pub fn load_hive(hive: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    load_checked(hive, None)
}

/// What `jaros validate` checks: everything [`load_hive`] does, and every
/// schedule's trigger as of `now` ([`validate::check_schedules`]), so that
/// an `at` already in the past is an error too.
pub fn validate_hive(hive: &Path, now: DateTime<Utc>) -> Result<Loaded, Vec<Diagnostic>> {
    load_checked(hive, Some(now))
}

fn load_checked(
    hive: &Path,
    schedules_at: Option<DateTime<Utc>>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let (manifests, mut errors) = validate::load(hive);
    errors.extend(validate::cross_check(&manifests, &Plan::builtin()));
    if let Some(now) = schedules_at {
        errors.extend(validate::check_schedules(&manifests, now));
    }
    // Compile even when something is wrong already, to report the files
    // at fault in the same run.
    let plan = compile::compile(hive, &manifests);
    let plan = match plan {
        Ok(plan) if errors.is_empty() => plan,
        Ok(_) => return Err(sorted(errors)),
        Err(more) => {
            errors.extend(more);
            return Err(sorted(errors));
        }
    };
    Ok(Loaded { plan, manifests })
}

fn sorted(mut errors: Vec<Diagnostic>) -> Vec<Diagnostic> {
    errors.sort();
    errors.dedup();
    errors
}

/// Checks one manifest file's bytes on their own (YAML, kinds, schemas,
/// typed parse), as the loader does for each file; returns the errors. The
/// entry point of the fuzz target: it must never panic.
pub fn check_file_bytes(bytes: &[u8]) -> Vec<(yaml::Pos, String)> {
    match yaml::parse(bytes) {
        Err(e) => vec![(e.pos, e.message)],
        Ok(docs) => docs
            .iter()
            .filter_map(|doc| validate::Schemas::shared().check(doc).err())
            .flatten()
            .collect(),
    }
}
