//! The harness: how an accepted decision reaches the world, and only as far
//! as its agent's role grants.
//!
//! Owns the built-in tools that touch the host (`fs.read`, `fs.write`,
//! `fs.stat`, `fs.disk_usage`, `text.count` in [`fs`]; `sys.info` in
//! [`sys`]), the capability [`fs::Handle`] they go through, the runner of
//! executable tools ([`tools`]) and their kernel confinement ([`landlock`]
//! for paths, [`launcher`] for the layers put in place before a tool runs),
//! the handler of MCP tools and its live servers ([`mcp`]),
//! and the node's audit log ([`audit`]). It does not decide whether a
//! decision runs (the gate did) and never acts while replaying: handlers see
//! no [`LiveIo`] then, and read their recorded outcome back instead (except
//! `fs.write`, whose result is a function of its payload and is recomputed).
//!
//! Every mediated action and every refusal is audited before anything
//! happens; an action whose audit entry cannot be written does not run.

pub mod audit;
pub mod fs;
pub mod landlock;
pub mod launcher;
pub mod mcp;
pub mod status;
pub mod sys;
pub mod tools;

pub use status::{confinement_status, ConfinementStatus};
pub use tools::ToolRunner;

use crate::decision::Decision;
use crate::exec::{AuditEntry, Cx, Executor, LiveIo, Outcome, Verdict};
use std::sync::Arc;

/// Longest `action` text an audit entry keeps.
const MAX_ACTION_CHARS: usize = 300;

/// Registers the harness' built-in handlers and `tools` as the runner of
/// executable tools.
pub fn register(executor: Executor, tools: ToolRunner) -> Executor {
    executor
        .with("fs.read", Arc::new(fs::FsRead))
        .with("fs.write", Arc::new(fs::FsWrite))
        .with("fs.stat", Arc::new(fs::FsStat))
        .with("fs.disk_usage", Arc::new(fs::DiskUsage))
        .with("text.count", Arc::new(fs::TextCount))
        .with("sys.info", Arc::new(sys::SysInfo))
        .with(
            crate::plan::MCP_HANDLER,
            Arc::new(mcp::McpHandler::new(&tools)),
        )
        .with_exec(Arc::new(tools))
}

/// The action an audit entry names: the decision type and its target.
pub fn audit_action(kind: &str, target: &str) -> String {
    let text = format!("{kind} {}", target.escape_debug());
    if text.chars().count() > MAX_ACTION_CHARS {
        text.chars().take(MAX_ACTION_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

/// Appends one entry to the node's audit log.
pub fn audit(
    live: &dyn LiveIo,
    cx: &Cx<'_>,
    decision: &Decision,
    action: &str,
    verdict: Verdict,
    reason: String,
) -> Result<(), String> {
    let entry = AuditEntry {
        job: cx.job.job.clone(),
        agent: cx.job.agent.clone(),
        decision: decision.id.clone(),
        action: action.to_string(),
        verdict,
        reason,
    };
    live.audit(&entry)
        .map_err(|e| format!("not run: cannot append to the audit log: {e}"))
}

/// Audits a refusal and returns its reason as the decision's error (or the
/// audit failure, if that failed too).
pub fn refuse(
    live: &dyn LiveIo,
    cx: &Cx<'_>,
    decision: &Decision,
    action: &str,
    reason: String,
) -> String {
    match audit(live, cx, decision, action, Verdict::Refused, reason.clone()) {
        Ok(()) => reason,
        Err(e) => format!("{reason} ({e})"),
    }
}

/// The outcome recorded for this decision, for a handler asked to run
/// while replaying: nothing is done again.
pub fn read_back(cx: &Cx<'_>) -> Result<Outcome, String> {
    match cx.recorded {
        Some((_, Some(error))) => Err(error.to_string()),
        Some((result, None)) => crate::exec::read_back(result),
        None => Err("nothing is recorded for this decision and a replay cannot act".into()),
    }
}
