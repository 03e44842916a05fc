//! Firing slots: exactly one inbox job per slot, across nodes and crashes.
//!
//! Layout under the data dir (a contract other modules and tools rely on):
//!
//! ```text
//! inbox/<job-id>.json                  the job; claimed/, done/, failed/ hold its later stages
//! schedules/slots/<job-id>.json        slot marker: the job, when it was created, whether published
//! schedules/recovering/<job-id>.json   taken by the one node that re-publishes an orphaned marker
//! schedules/state/<name>.json          per-schedule hint: trigger, settled-through, last slot and job
//! ```
//!
//! The protocol: a node that finds a slot due first creates the slot marker
//! with an exclusive, durable create; exactly one node wins, and only the
//! winner writes the inbox job, then marks the marker published. A crash
//! between the two leaves an unpublished marker, which [`recover`] turns into
//! the job once the marker is older than [`RECOVER_GRACE_SECS`] (younger ones
//! may belong to a node that is still writing) and no stage directory holds
//! the job. The marker is the truth; the state file only saves work.
//!
//! What is not covered: a node that stalls for longer than the grace between
//! creating a marker and writing its job can race a recovering node and
//! produce a second job; a crash of the recovering node itself between taking
//! the recovery token and writing the job loses that slot's job. Node clocks
//! are assumed to agree to within a few seconds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::spec::ScheduleSpec;
use super::trigger::{fnv1a_str, local_rfc3339, Trigger};
use super::{due_slots, MAX_CATCH_UP_AGE_SECS, MAX_CATCH_UP_SLOTS};
use crate::fsx::{self, IoError};

/// How long slot markers and recovery tokens are kept, counted from their
/// slot. Longer than [`MAX_CATCH_UP_AGE_SECS`], so a slot that catch-up can
/// still owe always has its marker.
pub const MARKER_RETENTION_SECS: i64 = 8 * 86_400;
const _: () = assert!(MARKER_RETENTION_SECS > MAX_CATCH_UP_AGE_SECS);

/// The most markers kept per schedule (the newest). [`due_slots`] never
/// returns a slot older than the latest [`MAX_CATCH_UP_SLOTS`] slots, so
/// older markers can never be needed again; twice that leaves a margin.
pub const MARKERS_KEPT_PER_SCHEDULE: usize = 2 * MAX_CATCH_UP_SLOTS;

/// How old an unpublished marker must be before [`recover`] publishes it: a
/// live node writes the job milliseconds after the marker.
pub const RECOVER_GRACE_SECS: i64 = 30;

/// How old an unpublished marker may be for [`recover`] to still publish it:
/// past this, the job's results may have been cleaned up, and a late job for
/// an old slot helps no one.
pub const RECOVER_MAX_AGE_SECS: i64 = 86_400;

pub use crate::ids::MAX_JOB_ID_BYTES;

const SLOT_STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const SLOT_STAMP_LEN: usize = 16;
const ID_PREFIX: &str = "sched-";
/// Room for the schedule part of a job id: 128 - "sched-" - "-" - stamp.
const MAX_KEY_BYTES: usize = MAX_JOB_ID_BYTES - ID_PREFIX.len() - 1 - SLOT_STAMP_LEN;

/// Why firing could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// A file or directory of the data dir could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The inbox job a slot fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotJob {
    pub id: String,
    pub agent: String,
    pub input: serde_json::Value,
    /// The schedule's manifest name.
    pub schedule: String,
    /// The slot, RFC 3339 in UTC.
    pub slot: String,
}

/// The content of `schedules/slots/<job-id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotMarker {
    pub job: SlotJob,
    /// When the marker was created (the firing node's clock).
    pub created: DateTime<Utc>,
    /// Whether the job has been written to the inbox.
    pub published: bool,
}

/// What one [`tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Ids of the jobs this call wrote, oldest slot first.
    pub fired: Vec<String>,
    /// When the schedule next has something to fire (jitter included);
    /// `None` when disabled or finished.
    pub next: Option<DateTime<Utc>>,
}

/// One schedule as `jaros schedules` and `jaros status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleStatus {
    pub name: String,
    pub trigger_words: String,
    pub enabled: bool,
    /// The slot of the last run, in UTC.
    pub last_run: Option<DateTime<Utc>>,
    /// The job id of the last run.
    pub last_job: Option<String>,
    pub next_run_utc: Option<DateTime<Utc>>,
    /// The next run in the schedule's time zone, RFC 3339 with its offset.
    pub next_run_local: Option<String>,
    /// The schedule's time zone, as an IANA name.
    pub timezone: String,
}

/// The per-schedule hint in `schedules/state/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// [`Trigger::key`] of the trigger the rest refers to.
    trigger: String,
    /// Every slot at or before this is settled: fired, or not owed.
    settled_through: DateTime<Utc>,
    last_slot: Option<DateTime<Utc>>,
    last_job: Option<String>,
    /// Set while the schedule is disabled; slots during a pause are not owed.
    paused: bool,
    updated: DateTime<Utc>,
    /// Slots that came due while no node ran the schedule and that the
    /// catch-up policy did not fire: a counter for `jaros metrics`, kept
    /// across edits and pauses.
    #[serde(default)]
    missed: u64,
    /// Missed slots up to here are counted (the `since` of the tick that
    /// counted them), so a later tick does not count them again.
    #[serde(default)]
    missed_counted_through: Option<DateTime<Utc>>,
}

