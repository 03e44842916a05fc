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

/// Why a claimed job file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// The file is gone: another node finished the job or took it over.
    Gone,
    /// The file cannot be a job: the reason, for the person who submitted
    /// it. It names no host path.
    Bad(String),
}

/// The job id a claimed file's name stands for; the error is the reason
/// the file is rejected.
pub fn job_id_of(path: &Path) -> Result<JobId, String> {
    let stem = id_of(path).ok_or("not a job file name (expected <id>.json)")?;
    JobId::new(stem).map_err(|e| format!("bad file name: {e}"))
}

/// Reads and checks a claimed job file. A `Bad` reason is why the job
/// fails, written for the person who submitted it.
pub fn read_job(path: &Path, plan: &Plan) -> Result<JobFile, Unread> {
    let id = job_id_of(path).map_err(Unread::Bad)?;
    let bytes = read_bytes(path)?;
    parse_job(id, &bytes, plan).map_err(Unread::Bad)
}

/// Reads a job file's bytes without trusting what the name points at: a
/// link is not followed (a job file outside the data dir, or a device, must
/// not run or be read through one), nothing but a regular file is opened
/// for reading (a FIFO would block a worker forever), and at most
/// [`MAX_JOB_FILE_BYTES`] + 1 bytes are read, whatever the size said.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Unread> {
    fsx::read_regular(path, MAX_JOB_FILE_BYTES).map_err(|e| match e {
        fsx::Unregular::Gone => Unread::Gone,
        fsx::Unregular::NotRegular(what) => Unread::Bad(not_regular_text(what)),
        fsx::Unregular::TooLarge(len) => Unread::Bad(format!("job file is {len} bytes, over the limit of {MAX_JOB_FILE_BYTES}; put large inputs in a file the agent may read")),
        fsx::Unregular::Io { action, source } => Unread::Bad(format!("{action} it: {source}")),
    })
}

fn not_regular_text(what: &str) -> String {
    format!("it is {what}, not a regular file; a job file is a regular file holding a JSON object")
}

/// Checks a job file's content; the error is the reason the job fails.
pub fn parse_job(id: JobId, bytes: &[u8], plan: &Plan) -> Result<JobFile, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
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
///
/// The rename never replaces a claimed file: a second file of the same name
/// (a job id submitted twice) would otherwise take the place of a claim in
/// progress, and a node taking that claim over would read it instead. It
/// waits in the inbox until the claim is gone, and is then claimed and
/// refused as a job that has run. Where the file system lacks
/// `RENAME_NOREPLACE` (some network file systems), the node looks before it
/// renames: a duplicate arriving in that instant can still replace the
/// claimed file (see docs/inbox.md).
pub fn claim(data: &DataDir, name: &str) -> Result<Option<PathBuf>, IoError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let from = data.inbox().join(name);
    let to = data.claimed().join(name);
    let renamed = match renameat_with(CWD, &from, CWD, &to, RenameFlags::NOREPLACE) {
        Err(e)
            if [
                rustix::io::Errno::INVAL,
                rustix::io::Errno::NOSYS,
                rustix::io::Errno::OPNOTSUPP,
            ]
            .contains(&e) =>
        {
            if std::fs::symlink_metadata(&to).is_ok() {
                return Ok(None);
            }
            std::fs::rename(&from, &to)
        }
        other => other.map_err(std::io::Error::from),
    };
    match renamed {
        Ok(()) => Ok(Some(to)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AlreadyExists) => Ok(None),
        Err(e) => Err(IoError::new("cannot claim", &from, e)),
    }
}

/// How long ago a claimed file was claimed. The rename into `claimed/`
/// keeps the file's modification time (that of its submission) but sets its
/// change time, so the change time is the moment of the claim.
pub fn claim_age(claimed: &Path) -> Option<std::time::Duration> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(claimed).ok()?;
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

/// What became of a job file that cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// `failed/<id>.json` holds the reason.
    Failed(PathBuf),
    /// The job has a result already: the file was refused, and the refusal
    /// written under a name of its own (see [`reject`]).
    Refused(PathBuf),
}

