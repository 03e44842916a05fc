//! The node's schedules: which of the hive's schedules this node fires, and
//! when it ticks each one.
//!
//! Owns the node-side bookkeeping only: compiling each schedule when the
//! manifests load or change (a schedule that does not compile is reported
//! and skipped, the others keep firing), ticking a schedule when its next
//! fire time comes, and running recovery every few seconds. Which slots
//! are owed and how a slot becomes exactly one inbox job is
//! [`crate::schedule`]'s business.

use crate::schedule::{self, ScheduleSpec, Trigger};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How often recovery looks for slot markers a crash left without their job:
/// short next to the 30 s grace a marker gets, so a lost job appears within
/// about 35 s, and long enough that reading every marker past its grace
/// (up to 200 per schedule) stays cheap.
pub const RECOVER_EVERY_MS: i64 = 5_000;

/// How long a schedule whose tick failed (an I/O error) waits before the
/// node tries it again.
pub const RETRY_AFTER_MS: i64 = 1_000;

/// A schedule as the hive declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSchedule {
    /// The manifest's `metadata.name`.
    pub name: String,
    /// The manifest file it came from, relative to the hive, for messages.
    pub file: String,
    pub spec: ScheduleSpec,
}

/// A schedule that compiled, and when to look at it next.
struct Armed {
    spec: ScheduleSpec,
    trigger: Trigger,
    /// When to tick next; `None` while there is nothing to fire (disabled,
    /// or a one-shot that has fired) until the manifests change.
    due: Option<DateTime<Utc>>,
}

/// The schedules one node fires.
pub struct Scheduler {
    node: String,
    data: PathBuf,
    /// When this node started: slots after it are live, those before it were
    /// missed and owed only by the catch-up policy.
    since: DateTime<Utc>,
    verbose: bool,
    armed: BTreeMap<String, Armed>,
    next_recover: DateTime<Utc>,
}

impl Scheduler {
    /// A scheduler with no schedules yet; `since` is the node's boot.
    pub fn new(node: &str, data: PathBuf, since: DateTime<Utc>, verbose: bool) -> Scheduler {
        Scheduler {
            node: node.to_string(),
            data,
            since,
            verbose,
            armed: BTreeMap::new(),
            // Recover on the first run: at boot.
            next_recover: since,
        }
    }

    /// Takes the hive's schedules, at boot and after every manifest change.
    /// Unchanged schedules keep their place; new and edited ones are ticked
    /// on the next [`Scheduler::run`]; one that does not compile is reported
    /// and skipped. A schedule that is gone (deleted, or now broken) is
    /// paused, so that bringing it back owes nothing from the gap.
    pub fn load(&mut self, schedules: &[NamedSchedule], now: DateTime<Utc>) {
        let mut armed = BTreeMap::new();
        for s in schedules {
            if let Some(old) = self.armed.remove(&s.name) {
                if old.spec == s.spec {
                    armed.insert(s.name.clone(), old);
                    continue;
                }
                // Edited: the old one is replaced below, not paused.
            }
            // A one-shot whose time has passed is not an error here: it has
            // fired, or it is owed by catch-up; either way reloading it must
            // not break the others (the original's gap).
            match schedule::compile_allowing_past(&s.spec) {
                Ok(trigger) => {
                    tracing::info!(
                        "node {}: schedule '{}': {}{}",
                        self.node,
                        s.name,
                        trigger.describe(),
                        if s.spec.enabled { "" } else { " (disabled)" }
                    );
                    let armed_schedule = Armed {
                        spec: s.spec.clone(),
                        trigger,
                        due: Some(now),
                    };
                    armed.insert(s.name.clone(), armed_schedule);
                }
                Err(e) => tracing::warn!(
                    "node {}: schedule '{}' in {} is skipped: spec.{}: {}; \
                     the other schedules keep firing (check with `jaros validate`)",
                    self.node,
                    s.name,
                    s.file,
                    e.field,
                    e.message
                ),
            }
        }
        let gone = std::mem::replace(&mut self.armed, armed);
        for (name, old) in gone {
            let paused = ScheduleSpec {
                enabled: false,
                ..old.spec
            };
            if let Err(e) =
                schedule::tick(&self.data, &name, &paused, &old.trigger, self.since, now)
            {
                tracing::error!(
                    "node {}: schedule '{name}' is gone but cannot be paused: {e}",
                    self.node
                );
            } else {
                tracing::info!("node {}: schedule '{name}' removed", self.node);
            }
        }
    }