/// Most missed slots one tick counts: the count walks the slots one by one,
/// and a every-second schedule down for a week has 604,800 of them. Past
/// this, the count says "at least".
pub const MAX_MISSES_COUNTED_PER_TICK: u64 = 100_000;

/// Each schedule's missed slots (see [`tick`]), from its state hint in
/// `schedules/state/`: for `jaros metrics`. A schedule without a hint, or
/// one that cannot be read, is left out.
pub fn misses(data_dir: &Path) -> Vec<(String, u64)> {
    let layout = layout(data_dir);
    json_ids(&layout.state)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, _)| read_state(&layout, &name).map(|s| (name, s.missed)))
        .collect()
}

/// Slots after `from` and at or before `since` not among `fired`: the
/// slots a node that starts watching at `since` missed.
fn count_missed(
    trigger: &Trigger,
    from: DateTime<Utc>,
    since: DateTime<Utc>,
    fired: &[DateTime<Utc>],
) -> u64 {
    let mut n = 0;
    let mut cursor = since;
    while n < MAX_MISSES_COUNTED_PER_TICK {
        match trigger.latest_at_or_before(cursor) {
            Some(slot) if slot > from => {
                if !fired.contains(&slot) {
                    n += 1;
                }
                cursor = slot - TimeDelta::seconds(1);
            }
            _ => break,
        }
    }
    n
}

struct Layout {
    inbox: PathBuf,
    stages: [PathBuf; 4],
    slots: PathBuf,
    recovering: PathBuf,
    state: PathBuf,
}

fn layout(data_dir: &Path) -> Layout {
    let schedules = data_dir.join("schedules");
    Layout {
        inbox: data_dir.join("inbox"),
        stages: ["inbox", "claimed", "done", "failed"].map(|stage| data_dir.join(stage)),
        slots: schedules.join("slots"),
        recovering: schedules.join("recovering"),
        state: schedules.join("state"),
    }
}

/// The part of file names and job ids that stands for a schedule: the name
/// itself when it is a safe file name, else a sanitized, shortened form with
/// a hash of the full name, so two names never share one key.
pub fn schedule_key(name: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.is_empty() && name.len() <= MAX_KEY_BYTES && name.chars().all(safe) {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a_str(name) as u32);
    let mut key: String = name
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    // Every char is ASCII now, so truncating by bytes is on a char boundary.
    key.truncate(MAX_KEY_BYTES - hash.len() - 1);
    format!("{key}-{hash}")
}

/// The job id of a schedule's slot: `sched-<key>-<slot as %Y%m%dT%H%M%SZ>`.
pub fn slot_job_id(name: &str, slot: DateTime<Utc>) -> String {
    let id = format!(
        "{ID_PREFIX}{}-{}",
        schedule_key(name),
        slot.format(SLOT_STAMP_FORMAT)
    );
    debug_assert!(id.len() <= MAX_JOB_ID_BYTES, "job id too long: {id}");
    id
}

/// Splits a slot job id into its schedule key and slot.
fn parse_slot_job_id(id: &str) -> Option<(&str, DateTime<Utc>)> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let split = rest.len().checked_sub(SLOT_STAMP_LEN + 1)?;
    if !rest.is_char_boundary(split) || rest.as_bytes()[split] != b'-' {
        return None;
    }
    let stamp = &rest[split + 1..];
    let slot = chrono::NaiveDateTime::parse_from_str(stamp, SLOT_STAMP_FORMAT)
        .ok()?
        .and_utc();
    Some((&rest[..split], slot))
}

/// The ids of the `.json` files in a directory, skipping the temp files of
/// durable writes in progress.
fn json_ids(dir: &Path) -> Result<Vec<(String, PathBuf)>, IoError> {
    Ok(fsx::list_dir(dir)?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let id = name.strip_suffix(".json")?;
            (!name.starts_with('.')).then(|| (id.to_string(), path.clone()))
        })
        .collect())
}

fn exists(path: &Path) -> Result<bool, IoError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(IoError::new("cannot inspect", path, e)),
    }
}

fn remove(path: &Path) -> Result<(), IoError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Another node pruned it first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("cannot remove", path, e)),
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Invariant: these types hold only strings, bools, times and JSON values,
    // which always serialize.
    let mut bytes = serde_json::to_vec_pretty(value).expect("schedule records serialize");
    bytes.push(b'\n');
    bytes
}

