//! Replay in bounded memory: the logs are read as streams, twice, and no
//! more of them is held than the jobs still being written at that point.
//!
//! The first scan ([`census`]) checks every log's chain and counts each
//! job's records (a `u32` per job, keyed by a hash of its id), loads the
//! recorded plans and notes each job's parent. The second reads the records
//! again, holding each job's until its last one is read (across logs: a job
//! taken over from another node completes in the later log), then hands the
//! job to a pool of workers (one per core) that fold it twice, back to back,
//! compare, tally what the report says and drop it. A failed job's
//! attribution needs its ancestors' records: a third scan, only when some
//! job failed, reads those jobs' records alone.
//!
//! The report is the one [`super::load`]'s in-memory replay gave: sums do
//! not depend on the order jobs are folded in, and the first divergence is
//! the least by (log, seq), then job, as it was.

use super::attribution::attribute;
use super::census::{
    census_chain, census_checked, job_key, keyed_line, record_chain, record_line, JobKey, KeyedLine,
};
use super::load::{drop_voided, load_plan, position_in_job, Loaded, Place};
use super::pass::{agent_of, fold_twice, recorded_plan, Outcome};
use super::{
    AgentStats, Attribution, FirstDivergence, Options, RecordRef, ReplayError, Report,
    VoidedRecords, Walked,
};
use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::exec::Executor;
use crate::fold::{fold_records, Checks, Met};
use crate::jobstate::JobEnd;
use crate::log::stream::{log_bytes, stream_log, Progress};
use crate::log::{Blobs, Body, LogError, Record};
use crate::plan::Plan;
use crate::state::State;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

/// Jobs handed to the workers and not yet taken, at most: enough to keep
/// every worker busy while the reader parses the next block.
const QUEUED_JOBS: usize = 4096;

/// Links of a failed job's chain of hand-offs followed, at most (as
/// attribution does).
const MAX_CHAIN: usize = 64;

/// One log as the first scan left it.
struct LogScan {
    name: Arc<str>,
    path: PathBuf,
    /// The last seq the first scan read and the second reads to; `None`
    /// when the log is broken and left out.
    head: Option<u64>,
}

/// What the first scan learnt of every log.
struct Census {
    logs: Vec<LogScan>,
    /// Per job key: its records up to `--until`, in every log.
    counts: HashMap<JobKey, u32>,
    /// Per job key with a parent: the parent's key.
    parents: HashMap<JobKey, JobKey>,
    plans: HashMap<Digest, Result<Plan, String>>,
    records: u64,
    chain_errors: Vec<String>,
}

/// Replays the data dir's logs in bounded memory (see the module doc).
pub(super) fn replay_streaming(
    dir: &DataDir,
    executor: &Executor,
    options: &Options,
    progress: Option<&Progress>,
) -> Result<Report, ReplayError> {
    // Logs the second scan found broken (a record whose hash holds but
    // whose body does not parse, which the first scan does not parse): a
    // broken log is left out whole, so the replay starts over without it.
    let mut broken: BTreeMap<PathBuf, String> = BTreeMap::new();
    let (census, mut tally) = loop {
        let mut census = census_of(dir, options, progress, &broken)?;
        if census.records == 0 && census.chain_errors.is_empty() {
            return Err(ReplayError::Empty(dir.root().to_path_buf()));
        }
        let counts = std::mem::take(&mut census.counts);
        let (tally, failed) = fold_all(&census, counts, executor, options, progress);
        if failed.is_empty() {
            break (census, tally);
        }
        broken.extend(failed);
    };
    if let Some(job) = &options.job {
        if tally.jobs == 0 {
            return Err(ReplayError::UnknownJob {
                job: job.clone(),
                dir: dir.root().to_path_buf(),
            });
        }
    }
    let failures = attribute_all(
        &census,
        options.until.unwrap_or(u64::MAX),
        std::mem::take(&mut tally.failed),
    );
    let mut report = Report {
        data_dir: dir.root().to_path_buf(),
        logs: census.logs.len(),
        records: census.records,
        jobs: tally.jobs,
        decisions: 0,
        rejected: 0,
        per_agent: tally.per_agent,
        model_calls: 0,
        tool_executions: 0,
        model_records: tally.model_records,
        effects_reexecuted: tally.reexecuted,
        effects_read_back: tally.read_back,
        final_states: tally.final_states,
        unfinished_jobs: tally.unfinished,
        byte_identical: tally.divergence.is_none(),
        divergence: tally.divergence.map(|(_, d)| d),
        chain_intact: census.chain_errors.is_empty(),
        chain_errors: census.chain_errors.clone(),
        deterministic: tally.deterministic,
        failures,
        voided_records: tally.voided.values().sum(),
        voided: voided_list(&tally.voided),
    };
    report.decisions = tally.decisions;
    report.rejected = tally.rejected;
    Ok(report)
}

