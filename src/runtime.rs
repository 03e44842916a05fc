//! Opening a data dir for work: the node id, the log (repaired and verified),
//! the blobs, the plan in force (recorded as a `plan` record when it changes),
//! and the live effects a job may have (hand-offs into the inbox).
//!
//! Shared by `jaros run` (one job, foreground) and `jaros serve` (the node).

use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::exec::{AuditEntry, LiveIo, Spawn};
use crate::fsx;
use crate::harness::audit::AuditLog;
use crate::log::{Blobs, Body, LogError, LogWriter, OpenReport};
use crate::plan::Plan;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The identity of this executor, recorded in every `plan` record.
pub fn executor_identity() -> String {
    format!(
        "jaros {} ({}, {})",
        env!("CARGO_PKG_VERSION"),
        build_commit(),
        build_profile()
    )
}

pub fn build_commit() -> &'static str {
    option_env!("JAROS_GIT_COMMIT").unwrap_or("unknown")
}

pub fn build_profile() -> &'static str {
    option_env!("JAROS_BUILD_PROFILE").unwrap_or(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

/// The data dir's stable node id: read from `<data>/node-id`, created once.
pub fn stable_node_id(data: &DataDir) -> Result<String, fsx::IoError> {
    let path = data.root().join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    fsx::create_dir_all(data.root())?;
    let candidate = format!("node-{}", &crate::ids::random_hex(8));
    fsx::create_durable_exclusive(&path, candidate.as_bytes())?;
    // Another process may have won the race: read what is there.
    Ok(fsx::read_to_string(&path)?.trim().to_string())
}

/// An open data dir with this process's log.
pub struct Runtime {
    pub data: DataDir,
    pub hive: PathBuf,
    pub node_id: String,
    pub log: LogWriter,
    pub blobs: Blobs,
    pub open_report: OpenReport,
    /// This node's audit log, `audit/<node-id>.jsonl`.
    pub audit: Arc<AuditLog>,
    /// The plan in force and its digest; replaced when manifests change.
    plan: RwLock<(Arc<Plan>, Digest)>,
}

impl Runtime {
    /// Opens the log of `node_id` in `data` (creating the layout), repairing
    /// a torn tail and refusing a tampered chain, and records `plan`.
    pub fn open(
        hive: &Path,
        data: DataDir,
        node_id: String,
        plan: Plan,
    ) -> Result<Runtime, LogError> {
        data.create()?;
        let (log, open_report) = LogWriter::open(&data.log_path(&node_id))?;
        let audit = Arc::new(AuditLog::open(&data.audit_path(&node_id))?);
        let blobs = Blobs::new(data.root());
        let last = open_report.last_plan;
        let runtime = Runtime {
            data,
            hive: hive.to_path_buf(),
            node_id,
            log,
            blobs,
            open_report,
            audit,
            plan: RwLock::new((Arc::new(Plan::builtin()), Digest::ZERO)),
        };
        runtime.record_plan_if_new(plan, last)?;
        Ok(runtime)
    }

    fn record_plan_if_new(&self, plan: Plan, last: Option<Digest>) -> Result<bool, LogError> {
        let digest = plan.digest();
        let changed = last != Some(digest);
        if changed {
            let blob = self.blobs.put(plan.canonical_json().as_bytes())?;
            self.log.append(&Body::Plan {
                digest,
                blob,
                executor: executor_identity(),
            })?;
        }
        *self.plan.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(plan), digest);
        Ok(changed)
    }

    /// Puts a new plan in force for jobs started from now on, recording it
    /// when it differs. Returns whether it did.
    pub fn set_plan(&self, plan: Plan) -> Result<bool, LogError> {
        let last = Some(self.plan_digest());
        self.record_plan_if_new(plan, last)
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    pub fn plan_digest(&self) -> Digest {
        self.plan.read().unwrap_or_else(|p| p.into_inner()).1
    }

    /// A runner for jobs under the plan in force now, recording into this
    /// process's log.
    pub fn runner<'a>(
        &'a self,
        executor: &'a crate::exec::Executor,
        proposer: &'a dyn crate::job::Proposer,
        live: &'a dyn LiveIo,
        fence: &'a (dyn Fn() -> bool + Sync),
    ) -> crate::job::Runner<'a> {
        crate::job::Runner {
            plan: self.plan(),
            plan_digest: self.plan_digest(),
            executor,
            log: &self.log,
            blobs: &self.blobs,
            proposer,
            live,
            fence,
            defer_end: false,
        }
    }

    pub fn live_io(&self) -> HiveIo {
        HiveIo {
            hive: self.hive.clone(),
            data: self.data.clone(),
            audit: Some(self.audit.clone()),
            epoch: 0,
            effect_ran: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A job file as the inbox holds it: the original's shape plus parent links.
pub fn job_file(
    id: &str,
    agent: &str,
    input: &Value,
    parent: Option<&str>,
    via: Option<&str>,
) -> Value {
    let mut v = json!({"id": id, "agent": agent, "input": input});
    if let Some(p) = parent {
        v["parent"] = json!(p);
    }
    if let Some(d) = via {
        v["via"] = json!(d);
    }
    v
}

/// Adds a child job's place in its hand-off tree to its job file (set by
/// the runtime only; a root's file has none).
pub fn set_tree(file: &mut Value, tree: crate::job::Tree) {
    if tree.depth > 0 {
        file["depth"] = json!(tree.depth);
    }
    if let Some(jobs) = tree.jobs {
        file["tree_jobs"] = json!(jobs);
    }
}

/// Live effects on the hive and data dir.
#[derive(Debug, Clone)]
pub struct HiveIo {
    pub hive: PathBuf,
    pub data: DataDir,
    /// Where mediated actions and refusals are recorded (`None`: nowhere).
    pub audit: Option<Arc<AuditLog>>,
    /// The epoch of the lease the job is run under (0: none).
    pub epoch: u64,
    /// Set when a live effect ran, until [`take_effect_ran`](Self::take_effect_ran).
    pub effect_ran: Arc<AtomicBool>,
}

impl HiveIo {
    /// Whether a live effect ran since the last call: if so, the job's next
    /// record is that effect's.
    pub fn take_effect_ran(&self) -> bool {
        self.effect_ran.swap(false, Ordering::SeqCst)
    }

    /// Whether a job id is already anywhere in the pipeline.
    pub fn job_exists(&self, id: &str) -> bool {
        let name = format!("{id}.json");
        // Checked in pipeline order: files only move forward, atomically.
        [
            self.data.inbox(),
            self.data.claimed(),
            self.data.done(),
            self.data.failed(),
        ]
        .iter()
        .any(|dir| dir.join(&name).exists())
    }
}

impl LiveIo for HiveIo {
    fn hive(&self) -> PathBuf {
        self.hive.clone()
    }

    fn data_dir(&self) -> Option<PathBuf> {
        Some(self.data.root().to_path_buf())
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn effect_ran(&self) {
        self.effect_ran.store(true, Ordering::SeqCst);
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), LogError> {
        match &self.audit {
            Some(log) => log.append(entry).map(|_| ()),
            None => Ok(()),
        }
    }

    fn spawn(&self, spawn: &Spawn) -> Result<(), String> {
        if self.job_exists(spawn.job.as_str()) {
            return Ok(()); // a resumed hand-off: the child exists already
        }
        let mut body = job_file(
            spawn.job.as_str(),
            spawn.agent.as_str(),
            &spawn.input,
            Some(spawn.parent.as_str()),
            Some(spawn.via.as_str()),
        );
        set_tree(&mut body, spawn.tree);
        let path = self.data.inbox().join(format!("{}.json", spawn.job));
        fsx::create_dir_all(&self.data.inbox()).map_err(|e| e.to_string())?;
        fsx::create_durable_exclusive(&path, body.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// What `jaros --version` prints after the name.
pub fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} ({}, {})",
            env!("CARGO_PKG_VERSION"),
            build_commit(),
            build_profile()
        )
    })
}

/// The content of `done/<id>.json` or `failed/<id>.json`.
pub fn result_file(end: &crate::job::JobEnd, node_id: &str) -> Value {
    json!({
        "job": end.job,
        "agent": end.agent,
        "state": end.state,
        "result": end.result,
        "reason": end.reason,
        "blame": end.blame,
        "log": {"node": node_id, "seq": end.seq},
    })
}

/// Writes a job's result file durably into `done/` or `failed/`.
pub fn write_result(
    data: &DataDir,
    end: &crate::job::JobEnd,
    result: &Value,
) -> Result<PathBuf, fsx::IoError> {
    let staged = stage_result(data, end, result, None)?;
    let path = staged.dest().to_path_buf();
    fsx::publish(vec![staged])?;
    Ok(path)
}

/// A job's result file, written but not yet durable or in place (see
/// [`fsx::stage`]; `spare` is a file to reuse).
pub fn stage_result(
    data: &DataDir,
    end: &crate::job::JobEnd,
    result: &Value,
    spare: Option<&Path>,
) -> Result<fsx::Staged, fsx::IoError> {
    let dir = if end.state == crate::state::State::Done {
        data.done()
    } else {
        data.failed()
    };
    if !dir.is_dir() {
        fsx::create_dir_all(&dir)?;
    }
    let path = dir.join(format!("{}.json", end.job));
    let text = serde_json::to_string_pretty(result).expect("results serialize") + "\n";
    fsx::stage(&path, text.as_bytes(), spare)
}

/// A cheap fingerprint of the hive's manifests, templates and tools (paths,
/// sizes, modification times), to notice edits without reading every file.
pub fn hive_fingerprint(hive: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stack: Vec<PathBuf> = ["manifests", "agents", "tools"]
        .iter()
        .map(|d| hive.join(d))
        .collect();
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        for path in fsx::list_dir(&dir).unwrap_or_default() {
            seen += 1;
            if seen > 10_000 {
                return hasher.finish(); // a hive this large is checked by its first files
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            path.hash(&mut hasher);
            if meta.is_dir() {
                stack.push(path);
            } else {
                meta.len().hash(&mut hasher);
                meta.modified().ok().hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}