    /// Ticks every schedule whose time has come and, every few seconds,
    /// recovers slots a crash left without their job. Returns how long the
    /// node may sleep before the next call has something to do.
    pub fn run(&mut self, now: DateTime<Utc>) -> Duration {
        if now >= self.next_recover {
            match schedule::recover(&self.data, now) {
                Ok(ids) => {
                    for id in ids {
                        tracing::warn!(
                            "node {}: recovered scheduled job {id} (its node stopped between claiming the slot and writing the job)",
                            self.node
                        );
                    }
                }
                Err(e) => tracing::error!("node {}: schedule recovery: {e}", self.node),
            }
            self.next_recover = now + TimeDelta::milliseconds(RECOVER_EVERY_MS);
        }
        for (name, a) in &mut self.armed {
            if a.due.is_none_or(|due| due > now) {
                continue;
            }
            match schedule::tick(&self.data, name, &a.spec, &a.trigger, self.since, now) {
                Ok(report) => {
                    if self.verbose {
                        for id in &report.fired {
                            tracing::info!("node {}: schedule '{name}' fired {id}", self.node);
                        }
                    }
                    a.due = report.next;
                }
                Err(e) => {
                    tracing::error!("node {}: schedule '{name}': {e}", self.node);
                    a.due = Some(now + TimeDelta::milliseconds(RETRY_AFTER_MS));
                }
            }
        }
        let next = self
            .armed
            .values()
            .filter_map(|a| a.due)
            .fold(self.next_recover, DateTime::min);
        (next - now).to_std().unwrap_or(Duration::ZERO)
    }

    /// How many schedules compiled and are being watched.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::CatchUp;

    use crate::schedule::utc;

    fn every(name: &str, interval: &str) -> NamedSchedule {
        NamedSchedule {
            name: name.into(),
            file: format!("manifests/{name}.yaml"),
            spec: ScheduleSpec {
                agent: "advance".into(),
                input: serde_json::json!({}),
                cron: None,
                every: Some(interval.into()),
                at: None,
                timezone: "UTC".into(),
                catch_up: CatchUp::Skip,
                enabled: true,
                jitter: None,
            },
        }
    }

    fn inbox(data: &std::path::Path) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(data.join("inbox"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    #[test]
    fn a_broken_schedule_is_skipped_and_the_others_fire() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = utc("2026-03-01T00:00:00Z");
        let mut s = Scheduler::new("n", dir.path().to_path_buf(), t0, false);
        let good = every("good", "1s");
        let mut bad = every("bad", "1s");
        bad.spec.timezone = "Mars/Olympus".into();
        s.load(&[bad, good], t0);
        assert_eq!(s.len(), 1);
        for ms in (0..=2_000).step_by(100) {
            s.run(t0 + TimeDelta::milliseconds(ms));
        }
        assert_eq!(
            inbox(dir.path()),
            [
                "sched-good-20260301T000001Z.json",
                "sched-good-20260301T000002Z.json"
            ]
        );
    }

    #[test]
    fn run_asks_to_be_woken_at_the_next_fire_time() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = utc("2026-03-01T00:00:00.250Z");
        let mut s = Scheduler::new("n", dir.path().to_path_buf(), t0, false);
        s.load(&[every("tick", "1s")], t0);
        // The first run recovers (due again in 5 s) and ticks: next slot at 00:00:01.
        assert_eq!(s.run(t0), Duration::from_millis(750));
        // Nothing armed: the next recovery is what wakes it.
        s.load(&[], t0);
        assert_eq!(
            s.run(t0 + TimeDelta::milliseconds(1_000)),
            Duration::from_millis(4_000)
        );
    }

    #[test]
    fn a_disabled_or_deleted_schedule_stops_firing_and_owes_nothing_when_back() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = utc("2026-03-01T00:00:00Z");
        let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);
        let mut s = Scheduler::new("n", dir.path().to_path_buf(), t0, false);
        let on = every("beat", "1s");
        let mut off = on.clone();
        off.spec.enabled = false;
        s.load(std::slice::from_ref(&on), t0);
        s.run(t0);
        s.run(at(1_000));
        s.load(std::slice::from_ref(&off), at(1_500));
        s.run(at(2_000));
        s.run(at(3_000));
        s.load(&[], at(3_500));
        s.run(at(4_000));
        // Back after a gap: the slots of the gap are not owed.
        s.load(std::slice::from_ref(&on), at(5_500));
        s.run(at(5_500));
        s.run(at(6_000));
        assert_eq!(
            inbox(dir.path()),
            [
                "sched-beat-20260301T000001Z.json",
                "sched-beat-20260301T000006Z.json"
            ]
        );
    }
}
