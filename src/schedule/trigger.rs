//! A compiled trigger: the checked form of a spec's `cron`/`every`/`at`, its
//! time zone and jitter, and the arithmetic of slots (when each fires).
//! Reading and writing files is `fire`'s job, not this module's.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::cron::{self, CronExpr};
use super::duration::{self, MAX_DURATION_SECS};
use super::spec::ScheduleSpec;

/// A spec that cannot be compiled: which field is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// The spec key at fault ("cron", "every", "at", "timezone", "jitter"),
    /// or "spec" when the fault is the combination; `jaros validate` turns it
    /// into a line.
    pub field: &'static str,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl SpecError {
    fn new(field: &'static str, message: String) -> SpecError {
        SpecError { field, message }
    }
}

/// When a schedule fires. Slots are whole UTC seconds.
#[derive(Debug, Clone)]
pub struct Trigger {
    kind: Kind,
    tz: Tz,
    jitter_secs: i64,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron {
        source: String,
        expr: CronExpr,
        // Boxed: a parsed croner pattern is large next to the other variants.
        cron: Box<croner::Cron>,
    },
    Every {
        secs: i64,
    },
    At {
        at: DateTime<FixedOffset>,
    },
}

/// Compiles a spec, refusing an `at` that is not after `now`: what `jaros
/// validate` and a newly loaded manifest use.
pub fn compile(spec: &ScheduleSpec, now: DateTime<Utc>) -> Result<Trigger, SpecError> {
    let trigger = compile_allowing_past(spec)?;
    if let Kind::At { .. } = trigger.kind {
        if trigger.next_after(now).is_none() {
            let at = spec.at.as_deref().unwrap_or_default().trim();
            return Err(SpecError::new(
                "at",
                format!(
                    "'at' {at} is in the past; set a later time, or delete the schedule once it has fired"
                ),
            ));
        }
    }
    Ok(trigger)
}

/// Compiles a spec like [`compile`] but accepts an `at` in the past (it then
/// simply has no next slot). A running node uses this when it reloads a
/// one-shot that has already fired, so that firing never turns the schedule
/// into an error.
pub fn compile_allowing_past(spec: &ScheduleSpec) -> Result<Trigger, SpecError> {
    let tz = Tz::from_str(spec.timezone.trim()).map_err(|_| {
        SpecError::new(
            "timezone",
            format!(
                "unknown time zone '{}'; use an IANA name such as 'Europe/Berlin' or 'UTC'",
                spec.timezone
            ),
        )
    })?;
    let set: Vec<&'static str> = [
        ("cron", spec.cron.is_some()),
        ("every", spec.every.is_some()),
        ("at", spec.at.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if set.len() != 1 {
        // Point at the second key when there are several; at the spec when none.
        let field = set.get(1).copied().unwrap_or("spec");
        return Err(SpecError::new(
            field,
            "exactly one of cron, every, at must be set".into(),
        ));
    }
    let kind = if let Some(source) = &spec.cron {
        let expr = cron::parse(source).map_err(|reason| {
            SpecError::new(
                "cron",
                format!("invalid cron expression '{source}': {reason}"),
            )
        })?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&expr.numeric())
            .map_err(|e| {
                SpecError::new("cron", format!("invalid cron expression '{source}': {e}"))
            })?;
        let kind = Kind::Cron {
            source: source.trim().to_string(),
            expr,
            cron: Box::new(cron),
        };
        // An expression such as "0 0 31 2 *" parses but names no real day.
        let probe = Trigger {
            kind: kind.clone(),
            tz,
            jitter_secs: 0,
        };
        if probe.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(SpecError::new(
                "cron",
                format!("invalid cron expression '{source}': it names no date that exists"),
            ));
        }
        kind
    } else if let Some(text) = &spec.every {
        let secs = duration_field(text, "every", "interval")?;
        if secs == 0 {
            return Err(SpecError::new(
                "every",
                format!("interval '{}' must be greater than zero", text.trim()),
            ));
        }
        Kind::Every { secs }
    } else {
        let text = spec.at.as_deref().unwrap_or_default().trim();
        let at = DateTime::parse_from_rfc3339(text).map_err(|_| {
            SpecError::new(
                "at",
                format!(
                    "invalid 'at' time '{text}': use RFC 3339 with an offset, \
                     such as '2026-12-01T09:00:00+01:00'"
                ),
            )
        })?;
        // Slots are whole seconds; a fraction would only make the job id lie.
        let at = at - TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
        Kind::At { at }
    };
    let jitter_secs = match &spec.jitter {
        Some(text) => duration_field(text, "jitter", "jitter")?,
        None => 0,
    };
    Ok(Trigger {
        kind,
        tz,
        jitter_secs,
    })
}

