//! Replay: rebuild every job from the logs, in memory, with the plan recorded
//! in the log, the same gate and the same executor, zero model calls and zero
//! tool executions; compare every recomputed state digest with the recorded
//! one; do it twice and compare the two passes. It writes nothing but the
//! job index (a cache, `crate::log::index`) when it reads one job.
//!
//! Stands on [`crate::fold`] (one job's records → its state). Here: the
//! report and the whole-data-dir [`replay`], which [`stream`] runs in
//! bounded memory (reading the logs as streams, [`census`] learning what
//! each job holds), as it does [`each_decision`] for `--under`; [`load`]
//! holds the few jobs attribution reads, [`pass`] finds a job's
//! recorded plan, [`attribution`] names who failed a job, [`blame`] walks
//! one failure back, [`history`] gives one job's records, [`voided`]
//! counts what takeovers voided for `jaros verify`; [`one`] reads one job
//! (and its chain of hand-offs) through the job index.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

mod attribution;
mod blame;
mod census;
mod history;
mod load;
mod one;
mod pass;
mod stream;
mod voided;

pub use crate::fold::{fold, Divergence, FoldCounts, Folded, Met};
pub use crate::log::stream::Progress;
pub use blame::{blame, Blame, BlameLink, Counterfactual};
pub use history::{job_histories, job_history};
pub use voided::{voided_records, voided_records_with};

use crate::datadir::DataDir;
use crate::decision::{AgentName, DecisionId, JobId};
use crate::exec::Executor;
use crate::plan::Plan;
use crate::state::State;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a record sits: which node's log, which seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    /// Shared by every record of one log (replay holds hundreds of thousands).
    #[serde(serialize_with = "serialize_str")]
    pub log: std::sync::Arc<str>,
    pub seq: u64,
}

fn serialize_str<S: serde::Serializer>(
    text: &std::sync::Arc<str>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

/// The first disagreement between a replay and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstDivergence {
    pub record: RecordRef,
    pub job: JobId,
    pub agent: AgentName,
    pub decision: Option<DecisionId>,
    pub what: String,
}

/// One link of a failed job's chain of hand-offs, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub job: JobId,
    pub agent: AgentName,
    /// The decision of this job that created the next link's job (or, for
    /// the last link, the decision the failure is blamed on).
    pub decision: Option<DecisionId>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub state: Option<State>,
}

/// A failed job and who failed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub job: JobId,
    pub agent: AgentName,
    pub decision: Option<DecisionId>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reason: String,
    pub chain: Vec<Link>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    pub jobs: u64,
    pub decisions: u64,
    pub rejected: u64,
    pub failed_jobs: u64,
}

/// Everything `jaros replay` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub data_dir: PathBuf,
    pub logs: usize,
    pub records: u64,
    pub jobs: u64,
    pub decisions: u64,
    pub rejected: u64,
    pub per_agent: BTreeMap<String, AgentStats>,
    /// Always zero: replay has no model client to call.
    pub model_calls: u64,
    /// Always zero: replay has no way to start a tool.
    pub tool_executions: u64,
    /// Model calls whose recorded responses were used.
    pub model_records: u64,
    /// Deterministic effects re-executed in memory and compared.
    pub effects_reexecuted: u64,
    /// Non-deterministic results read back from the log.
    pub effects_read_back: u64,
    pub final_states: BTreeMap<String, u64>,
    pub unfinished_jobs: u64,
    pub byte_identical: bool,
    pub divergence: Option<FirstDivergence>,
    pub chain_intact: bool,
    pub chain_errors: Vec<String>,
    /// The two passes agreed on every job's final state digest.
    pub deterministic: bool,
    pub failures: Vec<Attribution>,
    /// Records voided by a later epoch's takeover (see [`crate::takeover`]),
    /// in all: neither folded nor counted.
    pub voided_records: u64,
    /// The same, per log and job.
    pub voided: Vec<VoidedRecords>,
}

/// Records of one job in one log that a later epoch's takeover voided:
/// written by a node that had lost the job (paused past its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoidedRecords {
    pub log: String,
    pub job: JobId,
    pub records: u64,
}

impl Report {
    pub fn reproducible(&self) -> bool {
        self.byte_identical && self.chain_intact && self.deterministic
    }
}

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub job: Option<JobId>,
    /// Only records with `seq <= until` in each log.
    pub until: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("nothing to replay: {} holds no log records (run a job first, e.g. `jaros run advance --input '{{}}'`)", .0.display())]
    Empty(PathBuf),
    #[error("job '{job}' is not in any log under {}; `jaros status` lists the jobs", dir.display())]
    UnknownJob { job: JobId, dir: PathBuf },
    #[error("--until {until} is beyond the end of every log (the highest seq is {highest})")]
    UntilBeyondEnd { until: u64, highest: u64 },
    #[error(transparent)]
    Io(#[from] crate::fsx::IoError),
}

/// What [`each_decision`] went through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Walked {
    pub logs: usize,
    pub jobs: u64,
    /// The digests of the recorded plans the jobs were folded under.
    pub plans: Vec<String>,
    /// Jobs whose fold stopped early (a divergence, a plan that cannot be
    /// loaded), with why: their decisions after that point were not met.
    pub stopped: Vec<(JobId, String)>,
    pub chain_errors: Vec<String>,
}

/// Folds every job of the data dir under its recorded plan, as [`replay`]
/// does (one pass, nothing run), calling `visit` at each recorded decision
/// (accepted or refused, except unparsed ones) with the plan it was judged
/// under and the job's state the gate saw. For `jaros replay --under`,
/// which asks another plan's gate about the same decisions.
pub fn each_decision(
    dir: &DataDir,
    executor: &Executor,
    mut visit: impl FnMut(&Plan, &Met<'_>),
) -> Result<Walked, ReplayError> {
    stream::walk_decisions(dir, executor, &mut visit)
}

/// Replays the data dir's logs (twice) and reports.
pub fn replay(
    dir: &DataDir,
    executor: &Executor,
    options: &Options,
) -> Result<Report, ReplayError> {
    replay_with(dir, executor, options, None)
}

/// [`replay`], counting the bytes and records it reads into `progress`
/// (for a progress line; see [`Progress`]).
pub fn replay_with(
    dir: &DataDir,
    executor: &Executor,
    options: &Options,
    progress: Option<&Progress>,
) -> Result<Report, ReplayError> {
    // One job: only its records, through the job indexes.
    if let Some(report) = one::replay(dir, executor, options)? {
        return Ok(report);
    }
    stream::replay_streaming(dir, executor, options, progress)
}
