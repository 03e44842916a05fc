//! What a node checks before it runs a job file, and what becomes of one it
//! does not run. The rules (docs/inbox.md):
//!
//! - A claim is run only while it is still this node's: its lease is a link
//!   to this node's beat and no higher epoch exists. A claim queued ahead of
//!   the workers that another node took over (and perhaps finished)
//!   meanwhile, or whose file is gone, is *dropped* with a line in the
//!   node's output: it is not this node's to fail.
//! - A job id runs once. A file whose id has a result, or records in a log
//!   (the result may not be written yet, or removed by retention), is
//!   *refused* under a name of its own in `failed/`, never failed under its
//!   id, whatever the file holds; a file given back to the inbox for
//!   resumption (`resume`) continues the job its records began.
//! - Lineage is set by the runtime only. A file with `parent` or `via` runs
//!   only if a log records that hand-off decision, in that parent, making
//!   this child id with this agent and input; else it fails, saying so.
//! - A file that cannot run fails under its id, exclusively of any result
//!   ([`inbox::fail_bad_file`]).

use super::finish;
use super::inbox::{self, Failed, JobFile, Unread};
use super::seen::{Handoff, Known};
use super::shared::Shared;
use crate::decision::JobId;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Why a readable job file does not run.
enum Verdict {
    /// Its id has run: refused under a name of its own.
    Refuse(String),
    /// It cannot run: failed under its id.
    Fail(String),
}

/// Reads the job file this node claimed and leased at `path` and says
/// whether it runs. `None`: it does not; its slot is free again, and the
/// reason is written (or, for a dropped claim, in the node's output).
pub(super) fn claimed(shared: &Shared, path: &Path) -> Option<JobFile> {
    let data = &shared.rt.data;
    let id = match inbox::job_id_of(path) {
        Ok(id) => id,
        Err(reason) => {
            // Names that are no job id are refused before they are leased;
            // this is for one claimed some other way.
            refuse(shared, path, &reason);
            finish::free_slot(shared, &inbox::id_of(path).unwrap_or_default());
            return None;
        }
    };
    let lease = shared
        .running
        .lock()
        .expect("running lock")
        .get(id.as_str())
        .map(|r| r.lease.clone());
    if !lease.is_some_and(|l| shared.beat.holds(data, &l)) {
        drop_claim(
            shared,
            &id,
            "another node took the job over while the claim waited for a worker",
        );
        return None;
    }
    let bytes = match inbox::read_bytes(path) {
        Ok(bytes) => bytes,
        Err(Unread::Gone) => {
            drop_claim(
                shared,
                &id,
                "its file is gone (another node finished the job or took it over)",
            );
            return None;
        }
        Err(Unread::Bad(reason)) => {
            if !still_ours(shared, &id) {
                return None;
            }
            fail(shared, path, &id, &reason);
            finish::free_slot(shared, id.as_str());
            return None;
        }
    };
    let verdict = match inbox::parse_job(id.clone(), &bytes, &shared.rt.plan()) {
        Err(reason) => Err(Verdict::Fail(reason)),
        Ok(job) => match history_for(shared, &job) {
            Ok((known, handoff)) => admissible(shared, &job, known, handoff.as_ref()).map(|()| job),
            Err(e) => {
                // Given up, not failed: the claim is taken over (and asked
                // again) once the lease this drops would have expired.
                drop_claim(shared, &id, &format!("cannot read the logs: {e}"));
                return None;
            }
        },
    };
    if verdict.is_err() && !still_ours(shared, &id) {
        return None;
    }
    match verdict {
        Ok(job) => return Some(job),
        Err(Verdict::Fail(reason)) => fail(shared, path, &id, &reason),
        Err(Verdict::Refuse(reason)) => refuse(shared, path, &reason),
    }
    finish::free_slot(shared, id.as_str());
    None
}

/// Whether a job file that reads well may start a job, given what the logs
/// hold of its id. A job with records is resumed only by a file that says
/// so (`resume`, as a node writes when it gives a job back); its lineage is
/// the one its `job` record holds.
fn admissible(
    shared: &Shared,
    job: &JobFile,
    known: Known,
    handoff: Option<&Handoff>,
) -> Result<(), Verdict> {
    let ran = |result: &str| Verdict::Refuse(inbox::ran_already(&job.id, result));
    if let Some(result) = inbox::result_of(&shared.rt.data, &job.id) {
        return Err(ran(&result));
    }
    match known {
        Known::Ended => return Err(ran("a log records its end")),
        Known::Started if !job.resume => {
            return Err(ran("a log holds its records, and no end yet"))
        }
        Known::Started => return Ok(()),
        Known::New => {}
    }
    lineage_recorded(job, handoff).map_err(Verdict::Fail)
}

/// A job file that says it was handed off names a hand-off the log records.
pub(super) fn lineage_recorded(job: &JobFile, handoff: Option<&Handoff>) -> Result<(), String> {
    if job.parent.is_none() && job.via.is_none() {
        // A tree's place is lineage too: only a recorded hand-off sets it.
        if job.tree != crate::job::Tree::default() {
            return Err("it names a place in a hand-off tree (\"depth\", \"tree_jobs\") but no hand-off made it; lineage is set by the runtime only: submit the job without them".into());
        }
        return Ok(());
    }
    let input = crate::canon::Digest::of_json(&job.input).ok();
    let recorded = handoff.is_some_and(|h| {
        Some(&h.parent) == job.parent.as_ref()
            && Some(&h.via) == job.via.as_ref()
            && h.agent == job.agent.as_str()
            && Some(h.input) == input
    });
    if recorded {
        return Ok(());
    }
    let said = |v: Option<&str>| v.map_or("none".to_string(), |v| format!("'{v}'"));
    Err(format!(
        "it says it was handed off (parent {}, via {}), but no log records that hand-off making job '{}' for agent '{}' with this input; lineage is set by the runtime only: submit the job without \"parent\" and \"via\"",
        said(job.parent.as_ref().map(JobId::as_str)),
        said(job.via.as_ref().map(|v| v.as_str())),
        job.id,
        job.agent
    ))
}

