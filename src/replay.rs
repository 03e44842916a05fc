//! Replay: rebuild every job from the logs, in memory, with the plan recorded
//! in the log, the same gate and the same executor, zero model calls and zero
//! tool executions; compare every recomputed state digest with the recorded
//! one; do it twice and compare the two passes.
//!
//! Owns [`fold`] (one job's records → its state; the live runner resumes with
//! it too) and the whole-data-dir [`replay`]. It never writes anything.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::exec::Executor;
use crate::gate;
use crate::job::{JobEnd, JobState, UNPARSED};
use crate::log::{read_log, read_log_parts, Blobs, Body, LogError, Record};
use crate::plan::Plan;
use crate::state::State;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// A job's records folded into its state.
#[derive(Debug)]
pub struct Folded {
    pub state: JobState,
    /// The `at` the job's next record takes.
    pub next_at: u32,
    pub ended: Option<JobEnd>,
    /// A decision recorded without its effect.
    pub pending: Option<Decision>,
    /// Positions of the current turn already recorded.
    pub positions_done: u32,
    /// The response blob of the current turn's model call.
    pub last_response: Option<Digest>,
    pub counts: FoldCounts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FoldCounts {
    pub decisions: u64,
    pub rejected: u64,
    /// Deterministic effects executed again and compared.
    pub reexecuted: u64,
    /// Recorded results read back instead of running a tool.
    pub read_back: u64,
    pub model_records: u64,
}

impl Folded {
    pub fn new(job: JobId, agent: AgentName) -> Folded {
        Folded {
            state: JobState::new(job, agent),
            next_at: 1,
            ended: None,
            pending: None,
            positions_done: 0,
            last_response: None,
            counts: FoldCounts::default(),
        }
    }
}

/// Where a fold stopped agreeing with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the record in the slice given to [`fold`].
    pub index: usize,
    pub decision: Option<DecisionId>,
    pub what: String,
}

/// Folds one job's records (in `at` order, starting with its `job` record)
/// into its state, checking each against the gate and executor.
pub fn fold(plan: &Plan, executor: &Executor, records: &[&Body]) -> Result<Folded, Divergence> {
    fold_records(plan, executor, records, true, None)
}

/// A recorded decision, met while its job is folded under its recorded
/// plan: what the gate judged, and the job's state it judged it in.
#[derive(Debug)]
pub struct Met<'a> {
    /// The job's state just before the gate's check (its `clock_ms` is the
    /// recorded reading).
    pub state: &'a JobState,
    pub decision: &'a Decision,
    pub turn: u32,
    pub position: u32,
    /// `None` when the gate accepted it; the recorded check and reason when
    /// it refused it.
    pub refused: Option<(&'a str, &'a str)>,
}

