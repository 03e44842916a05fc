//! Running eval cases: each run is one job in a fresh temporary data dir,
//! driven by the same [`Runner`] as `jaros run` and the node (real gate, log
//! and executor), then read back from its log and checked.
//!
//! Model agents get a scripted client with the case's responses, or in live
//! mode the hive's real providers. Cases run on a small pool of threads and
//! are reported in their order. Agents whose role may write get a scratch
//! copy of the hive, so a case never changes the hive it tests.

use super::expect::{self, EffectSeen, Failure, Observed, Proposed};
use super::Case;
use crate::approval::store::{Answer, Link, Request, Store, Verdict};
use crate::datadir::DataDir;
use crate::decision::Decision;
use crate::exec::Executor;
use crate::fold::Waiting;
use crate::job::{Proposer, RunError, Ticket};
use crate::log::{read_log, Body};
use crate::manifest::types::{EvalAnswer, EvalVerdict};
use crate::model::proposer::ModelProposer;
use crate::model::scripted::ScriptedClient;
use crate::model::ProviderConfig;
use crate::plan::{AgentKind, Plan};
use crate::runtime::Runtime;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The node id of every eval run's log.
pub const EVAL_NODE: &str = "eval";
/// Most threads cases run on, whatever the machine has.
pub const MAX_EVAL_THREADS: usize = 8;
/// Most runs of one case in live mode.
pub const MAX_RUNS: u32 = 1000;
/// Largest hive copied for a case whose agent may write, in bytes.
pub const MAX_HIVE_COPY_BYTES: u64 = 256 * 1024 * 1024;
/// Most files copied for a case whose agent may write.
pub const MAX_HIVE_COPY_FILES: usize = 20_000;

/// Everything runs share.
pub struct Env {
    pub hive: PathBuf,
    pub plan: Plan,
    pub executor: Executor,
    /// The node manifest's providers (offline runs use them for agents whose
    /// case gives no responses: `echo` and `scripted` providers).
    pub providers: HashMap<String, ProviderConfig>,
    /// Live mode: what proposes for every agent; `None` runs offline.
    pub live: Option<Arc<dyn Proposer>>,
    /// Runs per case (1 offline).
    pub runs: u32,
    pub threads: usize,
}

/// The threads to run cases on: what the machine offers, at most
/// [`MAX_EVAL_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_EVAL_THREADS)
}

/// What running one case found.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    pub suite: String,
    pub name: String,
    pub place: String,
    pub runs: u32,
    pub passed_runs: u32,
    /// The failed checks of the first run that failed.
    pub failures: Vec<Failure>,
    pub duration: Duration,
}

impl CaseReport {
    pub fn pass_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            f64::from(self.passed_runs) / f64::from(self.runs)
        }
    }

    /// Whether the case passed at least `min_rate` of its runs.
    pub fn passed(&self, min_rate: f64) -> bool {
        self.runs > 0 && self.pass_rate() + 1e-9 >= min_rate
    }
}

/// Runs `cases` on `env.threads` threads and hands each report to `report`
/// in the cases' order, as soon as it and every case before it are done.
pub fn run_cases(
    env: &Env,
    cases: &[Case],
    mut report: impl FnMut(&CaseReport),
) -> Vec<CaseReport> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, CaseReport)>();
    let mut slots: Vec<Option<CaseReport>> = vec![None; cases.len()];
    std::thread::scope(|scope| {
        for _ in 0..env.threads.clamp(1, cases.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                if tx.send((i, run_case(env, case))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut shown = 0;
        for (i, r) in rx {
            slots[i] = Some(r);
            while let Some(Some(r)) = slots.get(shown) {
                report(r);
                shown += 1;
            }
        }
    });
    slots.into_iter().flatten().collect()
}

/// Runs one case `env.runs` times (twice per run when it must be
/// deterministic) and checks every run.
pub fn run_case(env: &Env, case: &Case) -> CaseReport {
    let started = Instant::now();
    let runs = env.runs.clamp(1, MAX_RUNS);
    let mut passed_runs = 0;
    let mut failures = Vec::new();
    for _ in 0..runs {
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_run(env, case)))
            .unwrap_or_else(|panic| {
                vec![Failure::new(
                    "run",
                    "the case runs".into(),
                    format!("it panicked: {}", crate::exec::panic_text(&panic)),
                )]
            });
        if found.is_empty() {
            passed_runs += 1;
        } else if failures.is_empty() {
            failures = found;
        }
    }
    CaseReport {
        suite: case.suite.clone(),
        name: case.name.clone(),
        place: case.place.clone(),
        runs,
        passed_runs,
        failures,
        duration: started.elapsed(),
    }
}

