//! Job files: the only way work enters. Reading and checking them, claiming
//! one by an atomic rename out of `inbox/`, giving it back, and failing a bad
//! one with a reason so the node never stops over bad input.

use crate::datadir::DataDir;
use crate::decision::{AgentName, DecisionId, JobId};
use crate::fsx::{self, IoError};
use crate::plan::Plan;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Largest job file a node reads; a larger one fails without being read.
pub const MAX_JOB_FILE_BYTES: u64 = 1024 * 1024;

/// A checked job file.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFile {
    pub id: JobId,
    pub agent: AgentName,
    pub input: Value,
    pub parent: Option<JobId>,
    pub via: Option<DecisionId>,
    /// Set when a node gave the job back mid-way: its records exist.
    pub resume: bool,
    /// Its place in its hand-off tree (`depth`, `tree_jobs`), set by the
    /// hand-off that created it; a root's is the default.
    pub tree: crate::job::Tree,
}

impl JobFile {
    pub fn to_json(&self) -> Value {
        let mut v = crate::runtime::job_file(
            self.id.as_str(),
            self.agent.as_str(),
            &self.input,
            self.parent.as_ref().map(|p| p.as_str()),
            self.via.as_ref().map(|v| v.as_str()),
        );
        crate::runtime::set_tree(&mut v, self.tree);
        if self.resume {
            v["resume"] = json!(true);
        }
        v
    }
}

/// The job id a file name stands for, if it is a job file at all.
pub fn id_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json")?;
    (!stem.starts_with('.')).then(|| stem.to_string())
}

/// Reads and checks a claimed job file. The error is the reason the job
/// fails, written for the person who submitted it.
pub fn read_job(path: &Path, plan: &Plan) -> Result<JobFile, String> {
    let stem = id_of(path).ok_or("not a job file name (expected <id>.json)")?;
    let id = JobId::new(stem).map_err(|e| format!("bad file name: {e}"))?;
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > MAX_JOB_FILE_BYTES {
        return Err(format!("job file is {len} bytes, over the limit of {MAX_JOB_FILE_BYTES}; put large inputs in a file the agent may read"));
    }
    let text = fsx::read(path).map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(
            "a job file is a JSON object {\"id\": ..., \"agent\": ..., \"input\": ...}".into(),
        );
    };
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "id" | "agent"
                | "input"
                | "parent"
                | "via"
                | "depth"
                | "tree_jobs"
                | "resume"
                | "schedule"
                | "slot"
        ) {
            return Err(format!(
                "unknown field '{key}'; a job file has id, agent, input (and parent, via)"
            ));
        }
    }
    if let Some(file_id) = map.get("id") {
        if file_id.as_str() != Some(id.as_str()) {
            return Err(format!(
                "its id {file_id} does not match its file name '{id}.json'"
            ));
        }
    }
    let agent = map
        .get("agent")
        .and_then(Value::as_str)
        .ok_or("missing \"agent\" (a string naming an agent of the hive)")?;
    let agent = AgentName::new(agent).map_err(|e| e.to_string())?;
    if !plan.agents.contains_key(agent.as_str()) {
        let known: Vec<&str> = plan.agents.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown agent '{agent}'; this hive's agents are: {}",
            known.join(", ")
        ));
    }
    let input = map.get("input").cloned().unwrap_or(json!({}));
    crate::decision::check_payload(&input).map_err(|e| format!("input: {e}"))?;
    let parent = match map.get("parent") {
        Some(Value::String(p)) => Some(JobId::new(p.clone()).map_err(|e| format!("parent: {e}"))?),
        Some(Value::Null) | None => None,
        Some(_) => return Err("parent must be a job id".into()),
    };
    let via = match map.get("via") {
        Some(Value::String(v)) => {
            Some(serde_json::from_value(json!(v)).map_err(|e| format!("via: {e}"))?)
        }
        _ => None,
    };
    let resume = map.get("resume").and_then(Value::as_bool).unwrap_or(false);
    let count = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(format!("{key} must be a whole number")),
    };
    let tree = crate::job::Tree {
        depth: count("depth")?.unwrap_or(0),
        jobs: count("tree_jobs")?,
    };
    Ok(JobFile {
        id,
        agent,
        input,
        parent,
        via,
        resume,
        tree,
    })
}