/// What to call at each recorded decision of a fold.
type Visit<'v> = Option<&'v mut dyn FnMut(&Met<'_>)>;

/// [`fold`], building the end's result in `Folded::ended` only when
/// `end_result` (a replay pass never reads it; copying each job's was one
/// of the copies that, gone, took replay 15–20% faster).
fn fold_records(
    plan: &Plan,
    executor: &Executor,
    records: &[&Body],
    end_result: bool,
    mut visit: Visit<'_>,
) -> Result<Folded, Divergence> {
    let diverge = |index: usize, decision: Option<&DecisionId>, what: String| Divergence {
        index,
        decision: decision.cloned(),
        what,
    };
    let Some(Body::Job {
        job,
        agent,
        depth,
        tree_jobs,
        ..
    }) = records.first()
    else {
        return Err(diverge(
            0,
            None,
            "the job's history does not start with its job record".into(),
        ));
    };
    let mut f = Folded::new(job.clone(), agent.clone());
    f.state.tree = crate::job::Tree {
        depth: depth.unwrap_or(0),
        jobs: *tree_jobs,
    };
    // The decision awaiting its effect, borrowed until the fold ends.
    let mut pending: Option<&Decision> = None;
    for (index, body) in records.iter().enumerate().skip(1) {
        if f.ended.is_some() {
            return Err(diverge(
                index,
                None,
                format!("a {} record follows the job's end", body.kind()),
            ));
        }
        if let Some((_, at)) = body.job_at() {
            if at != index as u32 {
                return Err(diverge(index, None, format!("record has at={at}, expected {index}: a record of this job is missing or duplicated")));
            }
        }
        if let (Some(d), false) = (pending, matches!(body, Body::Effect { .. })) {
            return Err(diverge(
                index,
                Some(&d.id),
                "a decision is followed by something other than its effect".into(),
            ));
        }
        match body {
            Body::Plan { .. } | Body::Job { .. } | Body::Audit { .. } => {
                return Err(diverge(
                    index,
                    None,
                    format!("unexpected {} record inside the job", body.kind()),
                ));
            }
            Body::Model {
                turn,
                tokens_in,
                tokens_out,
                response,
                ..
            } => {
                enter_turn(&mut f, *turn);
                f.state.model_calls += 1;
                f.state.tokens += tokens_in + tokens_out;
                f.last_response = Some(*response);
                f.counts.model_records += 1;
            }
            Body::Decision {
                decision, clock_ms, ..
            } => {
                let (turn, position) = turn_position(index, decision)?;
                enter_turn(&mut f, turn);
                // The gate checks the wall time against the reading the
                // live run recorded.
                f.state.clock_ms = *clock_ms;
                if let Some(visit) = &mut visit {
                    visit(&Met {
                        state: &f.state,
                        decision,
                        turn,
                        position,
                        refused: None,
                    });
                }
                if let Err(rejection) = gate::check(plan, &f.state, decision, turn, position) {
                    return Err(diverge(
                        index,
                        Some(&decision.id),
                        format!("the gate now rejects this recorded decision ({rejection})"),
                    ));
                }
                f.positions_done = position + 1;
                pending = Some(decision);
                f.counts.decisions += 1;
            }
            Body::Effect {
                decision: id,
                result,
                error,
                state,
                ..
            } => {
                let Some(decision) = pending.take() else {
                    return Err(diverge(
                        index,
                        Some(id),
                        "an effect without its decision".into(),
                    ));
                };
                if decision.id != *id {
                    return Err(diverge(
                        index,
                        Some(id),
                        format!("effect names {id}, the pending decision is {}", decision.id),
                    ));
                }
                let deterministic = plan
                    .types
                    .get(&decision.kind)
                    .is_some_and(|t| t.reexecuted_on_replay());
                let effect = executor.execute(
                    plan,
                    &mut f.state,
                    decision,
                    Some((result, error.as_deref())),
                    None,
                );
                if deterministic {
                    f.counts.reexecuted += 1;
                    // Compared as canonical text, as the log holds it.
                    let same_result = crate::canon::to_string(&effect.result)
                        .is_ok_and(|ours| ours == result.as_str());
                    if !same_result || effect.error != *error {
                        return Err(diverge(
                            index,
                            Some(id),
                            format!(
                                "re-executing '{}' gave {} but the log records {}",
                                decision.kind,
                                short_json(&effect.result, effect.error.as_deref()),
                                short_text(result.as_str(), error.as_deref())
                            ),
                        ));
                    }
                } else {
                    f.counts.read_back += 1;
                }
                if effect.state != *state {
                    return Err(diverge(
                        index,
                        Some(id),
                        format!(
                            "job state after the effect hashes to {}, the log records {}",
                            effect.state.short(),
                            state.short()
                        ),
                    ));
                }
            }
            Body::Rejected {
                decision,
                check,
                reason,
                clock_ms,
                ..
            } => {
                let (turn, position) = turn_position(index, decision)?;
                enter_turn(&mut f, turn);
                f.state.clock_ms = *clock_ms;
                if let (Some(visit), false) = (&mut visit, decision.kind == UNPARSED) {
                    visit(&Met {
                        state: &f.state,
                        decision,
                        turn,
                        position,
                        refused: Some((check.as_str(), reason.as_str())),
                    });
                }
                if decision.kind != UNPARSED {
                    match gate::check(plan, &f.state, decision, turn, position) {
                        Ok(()) => {
                            return Err(diverge(
                                index,
                                Some(&decision.id),
                                "the gate now accepts this recorded rejection".into(),
                            ))
                        }
                        Err(r) if r.check.as_str() != check || r.reason != *reason => {
                            return Err(diverge(index, Some(&decision.id), format!("the gate now rejects with '{r}', the log records '{check}: {reason}'")));
                        }
                        Err(_) => {}
                    }
                }
                f.state
                    .note_rejection(decision, &format!("{check}: {reason}"));
                f.positions_done = position + 1;
                f.counts.rejected += 1;
            }
            Body::End {
                state,
                reason,
                blame,
                result,
                ..
            } => {
                if !f.state.state.is_terminal()
                    && *state == State::Failed
                    && reason.is_some()
                    && f.state.error.is_none()
                    && blame.is_none()
                {
                    // A failure the runtime decided from outside the records
                    // (a model error, a budget of wall time): recorded, read back.
                    if let Some(next) = f.state.state.next(crate::state::Event::Fail) {
                        f.state.state = next;
                    }
                    f.state.error = reason.clone();
                } else {
                    f.state.conclude();
                }
                if f.state.state != *state || f.state.blame != *blame {
                    return Err(diverge(
                        index,
                        blame.as_ref(),
                        format!(
                            "the job ends {} (blame {}), the log records {} (blame {})",
                            f.state.state,
                            f.state
                                .blame
                                .as_ref()
                                .map_or("none".into(), |b| b.to_string()),
                            state,
                            blame.as_ref().map_or("none".into(), |b| b.to_string())
                        ),
                    ));
                }
                if !f.state.result_matches(result) {
                    return Err(diverge(
                        index,
                        blame.as_ref(),
                        format!(
                            "the job's result is {}, the log records {}",
                            short_text(f.state.result_text().as_str(), None),
                            short_text(result.as_str(), None)
                        ),
                    ));
                }
                f.ended = Some(JobEnd {
                    job: f.state.job.clone(),
                    agent: f.state.agent.clone(),
                    state: *state,
                    result: if end_result {
                        // The same value: the recorded text matched it.
                        f.state.result()
                    } else {
                        Value::Null
                    },
                    reason: reason.clone(),
                    blame: blame.clone(),
                    seq: 0,
                });
            }
        }
        f.next_at = index as u32 + 1;
    }
    f.pending = pending.cloned();
    Ok(f)
}

fn enter_turn(f: &mut Folded, turn: u32) {
    if turn != f.state.turn {
        f.state.turn = turn;
        f.positions_done = 0;
        f.last_response = None;
    }
}

fn turn_position(index: usize, decision: &Decision) -> Result<(u32, u32), Divergence> {
    decision.id.turn_position().ok_or_else(|| Divergence {
        index,
        decision: Some(decision.id.clone()),
        what: format!("decision id '{}' is not a runtime id", decision.id),
    })
}

/// How much of a value a divergence shows.
const SHOWN: usize = 200;

fn short_json(value: &Value, error: Option<&str>) -> String {
    short_text(&crate::canon::to_string(value).unwrap_or_default(), error)
}

fn short_text(text: &str, error: Option<&str>) -> String {
    match error {
        Some(e) => crate::decision::excerpt(&format!("error '{e}'"), SHOWN),
        None => crate::decision::excerpt(text, SHOWN),
    }
}

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

struct Loaded {
    /// Logs found, read or not.
    logs: usize,
    /// The records of every log read, in the parts it was read in, each
    /// with its log's name, in file order (up to `--until`).
    parts: Vec<(Arc<str>, Vec<Record>)>,
    /// Per job: where its records are (part, index in that part), in `at`
    /// order. Records stay where the log was read into, not copied per job.
    jobs: BTreeMap<JobId, Vec<Place>>,
    plans: HashMap<Digest, Result<Plan, String>>,
    records: u64,
    chain_errors: Vec<String>,
    /// Records a later epoch's takeover voided, per log and job.
    voided: BTreeMap<(Arc<str>, JobId), u64>,
}

/// A record's position in [`Loaded::parts`].
type Place = (u32, u32);

impl Loaded {
    fn body(&self, (part, index): Place) -> &Body {
        &self.parts[part as usize].1[index as usize].body
    }

    fn bodies<'a>(&'a self, places: &'a [Place]) -> impl DoubleEndedIterator<Item = &'a Body> {
        places.iter().map(|&p| self.body(p))
    }

    /// A job's records, `None` for a job no log holds.
    fn job(&self, job: &JobId) -> Option<impl DoubleEndedIterator<Item = &Body>> {
        self.jobs.get(job).map(|places| self.bodies(places))
    }

    fn place(&self, (part, index): Place) -> RecordRef {
        let (name, records) = &self.parts[part as usize];
        RecordRef {
            log: name.clone(),
            seq: records[index as usize].seq,
        }
    }
}

fn load(dir: &DataDir, options: &Options) -> Result<Loaded, ReplayError> {
    let blobs = Blobs::new(dir.root());
    let mut loaded = Loaded {
        logs: 0,
        parts: Vec::new(),
        jobs: BTreeMap::new(),
        plans: HashMap::new(),
        records: 0,
        chain_errors: Vec::new(),
        voided: BTreeMap::new(),
    };
    let mut highest = 0;
    // Grouped by hashing (a tree's string comparisons per record were a
    // tenth of replay), ordered once at the end.
    let mut jobs: HashMap<JobId, Vec<Place>> = HashMap::new();
    for path in dir.log_files()? {
        let node: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into();
        loaded.logs += 1;
        let parts = match read_log_parts(&path) {
            Ok(parts) => parts,
            Err(LogError::Tampered {
                path,
                line,
                seq,
                reason,
            }) => {
                loaded.chain_errors.push(format!(
                    "{}: line {line} (seq {seq}): {reason}",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                loaded.chain_errors.push(e.to_string());
                continue;
            }
        };
        for mut records in parts {
            highest = highest.max(records.last().map_or(0, |r| r.seq));
            if let Some(until) = options.until {
                records.truncate(records.partition_point(|r| r.seq <= until));
            }
            let part_index = u32::try_from(loaded.parts.len()).expect("fewer than 2^32 parts");
            for (index, record) in records.iter().enumerate() {
                loaded.records += 1;
                let place = (
                    part_index,
                    u32::try_from(index).expect("fewer than 2^32 records in a log"),
                );
                match &record.body {
                    Body::Plan { digest, blob, .. } => {
                        loaded
                            .plans
                            .entry(*digest)
                            .or_insert_with(|| load_plan(&blobs, digest, blob));
                    }
                    // Audit records live in audit/, not log/; skip any that strayed.
                    body => match body.job_at() {
                        Some((job, _)) if options.job.as_ref().is_none_or(|j| j == job) => {
                            add_place(&mut jobs, job, place);
                        }
                        _ => {}
                    },
                }
            }
            loaded.parts.push((node.clone(), records));
        }
    }
    if let Some(until) = options.until {
        if until > highest && highest > 0 {
            return Err(ReplayError::UntilBeyondEnd { until, highest });
        }
    }
    for (job, places) in jobs.iter_mut() {
        places.sort_by_key(|&p| position_in_job(loaded.body(p)));
        drop_voided(&mut loaded.voided, &loaded.parts, job, places);
    }
    loaded.jobs = jobs.into_iter().collect();
    Ok(loaded)
}

/// Removes from `places` (one job's, in `at` order) the records a later
/// epoch's takeover voids, counting them per log in `voided`.
fn drop_voided(
    voided: &mut BTreeMap<(Arc<str>, JobId), u64>,
    parts: &[(Arc<str>, Vec<Record>)],
    job: &JobId,
    places: &mut Vec<Place>,
) {
    let record = |&(part, index): &Place| &parts[part as usize].1[index as usize];
    let keys: Vec<(u64, u32)> = places
        .iter()
        .map(|p| (record(p).epoch, position_in_job(&record(p).body)))
        .collect();
    let void = crate::takeover::voided(&keys);
    if !void.contains(&true) {
        return;
    }
    let mut flags = void.into_iter();
    places.retain(|p| {
        let is_void = flags.next().unwrap_or(false);
        if is_void {
            let log = parts[p.0 as usize].0.clone();
            *voided.entry((log, job.clone())).or_default() += 1;
        }
        !is_void
    });
}

/// Records a later epoch's takeover voided, per log and job, across the
/// data dir's logs (for `jaros verify`).
pub fn voided_records(dir: &DataDir) -> Result<Vec<VoidedRecords>, ReplayError> {
    Ok(voided_list(&load(dir, &Options::default())?))
}

fn voided_list(loaded: &Loaded) -> Vec<VoidedRecords> {
    loaded
        .voided
        .iter()
        .map(|((log, job), &records)| VoidedRecords {
            log: log.to_string(),
            job: job.clone(),
            records,
        })
        .collect()
}

/// The plan in `blob`, checked against the digest its record names.
fn load_plan(blobs: &Blobs, digest: &Digest, blob: &Digest) -> Result<Plan, String> {
    let bytes = blobs.get(blob).map_err(|e| e.to_string())?;
    let plan = Plan::from_canonical_json(&String::from_utf8_lossy(&bytes))?;
    if plan.digest() != *digest {
        return Err(format!(
            "plan blob {} does not hash to the recorded digest",
            blob.short()
        ));
    }
    Ok(plan)
}

/// Adds `place` to `job`'s places, copying the job's id only the first
/// time it is seen.
fn add_place(jobs: &mut HashMap<JobId, Vec<Place>>, job: &JobId, place: Place) {
    match jobs.get_mut(job) {
        Some(places) => places.push(place),
        None => {
            jobs.insert(job.clone(), vec![place]);
        }
    }
}

/// A record's `at` in its job's history, the order records are folded in.
fn position_in_job(body: &Body) -> u32 {
    body.job_at().map_or(0, |(_, at)| at)
}

/// Per job, in the order of `Loaded::jobs` (lists, not maps keyed by a
/// copy of each job's id, which cost an allocation and a tree insert a
/// job, twice).
struct Pass {
    /// The final state digest, or where and how the fold diverged.
    digests: Vec<Result<Digest, (usize, String)>>,
    /// What the report reads of the folded job, when the pass keeps it.
    folded: Vec<Result<Outcome, Divergence>>,
}

/// What the report reads of a folded job: a 100,000-job log keeps one per
/// job, so the state and the end's result are not kept.
struct Outcome {
    counts: FoldCounts,
    /// The end, without its result.
    ended: Option<JobEnd>,
}

/// Folds every job; `keep` keeps the folded jobs (the report reads the
/// first pass's; the second is compared by digests alone).
fn pass(loaded: &Loaded, executor: &Executor, keep: bool) -> Pass {
    let mut out = Pass {
        digests: Vec::with_capacity(loaded.jobs.len()),
        folded: Vec::with_capacity(if keep { loaded.jobs.len() } else { 0 }),
    };
    for places in loaded.jobs.values() {
        let bodies: Vec<&Body> = loaded.bodies(places).collect();
        let result = recorded_plan(loaded, &bodies)
            .and_then(|plan| fold_records(plan, executor, &bodies, false, None));
        let outcome = match &result {
            Ok(f) => Ok(f.state.digest()),
            Err(d) => Err((d.index, d.what.clone())),
        };
        out.digests.push(outcome);
        if keep {
            out.folded.push(result.map(|f| Outcome {
                counts: f.counts,
                ended: f.ended,
            }));
        }
    }
    out
}

/// The plan a job's records (starting with its `job` record) were made under.
fn recorded_plan<'l>(loaded: &'l Loaded, bodies: &[&Body]) -> Result<&'l Plan, Divergence> {
    let cannot = |what: String| Divergence {
        index: 0,
        decision: None,
        what,
    };
    match bodies.first() {
        Some(Body::Job { plan, .. }) => match loaded.plans.get(plan) {
            Some(Ok(plan)) => Ok(plan),
            Some(Err(e)) => Err(cannot(format!("its plan cannot be loaded: {e}"))),
            None => Err(cannot(format!(
                "its plan {} is not recorded in any log",
                plan.short()
            ))),
        },
        _ => Err(cannot("its job record is missing".into())),
    }
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
            fold_records(plan, executor, &bodies, false, Some(&mut at))
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

fn decision_kind(loaded: &Loaded, job: &JobId, id: &DecisionId) -> Option<String> {
    loaded.job(job)?.find_map(|b| match b {
        Body::Decision { decision, .. } | Body::Rejected { decision, .. } if decision.id == *id => {
            Some(decision.kind.clone())
        }
        _ => None,
    })
}

/// Names the agent and decision behind a failed job and walks its parents.
fn attribute(loaded: &Loaded, job: &JobId, end: &JobEnd) -> Attribution {
    const MAX_CHAIN: usize = 64;
    let mut chain = Vec::new();
    let mut current = Some((job.clone(), end.blame.clone()));
    while let Some((id, decision)) = current.take() {
        if chain.len() >= MAX_CHAIN {
            break;
        }
        let (agent, parent, via) = match loaded.job(&id).and_then(|mut r| r.next()) {
            Some(Body::Job {
                agent, parent, via, ..
            }) => (agent.clone(), parent.clone(), via.clone()),
            _ => (AgentName::new("unknown").expect("valid name"), None, None),
        };
        let state = loaded.job(&id).and_then(|r| {
            r.rev().find_map(|b| match b {
                Body::End { state, .. } => Some(*state),
                _ => None,
            })
        });
        let kind = decision
            .as_ref()
            .and_then(|d| decision_kind(loaded, &id, d));
        chain.push(Link {
            job: id,
            agent,
            decision,
            kind,
            state,
        });
        current = parent.map(|p| (p, via));
    }
    chain.reverse();
    Attribution {
        job: job.clone(),
        agent: end.agent.clone(),
        kind: end
            .blame
            .as_ref()
            .and_then(|d| decision_kind(loaded, job, d)),
        decision: end.blame.clone(),
        reason: end.reason.clone().unwrap_or_else(|| "failed".into()),
        chain,
    }
}

/// Every record of one job in order, from all logs (for resuming it).
pub fn job_history(dir: &DataDir, job: &JobId) -> Result<Vec<Body>, ReplayError> {
    // A log that cannot be read holds none of it, as for replay.
    let mut records = Vec::new();
    for path in dir.log_files()? {
        let Ok(log) = read_log(&path) else {
            continue;
        };
        records.extend(
            log.records
                .into_iter()
                .filter(|r| r.body.job_at().is_some_and(|(j, _)| j == job)),
        );
    }
    Ok(own_history(records))
}

/// Every job's history (as [`job_history`] gives one), keyed by job, from
/// one read of each log: for exporters that walk every recorded job.
pub fn job_histories(dir: &DataDir) -> Result<BTreeMap<JobId, Vec<Body>>, ReplayError> {
    let mut by_job: BTreeMap<JobId, Vec<Record>> = BTreeMap::new();
    for path in dir.log_files()? {
        let Ok(log) = read_log(&path) else {
            continue;
        };
        for r in log.records {
            if let Some((job, _)) = r.body.job_at() {
                let job = job.clone();
                by_job.entry(job).or_default().push(r);
            }
        }
    }
    Ok(by_job
        .into_iter()
        .map(|(job, records)| (job, own_history(records)))
        .collect())
}

/// One job's records in `at` order, without what a node wrote after losing
/// the job.
fn own_history(mut records: Vec<Record>) -> Vec<Body> {
    records.sort_by_key(|r| position_in_job(&r.body));
    // What a node wrote after losing the job is no part of its history.
    let keys: Vec<(u64, u32)> = records
        .iter()
        .map(|r| (r.epoch, position_in_job(&r.body)))
        .collect();
    let void = crate::takeover::voided(&keys);
    records
        .into_iter()
        .zip(void)
        .filter(|(_, void)| !void)
        .map(|(r, _)| r.body)
        .collect()
}

/// One link of `jaros blame`'s chain, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlameLink {
    pub job: JobId,
    pub agent: AgentName,
    pub decision: Option<DecisionId>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// What the decision did: the hand-off it made, or why it failed.
    pub outcome: String,
}

/// What happens to a failed job when its blamed decision is taken away.
///
/// The check claims only this: replaying the job's own records with the
/// blamed decision removed (or, for a tool decision that errored, given the
/// recorded successful result of a sibling decision of the same type) ends the
/// job in `state_without`. It does not claim the agent would have proposed the
/// same later decisions, nor anything about other jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterfactual {
    pub decision: DecisionId,
    /// `removed` or `sibling result from <decision>`.
    pub method: String,
    pub state_without: State,
    pub failure_disappears: bool,
}

