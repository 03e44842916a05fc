//! The node's audit log: every mediated action and every refusal, one
//! hash-chained record each, in `audit/<node>.jsonl` of the data dir.
//!
//! Reuses the decision log's machinery (sealing, group commit, torn-tail
//! repair, `jaros verify`); only the record kind differs. Audit records are
//! not replayed: they say what the harness allowed and refused, and when.

use crate::exec::{AuditEntry, Verdict};
use crate::log::{read_log, Body, LogError, LogWriter, OpenReport};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// One node's open audit log.
pub struct AuditLog {
    writer: LogWriter,
    /// What opening found: a torn last record cut (`truncated_bytes`) is
    /// reported by the node as the decision log's is.
    pub open_report: OpenReport,
    /// An append failed: the writer is poisoned and every later append
    /// fails, so the node must restart (see [`AuditLog::broken`]).
    broken: AtomicBool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.writer.path())
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the audit log at `path`, as the decision log is
    /// opened: locked, a torn tail cut, the chain verified.
    pub fn open(path: &Path) -> Result<AuditLog, LogError> {
        let (writer, open_report) = LogWriter::open(path)?;
        Ok(AuditLog {
            writer,
            open_report,
            broken: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Appends one entry; returns once it is durable.
    pub fn append(&self, entry: &AuditEntry) -> Result<u64, LogError> {
        let body = Body::Audit {
            job: entry.job.clone(),
            agent: entry.agent.clone(),
            decision: entry.decision.clone(),
            action: entry.action.clone(),
            verdict: entry.verdict.as_str().to_string(),
            reason: entry.reason.clone(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let appended = self.writer.append(&body);
        if appended.is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
        appended
    }

    /// Whether an append has failed. A failed write poisons a log for good
    /// (as the decision log's does), so no action that must be audited can
    /// run again until the node restarts and reopens it: retrying them is
    /// pointless, and the node stops instead.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

/// An audit record as `jaros audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub node: String,
    pub seq: u64,
    pub time: String,
    pub job: String,
    pub agent: String,
    pub decision: String,
    pub action: String,
    pub verdict: String,
    pub reason: String,
}

impl Line {
    pub fn refused(&self) -> bool {
        self.verdict == Verdict::Refused.as_str()
    }
}

/// Reads one audit log, checking its chain.
pub fn read(path: &Path) -> Result<Vec<Line>, LogError> {
    let node = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let log = read_log(path)?;
    Ok(log
        .records
        .into_iter()
        .filter_map(|r| match r.body {
            Body::Audit {
                job,
                agent,
                decision,
                action,
                verdict,
                reason,
                time,
            } => Some(Line {
                node: node.clone(),
                seq: r.seq,
                time,
                job: job.to_string(),
                agent: agent.to_string(),
                decision: decision.to_string(),
                action,
                verdict,
                reason,
            }),
            _ => None,
        })
        .collect())
}

/// Every node's audit log under `audit_dir`, sorted by file name.
pub fn files(audit_dir: &Path) -> Result<Vec<PathBuf>, crate::fsx::IoError> {
    Ok(crate::fsx::list_dir(audit_dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{AgentName, DecisionId, JobId};

    #[test]
    fn entries_are_chained_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/n1.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let job = JobId::new("j1").unwrap();
        for (i, verdict) in [Verdict::Allowed, Verdict::Refused].into_iter().enumerate() {
            let entry = AuditEntry {
                job: job.clone(),
                agent: AgentName::new("a").unwrap(),
                decision: DecisionId::new(&job, 1, i as u32),
                action: "fs.read notes/a.md".into(),
                verdict,
                reason: format!("reason {i}"),
            };
            assert_eq!(log.append(&entry).unwrap(), i as u64 + 1);
        }
        drop(log);
        let lines = read(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].refused() && lines[1].refused());
        assert_eq!(
            (lines[1].node.as_str(), lines[1].decision.as_str()),
            ("n1", "j1#1.1")
        );
        assert!(crate::log::verify_chain(&path, None).error.is_none());
    }

    #[test]
    fn a_torn_tail_of_the_audit_log_is_cut_and_reported_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/n1.jsonl");
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.open_report.truncated_bytes, 0);
        let job = JobId::new("j1").unwrap();
        let entry = AuditEntry {
            job: job.clone(),
            agent: AgentName::new("a").unwrap(),
            decision: DecisionId::new(&job, 1, 0),
            action: "fs.read notes/a.md".into(),
            verdict: Verdict::Allowed,
            reason: "granted".into(),
        };
        log.append(&entry).unwrap();
        drop(log);
        let torn = br#"{"kind":"audit","seq":2,"job":"j1","#;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, torn).unwrap();
        drop(file);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.open_report.truncated_bytes, torn.len());
        assert_eq!(log.append(&entry).unwrap(), 2);
        drop(log);
        assert_eq!(read(&path).unwrap().len(), 2);
    }
}