/// Fails job `id`, whose claimed file cannot run: `failed/<id>.json` holds
/// the reason and what the file said, and the claimed file is removed. The
/// caller holds the job's lease.
///
/// A job has one result, done or failed, never both. So a job with a result
/// is not failed again (the file is refused instead), `failed/<id>.json` is
/// created exclusively, and `done/<id>.json` is looked at again after it:
/// a done result that appeared in between (its node published it while this
/// node held the lease: a pause the fence did not catch) wins, and the
/// failure is taken back. The window left is the one between that second
/// look and the other node's publish, which needs a node to publish a
/// result for a job whose lease another node holds.
pub fn fail_bad_file(
    data: &DataDir,
    claimed: &Path,
    id: &JobId,
    reason: &str,
) -> Result<Failed, IoError> {
    if let Some(result) = result_of(data, id) {
        return reject(data, claimed, &ran_already(id, &result)).map(Failed::Refused);
    }
    let name = format!("{id}.json");
    let path = data.failed().join(&name);
    fsx::create_dir_all(&data.failed())?;
    let body = rejection(id.as_str(), reason, claimed);
    if !fsx::create_durable_exclusive(&path, body.as_bytes())? {
        let failed = format!("failed/{name}");
        return reject(data, claimed, &ran_already(id, &failed)).map(Failed::Refused);
    }
    if std::fs::symlink_metadata(data.done().join(&name)).is_ok() {
        remove_quietly(&path);
        fsx::sync_dir(&data.failed())?;
        return reject(data, claimed, &ran_already(id, &format!("done/{name}")))
            .map(Failed::Refused);
    }
    remove_entry(claimed);
    Ok(Failed::Failed(path))
}

/// Refuses a claimed file that cannot be failed under its own name: a name
/// that is no job id (too long, bad characters), or a job id that has run
/// already. The reason goes to `failed/_rejected-<hash>.json`, the hash of
/// the file's name and the reason (no job id starts with `_`, so it is never
/// a job's result; the same file refused again for the same reason is one
/// refusal), and the claimed file is removed.
pub fn reject(data: &DataDir, claimed: &Path, reason: &str) -> Result<PathBuf, IoError> {
    let file = claimed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = format!(
        "_rejected-{}",
        &crate::canon::Digest::of_bytes(format!("{file}\n{reason}").as_bytes()).to_hex()[..16]
    );
    let path = data.failed().join(format!("{stem}.json"));
    fsx::create_dir_all(&data.failed())?;
    fsx::write_durable(&path, rejection(&stem, reason, claimed).as_bytes())?;
    remove_entry(claimed);
    Ok(path)
}