/// Whether the job is in any stage: inbox, claimed, done or failed.
fn job_exists(layout: &Layout, id: &str) -> Result<bool, IoError> {
    for stage in &layout.stages {
        if exists(&stage.join(format!("{id}.json")))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Step one of firing: creates the slot's marker, exclusively. Returns the
/// marker when this caller won the slot, `None` when the slot was already
/// taken (by another node, or before a crash). Public so that tests can stop
/// here, as a crash would.
pub fn claim_slot(
    data_dir: &Path,
    name: &str,
    spec: &ScheduleSpec,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<SlotMarker>, FireError> {
    let layout = layout(data_dir);
    let id = slot_job_id(name, slot);
    let path = layout.slots.join(format!("{id}.json"));
    // A cheap look first: losing the exclusive create costs a temp file and an fsync.
    if exists(&path)? {
        return Ok(None);
    }
    let marker = SlotMarker {
        job: SlotJob {
            id,
            agent: spec.agent.clone(),
            input: spec.input.clone(),
            schedule: name.to_string(),
            slot: slot.to_rfc3339_opts(SecondsFormat::Secs, true),
        },
        created: now,
        published: false,
    };
    fsx::create_dir_all(&layout.slots)?;
    Ok(fsx::create_durable_exclusive(&path, &to_json(&marker))?.then_some(marker))
}

/// Step two of firing: writes the marker's job to the inbox (unless a stage
/// already holds it) and marks the marker published. Returns whether it
/// wrote the job.
pub fn publish(data_dir: &Path, marker: &SlotMarker) -> Result<bool, FireError> {
    let layout = layout(data_dir);
    let id = &marker.job.id;
    let wrote = if job_exists(&layout, id)? {
        false
    } else {
        fsx::create_dir_all(&layout.inbox)?;
        fsx::write_durable(
            &layout.inbox.join(format!("{id}.json")),
            &to_json(&marker.job),
        )?;
        true
    };
    let published = SlotMarker {
        published: true,
        ..marker.clone()
    };
    fsx::write_durable(
        &layout.slots.join(format!("{id}.json")),
        &to_json(&published),
    )?;
    Ok(wrote)
}

/// Fires one slot: marker, then job. Returns the job id when this caller
/// fired it, `None` when the slot was already taken.
pub fn fire_slot(
    data_dir: &Path,
    name: &str,
    spec: &ScheduleSpec,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<String>, FireError> {
    match claim_slot(data_dir, name, spec, slot, now)? {
        Some(marker) => {
            publish(data_dir, &marker)?;
            Ok(Some(marker.job.id))
        }
        None => Ok(None),
    }
}

/// Publishes the job of every marker that a crash left unpublished, and
/// removes markers and recovery tokens past [`MARKER_RETENTION_SECS`].
/// Returns the ids of the jobs it wrote. A node calls this at boot and on
/// every fallback scan; it is safe to run on several nodes at once.
pub fn recover(data_dir: &Path, now: DateTime<Utc>) -> Result<Vec<String>, FireError> {
    let layout = layout(data_dir);
    let expired = now - TimeDelta::seconds(MARKER_RETENTION_SECS);
    for (id, path) in json_ids(&layout.recovering)? {
        if parse_slot_job_id(&id).is_none_or(|(_, slot)| slot < expired) {
            remove(&path)?;
        }
    }
    let mut recovered = Vec::new();
    for (id, path) in json_ids(&layout.slots)? {
        let Some((_, slot)) = parse_slot_job_id(&id) else {
            continue;
        };
        if slot < expired {
            remove(&path)?;
            continue;
        }
        // A marker is created no earlier than its slot: a young slot means a
        // young marker, not worth reading yet.
        if slot > now - TimeDelta::seconds(RECOVER_GRACE_SECS) {
            continue;
        }
        // Markers are written whole; one that does not parse was put there by
        // hand and is left alone until it expires.
        let Ok(marker) = serde_json::from_slice::<SlotMarker>(&fsx::read(&path)?) else {
            continue;
        };
        let age = now - marker.created;
        if marker.published
            || marker.job.id != id
            || age < TimeDelta::seconds(RECOVER_GRACE_SECS)
            || age > TimeDelta::seconds(RECOVER_MAX_AGE_SECS)
        {
            continue;
        }
        if job_exists(&layout, &id)? {
            publish(data_dir, &marker)?;
            continue;
        }
        // Several nodes may recover at once; exactly one takes the token.
        fsx::create_dir_all(&layout.recovering)?;
        let token = layout.recovering.join(format!("{id}.json"));
        let note = serde_json::json!({ "id": id, "recovered_at": now });
        if fsx::create_durable_exclusive(&token, &to_json(&note))? && publish(data_dir, &marker)? {
            recovered.push(id);
        }
    }
    Ok(recovered)
}

fn state_path(layout: &Layout, name: &str) -> PathBuf {
    layout.state.join(format!("{}.json", schedule_key(name)))
}

/// The state hint; missing or unreadable reads as none (the markers still
/// prevent any second fire).
fn read_state(layout: &Layout, name: &str) -> Option<State> {
    let bytes = fsx::read(&state_path(layout, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_state(layout: &Layout, name: &str, state: &State) -> Result<(), IoError> {
    fsx::create_dir_all(&layout.state)?;
    fsx::write_durable(&state_path(layout, name), &to_json(state))
}

/// Fires what one schedule owes at `now`: the slots [`due_slots`] returns
/// whose jittered fire time has come, each through [`fire_slot`], then saves
/// the state hint. `since` is when this node started watching the schedule
/// (its boot); see the module docs of `schedule` for what is owed.
pub fn tick(
    data_dir: &Path,
    name: &str,
    spec: &ScheduleSpec,
    trigger: &Trigger,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<TickReport, FireError> {
    let layout = layout(data_dir);
    let key = trigger.key();
    let state = read_state(&layout, name);
    if !spec.enabled {
        if !state.as_ref().is_some_and(|s| s.paused && s.trigger == key) {
            let paused = State {
                trigger: key,
                settled_through: now,
                last_slot: state.as_ref().and_then(|s| s.last_slot),
                last_job: state.as_ref().and_then(|s| s.last_job.clone()),
                paused: true,
                updated: now,
                missed: state.as_ref().map_or(0, |s| s.missed),
                missed_counted_through: None,
            };
            write_state(&layout, name, &paused)?;
        }
        return Ok(TickReport {
            fired: Vec::new(),
            next: None,
        });
    }
    // New, edited or re-enabled: owes nothing from before this moment.
    let (settled, fresh) = match &state {
        Some(s) if s.trigger == key && !s.paused => (s.settled_through, false),
        _ => (now, true),
    };

    let mut fired = Vec::new();
    let mut settled_slots = Vec::new();
    let mut newest = None;
    let mut held = None;
    let mut failure = None;
    for slot in due_slots(trigger, spec.catch_up, Some(settled), since, now) {
        let fire_at = trigger.fire_time(slot, name);
        if fire_at > now {
            // Fire times keep slot order, so every later slot waits too.
            held = Some(fire_at);
            break;
        }
        match fire_slot(data_dir, name, spec, slot, now) {
            Ok(Some(id)) => fired.push(id),
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        settled_slots.push(slot);
        newest = Some(slot);
    }

    // Missed slots are counted once, by the tick that caught up without a
    // failure (a failed one leaves its slots to the next tick, which may
    // still fire them).
    let counted = state.as_ref().and_then(|s| s.missed_counted_through);
    let newly_missed = match &state {
        Some(_) if !fresh && failure.is_none() && counted.is_none_or(|c| c < since) => {
            let horizon = now - TimeDelta::seconds(MAX_CATCH_UP_AGE_SECS);
            let from = settled.max(counted.unwrap_or(settled)).max(horizon);
            Some(count_missed(trigger, from, since, &settled_slots))
        }
        _ => None,
    };
    if fresh || newly_missed.is_some() || newest.is_some_and(|slot| slot > settled) {
        let missed_before = state.as_ref().map_or(0, |s| s.missed);
        let previous = state.filter(|s| s.trigger == key);
        let mut next_state = State {
            trigger: key,
            settled_through: newest.map_or(settled, |slot| slot.max(settled)),
            last_slot: previous.as_ref().and_then(|s| s.last_slot),
            last_job: previous.as_ref().and_then(|s| s.last_job.clone()),
            paused: false,
            updated: now,
            missed: missed_before + newly_missed.unwrap_or(0),
            missed_counted_through: if fresh || newly_missed.is_some() {
                Some(since)
            } else {
                counted
            },
        };
        if let Some(slot) = newest {
            next_state.last_slot = Some(slot);
            next_state.last_job = Some(slot_job_id(name, slot));
        }
        write_state(&layout, name, &next_state)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if !fired.is_empty() {
        prune_schedule(&layout, name, now)?;
    }
    let next = held.or_else(|| {
        trigger
            .next_after(now)
            .map(|slot| trigger.fire_time(slot, name))
    });
    Ok(TickReport { fired, next })
}

/// Keeps a schedule's markers bounded: the newest
/// [`MARKERS_KEPT_PER_SCHEDULE`], none older than [`MARKER_RETENTION_SECS`].
fn prune_schedule(layout: &Layout, name: &str, now: DateTime<Utc>) -> Result<(), IoError> {
    let key = schedule_key(name);
    let expired = now - TimeDelta::seconds(MARKER_RETENTION_SECS);
    let mut mine: Vec<(DateTime<Utc>, PathBuf)> = json_ids(&layout.slots)?
        .into_iter()
        .filter_map(|(id, path)| match parse_slot_job_id(&id) {
            Some((k, slot)) if k == key => Some((slot, path)),
            _ => None,
        })
        .collect();
    mine.sort();
    let surplus = mine.len().saturating_sub(MARKERS_KEPT_PER_SCHEDULE);
    for (i, (slot, path)) in mine.iter().enumerate() {
        if i < surplus || *slot < expired {
            remove(path)?;
        }
    }
    Ok(())
}

/// One schedule's status for `jaros schedules` and `jaros status`. Reads the
/// state hint, falling back to the newest marker; never fails, since a
/// status line must show even when the data dir is unreadable.
pub fn status(
    data_dir: &Path,
    name: &str,
    spec: &ScheduleSpec,
    trigger: &Trigger,
    now: DateTime<Utc>,
) -> ScheduleStatus {
    let layout = layout(data_dir);
    let key = schedule_key(name);
    let (mut last_run, mut last_job) = match read_state(&layout, name) {
        Some(s) => (s.last_slot, s.last_job),
        None => (None, None),
    };
    if last_run.is_none() {
        let newest = json_ids(&layout.slots)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, _)| match parse_slot_job_id(&id) {
                Some((k, slot)) if k == key => Some((slot, id)),
                _ => None,
            })
            .max();
        if let Some((slot, id)) = newest {
            (last_run, last_job) = (Some(slot), Some(id));
        }
    }
    let next = if spec.enabled {
        next_fire(&layout, name, trigger, now)
    } else {
        None
    };
    ScheduleStatus {
        name: name.to_string(),
        trigger_words: trigger.describe(),
        enabled: spec.enabled,
        last_run,
        last_job,
        next_run_utc: next,
        next_run_local: next.map(|t| local_rfc3339(t, trigger.timezone())),
        timezone: trigger.timezone().name().to_string(),
    }
}

/// When the schedule next fires: a due slot still waiting out its jitter, or
/// the next slot after `now`.
fn next_fire(
    layout: &Layout,
    name: &str,
    trigger: &Trigger,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if let Some(slot) = trigger.latest_at_or_before(now) {
        let fire_at = trigger.fire_time(slot, name);
        let marker = layout
            .slots
            .join(format!("{}.json", slot_job_id(name, slot)));
        if fire_at > now && !exists(&marker).unwrap_or(true) {
            return Some(fire_at);
        }
    }
    trigger
        .next_after(now)
        .map(|slot| trigger.fire_time(slot, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::spec::CatchUp;
    use crate::schedule::trigger::compile;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Barrier};

    use crate::schedule::utc;

    fn ms(n: i64) -> TimeDelta {
        TimeDelta::milliseconds(n)
    }

    const T0: &str = "2026-03-01T00:00:00Z";

    fn spec_every(interval: &str, catch_up: CatchUp) -> ScheduleSpec {
        ScheduleSpec {
            agent: "reporter".into(),
            input: serde_json::json!({"report": "daily"}),
            cron: None,
            every: Some(interval.into()),
            at: None,
            timezone: "UTC".into(),
            catch_up,
            enabled: true,
            jitter: None,
        }
    }

    fn ids_in(data: &Path, stage: &str) -> BTreeSet<String> {
        json_ids(&data.join(stage))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Moves every inbox job to claimed/, as a worker's claim would.
    fn claim_all(data: &Path) -> usize {
        let claimed = data.join("claimed");
        fs::create_dir_all(&claimed).unwrap();
        let mut n = 0;
        for (id, path) in json_ids(&data.join("inbox")).unwrap() {
            if fs::rename(&path, claimed.join(format!("{id}.json"))).is_ok() {
                n += 1;
            }
        }
        n
    }

    fn second_ids(name: &str, seconds: std::ops::RangeInclusive<i64>) -> BTreeSet<String> {
        seconds
            .map(|s| slot_job_id(name, utc(T0) + TimeDelta::seconds(s)))
            .collect()
    }

    #[test]
    fn three_nodes_on_one_data_dir_fire_each_second_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let spec = spec_every("1s", CatchUp::Skip);
        let trigger = compile(&spec, utc(T0)).unwrap();
        const NODES: usize = 3;
        const STEPS: i64 = 100; // 100 ms apart: a simulated 10 s
        let barrier = Arc::new(Barrier::new(NODES + 1));
        let fired: Vec<Vec<String>> = std::thread::scope(|s| {
            let nodes: Vec<_> = (0..NODES)
                .map(|node| {
                    let (data, spec, trigger, barrier) = (&data, &spec, &trigger, barrier.clone());
                    s.spawn(move || {
                        let mut fired = Vec::new();
                        for step in 0..=STEPS {
                            barrier.wait();
                            // Clocks a few ms apart, as on real hosts.
                            let now = utc(T0) + ms(step * 100 + node as i64 * 7);
                            let report =
                                tick(data, "heartbeat", spec, trigger, utc(T0), now).unwrap();
                            fired.extend(report.fired);
                        }
                        fired
                    })
                })
                .collect();
            // A worker claiming jobs as they land: a second write of a claimed
            // job would show up in the inbox again.
            for _ in 0..=STEPS {
                barrier.wait();
                claim_all(&data);
            }
            nodes.into_iter().map(|h| h.join().unwrap()).collect()
        });
        claim_all(&data);
        let all: Vec<&String> = fired.iter().flatten().collect();
        let unique: BTreeSet<String> = all.iter().map(|id| id.to_string()).collect();
        assert_eq!(all.len(), unique.len(), "a slot fired twice: {fired:?}");
        assert_eq!(unique, second_ids("heartbeat", 1..=10));
        assert_eq!(ids_in(&data, "claimed"), unique);
        assert!(ids_in(&data, "inbox").is_empty());
        let job: serde_json::Value = serde_json::from_slice(
            &fs::read(data.join("claimed/sched-heartbeat-20260301T000001Z.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            job,
            serde_json::json!({
                "id": "sched-heartbeat-20260301T000001Z",
                "agent": "reporter",
                "input": {"report": "daily"},
                "schedule": "heartbeat",
                "slot": "2026-03-01T00:00:01Z",
            })
        );
    }

    #[test]
    fn a_crash_after_the_marker_is_recovered_into_one_job_never_two() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let spec = spec_every("1m", CatchUp::All);
        let slot = utc("2026-03-01T00:01:00Z");
        let marker = claim_slot(data, "sync", &spec, slot, slot)
            .unwrap()
            .unwrap();
        // The "crash": the inbox job was never written.
        assert!(ids_in(data, "inbox").is_empty());

        // Within the grace the writer may still be alive: leave it alone.
        assert!(recover(data, slot + TimeDelta::seconds(5))
            .unwrap()
            .is_empty());
        // Racing recoverers: exactly one writes the job.
        let later = slot + TimeDelta::seconds(RECOVER_GRACE_SECS + 1);
        let recovered: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(move || recover(data, later).unwrap()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(recovered, vec![marker.job.id.clone()]);
        assert_eq!(
            ids_in(data, "inbox"),
            BTreeSet::from([marker.job.id.clone()])
        );

        claim_all(data);
        assert!(recover(data, later + TimeDelta::seconds(60))
            .unwrap()
            .is_empty());
        // A restarted node that lost its state catches up: the slot is not fired again.
        let restart = slot + TimeDelta::seconds(150);
        let report = tick(
            data,
            "sync",
            &spec,
            &compile(&spec, slot).unwrap(),
            restart,
            restart,
        )
        .unwrap();
        assert!(report.fired.is_empty(), "{report:?}");
        assert!(ids_in(data, "inbox").is_empty());
        assert_eq!(ids_in(data, "claimed"), BTreeSet::from([marker.job.id]));
    }

    #[test]
    fn a_restart_after_a_crash_at_any_step_fires_each_slot_once() {
        // Cut points of firing the first slot: after the marker, after the
        // inbox job, after the marker is marked published, after the state.
        let t0 = utc(T0);
        let tens = |n: i64| slot_job_id("beat", t0 + TimeDelta::seconds(10 * n));
        for cut in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path();
            let spec = spec_every("10s", CatchUp::All);
            let trigger = compile(&spec, t0).unwrap();
            tick(data, "beat", &spec, &trigger, t0, t0).unwrap();
            let slot = t0 + TimeDelta::seconds(10);
            let marker = claim_slot(data, "beat", &spec, slot, slot)
                .unwrap()
                .unwrap();
            if cut >= 1 {
                let layout = layout(data);
                fsx::create_dir_all(&layout.inbox).unwrap();
                fsx::write_durable(
                    &layout.inbox.join(format!("{}.json", marker.job.id)),
                    &to_json(&marker.job),
                )
                .unwrap();
            }
            if cut >= 2 {
                publish(data, &marker).unwrap();
            }
            if cut >= 3 {
                let state = State {
                    trigger: trigger.key(),
                    settled_through: slot,
                    last_slot: Some(slot),
                    last_job: Some(marker.job.id.clone()),
                    paused: false,
                    updated: slot,
                    missed: 0,
                    missed_counted_through: None,
                };
                write_state(&layout(data), "beat", &state).unwrap();
            }
            // A worker claims whatever landed before the crash.
            claim_all(data);

            // Restart at 00:01:00: recover, then catch up everything missed.
            let restart = t0 + TimeDelta::seconds(60);
            let recovered = recover(data, restart).unwrap();
            let report = tick(data, "beat", &spec, &trigger, restart, restart).unwrap();
            claim_all(data);
            let expected_recovered = if cut == 0 { vec![tens(1)] } else { vec![] };
            assert_eq!(recovered, expected_recovered, "cut {cut}");
            assert_eq!(
                report.fired,
                (2..=6).map(tens).collect::<Vec<_>>(),
                "cut {cut}"
            );
            assert_eq!(
                ids_in(data, "claimed"),
                (1..=6).map(tens).collect(),
                "cut {cut}"
            );
            assert!(
                ids_in(data, "inbox").is_empty(),
                "cut {cut}: a claimed job came back"
            );
            assert!(recover(data, restart + TimeDelta::seconds(60))
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn a_claimed_job_is_not_fired_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let spec = spec_every("1m", CatchUp::All);
        let trigger = compile(&spec, utc(T0)).unwrap();
        let t0 = utc(T0);
        tick(data, "sync", &spec, &trigger, t0, t0).unwrap();
        let report = tick(
            data,
            "sync",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::seconds(61),
        )
        .unwrap();
        assert_eq!(report.fired, ["sched-sync-20260301T000100Z"]);
        assert_eq!(claim_all(data), 1);
        // Another node with the same view, and one whose state hint was lost.
        let again = tick(
            data,
            "sync",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::seconds(62),
        )
        .unwrap();
        assert!(again.fired.is_empty());
        fs::remove_file(state_path(&layout(data), "sync")).unwrap();
        let lost = tick(
            data,
            "sync",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::seconds(63),
        )
        .unwrap();
        assert!(lost.fired.is_empty());
        assert!(recover(data, t0 + TimeDelta::seconds(3600))
            .unwrap()
            .is_empty());
        assert!(ids_in(data, "inbox").is_empty());
    }

    #[test]
    fn catch_up_after_downtime_follows_the_policy() {
        let t0 = utc(T0);
        // With the slots each policy passes over: counted as missed.
        let expected = [
            (CatchUp::Skip, vec![], 3),
            (CatchUp::Once, vec!["sched-hourly-20260301T040000Z"], 2),
            (
                CatchUp::All,
                vec![
                    "sched-hourly-20260301T020000Z",
                    "sched-hourly-20260301T030000Z",
                    "sched-hourly-20260301T040000Z",
                ],
                0,
            ),
        ];
        for (policy, fired, missed) in expected {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path();
            let spec = spec_every("1h", policy);
            let trigger = compile(&spec, t0).unwrap();
            tick(data, "hourly", &spec, &trigger, t0, t0).unwrap();
            let first = tick(
                data,
                "hourly",
                &spec,
                &trigger,
                t0,
                t0 + TimeDelta::minutes(61),
            )
            .unwrap();
            assert_eq!(first.fired, ["sched-hourly-20260301T010000Z"]);
            // Down from 01:01 to 04:30; the restarted node watches from then.
            let since = t0 + TimeDelta::minutes(270);
            let report = tick(data, "hourly", &spec, &trigger, since, since).unwrap();
            assert_eq!(report.fired, fired, "{policy:?}");
            assert_eq!(report.next, Some(utc("2026-03-01T05:00:00Z")));
            assert_eq!(misses(data), [("hourly".to_string(), missed)], "{policy:?}");
            // A later tick of the same run counts nothing again.
            tick(data, "hourly", &spec, &trigger, since, since + ms(1000)).unwrap();
            assert_eq!(misses(data), [("hourly".to_string(), missed)], "{policy:?}");
            let live = tick(
                data,
                "hourly",
                &spec,
                &trigger,
                since,
                t0 + TimeDelta::minutes(300),
            )
            .unwrap();
            assert_eq!(live.fired, ["sched-hourly-20260301T050000Z"], "{policy:?}");
            assert_eq!(misses(data), [("hourly".to_string(), missed)], "{policy:?}");
        }
    }

    #[test]
    fn a_one_shot_missed_during_downtime_fires_on_restart_only_when_catching_up() {
        let seen = utc("2026-03-01T08:00:00Z");
        for (policy, fires) in [
            (CatchUp::Skip, false),
            (CatchUp::Once, true),
            (CatchUp::All, true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path();
            let spec = ScheduleSpec {
                every: None,
                at: Some("2026-03-01T10:00:00+01:00".into()),
                ..spec_every("1s", policy)
            };
            let trigger = compile(&spec, seen).unwrap();
            tick(data, "launch", &spec, &trigger, seen, seen).unwrap();
            let restart = utc("2026-03-01T12:00:00Z");
            let report = tick(data, "launch", &spec, &trigger, restart, restart).unwrap();
            let expected: Vec<String> = if fires {
                vec!["sched-launch-20260301T090000Z".into()]
            } else {
                vec![]
            };
            assert_eq!(report.fired, expected, "{policy:?}");
            assert_eq!(report.next, None);
        }
    }

    #[test]
    fn a_disabled_schedule_fires_nothing_and_owes_nothing_for_its_pause() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let t0 = utc(T0);
        let spec = spec_every("1m", CatchUp::All);
        let trigger = compile(&spec, t0).unwrap();
        tick(data, "sync", &spec, &trigger, t0, t0).unwrap();
        let off = ScheduleSpec {
            enabled: false,
            ..spec.clone()
        };
        let report = tick(
            data,
            "sync",
            &off,
            &trigger,
            t0,
            t0 + TimeDelta::minutes(10),
        )
        .unwrap();
        assert_eq!(
            report,
            TickReport {
                fired: vec![],
                next: None
            }
        );
        let st = status(data, "sync", &off, &trigger, t0 + TimeDelta::minutes(10));
        assert!(!st.enabled);
        assert_eq!(st.next_run_utc, None);
        // Re-enabled at 00:20: the minutes of the pause are not owed.
        let back = tick(
            data,
            "sync",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::minutes(20),
        )
        .unwrap();
        assert!(back.fired.is_empty());
        let live = tick(
            data,
            "sync",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::seconds(20 * 60 + 61),
        )
        .unwrap();
        assert_eq!(live.fired, ["sched-sync-20260301T002100Z"]);
    }

    #[test]
    fn an_edited_trigger_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let t0 = utc(T0);
        let hourly = spec_every("1h", CatchUp::All);
        tick(
            data,
            "sync",
            &hourly,
            &compile(&hourly, t0).unwrap(),
            t0,
            t0,
        )
        .unwrap();
        // Edited to every minute at 05:00: the minutes since midnight are not owed.
        let minutely = spec_every("1m", CatchUp::All);
        let trigger = compile(&minutely, t0).unwrap();
        let later = t0 + TimeDelta::hours(5);
        assert!(tick(data, "sync", &minutely, &trigger, t0, later)
            .unwrap()
            .fired
            .is_empty());
        let next = tick(
            data,
            "sync",
            &minutely,
            &trigger,
            t0,
            later + TimeDelta::seconds(60),
        )
        .unwrap();
        assert_eq!(next.fired, ["sched-sync-20260301T050100Z"]);
    }

    #[test]
    fn jitter_holds_a_slot_back_until_its_fire_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let t0 = utc(T0);
        let spec = ScheduleSpec {
            jitter: Some("30s".into()),
            ..spec_every("1m", CatchUp::Skip)
        };
        let trigger = compile(&spec, t0).unwrap();
        tick(data, "spread", &spec, &trigger, t0, t0).unwrap();
        let slot = t0 + TimeDelta::minutes(1);
        let fire_at = trigger.fire_time(slot, "spread");
        assert!(
            fire_at > slot,
            "this name and slot happen to get no delay; pick another"
        );
        let early = tick(data, "spread", &spec, &trigger, t0, fire_at - ms(1)).unwrap();
        assert!(early.fired.is_empty());
        assert_eq!(early.next, Some(fire_at));
        assert_eq!(
            status(data, "spread", &spec, &trigger, fire_at - ms(1)).next_run_utc,
            Some(fire_at)
        );
        let due = tick(data, "spread", &spec, &trigger, t0, fire_at).unwrap();
        assert_eq!(due.fired, ["sched-spread-20260301T000100Z"]);
    }

    #[test]
    fn status_shows_last_and_next_run_in_utc_and_local_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let spec = ScheduleSpec {
            every: None,
            cron: Some("30 2 * * *".into()),
            timezone: "Europe/Berlin".into(),
            ..spec_every("1s", CatchUp::Skip)
        };
        let t0 = utc("2026-03-28T00:00:00Z");
        let trigger = compile(&spec, t0).unwrap();
        let before = status(data, "nightly", &spec, &trigger, t0);
        assert_eq!((before.last_run, before.last_job.as_deref()), (None, None));
        tick(data, "nightly", &spec, &trigger, t0, t0).unwrap();
        let now = utc("2026-03-28T01:30:05Z");
        tick(data, "nightly", &spec, &trigger, t0, now).unwrap();
        let st = status(data, "nightly", &spec, &trigger, now);
        assert_eq!(
            serde_json::to_value(&st).unwrap(),
            serde_json::json!({
                "name": "nightly",
                "trigger_words": "every day at 02:30 (Europe/Berlin)",
                "enabled": true,
                "last_run": "2026-03-28T01:30:00Z",
                "last_job": "sched-nightly-20260328T013000Z",
                "next_run_utc": "2026-03-29T01:00:00Z",
                "next_run_local": "2026-03-29T03:00:00+02:00",
                "timezone": "Europe/Berlin",
            })
        );
        // Without the state hint the newest marker still tells the last run.
        fs::remove_file(state_path(&layout(data), "nightly")).unwrap();
        assert_eq!(
            status(data, "nightly", &spec, &trigger, now).last_job,
            st.last_job
        );
    }

    #[test]
    fn markers_are_pruned_by_count_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let t0 = utc(T0);
        let spec = spec_every("1s", CatchUp::Skip);
        let trigger = compile(&spec, t0).unwrap();
        tick(data, "beat", &spec, &trigger, t0, t0).unwrap();
        // 250 markers of earlier fires, laid down directly (no fsync) for speed.
        let slots = layout(data).slots;
        fs::create_dir_all(&slots).unwrap();
        for s in 1..=250 {
            let marker = SlotMarker {
                job: SlotJob {
                    id: slot_job_id("beat", t0 + TimeDelta::seconds(s)),
                    agent: "reporter".into(),
                    input: serde_json::Value::Null,
                    schedule: "beat".into(),
                    slot: String::new(),
                },
                created: t0 + TimeDelta::seconds(s),
                published: true,
            };
            fs::write(
                slots.join(format!("{}.json", marker.job.id)),
                to_json(&marker),
            )
            .unwrap();
        }
        let other = spec_every("1h", CatchUp::Skip);
        fire_slot(data, "other", &other, t0, t0).unwrap();
        let report = tick(
            data,
            "beat",
            &spec,
            &trigger,
            t0,
            t0 + TimeDelta::seconds(251),
        )
        .unwrap();
        assert_eq!(
            report.fired,
            [slot_job_id("beat", t0 + TimeDelta::seconds(251))]
        );
        let markers = ids_in(data, "schedules/slots");
        // Another schedule's markers are not this one's to count.
        assert!(markers.contains(&slot_job_id("other", t0)));
        assert_eq!(markers.len(), MARKERS_KEPT_PER_SCHEDULE + 1);
        assert!(markers.contains(&slot_job_id("beat", t0 + TimeDelta::seconds(52))));
        assert!(!markers.contains(&slot_job_id("beat", t0 + TimeDelta::seconds(51))));
        // After the retention, recover() removes whatever is left.
        let much_later = t0 + TimeDelta::seconds(MARKER_RETENTION_SECS + 400);
        recover(data, much_later).unwrap();
        assert!(ids_in(data, "schedules/slots").is_empty());
    }

    #[test]
    fn job_ids_are_safe_file_names_of_bounded_length() {
        let slot = utc("2026-12-01T08:00:00Z");
        assert_eq!(
            slot_job_id("nightly-report", slot),
            "sched-nightly-report-20261201T080000Z"
        );
        let odd = slot_job_id("Report für/Ops", slot);
        assert!(odd.starts_with("sched-Report_f_r_Ops-"), "{odd}");
        assert_ne!(slot_job_id("a b", slot), slot_job_id("a_b", slot));
        let long = slot_job_id(&"x".repeat(500), slot);
        assert!(long.len() <= MAX_JOB_ID_BYTES);
        for id in [odd, long, slot_job_id("", slot)] {
            assert!(id.len() <= MAX_JOB_ID_BYTES, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{id}"
            );
            assert_eq!(parse_slot_job_id(&id).map(|(_, s)| s), Some(slot), "{id}");
        }
    }
}