/// `jaros blame`: who and what made a job end as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blame {
    pub job: JobId,
    pub agent: AgentName,
    pub state: Option<State>,
    pub reason: Option<String>,
    pub chain: Vec<BlameLink>,
    pub counterfactual: Option<Counterfactual>,
}

/// Explains one job: its chain of hand-offs and, for a failure, the
/// counterfactual check.
pub fn blame(dir: &DataDir, executor: &Executor, job: &JobId) -> Result<Blame, ReplayError> {
    let loaded = load(dir, &Options::default())?;
    let Some(records) = loaded.job(job) else {
        return Err(ReplayError::UnknownJob {
            job: job.clone(),
            dir: dir.root().to_path_buf(),
        });
    };
    let bodies: Vec<&Body> = records.collect();
    let plan = match bodies.first() {
        Some(Body::Job { plan, .. }) => loaded.plans.get(plan).and_then(|p| p.as_ref().ok()),
        _ => None,
    };
    let folded = plan.and_then(|p| fold(p, executor, &bodies).ok());
    let end = folded.as_ref().and_then(|f| f.ended.clone());
    let agent = match bodies.first() {
        Some(Body::Job { agent, .. }) => agent.clone(),
        _ => AgentName::new("unknown").expect("valid name"),
    };
    let attribution = match &end {
        Some(end) => attribute(&loaded, job, end),
        None => attribute(
            &loaded,
            job,
            &JobEnd {
                job: job.clone(),
                agent: agent.clone(),
                state: State::Running,
                result: Value::Null,
                reason: None,
                blame: None,
                seq: 0,
            },
        ),
    };
    let chain = attribution
        .chain
        .iter()
        .enumerate()
        .map(|(i, link)| {
            let last = i + 1 == attribution.chain.len();
            let outcome = match (&link.decision, last) {
                (Some(d), false) => format!(
                    "handed off to {} ({})",
                    attribution.chain[i + 1].agent,
                    attribution.chain[i + 1].job
                )
                .replace(&format!(" via {d}"), ""),
                (_, true) => match &end {
                    Some(e) if e.state == State::Failed => {
                        e.reason.clone().unwrap_or_else(|| "failed".into())
                    }
                    Some(e) => format!("ended {}", e.state),
                    None => "unfinished".into(),
                },
                (None, false) => "created the next job".into(),
            };
            BlameLink {
                job: link.job.clone(),
                agent: link.agent.clone(),
                decision: link.decision.clone(),
                kind: link.kind.clone(),
                outcome,
            }
        })
        .collect();
    let counterfactual = match (&end, plan) {
        (Some(e), Some(plan)) if e.state == State::Failed => e
            .blame
            .as_ref()
            .and_then(|b| counterfactual(&loaded, plan, executor, &bodies, b)),
        _ => None,
    };
    Ok(Blame {
        job: job.clone(),
        agent,
        state: end.as_ref().map(|e| e.state),
        reason: end.and_then(|e| e.reason),
        chain,
        counterfactual,
    })
}

