//! Schedules end to end, through the real binary: `jaros validate` points at
//! each bad trigger; nodes fire exactly one job per slot, across three nodes
//! on one data dir and across a SIGKILL; edits take effect on a running
//! node; one broken schedule never stops the others; `jaros schedules` and
//! `jaros status` show last and next runs.

mod common;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use common::{count_jobs, example_hive, wait_until, Hive, Node};
use jaros::log::{read_log, Body};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

fn args(node_id: &str) -> Vec<&str> {
    common::FAST
        .iter()
        .copied()
        .chain(["--node-id", node_id, "--verbose"])
        .collect()
}

/// A Schedule manifest for the built-in `advance` agent; `body` starts at line 7.
fn schedule(name: &str, body: &str) -> String {
    format!("apiVersion: jaros/v1\nkind: Schedule\nmetadata:\n  name: {name}\nspec:\n  agent: advance\n{body}")
}

/// The example hive (without its own schedules) with `schedules` added.
fn hive_with(schedules: &[(&str, &str)]) -> Hive {
    let hive = example_hive();
    assert!(!hive.path().join("manifests/schedules").exists());
    for (name, body) in schedules {
        hive.write(
            &format!("manifests/schedules/{name}.yaml"),
            &schedule(name, body),
        );
    }
    hive
}

/// Every job file of schedule `name`, in any stage: (stage, job id).
fn jobs_of(data: &Path, name: &str) -> Vec<(String, String)> {
    let prefix = format!("sched-{name}-");
    let mut out = Vec::new();
    for stage in ["inbox", "claimed", "done", "failed"] {
        for e in std::fs::read_dir(data.join(stage))
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = file.strip_suffix(".json") {
                if id.starts_with(&prefix) {
                    out.push((stage.to_string(), id.to_string()));
                }
            }
        }
    }
    out
}

/// Distinct jobs of schedule `name`: a job moving between stages may show
/// in two of them for a moment.
fn count_of(data: &Path, name: &str) -> usize {
    let ids: BTreeSet<String> = jobs_of(data, name).into_iter().map(|(_, id)| id).collect();
    ids.len()
}

/// The slot a job id names: its `%Y%m%dT%H%M%SZ` suffix.
fn slot_of(id: &str) -> DateTime<Utc> {
    let stamp = &id[id.len() - 16..];
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .and_utc()
}

/// How many times each job ended, across every node's log.
fn ends_per_job(data: &Path) -> BTreeMap<String, usize> {
    let mut ends = BTreeMap::new();
    for entry in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if entry.path().extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        for r in read_log(&entry.path()).unwrap().records {
            if let Body::End { job, .. } = r.body {
                *ends.entry(job.to_string()).or_default() += 1;
            }
        }
    }
    ends
}

/// Asserts one job per slot after the nodes stopped: no id in two stages,
/// each job done and ended exactly once in the logs, or (fired as the last
/// node stopped) still in the inbox and never run. Returns the slots.
fn assert_one_job_per_slot(data: &Path, name: &str) -> Vec<DateTime<Utc>> {
    let jobs = jobs_of(data, name);
    let ids: BTreeSet<&str> = jobs.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), jobs.len(), "a job is in two stages: {jobs:?}");
    let ends = ends_per_job(data);
    for (stage, id) in &jobs {
        let expected = match stage.as_str() {
            "done" => Some(&1),
            "inbox" => None,
            _ => panic!("{id} is in {stage}/: {jobs:?}"),
        };
        assert_eq!(
            ends.get(id),
            expected,
            "{id} in {stage}/ ended {:?} times",
            ends.get(id)
        );
    }
    let slots: Vec<DateTime<Utc>> = ids.iter().map(|id| slot_of(id)).collect();
    let distinct: BTreeSet<_> = slots.iter().collect();
    assert_eq!(
        distinct.len(),
        slots.len(),
        "two jobs for one slot: {ids:?}"
    );
    slots
}

// ------------------------------------------------------------- validate