fn duration_field(text: &str, field: &'static str, what: &str) -> Result<i64, SpecError> {
    let secs = duration::parse_secs(text).ok_or_else(|| {
        SpecError::new(
            field,
            format!(
                "invalid {what} '{text}': use a number followed by s, m, h or d, \
                 such as '30s', '5m' or '1h30m'"
            ),
        )
    })?;
    if secs > MAX_DURATION_SECS {
        return Err(SpecError::new(
            field,
            format!("{what} '{text}' is longer than 366d; use cron or at for rarer runs"),
        ));
    }
    Ok(secs)
}

impl Trigger {
    /// The first slot strictly after `t`; `None` when there is none (a past
    /// `at`, or a cron expression beyond croner's search horizon).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron { cron, .. } => cron
                .find_next_occurrence(&t.with_timezone(&self.tz), false)
                .ok()
                .map(|local| local.with_timezone(&Utc)),
            Kind::Every { secs } => {
                // Slot k is at k * secs after the epoch: the first k with k * secs > t.
                let k = t.timestamp().div_euclid(*secs) + 1;
                DateTime::from_timestamp(k.checked_mul(*secs)?, 0)
            }
            Kind::At { at } => {
                let at = at.with_timezone(&Utc);
                (at > t).then_some(at)
            }
        }
    }

    /// The last slot at or before `t`; `None` when there is none.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron { cron, .. } => cron
                .find_previous_occurrence(&t.with_timezone(&self.tz), true)
                .ok()
                .map(|local| local.with_timezone(&Utc)),
            Kind::Every { secs } => {
                DateTime::from_timestamp(t.timestamp().div_euclid(*secs).checked_mul(*secs)?, 0)
            }
            Kind::At { at } => {
                let at = at.with_timezone(&Utc);
                (at <= t).then_some(at)
            }
        }
    }

    /// The trigger in words: "every day at 02:30 (Europe/Berlin)", "every
    /// 30s", "once at 2026-12-01T09:00:00+01:00"; a jitter is added as
    /// ", up to 30s later".
    pub fn describe(&self) -> String {
        let base = match &self.kind {
            Kind::Cron { source, expr, .. } => {
                let words = expr.words().unwrap_or_else(|| format!("cron '{source}'"));
                format!("{words} ({})", self.tz.name())
            }
            Kind::Every { secs } => format!("every {}", duration::format_secs(*secs)),
            Kind::At { at } => {
                format!("once at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
        };
        if self.jitter_secs > 0 {
            format!(
                "{base}, up to {} later",
                duration::format_secs(self.jitter_secs)
            )
        } else {
            base
        }
    }

    /// Identifies what decides the slots (not the jitter, which only delays
    /// them). The per-schedule state remembers it, so that an edited trigger
    /// starts afresh instead of catching up slots of the old one.
    pub fn key(&self) -> String {
        match &self.kind {
            Kind::Cron { expr, .. } => format!("cron {} {}", expr.numeric(), self.tz.name()),
            Kind::Every { secs } => format!("every {secs}s"),
            Kind::At { at } => format!("at {}", at.with_timezone(&Utc).timestamp()),
        }
    }

    /// The time zone the trigger is shown (and, for cron, evaluated) in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// When `slot` actually fires: the slot plus this schedule's jitter for
    /// it. The delay is derived from `seed` (the schedule name) and the slot,
    /// so every node picks the same one, and it stays below the time to the
    /// next slot, so slots still fire in order.
    pub fn fire_time(&self, slot: DateTime<Utc>, seed: &str) -> DateTime<Utc> {
        if self.jitter_secs == 0 {
            return slot;
        }
        let jitter_ms = self.jitter_secs.saturating_mul(1000);
        let bound_ms = match self.next_after(slot) {
            Some(next) => jitter_ms.min((next - slot).num_milliseconds()),
            None => jitter_ms,
        };
        if bound_ms <= 0 {
            return slot;
        }
        let mut hash = fnv1a(seed.as_bytes(), FNV_OFFSET);
        hash = fnv1a(&slot.timestamp().to_le_bytes(), hash);
        let offset_ms = (hash % bound_ms as u64) as i64;
        slot + TimeDelta::milliseconds(offset_ms)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: tiny and, unlike std's hasher, the same on every build and node.
pub(crate) fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub(crate) fn fnv1a_str(text: &str) -> u64 {
    fnv1a(text.as_bytes(), FNV_OFFSET)
}

/// Formats an instant in `tz` as RFC 3339 with that zone's offset, with a
/// fraction only when there is one (a jittered fire time), as serde writes
/// the same instant in UTC.
pub(crate) fn local_rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    tz.from_utc_datetime(&t.naive_utc())
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::spec::CatchUp;

    pub(crate) fn spec() -> ScheduleSpec {
        ScheduleSpec {
            agent: "reporter".into(),
            input: serde_json::Value::Null,
            cron: None,
            every: None,
            at: None,
            timezone: "UTC".into(),
            catch_up: CatchUp::Skip,
            enabled: true,
            jitter: None,
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cron_in(expr: &str, tz: &str) -> Trigger {
        let spec = ScheduleSpec {
            cron: Some(expr.into()),
            timezone: tz.into(),
            ..spec()
        };
        compile(&spec, utc("2026-01-01T00:00:00Z")).unwrap()
    }

    fn error(spec: ScheduleSpec) -> SpecError {
        compile(&spec, utc("2026-01-01T00:00:00Z")).unwrap_err()
    }

    /// Every slot in (from, to], walking forwards.
    fn slots(trigger: &Trigger, from: &str, to: &str) -> Vec<String> {
        let (mut t, to) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(next) = trigger.next_after(t) {
            if next > to {
                break;
            }
            out.push(next.to_rfc3339_opts(SecondsFormat::Secs, true));
            t = next;
        }
        out
    }

    /// The same slots found walking backwards from `to`: must agree with `slots`.
    fn slots_backwards(trigger: &Trigger, from: &str, to: &str) -> Vec<String> {
        let (from, mut t) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(prev) = trigger.latest_at_or_before(t) {
            if prev <= from {
                break;
            }
            out.push(prev.to_rfc3339_opts(SecondsFormat::Secs, true));
            t = prev - TimeDelta::seconds(1);
        }
        out.reverse();
        out
    }

    #[test]
    fn each_bad_input_is_reported_word_for_word_with_its_field() {
        let e = error(ScheduleSpec {
            cron: Some("61 * * * *".into()),
            ..spec()
        });
        assert_eq!(e.field, "cron");
        assert_eq!(
            e.message,
            "invalid cron expression '61 * * * *': minute 61 is out of range (0-59)"
        );

        let e = error(ScheduleSpec {
            cron: Some("@daily".into()),
            timezone: "Mars/Olympus".into(),
            ..spec()
        });
        assert_eq!(e.field, "timezone");
        assert_eq!(
            e.to_string(),
            "unknown time zone 'Mars/Olympus'; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        );

        let e = error(ScheduleSpec {
            at: Some("2020-01-01T00:00:00Z".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            (
                "at",
                "'at' 2020-01-01T00:00:00Z is in the past; set a later time, or delete the schedule once it has fired"
            )
        );

        let e = error(ScheduleSpec {
            every: Some("0s".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            ("every", "interval '0s' must be greater than zero")
        );

        let e = error(spec());
        assert_eq!(
            (e.field, e.message.as_str()),
            ("spec", "exactly one of cron, every, at must be set")
        );
        let e = error(ScheduleSpec {
            cron: Some("@daily".into()),
            every: Some("5m".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            ("every", "exactly one of cron, every, at must be set")
        );

        let e = error(ScheduleSpec {
            every: Some("5x".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            ("every", "invalid interval '5x': use a number followed by s, m, h or d, such as '30s', '5m' or '1h30m'")
        );
        let e = error(ScheduleSpec {
            every: Some("5m".into()),
            jitter: Some("soon".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            ("jitter", "invalid jitter 'soon': use a number followed by s, m, h or d, such as '30s', '5m' or '1h30m'")
        );
        let e = error(ScheduleSpec {
            every: Some("400d".into()),
            ..spec()
        });
        assert_eq!(
            e.message,
            "interval '400d' is longer than 366d; use cron or at for rarer runs"
        );
        let e = error(ScheduleSpec {
            at: Some("2026-12-01T09:00:00".into()),
            ..spec()
        });
        assert_eq!(
            (e.field, e.message.as_str()),
            ("at", "invalid 'at' time '2026-12-01T09:00:00': use RFC 3339 with an offset, such as '2026-12-01T09:00:00+01:00'")
        );
        let e = error(ScheduleSpec {
            cron: Some("0 0 31 2 *".into()),
            ..spec()
        });
        assert_eq!(
            e.message,
            "invalid cron expression '0 0 31 2 *': it names no date that exists"
        );
    }

    #[test]
    fn a_past_at_compiles_for_a_running_node_with_no_next_slot() {
        let spec = ScheduleSpec {
            at: Some("2020-01-01T00:00:00Z".into()),
            ..spec()
        };
        let trigger = compile_allowing_past(&spec).unwrap();
        assert_eq!(trigger.next_after(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(
            trigger.latest_at_or_before(utc("2026-01-01T00:00:00Z")),
            Some(utc("2020-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn describe_says_the_trigger_in_words() {
        assert_eq!(
            cron_in("30 2 * * *", "Europe/Berlin").describe(),
            "every day at 02:30 (Europe/Berlin)"
        );
        assert_eq!(
            cron_in("0 9 * * MON-FRI", "UTC").describe(),
            "every Monday to Friday at 09:00 (UTC)"
        );
        assert_eq!(
            cron_in("0 9-17 * * *", "UTC").describe(),
            "cron '0 9-17 * * *' (UTC)"
        );
        let every = |text: &str| {
            compile(
                &ScheduleSpec {
                    every: Some(text.into()),
                    ..spec()
                },
                utc("2026-01-01T00:00:00Z"),
            )
            .unwrap()
            .describe()
        };
        assert_eq!(every("30s"), "every 30s");
        assert_eq!(every("90m"), "every 1h30m");
        let at = ScheduleSpec {
            at: Some("2026-12-01T09:00:00+01:00".into()),
            ..spec()
        };
        assert_eq!(
            compile(&at, utc("2026-01-01T00:00:00Z"))
                .unwrap()
                .describe(),
            "once at 2026-12-01T09:00:00+01:00"
        );
        let jittered = ScheduleSpec {
            every: Some("1h".into()),
            jitter: Some("30s".into()),
            ..spec()
        };
        assert_eq!(
            compile(&jittered, utc("2026-01-01T00:00:00Z"))
                .unwrap()
                .describe(),
            "every 1h, up to 30s later"
        );
    }

    #[test]
    fn every_slots_are_aligned_to_the_epoch() {
        let trigger = compile(
            &ScheduleSpec {
                every: Some("5m".into()),
                ..spec()
            },
            utc("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            trigger.next_after(utc("2026-03-01T10:02:17Z")),
            Some(utc("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            trigger.next_after(utc("2026-03-01T10:05:00Z")),
            Some(utc("2026-03-01T10:10:00Z"))
        );
        assert_eq!(
            trigger.latest_at_or_before(utc("2026-03-01T10:05:00Z")),
            Some(utc("2026-03-01T10:05:00Z"))
        );
        // 7 minutes does not divide an hour: slots still sit at k * 420 s after the epoch.
        let odd = compile(
            &ScheduleSpec {
                every: Some("7m".into()),
                ..spec()
            },
            utc("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        let next = odd.next_after(utc("2026-03-01T10:00:00Z")).unwrap();
        assert_eq!(next.timestamp() % 420, 0);
        // A sub-second `now` just past a slot still gets the next one.
        let t = utc("2026-03-01T10:05:00.5Z");
        assert_eq!(trigger.next_after(t), Some(utc("2026-03-01T10:10:00Z")));
    }

    #[test]
    fn crontab_names_and_macros_fire_when_crontab_would() {
        // 2026-03-02 is a Monday.
        let trigger = cron_in("30 9 * JAN,MAR MON", "UTC");
        assert_eq!(
            slots(&trigger, "2026-03-01T00:00:00Z", "2026-03-17T00:00:00Z"),
            [
                "2026-03-02T09:30:00Z",
                "2026-03-09T09:30:00Z",
                "2026-03-16T09:30:00Z"
            ]
        );
        let hourly = cron_in("@hourly", "UTC");
        assert_eq!(
            hourly.next_after(utc("2026-03-01T10:59:59Z")),
            Some(utc("2026-03-01T11:00:00Z"))
        );
        let midnight = cron_in("@midnight", "Europe/Berlin");
        assert_eq!(
            midnight.next_after(utc("2026-03-01T10:00:00Z")),
            Some(utc("2026-03-01T23:00:00Z"))
        );
        let yearly = cron_in("@annually", "UTC");
        assert_eq!(
            yearly.next_after(utc("2026-03-01T10:00:00Z")),
            Some(utc("2027-01-01T00:00:00Z"))
        );
        let weekly = cron_in("@weekly", "UTC");
        assert_eq!(
            weekly.next_after(utc("2026-03-02T00:00:00Z")),
            Some(utc("2026-03-08T00:00:00Z"))
        );
        let steps = cron_in("*/20 8-9 * * *", "UTC");
        assert_eq!(
            slots(&steps, "2026-03-02T00:00:00Z", "2026-03-02T12:00:00Z"),
            [
                "2026-03-02T08:00:00Z",
                "2026-03-02T08:20:00Z",
                "2026-03-02T08:40:00Z",
                "2026-03-02T09:00:00Z",
                "2026-03-02T09:20:00Z",
                "2026-03-02T09:40:00Z"
            ]
        );
        // Day-of-month and day-of-week both restricted: either matches, as in crontab.
        // March 2026: Friday the 6th, 13th, 20th, 27th; the 13th is itself a Friday.
        let either = cron_in("0 0 10 MAR FRI", "UTC");
        assert_eq!(
            slots(&either, "2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                "2026-03-06T00:00:00Z",
                "2026-03-10T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-03-20T00:00:00Z",
                "2026-03-27T00:00:00Z"
            ]
        );
    }

    #[test]
    fn a_0230_daily_job_fires_once_at_0300_on_the_spring_forward_day_in_berlin() {
        // 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST; 02:30 never happens.
        let trigger = cron_in("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            slots(&trigger, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first instant after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        assert_eq!(
            slots_backwards(&trigger, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            slots(&trigger, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z")
        );
    }

    #[test]
    fn a_0230_daily_job_fires_once_at_the_first_0230_on_the_fall_back_day_in_berlin() {
        // 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 happens twice.
        let trigger = cron_in("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            slots(&trigger, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST); the second (01:30Z) does not fire
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        assert_eq!(
            slots_backwards(&trigger, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
            slots(&trigger, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z")
        );
        // Asked from between the two 02:30s, the next slot is the next day's.
        assert_eq!(
            trigger.next_after(utc("2026-10-25T00:45:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn a_job_with_several_hours_or_minutes_keeps_to_real_time_across_dst() {
        // Patterns that name more than one hour or minute are interval jobs:
        // a wall time in the gap does not exist and is skipped, and a
        // repeated wall time fires at both instants.
        let trigger = cron_in("*/30 * * * *", "Europe/Berlin");
        assert_eq!(
            slots(&trigger, "2026-03-29T00:00:00Z", "2026-03-29T01:30:00Z"),
            [
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z"
            ]
        );
        assert_eq!(
            slots(&trigger, "2026-10-24T23:45:00Z", "2026-10-25T01:45:00Z"),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z", // 02:00, 02:30 CEST
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z", // 02:00, 02:30 CET
            ]
        );
        let two_hours = cron_in("30 2,14 * * *", "Europe/Berlin");
        assert_eq!(
            slots(&two_hours, "2026-03-28T12:00:00Z", "2026-03-29T23:00:00Z"),
            ["2026-03-28T13:30:00Z", "2026-03-29T12:30:00Z"]
        );
        assert_eq!(
            slots_backwards(&two_hours, "2026-10-24T12:00:00Z", "2026-10-25T23:00:00Z"),
            slots(&two_hours, "2026-10-24T12:00:00Z", "2026-10-25T23:00:00Z")
        );
    }

    #[test]
    fn jitter_is_the_same_on_every_node_and_stays_inside_the_slot() {
        let spec = ScheduleSpec {
            every: Some("10s".into()),
            jitter: Some("1h".into()),
            ..spec()
        };
        let trigger = compile(&spec, utc("2026-01-01T00:00:00Z")).unwrap();
        let again = compile(&spec, utc("2026-01-01T00:00:00Z")).unwrap();
        let mut offsets = std::collections::BTreeSet::new();
        let mut slot = utc("2026-03-01T00:00:00Z");
        for _ in 0..50 {
            let fire = trigger.fire_time(slot, "nightly");
            assert_eq!(fire, again.fire_time(slot, "nightly"));
            assert!(
                fire >= slot && fire < slot + TimeDelta::seconds(10),
                "{fire} for {slot}"
            );
            offsets.insert((fire - slot).num_milliseconds());
            slot += TimeDelta::seconds(10);
        }
        assert!(offsets.len() > 40, "jitter barely varies: {offsets:?}");
        let plain = compile(
            &ScheduleSpec {
                jitter: None,
                ..spec
            },
            utc("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(plain.fire_time(slot, "nightly"), slot);
    }
}
