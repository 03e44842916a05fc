//! Schedules: `cron`, `every` and `at` triggers that turn into inbox jobs,
//! exactly once per slot across nodes and crashes.
//!
//! This module owns the `Schedule` spec and its compiled [`Trigger`] (which
//! slots exist, in which time zone, with what jitter), the catch-up policy
//! ([`due_slots`]: which slots are owed now), and firing ([`fire`]: slot
//! markers, inbox jobs, recovery, per-schedule state and status). It does not
//! own the inbox beyond writing a job into it, nor claiming or running jobs,
//! nor watching manifests for edits: the node calls [`fire::tick`] for each
//! loaded schedule and [`fire::recover`] on each scan.
//!
//! # Semantics (the contract `jaros` documents)
//!
//! **Slots.** A `cron` expression is evaluated in the schedule's time zone;
//! `every` slots sit at whole multiples of the interval after the Unix epoch
//! (UTC), whatever the time zone, so every node computes the same slots; `at`
//! has one slot. A slot's job id is `sched-<name>-<slot as %Y%m%dT%H%M%SZ>`.
//!
//! **Daylight saving.** A cron job with a single minute and a single hour (a
//! "fixed-time" job such as `30 2 * * *`) fires once on every day it names:
//! when its wall time falls into a spring-forward gap it fires at the first
//! instant after the gap (03:00 local in Europe/Berlin), and when its wall
//! time happens twice in a fall-back hour it fires only at the first of the
//! two (02:30 summer time, 00:30 UTC). Any other pattern (`*/30 * * * *`,
//! `30 2,14 * * *`, `0 1-3 * * *`) follows real time: wall times inside the
//! gap do not exist and are skipped, and repeated wall times fire at both
//! instants. This is croner's (Open Cron Pattern Specification) rule.
//!
//! **Catch-up.** A node passes `since`, the moment it started watching the
//! schedule. Slots after `since` are *live* and always fire (however many
//! came due between two ticks). Slots after the last settled slot but at or
//! before `since` were *missed* while no node ran the schedule: `skip` fires
//! none of them, `once` fires only the latest, `all` fires each of them.
//! A schedule never seen before, newly edited, or re-enabled owes nothing
//! from before the first tick that saw it. No call returns more than
//! [`MAX_CATCH_UP_SLOTS`] slots (the latest ones, oldest first), and none
//! older than [`MAX_CATCH_UP_AGE_SECS`].
//!
//! **Jitter.** A slot fires at its time plus a delay below both `jitter` and
//! the time to the next slot; the delay is a hash of the schedule name and
//! the slot, so all nodes agree on it. The job id still names the slot.

mod cron;
mod duration;
pub mod fire;
pub mod spec;
pub mod trigger;

use chrono::{DateTime, TimeDelta, Utc};

pub use fire::{recover, status, tick, FireError, ScheduleStatus, TickReport};
pub use spec::{CatchUp, ScheduleSpec};
pub use trigger::{compile, compile_allowing_past, SpecError, Trigger};

/// The most slots one call of [`due_slots`] returns, and so the most jobs one
/// tick of one schedule writes.
pub const MAX_CATCH_UP_SLOTS: usize = 100;

/// How far back catch-up looks: a week, so a weekly job missed over a
/// week-long outage is still owed. Slot markers are kept longer than this
/// (see [`fire::MARKER_RETENTION_SECS`]), so no slot is ever owed again after
/// its marker is gone.
pub const MAX_CATCH_UP_AGE_SECS: i64 = 7 * 86_400;

/// The slots owed at `now`, oldest first.
///
/// `last_fired` is the last settled slot (fired, or already taken by another
/// node); `None` when the schedule has none, which owes nothing before
/// `since`. `since` is when this node started watching the schedule. See the
/// module docs for what each [`CatchUp`] policy owes.
pub fn due_slots(
    trigger: &Trigger,
    catch_up: CatchUp,
    last_fired: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let horizon = now - TimeDelta::seconds(MAX_CATCH_UP_AGE_SECS);
    let settled = last_fired.unwrap_or(since).max(horizon);
    let live_from = settled.max(since);

    // Walk backwards from `now` so the work is bounded by the slots returned,
    // not by how long the node was down.
    let mut live = Vec::new();
    let mut cursor = now;
    while live.len() < MAX_CATCH_UP_SLOTS {
        match trigger.latest_at_or_before(cursor) {
            Some(slot) if slot > live_from => {
                live.push(slot);
                cursor = slot - TimeDelta::seconds(1);
            }
            _ => break,
        }
    }
    let room = MAX_CATCH_UP_SLOTS - live.len();
    let mut missed = Vec::new();
    if settled < since && room > 0 {
        let wanted = match catch_up {
            CatchUp::Skip => 0,
            CatchUp::Once => 1,
            CatchUp::All => room,
        };
        let mut cursor = since;
        while missed.len() < wanted {
            match trigger.latest_at_or_before(cursor) {
                Some(slot) if slot > settled => {
                    missed.push(slot);
                    cursor = slot - TimeDelta::seconds(1);
                }
                _ => break,
            }
        }
    }
    let mut due: Vec<DateTime<Utc>> = live.into_iter().chain(missed).collect();
    due.reverse();
    debug_assert!(
        due.windows(2).all(|w| w[0] < w[1]),
        "slots out of order: {due:?}"
    );
    debug_assert!(due.len() <= MAX_CATCH_UP_SLOTS);
    due
}