#[test]
fn validate_points_at_each_bad_trigger_word_for_word() {
    let hive = Hive::empty();
    let bad = [
        ("bad-cron", "  cron: '61 * * * *'\n"),
        ("no-day", "  cron: '0 0 31 2 *'\n"),
        (
            "bad-zone",
            "  cron: '0 3 * * *'\n  timezone: Mars/Olympus\n",
        ),
        ("past", "  at: '2020-01-01T09:00:00+01:00'\n"),
        ("no-offset", "  at: '2099-01-01 09:00'\n"),
        ("zero", "  every: 0s\n"),
        ("words", "  every: five minutes\n"),
        ("bad-jitter", "  every: 1m\n  jitter: soon\n"),
        ("both", "  every: 5m\n  cron: '@daily'\n"),
        ("neither", "  catch_up: all\n"),
    ];
    let good = [
        (
            "weekdays",
            "  cron: '30 2 * * MON-FRI'\n  timezone: Europe/Berlin\n  jitter: 5m\n",
        ),
        ("daily", "  cron: '@daily'\n  catch_up: once\n"),
        ("one-shot", "  at: '2099-12-01T09:00:00+01:00'\n"),
        ("later", "  every: 1h30m\n  enabled: false\n"),
    ];
    for (name, body) in bad.iter().chain(&good) {
        hive.write(
            &format!("manifests/schedules/{name}.yaml"),
            &schedule(name, body),
        );
    }
    let run = hive.jaros(&["validate"]).expect(1);
    assert_eq!(
        run.stdout(),
        "\
manifests/schedules/bad-cron.yaml:7:9: invalid cron expression '61 * * * *': minute 61 is out of range (0-59)
manifests/schedules/bad-jitter.yaml:8:11: invalid jitter 'soon': use a number followed by s, m, h or d, such as '30s', '5m' or '1h30m'
manifests/schedules/bad-zone.yaml:8:13: unknown time zone 'Mars/Olympus'; use an IANA name such as 'Europe/Berlin' or 'UTC'
manifests/schedules/both.yaml:6:3: a schedule needs exactly one of 'cron', 'every' or 'at'
manifests/schedules/neither.yaml:6:3: a schedule needs exactly one of 'cron', 'every' or 'at'
manifests/schedules/no-day.yaml:7:9: invalid cron expression '0 0 31 2 *': it names no date that exists
manifests/schedules/no-offset.yaml:7:7: invalid 'at' time '2099-01-01 09:00': use RFC 3339 with an offset, such as '2026-12-01T09:00:00+01:00'
manifests/schedules/past.yaml:7:7: 'at' 2020-01-01T09:00:00+01:00 is in the past; set a later time, or delete the schedule once it has fired
manifests/schedules/words.yaml:7:10: invalid interval 'five minutes': use a number followed by s, m, h or d, such as '30s', '5m' or '1h30m'
manifests/schedules/zero.yaml:7:10: interval '0s' must be greater than zero
10 errors
"
    );
    // --json carries the same positions.
    let v = hive.jaros(&["validate", "--json"]).expect(1).json();
    assert_eq!(
        v["errors"][0],
        serde_json::json!({
            "file": "manifests/schedules/bad-cron.yaml",
            "line": 7,
            "col": 9,
            "message": "invalid cron expression '61 * * * *': minute 61 is out of range (0-59)",
        })
    );
    // The good ones alone pass.
    for (name, _) in &bad {
        std::fs::remove_file(hive.path().join(format!("manifests/schedules/{name}.yaml"))).unwrap();
    }
    let ok = hive.jaros(&["validate"]).expect(0).stdout();
    assert!(ok.contains(", 4 Schedules, "), "{ok}");
}

// ---------------------------------------------------------------- nodes