/// Replays `bodies` with the blamed decision taken away (see [`Counterfactual`]).
fn counterfactual(
    loaded: &Loaded,
    plan: &Plan,
    executor: &Executor,
    bodies: &[&Body],
    blamed: &DecisionId,
) -> Option<Counterfactual> {
    let involves = |b: &Body| match b {
        Body::Decision { decision, .. } | Body::Rejected { decision, .. } => decision.id == *blamed,
        Body::Effect { decision, .. } => decision == blamed,
        _ => false,
    };
    let blamed_kind = bodies.iter().find_map(|b| match b {
        Body::Decision { decision, .. } if decision.id == *blamed => Some(decision.kind.clone()),
        _ => None,
    });
    let errored = bodies
        .iter()
        .any(|b| matches!(b, Body::Effect { decision, error: Some(_), .. } if decision == blamed));
    let deterministic = blamed_kind
        .as_ref()
        .and_then(|k| plan.types.get(k))
        .is_some_and(|t| t.deterministic);
    // A successful sibling: the same type, executed without error, elsewhere.
    let sibling = (errored && !deterministic)
        .then(|| {
            let kind = blamed_kind.as_ref()?;
            loaded
                .jobs
                .values()
                .flat_map(|places| loaded.bodies(places))
                .find_map(|b| match b {
                    Body::Effect {
                        decision,
                        result,
                        error: None,
                        ..
                    } if decision != blamed
                        && decision_kind(loaded, &decision_job(loaded, decision)?, decision)
                            .as_deref()
                            == Some(kind) =>
                    {
                        Some((decision.clone(), result.clone()))
                    }
                    _ => None,
                })
        })
        .flatten();
    let mut edited: Vec<Body> = Vec::new();
    for body in bodies.iter().take_while(|b| !matches!(b, Body::End { .. })) {
        if involves(body) {
            match (&sibling, body) {
                (
                    Some((_, result)),
                    Body::Effect {
                        job,
                        at,
                        decision,
                        state,
                        ..
                    },
                ) => edited.push(Body::Effect {
                    job: job.clone(),
                    at: *at,
                    decision: decision.clone(),
                    result: result.clone(),
                    error: None,
                    state: *state,
                }),
                (Some(_), Body::Decision { .. }) => edited.push((*body).clone()),
                _ => {}
            }
        } else {
            edited.push((*body).clone());
        }
    }
    for (i, body) in edited.iter_mut().enumerate() {
        set_at(body, i as u32);
    }
    let refs: Vec<&Body> = edited.iter().collect();
    // State digests no longer match the record after an edit: fold up to the
    // first mismatch is not wanted here, so re-derive the state step by step.
    let mut state = refold_lenient(plan, executor, &refs)?;
    state.conclude();
    Some(Counterfactual {
        decision: blamed.clone(),
        method: sibling.map_or("removed".into(), |(d, _)| {
            format!("sibling result from {d}")
        }),
        state_without: state.state,
        failure_disappears: state.state != State::Failed,
    })
}

