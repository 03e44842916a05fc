//! Replay: rebuild every job from the logs, in memory, with the plan recorded
//! in the log, the same gate and the same executor, zero model calls and zero
//! tool executions; compare every recomputed state digest with the recorded
//! one; do it twice and compare the two passes. It writes nothing but the
//! job index (a cache, `crate::log::index`) when it reads one job.
//!
//! Stands on [`crate::fold`] (one job's records → its state). Here: the
//! report and the whole-data-dir [`replay`]; [`load`] reads the logs,
//! [`pass`] folds every job once, [`attribution`] names who failed a job,
//! [`blame`] walks one failure back, [`history`] gives one job's records,
//! [`one`] reads one job (and its chain of hand-offs) through the job index.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

mod attribution;
mod blame;
mod history;
mod load;
mod one;
mod pass;

pub use crate::fold::{fold, Divergence, FoldCounts, Folded, Met};
pub use blame::{blame, Blame, BlameLink, Counterfactual};
pub use history::{job_histories, job_history};
pub use load::voided_records;

use crate::datadir::DataDir;
use crate::decision::{AgentName, DecisionId, JobId};
use crate::exec::Executor;
use crate::fold::{fold_records, Checks};
use crate::log::Body;
use crate::plan::Plan;
use crate::state::State;
use attribution::attribute;
use load::{load, voided_list};
use pass::{pass, recorded_plan};
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
    let loaded = load(dir, &Options::default())?;
    if loaded.records == 0 && loaded.chain_errors.is_empty() {
        return Err(ReplayError::Empty(dir.root().to_path_buf()));
    }
    let mut walked = Walked {
        logs: loaded.logs,
        jobs: loaded.jobs.len() as u64,
        plans: loaded.plans.keys().map(|d| d.to_hex()).collect(),
        stopped: Vec::new(),
        chain_errors: loaded.chain_errors.clone(),
    };
    walked.plans.sort();
    for (job, places) in &loaded.jobs {
        let bodies: Vec<&Body> = loaded.bodies(places).collect();
        let result = recorded_plan(&loaded, &bodies).and_then(|plan| {
            let mut at = |met: &Met<'_>| visit(plan, met);
            fold_records(plan, executor, &bodies, Checks::All, false, Some(&mut at))
        });
        if let Err(d) = result {
            walked.stopped.push((job.clone(), d.what));
        }
    }
    Ok(walked)
}

/// Replays the data dir's logs in memory (twice) and reports.
pub fn replay(
    dir: &DataDir,
    executor: &Executor,
    options: &Options,
) -> Result<Report, ReplayError> {
    // One job: only its records, through the job indexes.
    if let Some(report) = one::replay(dir, executor, options)? {
        return Ok(report);
    }
    let loaded = load(dir, options)?;
    if loaded.records == 0 && loaded.chain_errors.is_empty() {
        return Err(ReplayError::Empty(dir.root().to_path_buf()));
    }
    if let Some(job) = &options.job {
        if !loaded.jobs.contains_key(job) {
            return Err(ReplayError::UnknownJob {
                job: job.clone(),
                dir: dir.root().to_path_buf(),
            });
        }
    }
    // The two passes are independent: run them side by side.
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| pass(&loaded, executor, false));
        let first = pass(&loaded, executor, true);
        (first, second.join().expect("a replay pass does not panic"))
    });
    let mut report = Report {
        data_dir: dir.root().to_path_buf(),
        logs: loaded.logs,
        records: loaded.records,
        jobs: loaded.jobs.len() as u64,
        decisions: 0,
        rejected: 0,
        per_agent: BTreeMap::new(),
        model_calls: 0,
        tool_executions: 0,
        model_records: 0,
        effects_reexecuted: 0,
        effects_read_back: 0,
        final_states: BTreeMap::new(),
        unfinished_jobs: 0,
        byte_identical: true,
        divergence: None,
        chain_intact: loaded.chain_errors.is_empty(),
        chain_errors: loaded.chain_errors.clone(),
        deterministic: first.digests == second.digests,
        failures: Vec::new(),
        voided_records: loaded.voided.values().sum(),
        voided: voided_list(&loaded),
    };
    let agent_of = |job: &JobId| -> AgentName {
        match loaded.job(job).and_then(|mut r| r.next()) {
            Some(Body::Job { agent, .. }) => agent.clone(),
            _ => AgentName::new("unknown").expect("valid name"),
        }
    };
    for (job, result) in loaded.jobs.keys().zip(&first.folded) {
        let agent = agent_of(job);
        let stats = report.per_agent.entry(agent.to_string()).or_default();
        stats.jobs += 1;
        match result {
            Ok(f) => {
                stats.decisions += f.counts.decisions;
                stats.rejected += f.counts.rejected;
                report.decisions += f.counts.decisions;
                report.rejected += f.counts.rejected;
                report.model_records += f.counts.model_records;
                report.effects_reexecuted += f.counts.reexecuted;
                report.effects_read_back += f.counts.read_back;
                match &f.ended {
                    Some(end) => {
                        *report
                            .final_states
                            .entry(end.state.to_string())
                            .or_default() += 1;
                        if end.state == State::Failed {
                            stats.failed_jobs += 1;
                            report.failures.push(attribute(&loaded, job, end));
                        }
                    }
                    None => report.unfinished_jobs += 1,
                }
            }
            Err(d) => {
                report.byte_identical = false;
                let place = loaded.jobs[job]
                    .get(d.index)
                    .map(|&p| loaded.place(p))
                    .unwrap_or(RecordRef {
                        log: "?".into(),
                        seq: 0,
                    });
                let candidate = FirstDivergence {
                    record: place,
                    job: job.clone(),
                    agent,
                    decision: d.decision.clone(),
                    what: d.what.clone(),
                };
                // The first divergence in log order (log name, then seq).
                let earlier = report.divergence.as_ref().is_none_or(|cur| {
                    (&candidate.record.log, candidate.record.seq)
                        < (&cur.record.log, cur.record.seq)
                });
                if earlier {
                    report.divergence = Some(candidate);
                }
            }
        }
    }
    // Freeing a large log's records takes a while; nothing waits for it.
    std::thread::spawn(move || drop((loaded, first, second)));
    Ok(report)
}