fn voided_list(voided: &BTreeMap<(Arc<str>, JobId), u64>) -> Vec<VoidedRecords> {
    voided
        .iter()
        .map(|((log, job), &records)| VoidedRecords {
            log: log.to_string(),
            job: job.clone(),
            records,
        })
        .collect()
}

fn log_name(path: &std::path::Path) -> Arc<str> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .into()
}

/// How a log that cannot be read is reported.
fn chain_error(e: LogError) -> String {
    match e {
        LogError::Tampered {
            path,
            line,
            seq,
            reason,
        } => format!("{}: line {line} (seq {seq}): {reason}", path.display()),
        e => e.to_string(),
    }
}

/// The first scan: every log's chain checked, every job's records counted.
fn census_of(
    dir: &DataDir,
    options: &Options,
    progress: Option<&Progress>,
    broken: &BTreeMap<PathBuf, String>,
) -> Result<Census, ReplayError> {
    let blobs = Blobs::new(dir.root());
    let paths = dir.log_files()?;
    if let Some(p) = progress {
        // Two scans over every log (a third only when a job failed).
        p.expect(2 * paths.iter().map(|p| log_bytes(p)).sum::<u64>());
    }
    let only = options.job.as_ref().map(|j| job_key(j.as_str()));
    let mut census = Census {
        logs: Vec::new(),
        counts: HashMap::new(),
        parents: HashMap::new(),
        plans: HashMap::new(),
        records: 0,
        chain_errors: Vec::new(),
    };
    let mut highest = 0;
    for path in paths {
        let name = log_name(&path);
        if let Some(error) = broken.get(&path) {
            census.chain_errors.push(error.clone());
            census.logs.push(LogScan {
                name,
                path,
                head: None,
            });
            continue;
        }
        // This log's counts join the others' only if its chain holds.
        let mut counts: HashMap<JobKey, u32> = HashMap::new();
        let mut parents: HashMap<JobKey, JobKey> = HashMap::new();
        let mut plans = Vec::new();
        let mut records = 0u64;
        let until = options.until.unwrap_or(u64::MAX);
        let streamed = stream_log(
            &path,
            census_checked,
            census_chain,
            None,
            progress,
            |batch| {
                for c in batch {
                    if c.fields.seq > until {
                        continue;
                    }
                    records += 1;
                    if let Some(plan) = c.plan {
                        plans.push(plan);
                    }
                    let Some(key) = c.job else { continue };
                    if let Some(parent) = c.parent {
                        parents.insert(key, parent);
                    }
                    if only.is_none_or(|k| k == key) {
                        *counts.entry(key).or_default() += 1;
                    }
                }
            },
        );
        match streamed {
            Ok(s) => {
                highest = highest.max(s.head.0);
                census.records += records;
                for plan in plans {
                    if let Body::Plan { digest, blob, .. } = &plan.body {
                        census
                            .plans
                            .entry(*digest)
                            .or_insert_with(|| load_plan(&blobs, digest, blob));
                    }
                }
                merge_counts(&mut census.counts, counts);
                census.parents.extend(parents);
                census.logs.push(LogScan {
                    name,
                    path,
                    head: Some(s.head.0),
                });
            }
            Err(e) => {
                census.chain_errors.push(chain_error(e));
                census.logs.push(LogScan {
                    name,
                    path,
                    head: None,
                });
            }
        }
    }
    if let Some(until) = options.until {
        if until > highest && highest > 0 {
            return Err(ReplayError::UntilBeyondEnd { until, highest });
        }
    }
    Ok(census)
}

fn merge_counts(into: &mut HashMap<JobKey, u32>, from: HashMap<JobKey, u32>) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (key, n) in from {
        *into.entry(key).or_default() += n;
    }
}

/// A job whose records are all read: its records with their log's index.
struct JobWork {
    job: JobId,
    records: Vec<(u32, Record)>,
}

/// Where a divergence sits, the order the first one is picked by: its
/// log's name, its seq, then its job.
type DivergenceOrder = (Arc<str>, u64, JobId);

