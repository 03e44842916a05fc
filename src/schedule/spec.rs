//! The `spec` of a `Schedule` manifest, as the user writes it. Parsing the
//! strings inside it (cron, durations, time zone, `at`) is `trigger`'s job.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The `spec` of a `Schedule` manifest is this struct (the manifest types
// re-export it), so there is one spec type and one schema for it.
/// When and what a schedule runs: exactly one of `cron`, `every` or `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["cron"], "not": {"anyOf": [{"required": ["every"]}, {"required": ["at"]}]}},
    {"required": ["every"], "not": {"anyOf": [{"required": ["cron"]}, {"required": ["at"]}]}},
    {"required": ["at"], "not": {"anyOf": [{"required": ["cron"]}, {"required": ["every"]}]}}
]))]
pub struct ScheduleSpec {
    /// The agent that receives each job this schedule fires.
    pub agent: String,
    /// The job input handed to the agent on every fire (any JSON value; null when absent).
    #[serde(default)]
    pub input: serde_json::Value,
    /// A crontab expression with five fields (minute hour day-of-month month day-of-week),
    /// names such as MON and JAN, ranges, lists and steps, or a macro: @yearly, @annually,
    /// @monthly, @weekly, @daily, @midnight, @hourly. Evaluated in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A fixed interval such as "30s", "5m", "1h", "1h30m" or "2d" (units d, h, m, s).
    /// Slots are aligned to the Unix epoch in UTC, so every node computes the same slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// A single fire time in RFC 3339 with an offset, such as "2026-12-01T09:00:00+01:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The IANA time zone a `cron` expression is evaluated in, such as "Europe/Berlin"; also
    /// used to show the next run in local time. Default "UTC".
    #[serde(default = "utc")]
    pub timezone: String,
    /// What to do with slots missed while no node was running: "skip" (default) fires none
    /// of them, "once" fires only the latest, "all" fires each (at most 100, the latest).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Whether the schedule fires at all; a disabled schedule is listed as disabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// An optional random delay such as "30s" added to each fire, to spread load; it is
    /// never longer than the time to the next slot, and every node picks the same delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
}

// The field docs (and so the schema) say "at most 100".
const _: () = assert!(super::MAX_CATCH_UP_SLOTS == 100);

fn utc() -> String {
    "UTC".to_string()
}

fn yes() -> bool {
    true
}

/// The catch-up policy for slots missed while no node was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire none of the missed slots; carry on with the next one.
    #[default]
    Skip,
    /// Fire only the latest missed slot.
    Once,
    /// Fire every missed slot, oldest first, at most 100 (the latest ones).
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_what_the_manifest_leaves_out() {
        let spec: ScheduleSpec =
            serde_json::from_value(serde_json::json!({"agent": "a", "every": "5m"})).unwrap();
        assert_eq!(spec.timezone, "UTC");
        assert_eq!(spec.catch_up, CatchUp::Skip);
        assert!(spec.enabled);
        assert_eq!(spec.input, serde_json::Value::Null);
        assert_eq!(spec.jitter, None);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = serde_json::from_value::<ScheduleSpec>(
            serde_json::json!({"agent": "a", "every": "5m", "evry": "1m"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `evry`"), "{err}");
    }

    #[test]
    fn catch_up_is_spelled_in_lower_case() {
        let spec: ScheduleSpec = serde_json::from_value(
            serde_json::json!({"agent": "a", "every": "5m", "catch_up": "all"}),
        )
        .unwrap();
        assert_eq!(spec.catch_up, CatchUp::All);
        assert!(serde_json::from_value::<ScheduleSpec>(
            serde_json::json!({"agent": "a", "every": "5m", "catch_up": "All"}),
        )
        .is_err());
    }

    #[test]
    fn the_schema_describes_every_field_and_refuses_unknown_ones() {
        let schema = serde_json::to_value(schemars::schema_for!(ScheduleSpec)).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
        let properties = schema["properties"].as_object().unwrap();
        for field in [
            "agent", "input", "cron", "every", "at", "timezone", "catch_up", "enabled", "jitter",
        ] {
            let description = properties[field]["description"].as_str().unwrap_or("");
            assert!(!description.is_empty(), "{field} has no description");
        }
        assert_eq!(properties["timezone"]["default"], "UTC");
        assert_eq!(properties["enabled"]["default"], true);
        assert_eq!(schema["required"], serde_json::json!(["agent"]));
    }
}