/// What the logs hold of job `id`.
pub(super) fn history(shared: &Shared, id: &JobId) -> Result<(Known, Option<Handoff>), String> {
    shared
        .seen
        .job(&shared.rt.data, id)
        .map_err(|e| e.to_string())
}

/// What the logs hold of `job`'s id, and of the hand-off it says made it.
/// A hand-off's decision is durable before its child's file exists, so it
/// is in its log's file; only when it is not found is this node's own log
/// flushed (records appended without a sync wait in its buffer) and looked
/// at again, so no claim pays for a flush it does not need.
pub(super) fn history_for(
    shared: &Shared,
    job: &JobFile,
) -> Result<(Known, Option<Handoff>), String> {
    let seen = history(shared, &job.id)?;
    let claims_lineage = job.parent.is_some() || job.via.is_some();
    if seen.0 != Known::New || seen.1.is_some() || !claims_lineage {
        return Ok(seen);
    }
    shared.rt.log.flush().map_err(|e| e.to_string())?;
    history(shared, &job.id)
}

/// Whether the claim on `id` is still this node's to fail or refuse, checked
/// again just before a failure or refusal is written: reading the file and
/// the logs takes time, and a node paused past its lease in between finds
/// its claim taken over (and perhaps finished) by another node, whose job
/// it must not answer for. The fence waits for the heartbeat after a stall;
/// the lease on disk says whether another node took a higher epoch. A claim
/// no longer ours is dropped.
fn still_ours(shared: &Shared, id: &JobId) -> bool {
    let lease = shared
        .running
        .lock()
        .expect("running lock")
        .get(id.as_str())
        .map(|r| r.lease.clone());
    let ours = super::fence::fence_holds(shared, id.as_str(), false)
        && lease.is_some_and(|l| shared.beat.holds(&shared.rt.data, &l));
    if !ours {
        drop_claim(
            shared,
            id,
            "another node took the job over while this node read its file",
        );
    }
    ours
}

/// A claim that is no longer this node's to run or fail: its slot is freed
/// (and with it this node's lease, if it still has one), nothing written.
fn drop_claim(shared: &Shared, id: &JobId, why: &str) {
    tracing::info!(
        "node {}: dropped its claim on {id}: {why}",
        shared.cfg.node_id
    );
    finish::free_slot(shared, id.as_str());
}

/// Fails job `id`, whose claimed file cannot run, unless its id has run:
/// then the file is refused instead, and the job's result or records stand.
/// The caller holds the lease and frees the slot.
pub(super) fn fail(shared: &Shared, path: &Path, id: &JobId, reason: &str) {
    let node = &shared.cfg.node_id;
    let data = &shared.rt.data;
    shared.counters.bad_files.fetch_add(1, Ordering::SeqCst);
    let outcome = match history(shared, id) {
        Ok((Known::New, _)) => inbox::fail_bad_file(data, path, id, reason),
        Ok((Known::Started, _)) => inbox::reject(
            data,
            path,
            &inbox::ran_already(id, "a log holds its records, and no end yet"),
        )
        .map(Failed::Refused),
        Ok((Known::Ended, _)) => {
            inbox::reject(data, path, &inbox::ran_already(id, "a log records its end"))
                .map(Failed::Refused)
        }
        Err(e) => {
            tracing::warn!("node {node}: {id}.json: cannot read the logs ({e}); left claimed, to be tried again");
            return;
        }
    };
    match outcome {
        Ok(Failed::Failed(_)) => {
            tracing::warn!("node {node}: {id} failed: {reason} (failed/{id}.json)")
        }
        Ok(Failed::Refused(written)) => tracing::warn!(
            "node {node}: {id}.json refused: its id has run already ({})",
            relative(&written)
        ),
        Err(e) => tracing::error!("node {node}: {e}"),
    }
}

/// Refuses a claimed file under a name of its own (see [`inbox::reject`]).
pub(super) fn refuse(shared: &Shared, path: &Path, reason: &str) {
    let node = &shared.cfg.node_id;
    shared.counters.bad_files.fetch_add(1, Ordering::SeqCst);
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    match inbox::reject(&shared.rt.data, path, reason) {
        Ok(written) => tracing::warn!(
            "node {node}: {} refused: {reason} ({})",
            shorten(&file),
            relative(&written)
        ),
        Err(e) => tracing::error!("node {node}: {e}"),
    }
}

/// `failed/<name>`, for the node's output.
fn relative(path: &Path) -> String {
    format!(
        "failed/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// A file name cut to a readable length for the node's output.
fn shorten(name: &str) -> String {
    const SHOWN_CHARS: usize = 48;
    if name.chars().count() <= SHOWN_CHARS {
        return name.to_string();
    }
    name.chars().take(SHOWN_CHARS).collect::<String>() + "…"
}