/// What the workers found, summed over the jobs each folded.
#[derive(Default)]
struct Tally {
    jobs: u64,
    decisions: u64,
    rejected: u64,
    per_agent: BTreeMap<String, AgentStats>,
    model_records: u64,
    reexecuted: u64,
    read_back: u64,
    final_states: BTreeMap<String, u64>,
    unfinished: u64,
    /// The least divergence so far, with the job order's tie-break.
    divergence: Option<(DivergenceOrder, FirstDivergence)>,
    deterministic: bool,
    /// Failed jobs, attributed once every job is folded.
    failed: Vec<JobEnd>,
    voided: BTreeMap<(Arc<str>, JobId), u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            deterministic: true,
            ..Tally::default()
        }
    }

    fn offer(&mut self, key: DivergenceOrder, d: FirstDivergence) {
        if self.divergence.as_ref().is_none_or(|(cur, _)| key < *cur) {
            self.divergence = Some((key, d));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.jobs += other.jobs;
        self.decisions += other.decisions;
        self.rejected += other.rejected;
        for (agent, s) in other.per_agent {
            let mine = self.per_agent.entry(agent).or_default();
            mine.jobs += s.jobs;
            mine.decisions += s.decisions;
            mine.rejected += s.rejected;
            mine.failed_jobs += s.failed_jobs;
        }
        self.model_records += other.model_records;
        self.reexecuted += other.reexecuted;
        self.read_back += other.read_back;
        for (state, n) in other.final_states {
            *self.final_states.entry(state).or_default() += n;
        }
        self.unfinished += other.unfinished;
        if let Some((key, d)) = other.divergence {
            self.offer(key, d);
        }
        self.deterministic &= other.deterministic;
        self.failed.extend(other.failed);
        for (k, n) in other.voided {
            *self.voided.entry(k).or_default() += n;
        }
    }
}

/// The second scan: every job gathered, folded twice on the workers, tallied.
fn fold_all(
    census: &Census,
    mut counts: HashMap<JobKey, u32>,
    executor: &Executor,
    options: &Options,
    progress: Option<&Progress>,
) -> (Tally, Vec<(PathBuf, String)>) {
    let names: Vec<Arc<str>> = census.logs.iter().map(|l| l.name.clone()).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (send, receive) = mpsc::sync_channel::<JobWork>(QUEUED_JOBS);
    let receive = Mutex::new(receive);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut tally = Tally::new();
                    loop {
                        // The lock is held only to take the next job.
                        let next = receive.lock().map(|r| r.recv());
                        let Ok(Ok(work)) = next else { break };
                        fold_job(census, executor, &names, work, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        let failed = gather(census, options, &mut counts, progress, &send);
        drop(send);
        let mut tally = Tally::new();
        for h in handles {
            // A fold that panicked is a bug in the fold; say so loudly.
            tally.merge(h.join().expect("folding a job does not panic"));
        }
        (tally, failed)
    })
}

/// Reads every intact log's records again and sends each job to the
/// workers once its last record is read. Returns the logs found broken.
fn gather(
    census: &Census,
    options: &Options,
    counts: &mut HashMap<JobKey, u32>,
    progress: Option<&Progress>,
    send: &mpsc::SyncSender<JobWork>,
) -> Vec<(PathBuf, String)> {
    let until = options.until.unwrap_or(u64::MAX);
    let mut failed = Vec::new();
    /// A job's records read so far (or several jobs', when their keys meet).
    struct Pending {
        left: u32,
        records: Vec<(u32, Record)>,
    }
    let mut pending: HashMap<JobKey, Pending> = HashMap::new();
    let dispatch = |records: Vec<(u32, Record)>| {
        for work in split_by_job(records) {
            // The workers outlive the reader; a closed channel means one
            // panicked, which the join reports.
            let _ = send.send(work);
        }
    };
    for (index, log) in census.logs.iter().enumerate() {
        let Some(head) = log.head else { continue };
        let index = u32::try_from(index).expect("fewer than 2^32 logs");
        // Read to the head the first scan checked (past `--until` too: a
        // record there whose body does not parse breaks the log, as it
        // did when logs were read whole).
        let read = stream_log(
            &log.path,
            record_line,
            record_chain,
            Some(head),
            progress,
            |batch| {
                for record in batch {
                    if record.seq > until {
                        continue;
                    }
                    let Some((job, _)) = record.body.job_at() else {
                        continue;
                    };
                    if options.job.as_ref().is_some_and(|j| j != job) {
                        continue;
                    }
                    let key = job_key(job.as_str());
                    let entry = pending.entry(key).or_insert_with(|| Pending {
                        // A job the first scan did not count (the log grew
                        // between the scans): held to the end.
                        left: counts.remove(&key).unwrap_or(u32::MAX),
                        records: Vec::new(),
                    });
                    entry.records.push((index, record));
                    entry.left = entry.left.saturating_sub(1);
                    if entry.left == 0 {
                        if let Some(done) = pending.remove(&key) {
                            dispatch(done.records);
                        }
                    }
                }
            },
        );
        if let Err(e) = read {
            failed.push((log.path.clone(), chain_error(e)));
        }
    }
    // Jobs whose count was not met (a log that changed between the scans).
    for (_, p) in pending {
        dispatch(p.records);
    }
    failed
}