fn check_run(env: &Env, case: &Case) -> Vec<Failure> {
    let first = match run_once(env, case) {
        Ok(r) => r,
        Err(e) => return vec![run_failure(e)],
    };
    let mut failures = expect::check(&case.expect, &first.observed);
    failures.extend(first.unused.iter().cloned());
    if case.expect.deterministic == Some(true) {
        match run_once(env, case) {
            Ok(second) => failures.extend(compare_runs(&first.records, &second.records)),
            Err(e) => failures.push(run_failure(e)),
        }
    }
    failures
}

fn run_failure(e: String) -> Failure {
    Failure::new("run", "the case runs to its end".into(), e)
}

/// One run's log, read back.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub observed: Observed,
    /// Every record body of the run's log with its timing zeroed, as JSON.
    pub records: Vec<Value>,
    pub bodies: Vec<Body>,
    /// A failed check for each of the case's verdicts no waiting decision used.
    pub unused: Vec<Failure>,
}

/// Runs the case once in a fresh temporary data dir and reads its log back.
pub fn run_once(env: &Env, case: &Case) -> Result<Recorded, String> {
    let scratch = Scratch::new()?;
    let writes = env
        .plan
        .grant_of(case.agent.as_str())
        .is_some_and(|g| !g.write.is_empty());
    let hive = if writes {
        let copy = scratch.path().join("hive");
        copy_hive(&env.hive, &copy, &env.plan.protected)?;
        copy
    } else {
        env.hive.clone()
    };
    let data = DataDir::new(scratch.path().join("data"));
    let rt = Runtime::open(&hive, data.clone(), EVAL_NODE.into(), env.plan.clone())
        .map_err(|e| e.to_string())?;
    let proposer = match &env.live {
        Some(p) => p.clone(),
        None => offline_proposer(env, case),
    };
    let live = rt.live_io();
    let runner = rt.runner(&env.executor, &*proposer, &live, &|| true);
    let ticket = Ticket {
        job: case.job_id(),
        agent: case.agent.clone(),
        input: case.input.clone(),
        parent: None,
        via: None,
    };
    // A decision that waits gets the case's verdict, as `jaros approve`
    // gives it (request, verdict file), and the job resumes from its log;
    // one with no verdict leaves the job parked. Each pass uses a verdict,
    // so this ends.
    let mut used = vec![false; case.verdicts.len()];
    let mut history = Vec::new();
    loop {
        match runner.run(&ticket, &history) {
            Ok(_) => break,
            Err(RunError::Parked { waiting, .. }) => {
                let Some(i) = verdict_for(&case.verdicts, &used, &waiting.decision) else {
                    break;
                };
                used[i] = true;
                give(&data, &ticket, &waiting, &case.verdicts[i])
                    .map_err(|e| format!("verdicts[{i}]: {e}"))?;
                rt.log.flush().map_err(|e| e.to_string())?;
                history =
                    crate::replay::job_history(&data, &ticket.job).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    rt.log.flush().map_err(|e| e.to_string())?;
    let log = read_log(&data.log_path(EVAL_NODE)).map_err(|e| e.to_string())?;
    let bodies: Vec<Body> = log.records.into_iter().map(|r| r.body).collect();
    let unused = case
        .verdicts
        .iter()
        .zip(&used)
        .enumerate()
        .filter(|(_, (_, used))| !**used)
        .map(|(i, (v, _))| {
            Failure::new(
                format!("verdicts[{i}]"),
                format!("decision '{}' waits for this verdict", v.decision),
                "no decision it names waited for a verdict".into(),
            )
        })
        .collect();
    Ok(Recorded {
        observed: observe(&bodies),
        records: bodies.iter().map(timeless).collect(),
        bodies,
        unused,
    })
}

/// The first verdict not yet used that names `decision`: by its
/// `turn.position`, its full id, or its type.
fn verdict_for(verdicts: &[EvalVerdict], used: &[bool], decision: &Decision) -> Option<usize> {
    let id = decision.id.as_str();
    let short = id.rsplit('#').next().unwrap_or_default();
    verdicts.iter().zip(used).position(|(v, used)| {
        !*used && (v.decision == short || v.decision == id || v.decision == decision.kind)
    })
}

/// Gives a case's verdict through the approval store, as `jaros approve`
/// and `jaros deny` do: the request file, then the verdict file (checked
/// against the recorded approvers).
fn give(data: &DataDir, ticket: &Ticket, waiting: &Waiting, v: &EvalVerdict) -> Result<(), String> {
    let store = Store::new(data);
    let now = crate::node::lease::now_ms();
    let request = Request {
        job: ticket.job.clone(),
        agent: ticket.agent.to_string(),
        decision: waiting.decision.clone(),
        approvers: waiting.approvers.clone(),
        requested_ms: now,
        expires_ms: waiting.expires_ms,
        chain: vec![Link {
            job: ticket.job.clone(),
            agent: ticket.agent.to_string(),
            via: None,
        }],
        node: EVAL_NODE.into(),
    };
    store.write_request(&request).map_err(|e| e.to_string())?;
    let verdict = Verdict {
        job: ticket.job.clone(),
        decision: waiting.decision.id.clone(),
        verdict: match v.verdict {
            EvalAnswer::Approve => Answer::Approve,
            EvalAnswer::Deny => Answer::Deny,
        },
        by: v.by.clone(),
        at_ms: now,
        note: v.note.clone(),
        reason: v.reason.clone(),
    };
    store.give(&verdict).map_err(|e| e.to_string())?;
    store.close(&ticket.job).map_err(|e| e.to_string())
}

/// Built-ins and templates as always; a model agent's provider answers with
/// the case's scripted responses, from the first, on every run.
fn offline_proposer(env: &Env, case: &Case) -> Arc<dyn Proposer> {
    let mut models = ModelProposer::new(env.providers.clone());
    if let (Some(responses), Some(AgentKind::Model { provider, .. })) = (
        &case.responses,
        env.plan.agents.get(case.agent.as_str()).map(|a| &a.kind),
    ) {
        let client = ScriptedClient::new(provider, responses.clone());
        models = models.with_client(provider, Arc::new(client));
    }
    Arc::new(crate::agents::LocalProposer {
        models: Some(Arc::new(models)),
    })
}

/// What a job's records say happened to it (records of other jobs ignored).
pub fn observe(bodies: &[Body]) -> Observed {
    let mut seen = Observed::default();
    let mut job = None;
    // The decision that waits, until its `decision` or `rejected` record.
    let mut waiting: Option<crate::decision::Decision> = None;
    for body in bodies {
        match body {
            Body::Job { job: id, .. } if job.is_none() => job = Some(id.clone()),
            _ => {}
        }
        if body.job_at().map(|(id, _)| id) != job.as_ref() {
            continue;
        }
        match body {
            Body::Waiting { decision, .. } => waiting = Some(decision.clone()),
            Body::Decision { decision, .. } => {
                if waiting.as_ref().is_some_and(|w| w.id == decision.id) {
                    waiting = None;
                }
                seen.proposed.push(Proposed {
                    id: decision.id.to_string(),
                    kind: decision.kind.clone(),
                    payload: decision.payload.clone(),
                    rejection: None,
                })
            }
            Body::Rejected {
                decision,
                check,
                reason,
                ..
            } => {
                if waiting.as_ref().is_some_and(|w| w.id == decision.id) {
                    waiting = None;
                }
                seen.proposed.push(Proposed {
                    id: decision.id.to_string(),
                    kind: decision.kind.clone(),
                    payload: decision.payload.clone(),
                    rejection: Some(format!("{check}: {reason}")),
                })
            }
            Body::Effect {
                decision,
                result,
                error,
                ..
            } => {
                let (result, error) = match result.to_value() {
                    Ok(value) => (value, error.clone()),
                    Err(e) => (
                        serde_json::Value::Null,
                        Some(format!("the recorded result cannot be read: {e}")),
                    ),
                };
                seen.effects.push(EffectSeen {
                    decision: decision.to_string(),
                    result,
                    error,
                })
            }
            Body::End { state, reason, .. } => {
                seen.state = Some(*state);
                seen.reason = reason.clone();
            }
            _ => {}
        }
    }
    if let Some(d) = waiting {
        // Proposed and parked: counted among the proposals, with no verdict.
        seen.waiting = Some(format!("{} ({})", d.id, d.kind));
        seen.proposed.push(Proposed {
            id: d.id.to_string(),
            kind: d.kind,
            payload: d.payload,
            rejection: None,
        });
    }
    seen
}

/// A record body as JSON with what depends on timing zeroed (a model call's
/// `duration_ms`, a job's `started_ms`, the clock reading of a decision):
/// two runs of a deterministic case record the same bodies.
fn timeless(body: &Body) -> Value {
    let mut body = body.clone();
    match &mut body {
        Body::Model { duration_ms, .. } => *duration_ms = 0,
        Body::Job { started_ms, .. } => *started_ms = None,
        Body::Decision { clock_ms, .. }
        | Body::Rejected { clock_ms, .. }
        | Body::Waiting { clock_ms, .. } => *clock_ms = None,
        _ => {}
    }
    // A request's deadline and a verdict's time are wall-clock readings.
    match &mut body {
        Body::Waiting { expires_ms, .. } => *expires_ms = 0,
        Body::Verdict { at_ms, .. } => *at_ms = 0,
        _ => {}
    }
    serde_json::to_value(&body).expect("record bodies serialize")
}

/// The first record two runs disagree on, as a failed `deterministic` check.
fn compare_runs(a: &[Value], b: &[Value]) -> Option<Failure> {
    let expected = "two runs record the same records".to_string();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if let Some(m) = expect::first_difference(x, y) {
            let kind = x.get("kind").and_then(Value::as_str).unwrap_or("?");
            let mut f = Failure::new(
                "deterministic",
                expected,
                format!("record {} ({kind}) differs between the runs", i + 1),
            );
            f.detail = Some(m.to_string());
            return Some(f);
        }
    }
    (a.len() != b.len()).then(|| {
        Failure::new(
            "deterministic",
            expected,
            format!("the runs recorded {} and {} records", a.len(), b.len()),
        )
    })
}

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let path = std::env::temp_dir().join(format!(
            "jaros-eval-{}-{}",
            std::process::id(),
            crate::ids::random_hex(8)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the hive into `to` for an agent that may write: hidden entries,
/// symbolic links and the data dir left out, bounded in bytes and files.
fn copy_hive(from: &Path, to: &Path, protected: &[String]) -> Result<(), String> {
    let skip: Vec<&str> = protected
        .iter()
        .map(String::as_str)
        .filter(|p| !matches!(*p, "manifests" | "agents" | "tools" | "evals"))
        .collect();
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf(), String::new())];
    let (mut bytes, mut files) = (0u64, 0usize);
    while let Some((src, dst, rel)) = stack.pop() {
        std::fs::create_dir_all(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        for path in crate::fsx::list_dir(&src).map_err(|e| e.to_string())? {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if name.starts_with('.') || skip.contains(&child.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{child}: {e}"))?;
            if meta.is_dir() {
                stack.push((path, dst.join(&name), child));
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
                if bytes > MAX_HIVE_COPY_BYTES || files > MAX_HIVE_COPY_FILES {
                    return Err(format!(
                        "the hive is too large to copy for an agent that may write (over \
                         {MAX_HIVE_COPY_BYTES} bytes or {MAX_HIVE_COPY_FILES} files)"
                    ));
                }
                std::fs::copy(&path, dst.join(&name)).map_err(|e| format!("{child}: {e}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_that_differ_name_the_first_record_and_where_in_it() {
        let a = vec![
            json!({"kind": "job"}),
            json!({"kind": "effect", "result": {"n": 1}}),
        ];
        let mut b = a.clone();
        assert_eq!(compare_runs(&a, &b), None);
        b[1]["result"]["n"] = json!(2);
        let f = compare_runs(&a, &b).unwrap();
        assert_eq!(f.actual, "record 2 (effect) differs between the runs");
        assert_eq!(f.detail.as_deref(), Some("at /result/n: expected 1, got 2"));
        let f = compare_runs(&a, &a[..1]).unwrap();
        assert_eq!(f.actual, "the runs recorded 2 and 1 records");
    }

    #[test]
    fn model_call_timing_is_not_part_of_what_runs_compare() {
        let model = |ms| Body::Model {
            job: crate::decision::JobId::new("j").unwrap(),
            at: 1,
            turn: 1,
            provider: "p".into(),
            model: "m".into(),
            params: json!({}),
            template: crate::canon::Digest::ZERO,
            inputs: crate::canon::Digest::ZERO,
            prompt: crate::canon::Digest::ZERO,
            response: crate::canon::Digest::ZERO,
            tokens_in: 1,
            tokens_out: 1,
            duration_ms: ms,
            error: None,
        };
        assert_eq!(timeless(&model(5)), timeless(&model(900)));
    }

    #[test]
    fn a_hive_copy_leaves_out_hidden_entries_and_the_data_dir() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        for rel in [
            "manifests/a.yaml",
            "notes/n.md",
            ".git/x",
            "state/log",
            "tools/t.sh",
        ] {
            let p = from.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, rel).unwrap();
        }
        let dest = to.path().join("hive");
        copy_hive(
            from.path(),
            &dest,
            &["manifests".into(), "tools".into(), "state".into()],
        )
        .unwrap();
        assert!(dest.join("manifests/a.yaml").is_file());
        assert!(dest.join("notes/n.md").is_file());
        assert!(dest.join("tools/t.sh").is_file());
        assert!(!dest.join(".git").exists());
        assert!(!dest.join("state").exists());
    }
}