/// An RFC 3339 time as UTC, for tests.
#[cfg(test)]
pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(text: &str) -> Trigger {
        let spec = ScheduleSpec {
            agent: "a".into(),
            input: serde_json::Value::Null,
            cron: None,
            every: Some(text.into()),
            at: None,
            timezone: "UTC".into(),
            catch_up: CatchUp::Skip,
            enabled: true,
            jitter: None,
        };
        compile(&spec, utc("2026-01-01T00:00:00Z")).unwrap()
    }

    fn hhmm(slots: &[DateTime<Utc>]) -> Vec<String> {
        slots
            .iter()
            .map(|s| s.format("%H:%M").to_string())
            .collect()
    }

    // An hourly schedule last fired at 01:00; the node was down from then
    // until 05:30 (`since`), and it is now 07:10.
    const LAST: &str = "2026-03-01T01:00:00Z";
    const SINCE: &str = "2026-03-01T05:30:00Z";
    const NOW: &str = "2026-03-01T07:10:00Z";

    #[test]
    fn skip_fires_only_slots_that_came_due_while_the_node_watched() {
        let due = due_slots(
            &every("1h"),
            CatchUp::Skip,
            Some(utc(LAST)),
            utc(SINCE),
            utc(NOW),
        );
        assert_eq!(hhmm(&due), ["06:00", "07:00"]);
    }

    #[test]
    fn once_adds_only_the_latest_missed_slot() {
        let due = due_slots(
            &every("1h"),
            CatchUp::Once,
            Some(utc(LAST)),
            utc(SINCE),
            utc(NOW),
        );
        assert_eq!(hhmm(&due), ["05:00", "06:00", "07:00"]);
    }

    #[test]
    fn all_adds_every_missed_slot_oldest_first() {
        let due = due_slots(
            &every("1h"),
            CatchUp::All,
            Some(utc(LAST)),
            utc(SINCE),
            utc(NOW),
        );
        assert_eq!(
            hhmm(&due),
            ["02:00", "03:00", "04:00", "05:00", "06:00", "07:00"]
        );
    }

    #[test]
    fn all_is_bounded_to_the_latest_max_catch_up_slots() {
        let due = due_slots(
            &every("1m"),
            CatchUp::All,
            Some(utc("2026-03-01T00:00:00Z")),
            utc("2026-03-01T12:00:00Z"),
            utc("2026-03-01T12:00:30Z"),
        );
        assert_eq!(due.len(), MAX_CATCH_UP_SLOTS);
        assert_eq!(due.last(), Some(&utc("2026-03-01T12:00:00Z")));
        assert_eq!(due[0], utc("2026-03-01T10:21:00Z"));
    }

    #[test]
    fn catch_up_never_reaches_back_past_its_horizon() {
        let due = due_slots(
            &every("1d"),
            CatchUp::All,
            Some(utc("2026-01-01T00:00:00Z")),
            utc("2026-03-01T00:30:00Z"),
            utc("2026-03-01T00:30:00Z"),
        );
        assert_eq!(due.len(), 7);
        assert_eq!(due[0], utc("2026-02-23T00:00:00Z"));
    }

    #[test]
    fn a_schedule_that_never_fired_owes_nothing_before_since() {
        for policy in [CatchUp::Skip, CatchUp::Once, CatchUp::All] {
            let due = due_slots(&every("1h"), policy, None, utc(SINCE), utc(NOW));
            assert_eq!(hhmm(&due), ["06:00", "07:00"], "{policy:?}");
        }
    }

    #[test]
    fn live_slots_fire_even_when_several_came_due_between_two_ticks() {
        let due = due_slots(
            &every("1s"),
            CatchUp::Skip,
            Some(utc("2026-03-01T00:00:01Z")),
            utc("2026-03-01T00:00:00Z"),
            utc("2026-03-01T00:00:04.5Z"),
        );
        assert_eq!(due.len(), 3);
        assert_eq!(due[0], utc("2026-03-01T00:00:02Z"));
    }

    #[test]
    fn nothing_is_due_twice_and_a_slot_at_now_is_due() {
        let trigger = every("1h");
        let due = due_slots(&trigger, CatchUp::All, Some(utc(NOW)), utc(SINCE), utc(NOW));
        assert!(due.is_empty());
        let due = due_slots(
            &trigger,
            CatchUp::Skip,
            None,
            utc(SINCE),
            utc("2026-03-01T06:00:00Z"),
        );
        assert_eq!(hhmm(&due), ["06:00"]);
    }
}