/// Records gathered under one key, per job (two jobs may share a key).
fn split_by_job(records: Vec<(u32, Record)>) -> Vec<JobWork> {
    let mut out: Vec<JobWork> = Vec::with_capacity(1);
    for (log, record) in records {
        let Some((job, _)) = record.body.job_at() else {
            continue;
        };
        match out.iter_mut().find(|w| w.job == *job) {
            Some(w) => w.records.push((log, record)),
            None => out.push(JobWork {
                job: job.clone(),
                records: vec![(log, record)],
            }),
        }
    }
    out
}

/// Puts one job's records in `at` order (records at one `at` stay in log
/// order: a stable sort) and drops those a takeover voided, counting them
/// per log in `voided`.
fn in_job_order(
    names: &[Arc<str>],
    job: &JobId,
    records: &mut Vec<(u32, Record)>,
    voided: &mut BTreeMap<(Arc<str>, JobId), u64>,
) {
    records.sort_by_key(|(_, r)| position_in_job(&r.body));
    let keys: Vec<(u64, u32)> = records
        .iter()
        .map(|(_, r)| (r.epoch, position_in_job(&r.body)))
        .collect();
    let void = crate::takeover::voided(&keys);
    if void.contains(&true) {
        let mut flags = void.into_iter();
        records.retain(|(log, _)| {
            let is_void = flags.next().unwrap_or(false);
            if is_void {
                *voided
                    .entry((names[*log as usize].clone(), job.clone()))
                    .or_default() += 1;
            }
            !is_void
        });
    }
}

