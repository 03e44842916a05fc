//! `jaros schedules`: each schedule of the hive with its trigger in words,
//! whether it is enabled, its last run and that run's job, and its next run
//! in its time zone and in UTC. `jaros status` shows the same list.

use super::{out, out_json, CliResult, Ctx};
use crate::exit::Outcome;
use crate::manifest::Loaded;
use crate::schedule;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::path::Path;

/// List the hive's schedules: trigger in words, enabled or disabled, last
/// run and its job, next run in the schedule's time zone and in UTC.
///
/// Reads the manifests and the data dir; no node needs to run. A schedule
/// whose trigger does not compile is listed with the error (a running node
/// skips it and fires the others) and makes the exit code 1.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object: {"schedules": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let hive = ctx.hive()?;
    let loaded = super::load_hive(&hive)?;
    let data = ctx.data_dir()?;
    let rows = rows(&loaded, data.root(), Utc::now());
    if args.json {
        out_json(&json!({ "schedules": rows }));
    } else if rows.is_empty() {
        out("no schedules (add a Schedule manifest under manifests/)\n");
    } else {
        out(&human(&rows, ""));
    }
    let broken = rows.iter().any(|r| !r["error"].is_null());
    Ok(if broken {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// For `jaros status`: the rows of the hive's schedules; an empty list when
/// no hive is known (status needs only a data dir), `{"error": ...}` when the
/// hive's manifests do not load.
pub fn status_json(ctx: &Ctx) -> Value {
    let Ok(hive) = ctx.hive() else {
        return json!([]);
    };
    let data = match ctx.data_dir() {
        Ok(data) => data,
        Err(e) => return json!({ "error": e.message }),
    };
    match crate::manifest::load_hive(&hive) {
        Ok(loaded) => json!(rows(&loaded, data.root(), Utc::now())),
        Err(errors) => json!({
            "error": format!(
                "the hive's manifests do not validate ({} error{}); see `jaros validate`",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )
        }),
    }
}

/// One JSON object per schedule, by name: the fields of
/// [`schedule::ScheduleStatus`], plus `file` and `error` (null unless the
/// trigger does not compile).
pub fn rows(loaded: &Loaded, data: &Path, now: DateTime<Utc>) -> Vec<Value> {
    let mut entries: Vec<_> = loaded.manifests.schedules.iter().collect();
    entries.sort_by(|a, b| a.m.metadata.name.cmp(&b.m.metadata.name));
    entries
        .into_iter()
        .map(|entry| {
            let name = &entry.m.metadata.name;
            let spec = &entry.m.spec;
            // As a node does: a one-shot whose time has passed is listed, not an error.
            let mut row = match schedule::compile_allowing_past(spec) {
                Ok(trigger) => {
                    let status = schedule::status(data, name, spec, &trigger, now);
                    let mut row = serde_json::to_value(status).expect("statuses serialize");
                    row["error"] = Value::Null;
                    row
                }
                Err(e) => json!({
                    "name": name,
                    "trigger_words": null,
                    "enabled": spec.enabled,
                    "last_run": null,
                    "last_job": null,
                    "next_run_utc": null,
                    "next_run_local": null,
                    "timezone": spec.timezone,
                    "error": format!("spec.{}: {}", e.field, e.message),
                }),
            };
            row["file"] = json!(entry.file);
            row
        })
        .collect()
}

/// The rows for people, each line prefixed with `indent`:
///
/// ```text
/// nightly  every day at 03:00 (Europe/Berlin)  enabled
///   last run  2026-03-01T02:00:00Z  job sched-nightly-20260301T020000Z
///   next run  2026-03-02T03:00:00+01:00 (Europe/Berlin) = 2026-03-02T02:00:00Z
/// ```
pub fn human(rows: &[Value], indent: &str) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut s = String::new();
    for r in rows {
        let name = text(&r["name"]);
        if !r["error"].is_null() {
            s += &format!(
                "{indent}{name}  BROKEN ({}): {}\n{indent}  not fired by any node until fixed\n",
                text(&r["file"]),
                text(&r["error"])
            );
            continue;
        }
        let enabled = if r["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        };
        s += &format!("{indent}{name}  {}  {enabled}\n", text(&r["trigger_words"]));
        let last = match (r["last_run"].as_str(), r["last_job"].as_str()) {
            (Some(run), Some(job)) => format!("{run}  job {job}"),
            (Some(run), None) => run.to_string(),
            _ => "never".to_string(),
        };
        s += &format!("{indent}  last run  {last}\n");
        let next = match (r["next_run_local"].as_str(), r["next_run_utc"].as_str()) {
            (Some(local), Some(utc)) if local == utc => format!("{utc} (UTC)"),
            (Some(local), Some(utc)) => format!("{local} ({}) = {utc}", text(&r["timezone"])),
            _ if r["enabled"] != true => "none (disabled)".to_string(),
            _ => "none (a one-shot that has passed)".to_string(),
        };
        s += &format!("{indent}  next run  {next}\n");
    }
    s
}