fn decision_job(loaded: &Loaded, id: &DecisionId) -> Option<JobId> {
    loaded
        .jobs
        .iter()
        .find(|(_, places)| {
            loaded
                .bodies(places)
                .any(|b| matches!(b, Body::Decision { decision, .. } if decision.id == *id))
        })
        .map(|(j, _)| j.clone())
}

fn set_at(body: &mut Body, new_at: u32) {
    match body {
        Body::Plan { .. } | Body::Audit { .. } => {}
        Body::Job { at, .. }
        | Body::Model { at, .. }
        | Body::Decision { at, .. }
        | Body::Rejected { at, .. }
        | Body::Effect { at, .. }
        | Body::End { at, .. } => *at = new_at,
    }
}

/// Folds records into a job state like [`fold`], but without comparing state
/// digests (the records were edited on purpose).
fn refold_lenient(plan: &Plan, executor: &Executor, records: &[&Body]) -> Option<JobState> {
    let Some(Body::Job {
        job,
        agent,
        depth,
        tree_jobs,
        ..
    }) = records.first()
    else {
        return None;
    };
    let mut state = JobState::new(job.clone(), agent.clone());
    state.tree = crate::job::Tree {
        depth: depth.unwrap_or(0),
        jobs: *tree_jobs,
    };
    let mut pending: Option<Decision> = None;
    for body in &records[1..] {
        match body {
            Body::Model {
                turn,
                tokens_in,
                tokens_out,
                ..
            } => {
                state.turn = *turn;
                state.model_calls += 1;
                state.tokens += tokens_in + tokens_out;
            }
            Body::Decision { decision, .. } => {
                if let Some((turn, _)) = decision.id.turn_position() {
                    state.turn = turn;
                }
                pending = Some(decision.clone());
            }
            Body::Effect { result, error, .. } => {
                let decision = pending.take()?;
                executor.execute(
                    plan,
                    &mut state,
                    &decision,
                    Some((result, error.as_deref())),
                    None,
                );
            }
            Body::Rejected {
                decision,
                check,
                reason,
                ..
            } => {
                if let Some((turn, _)) = decision.id.turn_position() {
                    state.turn = turn;
                }
                state.note_rejection(decision, &format!("{check}: {reason}"));
            }
            _ => {}
        }
    }
    Some(state)
}
