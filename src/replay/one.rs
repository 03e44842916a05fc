//! One job read from the logs through each node's job index, with the jobs
//! its attribution walks back through (its chain of hand-offs) and the
//! plans they were made under: `jaros replay --job` and `jaros blame` read
//! only those records, never a whole log.
//!
//! A job taken over has records in two nodes' logs: it is looked up in
//! every log's index, its records put in `at` order and what a later
//! epoch's takeover voided dropped ([`crate::takeover::voided`]), as the
//! whole-data-dir replay does. A log whose index cannot be written (a
//! read-only data dir) is read whole instead.

use super::attribution::{attribute, JobRecords};
use super::load::{load_plan, position_in_job};
use super::pass::{agent_of, fold_twice};
use super::{AgentStats, FirstDivergence, Options, RecordRef, ReplayError, Report, VoidedRecords};
use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::exec::Executor;
use crate::log::index::Index;
use crate::log::{read_log, Blobs, Body, LogError, Record};
use crate::plan::Plan;
use crate::state::State;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Jobs read up a chain of hand-offs, at most: as many links as
/// attribution walks (`attribution::MAX_CHAIN`).
const MAX_LINEAGE_JOBS: usize = 64;

/// Where one log's records come from.
enum Source {
    Index(Box<Index>),
    /// The whole log, read because its index cannot be written.
    Whole(Vec<Record>),
}

/// Some jobs of a data dir, read through the job indexes.
pub(super) struct Jobs {
    blobs: Blobs,
    sources: Vec<(Arc<str>, Source)>,
    /// Only records with `seq <= until` in each log.
    until: Option<u64>,
    /// Logs found, read or not.
    pub(super) logs: usize,
    /// The highest seq of any log.
    pub(super) highest: u64,
    /// Per job read that any log holds: its records (with their log's
    /// name) in `at` order, without what a later epoch voided.
    pub(super) jobs: BTreeMap<JobId, Vec<(Arc<str>, Record)>>,
    /// Jobs looked up, held or not.
    looked_up: HashSet<JobId>,
    pub(super) plans: HashMap<Digest, Result<Plan, String>>,
    /// Records read of the jobs looked up, voided ones included.
    pub(super) records: u64,
    pub(super) chain_errors: Vec<String>,
    pub(super) voided: BTreeMap<(Arc<str>, JobId), u64>,
}

impl JobRecords for Jobs {
    fn records_of(&self, job: &JobId) -> Option<Vec<&Body>> {
        self.jobs
            .get(job)
            .map(|records| records.iter().map(|(_, r)| &r.body).collect())
    }
}

impl Jobs {
    /// Opens (and brings up to date) every log's index.
    pub(super) fn open(dir: &DataDir, until: Option<u64>) -> Result<Jobs, ReplayError> {
        let mut jobs = Jobs {
            blobs: Blobs::new(dir.root()),
            sources: Vec::new(),
            until,
            logs: 0,
            highest: 0,
            jobs: BTreeMap::new(),
            looked_up: HashSet::new(),
            plans: HashMap::new(),
            records: 0,
            chain_errors: Vec::new(),
            voided: BTreeMap::new(),
        };
        for path in dir.log_files()? {
            let node: Arc<str> = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
                .into();
            jobs.logs += 1;
            let source = match Index::open(&path) {
                Ok(index) => {
                    jobs.highest = jobs.highest.max(index.last_seq());
                    Source::Index(Box::new(index))
                }
                // The index cannot be written: the whole log, read.
                Err(LogError::Io(_)) => match read_log(&path) {
                    Ok(log) => {
                        jobs.highest = jobs.highest.max(log.records.last().map_or(0, |r| r.seq));
                        Source::Whole(log.records)
                    }
                    Err(e) => {
                        jobs.chain_error(e);
                        continue;
                    }
                },
                Err(e) => {
                    jobs.chain_error(e);
                    continue;
                }
            };
            jobs.sources.push((node, source));
        }
        Ok(jobs)
    }

    /// A log that cannot be read, reported as replay reports it.
    fn chain_error(&mut self, e: LogError) {
        self.chain_errors.push(match e {
            LogError::Tampered {
                path,
                line,
                seq,
                reason,
            } => format!("{}: line {line} (seq {seq}): {reason}", path.display()),
            e => e.to_string(),
        });
    }

    /// Reads `job` and the jobs up its chain of hand-offs (its parent, the
    /// parent's parent, …), each with the plan it was made under.
    pub(super) fn read_lineage(&mut self, job: &JobId) {
        let mut next = Some(job.clone());
        for _ in 0..MAX_LINEAGE_JOBS {
            let Some(id) = next.take() else { break };
            if self.looked_up.contains(&id) {
                break;
            }
            self.read_job(&id);
            next = match self.jobs.get(&id).and_then(|r| r.first()) {
                Some((_, r)) => match &r.body {
                    Body::Job { parent, .. } => parent.clone(),
                    _ => None,
                },
                None => None,
            };
        }
    }