#[test]
fn three_nodes_on_one_data_dir_fire_one_job_per_slot() {
    let hive = hive_with(&[("beat", "  every: 1s\n  input: {from: schedule}\n")]);
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(hive.path(), &args(id)))
        .collect();
    let data = hive.data();
    wait_until(Duration::from_secs(20), "the first scheduled job", || {
        count_of(&data, "beat") > 0
    });
    std::thread::sleep(Duration::from_secs(10));
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, id) in nodes.into_iter().zip(["n1", "n2", "n3"]) {
        let (code, log) = node.stop();
        assert_eq!(code, 0, "{log}");
        for line in log.lines() {
            if let Some((_, job)) = line.split_once("schedule 'beat' fired ") {
                fired
                    .entry(job.to_string())
                    .or_default()
                    .push(id.to_string());
            }
        }
    }
    // Each slot was won by exactly one node; the others found it taken.
    let twice: Vec<_> = fired.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "fired by several nodes: {twice:?}");
    let slots = assert_one_job_per_slot(&data, "beat");
    assert_eq!(fired.len(), slots.len());
    assert!(slots.len() >= 9, "only {} slots in 10 s", slots.len());
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(1),
            "a slot is missing: {slots:?}"
        );
    }
    let markers = std::fs::read_dir(data.join("schedules/slots"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(markers, slots.len());
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join(format!(
            "done/sched-beat-{}.json",
            slots[0].format("%Y%m%dT%H%M%SZ")
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(result["state"], "DONE", "{result}");
    hive.jaros(&["verify"]).expect(0);
}

#[test]
fn a_node_killed_right_after_writing_a_job_fires_nothing_twice_on_restart() {
    let hive = hive_with(&[("beat", "  every: 1s\n")]);
    let data = hive.data();
    // Two crashes left by an earlier run, a minute ago: one right after the
    // slot marker (no job yet), one right after the job (marker unpublished).
    let spec: jaros::schedule::ScheduleSpec =
        serde_json::from_value(serde_json::json!({"agent": "advance", "every": "1s"})).unwrap();
    let minute_ago = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap();
    let (lost, written) = (minute_ago, minute_ago + TimeDelta::seconds(1));
    for slot in [lost, written] {
        jaros::schedule::fire::claim_slot(&data, "beat", &spec, slot, slot)
            .unwrap()
            .expect("the slot is free");
    }
    let written_id = jaros::schedule::fire::slot_job_id("beat", written);
    let lost_id = jaros::schedule::fire::slot_job_id("beat", lost);
    std::fs::create_dir_all(data.join("inbox")).unwrap();
    std::fs::write(
        data.join(format!("inbox/{written_id}.json")),
        serde_json::json!({"id": written_id, "agent": "advance", "input": null}).to_string(),
    )
    .unwrap();

    let node = Node::start(hive.path(), &args("n1"));
    wait_until(Duration::from_secs(20), "three live slots", || {
        count_jobs(&data, "done") >= 5
    });
    // Kill the node the moment it has written a new job.
    let before = count_of(&data, "beat");
    let deadline = Instant::now() + Duration::from_secs(5);
    while count_of(&data, "beat") == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    node.signal("KILL");
    let mut node = node;
    let _ = common::wait_timeout(&mut node.child, Duration::from_secs(10));
    let first_log = node.log();
    assert!(
        first_log.contains(&format!("recovered scheduled job {lost_id}")),
        "{first_log}"
    );
    let at_kill = count_of(&data, "beat");

    let node = Node::start(hive.path(), &args("n1"));
    wait_until(Duration::from_secs(20), "slots after the restart", || {
        count_of(&data, "beat") >= at_kill + 3
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    let slots = assert_one_job_per_slot(&data, "beat");
    assert!(slots.contains(&lost), "the lost slot was recovered once");
    assert!(slots.contains(&written), "the written job ran once");
    assert!(!log.contains("recovered scheduled job"), "{log}");
    hive.jaros(&["verify"]).expect(0);
}

#[test]
fn disabling_or_deleting_a_schedule_takes_effect_on_the_running_node() {
    let hive = hive_with(&[("stays", "  every: 1s\n"), ("goes", "  every: 1s\n")]);
    let data = hive.data();
    let node = Node::start(hive.path(), &args("n1"));
    wait_until(Duration::from_secs(20), "both schedules to fire", || {
        count_of(&data, "stays") >= 2 && count_of(&data, "goes") >= 2
    });
    hive.write(
        "manifests/schedules/stays.yaml",
        &schedule("stays", "  every: 1s\n  enabled: false\n"),
    );
    std::fs::remove_file(hive.path().join("manifests/schedules/goes.yaml")).unwrap();
    wait_until(Duration::from_secs(20), "the edits to be seen", || {
        let log = node.log();
        log.contains("schedule 'stays': every 1s (disabled)")
            && log.contains("schedule 'goes' removed")
    });
    // A tick in flight while the edit landed may still fire one more slot.
    std::thread::sleep(Duration::from_millis(1200));
    let (stays, goes) = (count_of(&data, "stays"), count_of(&data, "goes"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count_of(&data, "stays"), stays, "{}", node.log());
    assert_eq!(count_of(&data, "goes"), goes, "{}", node.log());

    // The list says so, and names the last run's job.
    let v = hive.jaros(&["schedules", "--json"]).expect(0).json();
    let row = &v["schedules"][0];
    assert_eq!(row["name"], "stays");
    assert_eq!(row["enabled"], false);
    assert_eq!(row["next_run_utc"], serde_json::Value::Null);
    let last_job = row["last_job"].as_str().unwrap();
    assert!(data.join(format!("done/{last_job}.json")).exists(), "{v}");
    assert_eq!(
        row["last_run"].as_str().unwrap(),
        slot_of(last_job).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let text = hive.jaros(&["schedules"]).expect(0).stdout();
    assert!(
        text.starts_with(&format!(
            "stays  every 1s  disabled\n  last run  {}  job {last_job}\n  next run  none (disabled)\n",
            row["last_run"].as_str().unwrap()
        )),
        "{text}"
    );

    // Enabled again: it fires from now on, owing nothing from the pause.
    let paused_at = Utc::now();
    hive.write(
        "manifests/schedules/stays.yaml",
        &schedule("stays", "  every: 1s\n"),
    );
    wait_until(Duration::from_secs(20), "firing again", || {
        count_of(&data, "stays") >= stays + 2
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    let slots = assert_one_job_per_slot(&data, "stays");
    let resumed: Vec<_> = slots.iter().filter(|s| **s > paused_at).collect();
    let owed: Vec<_> = slots
        .iter()
        .filter(|s| **s > slot_of(last_job) && **s <= paused_at)
        .collect();
    assert!(owed.is_empty(), "slots of the pause fired: {owed:?}");
    assert!(resumed.len() >= 2, "{paused_at} {slots:?}\n{log}");
}

#[test]
fn a_broken_schedule_never_stops_the_others() {
    let hive = hive_with(&[
        ("good", "  every: 1s\n"),
        ("broken", "  cron: '61 * * * *'\n"),
        // Past one-shots, with and without a zone offset, load without error.
        ("fired", "  at: '2020-01-01T09:00:00+01:00'\n"),
        ("fired-utc", "  at: '2020-01-01T08:00:00Z'\n"),
    ]);
    let data = hive.data();
    let node = Node::start(hive.path(), &args("n1"));
    wait_until(Duration::from_secs(20), "the good schedule to fire", || {
        count_of(&data, "good") >= 2
    });
    let log = node.log();
    assert!(
        log.contains("schedule 'broken' in manifests/schedules/broken.yaml is skipped: spec.cron: invalid cron expression '61 * * * *': minute 61 is out of range (0-59); the other schedules keep firing"),
        "{log}"
    );
    assert!(
        log.contains("schedule 'fired': once at 2020-01-01T09:00:00+01:00"),
        "{log}"
    );

    // Breaking the good one's neighbour while the node runs: reported, skipped.
    hive.write(
        "manifests/schedules/fired.yaml",
        &schedule(
            "fired",
            "  at: '2020-01-01T09:00:00+01:00'\n  timezone: Nowhere/Else\n",
        ),
    );
    wait_until(Duration::from_secs(20), "the reload", || {
        node.log().contains("schedule 'fired' in manifests/schedules/fired.yaml is skipped: spec.timezone: unknown time zone 'Nowhere/Else'")
    });
    let after = count_of(&data, "good");
    wait_until(
        Duration::from_secs(20),
        "the good schedule to keep firing",
        || count_of(&data, "good") >= after + 2,
    );

    // Listed as broken; the exit code says something is wrong.
    let run = hive.jaros(&["schedules"]).expect(1);
    assert!(
        run.stdout().contains("broken  BROKEN (manifests/schedules/broken.yaml): spec.cron: invalid cron expression '61 * * * *': minute 61 is out of range (0-59)\n"),
        "{}",
        run.stdout()
    );
    let status = hive.jaros(&["status", "--json"]).expect(0).json();
    let names: Vec<&str> = status["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broken", "fired", "fired-utc", "good"]);
    let good = &status["schedules"][3];
    assert_eq!(good["trigger_words"], "every 1s");
    assert_eq!(good["error"], serde_json::Value::Null);
    assert!(good["last_job"]
        .as_str()
        .unwrap()
        .starts_with("sched-good-"));
    let human = hive.jaros(&["status"]).expect(0).stdout();
    assert!(human.contains("schedules:\n  broken  BROKEN"), "{human}");
    assert!(human.contains("  fired-utc  once at 2020-01-01T08:00:00Z  enabled\n    last run  never\n    next run  none (a one-shot that has passed)\n"), "{human}");
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert_one_job_per_slot(&data, "good");
    assert_eq!(count_of(&data, "fired") + count_of(&data, "fired-utc"), 0);
}

// ----------------------------------------------------------------- list

#[test]
fn schedules_lists_next_runs_in_their_time_zone_and_in_utc() {
    let hive = hive_with(&[
        (
            "nightly",
            "  cron: '30 2 * * *'\n  timezone: Europe/Berlin\n  jitter: 1m\n",
        ),
        ("paused", "  cron: '@hourly'\n  enabled: false\n"),
    ]);
    let v = hive.jaros(&["schedules", "--json"]).expect(0).json();
    let nightly = &v["schedules"][0];
    assert_eq!(
        nightly["trigger_words"],
        "every day at 02:30 (Europe/Berlin), up to 1m later"
    );
    assert_eq!(nightly["timezone"], "Europe/Berlin");
    assert_eq!(nightly["file"], "manifests/schedules/nightly.yaml");
    assert_eq!(nightly["last_run"], serde_json::Value::Null);
    let utc = DateTime::parse_from_rfc3339(nightly["next_run_utc"].as_str().unwrap()).unwrap();
    let local = DateTime::parse_from_rfc3339(nightly["next_run_local"].as_str().unwrap()).unwrap();
    assert_eq!(utc, local, "the same instant");
    assert!(
        [3600, 7200].contains(&local.offset().local_minus_utc()),
        "{local}"
    );
    // 02:30 up to a minute later; 03:00 on a spring-forward day.
    let wall = local.format("%H:%M").to_string();
    assert!(["02:30", "03:00"].contains(&wall.as_str()), "{local}");
    let text = hive.jaros(&["schedules"]).expect(0).stdout();
    assert!(
        text.starts_with(&format!(
            "nightly  every day at 02:30 (Europe/Berlin), up to 1m later  enabled\n  last run  never\n  next run  {} (Europe/Berlin) = {}\n",
            nightly["next_run_local"].as_str().unwrap(),
            nightly["next_run_utc"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(
        text.ends_with("paused  every hour at minute 0 (UTC)  disabled\n  last run  never\n  next run  none (disabled)\n"),
        "{text}"
    );
}