/// The content of a failure or refusal of a job file.
fn rejection(job: &str, reason: &str, claimed: &Path) -> String {
    let result = json!({
        "job": job,
        "state": "FAILED",
        "reason": format!("rejected job file: {reason}"),
        "file": claimed.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    serde_json::to_string_pretty(&result).expect("serializes") + "\n"
}

/// The reason a file is refused whose job id has run: where its result is.
pub fn ran_already(id: &JobId, result: &str) -> String {
    format!("job '{id}' has run already ({result}); a job id runs once: submit it under a new id")
}

/// Where job `id`'s result is (`done/<id>.json` or `failed/<id>.json`),
/// relative to the data dir, if it has one.
pub fn result_of(data: &DataDir, id: &JobId) -> Option<String> {
    let name = format!("{id}.json");
    [("done", data.done()), ("failed", data.failed())]
        .into_iter()
        .find(|(_, dir)| std::fs::symlink_metadata(dir.join(&name)).is_ok())
        .map(|(stage, _)| format!("{stage}/{name}"))
}

/// Removes a claimed entry of any kind: a file, a link (not what it points
/// at) or a directory a job file's name was given to.
pub fn remove_entry(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        _ => remove_quietly(path),
    }
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
    for (stage, dir) in [
        ("claimed", data.claimed()),
        (
            "approvals/parked",
            crate::approval::store::Store::new(data).parked(),
        ),
        ("done", data.done()),
        ("failed", data.failed()),
    ] {
        if std::fs::symlink_metadata(dir.join(&name)).is_ok() {
            return Err(format!(
                "job '{}' exists already ({stage}/{name} in the data dir); a job id runs once: pick another --id",
                job.id
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

    #[test]
    fn a_claim_never_replaces_a_claimed_file_of_the_same_name() {
        let (_dir, data) = crate::datadir::temp();
        std::fs::write(data.claimed().join("j.json"), b"the claim in progress").unwrap();
        std::fs::write(data.inbox().join("j.json"), b"a second file, same id").unwrap();
        assert!(claim(&data, "j.json").unwrap().is_none());
        assert_eq!(
            std::fs::read(data.claimed().join("j.json")).unwrap(),
            b"the claim in progress"
        );
        // It waits in the inbox until the claim is gone.
        std::fs::remove_file(data.claimed().join("j.json")).unwrap();
        assert!(claim(&data, "j.json").unwrap().is_some());
    }

    #[test]
    fn special_files_are_named_for_what_they_are_and_never_read_through() {
        let (dir, data) = crate::datadir::temp();
        let claimed = data.claimed();
        let fifo = claimed.join("fifo.json");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        std::fs::create_dir(claimed.join("dir.json")).unwrap();
        let outside = dir.path().join("outside.json");
        std::fs::write(&outside, br#"{"agent": "advance"}"#).unwrap();
        std::os::unix::fs::symlink(&outside, claimed.join("link.json")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(claimed.join("sock.json")).unwrap();
        let big = std::fs::File::create(claimed.join("big.json")).unwrap();
        big.set_len(MAX_JOB_FILE_BYTES + 1).unwrap();
        for (name, what) in [
            ("fifo", "it is a FIFO (named pipe), not a regular file"),
            ("dir", "it is a directory, not a regular file"),
            ("link", "it is a symbolic link, not a regular file"),
            ("sock", "it is a socket, not a regular file"),
            (
                "big",
                "job file is 1048577 bytes, over the limit of 1048576",
            ),
        ] {
            match read_bytes(&claimed.join(format!("{name}.json"))) {
                Err(Unread::Bad(reason)) => assert!(reason.starts_with(what), "{name}: {reason}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(read_bytes(&claimed.join("gone.json")), Err(Unread::Gone));
        std::fs::write(claimed.join("ok.json"), b"{}").unwrap();
        assert_eq!(read_bytes(&claimed.join("ok.json")).unwrap(), b"{}");
    }

    #[test]
    fn a_job_with_a_result_is_never_failed_beside_it() {
        let (_dir, data) = crate::datadir::temp();
        let id = JobId::new("j").unwrap();
        let claimed = data.claimed().join("j.json");
        std::fs::write(&claimed, b"{not json").unwrap();
        std::fs::write(data.done().join("j.json"), b"{}").unwrap();
        let refused = fail_bad_file(&data, &claimed, &id, "not valid JSON").unwrap();
        let Failed::Refused(written) = refused else {
            panic!("{refused:?}")
        };
        assert!(!data.failed().join("j.json").exists());
        assert!(!claimed.exists());
        let text = std::fs::read_to_string(written).unwrap();
        assert!(
            text.contains("job 'j' has run already (done/j.json)"),
            "{text}"
        );
        // Without a result it fails under its id, once.
        let id = JobId::new("k").unwrap();
        let claimed = data.claimed().join("k.json");
        std::fs::write(&claimed, b"{not json").unwrap();
        let failed = fail_bad_file(&data, &claimed, &id, "not valid JSON").unwrap();
        assert_eq!(failed, Failed::Failed(data.failed().join("k.json")));
        std::fs::write(&claimed, b"{again").unwrap();
        let again = fail_bad_file(&data, &claimed, &id, "not valid JSON").unwrap();
        assert!(matches!(again, Failed::Refused(_)), "{again:?}");
    }
}