    /// Reads one job's records from every log, and its plan.
    fn read_job(&mut self, job: &JobId) {
        self.looked_up.insert(job.clone());
        let until = self.until.unwrap_or(u64::MAX);
        let mut records: Vec<(Arc<str>, Record)> = Vec::new();
        let mut errors = Vec::new();
        for (node, source) in &mut self.sources {
            let mine = match source {
                Source::Index(index) => match index.job(job.as_str()) {
                    Ok(mine) => mine,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                Source::Whole(all) => all
                    .iter()
                    .filter(|r| r.body.job_at().is_some_and(|(j, _)| j == job))
                    .cloned()
                    .collect(),
            };
            records.extend(
                mine.into_iter()
                    .filter(|r| r.seq <= until)
                    .map(|r| (node.clone(), r)),
            );
        }
        for e in errors {
            self.chain_error(e);
        }
        self.records += records.len() as u64;
        if records.is_empty() {
            return;
        }
        // In `at` order (stable: log by log, each in file order, as replay).
        records.sort_by_key(|(_, r)| position_in_job(&r.body));
        let keys: Vec<(u64, u32)> = records
            .iter()
            .map(|(_, r)| (r.epoch, position_in_job(&r.body)))
            .collect();
        let void = crate::takeover::voided(&keys);
        let mut flags = void.into_iter();
        records.retain(|(node, _)| {
            let is_void = flags.next().unwrap_or(false);
            if is_void {
                *self.voided.entry((node.clone(), job.clone())).or_default() += 1;
            }
            !is_void
        });
        if let Some((
            _,
            Record {
                body: Body::Job { plan, .. },
                ..
            },
        )) = records.first()
        {
            let plan = *plan;
            self.read_plan(&plan);
        }
        self.jobs.insert(job.clone(), records);
    }

    /// Loads the plan of `digest` from the first log that records it.
    fn read_plan(&mut self, digest: &Digest) {
        if self.plans.contains_key(digest) {
            return;
        }
        let until = self.until.unwrap_or(u64::MAX);
        let mut errors = Vec::new();
        let mut found = None;
        for (_, source) in &mut self.sources {
            let record = match source {
                Source::Index(index) => match index.plan(digest) {
                    Ok(record) => record,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                Source::Whole(all) => all
                    .iter()
                    .find(|r| matches!(&r.body, Body::Plan { digest: d, .. } if d == digest))
                    .cloned(),
            };
            if let Some(Record {
                seq,
                body: Body::Plan { blob, .. },
                ..
            }) = record
            {
                if seq <= until {
                    found = Some(blob);
                    break;
                }
            }
        }
        for e in errors {
            self.chain_error(e);
        }
        if let Some(blob) = found {
            let plan = load_plan(&self.blobs, digest, &blob);
            self.plans.insert(*digest, plan);
        }
    }

    /// Lets go of every log's index (and its lock, which a node resuming a
    /// job waits for) once what is needed is read.
    pub(super) fn close(&mut self) {
        self.sources.clear();
    }

    /// A job's records' bodies, in `at` order.
    pub(super) fn bodies(&self, job: &JobId) -> Option<Vec<&Body>> {
        self.records_of(job)
    }
}

/// `jaros replay --job`: the job (and its chain of hand-offs, for its
/// attribution) read through the job indexes, folded twice and reported
/// as the whole replay reports that job. `None` without `--job`.
pub(super) fn replay(
    dir: &DataDir,
    executor: &Executor,
    options: &Options,
) -> Result<Option<Report>, ReplayError> {
    let Some(job) = &options.job else {
        return Ok(None);
    };
    let mut jobs = Jobs::open(dir, options.until)?;
    if let Some(until) = options.until {
        if until > jobs.highest && jobs.highest > 0 {
            return Err(ReplayError::UntilBeyondEnd {
                until,
                highest: jobs.highest,
            });
        }
    }
    if jobs.highest == 0 && jobs.chain_errors.is_empty() {
        return Err(ReplayError::Empty(dir.root().to_path_buf()));
    }
    jobs.read_lineage(job);
    jobs.close();
    let Some(records) = jobs.jobs.get(job) else {
        return Err(ReplayError::UnknownJob {
            job: job.clone(),
            dir: dir.root().to_path_buf(),
        });
    };
    let bodies: Vec<&Body> = records.iter().map(|(_, r)| &r.body).collect();
    // Replay's two passes, one job each.
    let (first, deterministic) = fold_twice(&jobs.plans, executor, &bodies);
    let agent = agent_of(&bodies);
    let mut report = Report {
        data_dir: dir.root().to_path_buf(),
        logs: jobs.logs,
        records: jobs.jobs[job].len() as u64
            + jobs
                .voided
                .iter()
                .filter(|((_, j), _)| j == job)
                .map(|(_, n)| n)
                .sum::<u64>(),
        jobs: 1,
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
        chain_intact: jobs.chain_errors.is_empty(),
        chain_errors: jobs.chain_errors.clone(),
        deterministic,
        failures: Vec::new(),
        voided_records: 0,
        voided: Vec::new(),
    };
    // Only the job's own voided records, as the whole replay of one job.
    report.voided = jobs
        .voided
        .iter()
        .filter(|((_, j), _)| j == job)
        .map(|((log, j), &records)| VoidedRecords {
            log: log.to_string(),
            job: j.clone(),
            records,
        })
        .collect();
    report.voided_records = report.voided.iter().map(|v| v.records).sum();
    let stats: &mut AgentStats = report.per_agent.entry(agent.to_string()).or_default();
    stats.jobs += 1;
    match first {
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
                        report.failures.push(attribute(&jobs, job, end));
                    }
                }
                None => report.unfinished_jobs += 1,
            }
        }
        Err(d) => {
            report.byte_identical = false;
            let record = jobs.jobs[job]
                .get(d.index)
                .map(|(log, r)| RecordRef {
                    log: log.clone(),
                    seq: r.seq,
                })
                .unwrap_or(RecordRef {
                    log: "?".into(),
                    seq: 0,
                });
            report.divergence = Some(FirstDivergence {
                record,
                job: job.clone(),
                agent,
                decision: d.decision,
                what: d.what,
            });
        }
    }
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;
    use crate::decision::AgentName;
    use crate::log::{set_thread_epoch, LogWriter};
    use serde_json::json;

    fn job_record(job: &str, at: u32, parent: Option<&str>) -> Body {
        Body::Job {
            job: JobId::new(job).unwrap(),
            at,
            agent: AgentName::new("advance").unwrap(),
            input: json!({ "at": at }),
            plan: Digest::ZERO,
            parent: parent.map(|p| JobId::new(p).unwrap()),
            via: None,
            started_ms: None,
            depth: None,
            tree_jobs: None,
        }
    }

    /// Two nodes' logs: n1 ran P, then J (P's child) under epoch 1 up to
    /// `at` 3; n2 took J over under epoch 2 having seen 0..=1 and wrote 2..=4,
    /// voiding what n1 wrote at 2 and 3. Other jobs all around.
    fn taken_over() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let (n1, _) = LogWriter::open(&data.log_path("n1")).unwrap();
        let (n2, _) = LogWriter::open(&data.log_path("n2")).unwrap();
        let noise = |w: &LogWriter, n: u32| {
            for i in 0..n {
                w.append(&job_record(&format!("other{}", i % 7), i, None))
                    .unwrap();
            }
        };
        noise(&n1, 30);
        n1.append(&job_record("P", 0, None)).unwrap();
        set_thread_epoch(1);
        for at in 0..4 {
            n1.append(&job_record("J", at, Some("P"))).unwrap();
            noise(&n1, 5);
        }
        noise(&n2, 20);
        set_thread_epoch(2);
        for at in 2..5 {
            n2.append(&job_record("J", at, Some("P"))).unwrap();
            noise(&n2, 5);
        }
        set_thread_epoch(0);
        (dir, data)
    }

    fn own(jobs: &Jobs, job: &str) -> Vec<Body> {
        jobs.bodies(&JobId::new(job).unwrap())
            .unwrap()
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn a_job_taken_over_reads_through_the_indexes_as_a_whole_load_has_it() {
        let (_dir, data) = taken_over();
        for until in [None, Some(40), Some(45)] {
            let whole = load(&data, &Options { job: None, until }).unwrap();
            let mut jobs = Jobs::open(&data, until).unwrap();
            jobs.read_lineage(&JobId::new("J").unwrap());
            for job in ["J", "P"] {
                let id = JobId::new(job).unwrap();
                let expected: Vec<Body> = whole.job(&id).unwrap().cloned().collect();
                assert_eq!(own(&jobs, job), expected, "{job} until {until:?}");
            }
            let of_the_chain: BTreeMap<_, _> = whole
                .voided
                .iter()
                .filter(|((_, j), _)| j.as_str() == "J" || j.as_str() == "P")
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            assert_eq!(jobs.voided, of_the_chain, "until {until:?}");
            assert!(jobs.chain_errors.is_empty(), "{:?}", jobs.chain_errors);
        }
        let mut jobs = Jobs::open(&data, None).unwrap();
        jobs.read_lineage(&JobId::new("J").unwrap());
        let ats: Vec<u32> = own(&jobs, "J")
            .iter()
            .map(|b| b.job_at().unwrap().1)
            .collect();
        assert_eq!(ats, [0, 1, 2, 3, 4]);
        assert_eq!(
            jobs.voided.values().sum::<u64>(),
            2,
            "n1's records at 2 and 3"
        );
        // Only J's seven records and P's one were read, of the 107.
        assert_eq!(jobs.records, 8);
        assert_eq!(jobs.jobs.len(), 2);
    }
}