/// [`super::each_decision`] in bounded memory: the first scan as replay's,
/// then each job, once its last record is read, folded once on this thread
/// with `visit` at every decision. Jobs are met in the order their last
/// records are read (the same for the same logs), not by id.
pub(super) fn walk_decisions(
    dir: &DataDir,
    executor: &Executor,
    visit: &mut dyn FnMut(&Plan, &Met<'_>),
) -> Result<Walked, ReplayError> {
    let options = Options::default();
    let mut census = census_of(dir, &options, None, &BTreeMap::new())?;
    if census.records == 0 && census.chain_errors.is_empty() {
        return Err(ReplayError::Empty(dir.root().to_path_buf()));
    }
    let mut counts = std::mem::take(&mut census.counts);
    let names: Vec<Arc<str>> = census.logs.iter().map(|l| l.name.clone()).collect();
    let mut plans: Vec<String> = census.plans.keys().map(|d| d.to_hex()).collect();
    plans.sort();
    let mut walked = Walked {
        logs: census.logs.len(),
        jobs: 0,
        plans,
        stopped: Vec::new(),
        chain_errors: census.chain_errors.clone(),
    };
    let mut voided = BTreeMap::new();
    let (send, receive) = mpsc::sync_channel::<JobWork>(QUEUED_JOBS);
    let census = &census;
    let broken = std::thread::scope(|s| {
        let reader = s.spawn(move || gather(census, &options, &mut counts, None, &send));
        for JobWork { job, mut records } in receive {
            in_job_order(&names, &job, &mut records, &mut voided);
            let bodies: Vec<&Body> = records.iter().map(|(_, r)| &r.body).collect();
            walked.jobs += 1;
            let folded = recorded_plan(&census.plans, &bodies).and_then(|plan| {
                let mut at = |met: &Met<'_>| visit(plan, met);
                fold_records(plan, executor, &bodies, Checks::All, false, Some(&mut at))
            });
            if let Err(d) = folded {
                walked.stopped.push((job, d.what));
            }
        }
        // The reader ends when the channel's sender is dropped with it.
        reader.join().expect("reading the logs does not panic")
    });
    // A log whose second read failed (it changed between the scans): its
    // jobs read before the break were met; the rest were not.
    walked
        .chain_errors
        .extend(broken.into_iter().map(|(_, error)| error));
    walked.stopped.sort();
    Ok(walked)
}

/// Folds one job twice, compares, and adds what the report says of it.
fn fold_job(
    census: &Census,
    executor: &Executor,
    names: &[Arc<str>],
    work: JobWork,
    tally: &mut Tally,
) {
    let JobWork { job, mut records } = work;
    in_job_order(names, &job, &mut records, &mut tally.voided);
    let bodies: Vec<&Body> = records.iter().map(|(_, r)| &r.body).collect();
    let (first, deterministic) = fold_twice(&census.plans, executor, &bodies);
    tally.deterministic &= deterministic;
    let first = first.map(|f| Outcome {
        counts: f.counts,
        ended: f.ended,
    });
    let agent = agent_of(&bodies);
    tally.jobs += 1;
    let stats = tally.per_agent.entry(agent.to_string()).or_default();
    stats.jobs += 1;
    match first {
        Ok(f) => {
            stats.decisions += f.counts.decisions;
            stats.rejected += f.counts.rejected;
            tally.decisions += f.counts.decisions;
            tally.rejected += f.counts.rejected;
            tally.model_records += f.counts.model_records;
            tally.reexecuted += f.counts.reexecuted;
            tally.read_back += f.counts.read_back;
            match f.ended {
                Some(end) => {
                    *tally.final_states.entry(end.state.to_string()).or_default() += 1;
                    if end.state == State::Failed {
                        stats.failed_jobs += 1;
                        tally.failed.push(end);
                    }
                }
                None => tally.unfinished += 1,
            }
        }
        Err(d) => {
            let record = records
                .get(d.index)
                .map(|(log, r)| RecordRef {
                    log: names[*log as usize].clone(),
                    seq: r.seq,
                })
                .unwrap_or(RecordRef {
                    log: "?".into(),
                    seq: 0,
                });
            let key = (record.log.clone(), record.seq, job.clone());
            tally.offer(
                key,
                FirstDivergence {
                    record,
                    job,
                    agent,
                    decision: d.decision,
                    what: d.what,
                },
            );
        }
    }
}

/// Attributes the failed jobs, in job order: their records and their
/// ancestors' read again (a third scan, only of those jobs).
fn attribute_all(census: &Census, until: u64, failed: Vec<JobEnd>) -> Vec<Attribution> {
    if failed.is_empty() {
        return Vec::new();
    }
    let mut wanted: HashSet<JobKey> = HashSet::new();
    for end in &failed {
        let mut key = job_key(end.job.as_str());
        for _ in 0..MAX_CHAIN {
            if !wanted.insert(key) {
                break;
            }
            match census.parents.get(&key) {
                Some(&parent) => key = parent,
                None => break,
            }
        }
    }
    let mut loaded = Loaded {
        parts: Vec::new(),
        jobs: BTreeMap::new(),
        voided: BTreeMap::new(),
    };
    let mut jobs: HashMap<JobId, Vec<Place>> = HashMap::new();
    for log in &census.logs {
        let Some(head) = log.head else { continue };
        let mut records: Vec<Record> = Vec::new();
        // A log rewritten since the first scan gives what could be read.
        let _ = stream_log(
            &log.path,
            keyed_line,
            |k: &KeyedLine| census_chain(&k.census),
            Some(head.min(until)),
            None,
            |batch| {
                for k in batch {
                    if k.census.job.is_some_and(|key| wanted.contains(&key)) {
                        if let Ok(r) = record_line(&k.line) {
                            records.push(r);
                        }
                    }
                }
            },
        );
        let part = u32::try_from(loaded.parts.len()).expect("fewer than 2^32 parts");
        for (index, r) in records.iter().enumerate() {
            if let Some((job, _)) = r.body.job_at() {
                let index = u32::try_from(index).expect("fewer than 2^32 records in a log");
                jobs.entry(job.clone()).or_default().push((part, index));
            }
        }
        loaded.parts.push((log.name.clone(), records));
    }
    for (job, places) in jobs.iter_mut() {
        places.sort_by_key(|&p| position_in_job(loaded.body(p)));
        drop_voided(&mut loaded.voided, &loaded.parts, job, places);
    }
    loaded.jobs = jobs.into_iter().collect();
    let mut out: Vec<Attribution> = failed
        .iter()
        .map(|end| attribute(&loaded, &end.job, end))
        .collect();
    out.sort_by(|a, b| a.job.cmp(&b.job));
    out
}