/// Claims `inbox/<name>` by renaming it into `claimed/`. Exactly one of
/// several nodes wins; the others get `Ok(None)`. The caller syncs
/// `claimed/` before the job's first record can be durable (one sync for a
/// batch of claims).
pub fn claim(data: &DataDir, name: &str) -> Result<Option<PathBuf>, IoError> {
    let from = data.inbox().join(name);
    let to = data.claimed().join(name);
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(Some(to)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IoError::new("cannot claim", &from, e)),
    }
}

/// How long ago a claimed file was claimed. The rename into `claimed/`
/// keeps the file's modification time (that of its submission) but sets its
/// change time, so the change time is the moment of the claim.
pub fn claim_age(claimed: &Path) -> Option<std::time::Duration> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(claimed).ok()?;
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().max(0) as u32);
    Some(changed.elapsed().unwrap_or_default())
}

/// Gives a claimed job back to the inbox, marked for resumption, and removes
/// its leases.
///
/// The order matters. The rewrite makes the claim fresh (a new file, a new
/// change time), so while it sits without a lease no node takes it over as
/// abandoned; the leases go before the move, so a node that claims the job
/// from the inbox meets none (a claim that meets a lease backs off).
pub fn release(data: &DataDir, job: &JobFile, epoch: u64) -> Result<(), IoError> {
    let mut back = job.clone();
    back.resume = true;
    let claimed = data.claimed().join(format!("{}.json", job.id));
    fsx::write_durable(&claimed, back.to_json().to_string().as_bytes())?;
    super::lease::remove_all(data, job.id.as_str(), epoch);
    fsx::rename_durable(&claimed, &data.inbox().join(format!("{}.json", job.id)))
}

/// Fails a job file that cannot run: `failed/<id>.json` holds the reason and
/// what the file said; the claimed file is removed.
pub fn fail_bad_file(data: &DataDir, claimed: &Path, reason: &str) -> Result<PathBuf, IoError> {
    let stem = id_of(claimed).unwrap_or_default();
    let id = match JobId::new(stem.clone()) {
        Ok(id) => id.to_string(),
        Err(_) => format!(
            "bad-{}",
            &crate::canon::Digest::of_bytes(stem.as_bytes()).to_hex()[..16]
        ),
    };
    let result = json!({
        "job": id,
        "state": "FAILED",
        "reason": format!("rejected job file: {reason}"),
        "file": claimed.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    let path = data.failed().join(format!("{id}.json"));
    fsx::write_durable(
        &path,
        (serde_json::to_string_pretty(&result).expect("serializes") + "\n").as_bytes(),
    )?;
    remove_quietly(claimed);
    Ok(path)
}

/// Removes a file that may already be gone.
pub fn remove_quietly(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Writes a new job into the inbox, atomically and durably, refusing an id
/// that exists anywhere in the pipeline.
pub fn submit(data: &DataDir, job: &JobFile) -> Result<PathBuf, String> {
    data.create().map_err(|e| e.to_string())?;
    let name = format!("{}.json", job.id);
    for dir in [data.claimed(), data.done(), data.failed()] {
        if dir.join(&name).exists() {
            return Err(format!(
                "job '{}' exists already ({}); pick another --id",
                job.id,
                dir.join(&name).display()
            ));
        }
    }
    let path = data.inbox().join(&name);
    match fsx::create_durable_exclusive(&path, job.to_json().to_string().as_bytes()) {
        Ok(true) => Ok(path),
        Ok(false) => Err(format!(
            "job '{}' is already in the inbox; pick another --id",
            job.id
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_claim_is_as_old_as_its_rename_not_its_submission() {
        let (_dir, data) = crate::datadir::temp();
        let submitted = data.inbox().join("old.json");
        std::fs::write(&submitted, b"{}").unwrap();
        crate::datadir::backdate_an_hour(&submitted);
        let claimed = claim(&data, "old.json").unwrap().unwrap();
        let modified = std::fs::metadata(&claimed).unwrap().modified().unwrap();
        assert!(modified.elapsed().unwrap() >= Duration::from_secs(3599));
        assert!(claim_age(&claimed).unwrap() < Duration::from_secs(600));
        assert!(claim(&data, "old.json").unwrap().is_none());
    }
}
