//! Pauses past the lease: a node stopped (SIGSTOP) longer than its lease at
//! the worst moments, another node taking its jobs over, the node continued
//! (SIGCONT). The pause lands where it must through the node's fault points
//! (`JAROS_FAULT`, see `src/node/fault.rs`) or, inside a tool run, through
//! the log. After each: every job has exactly one result, no decision has
//! two effects that count, no job two ends that count, and `jaros verify`
//! and `jaros replay` pass.
//!
//! No timed assertion: every wait is a bounded loop for an event (a marker
//! printed, a takeover on disk, a result written).

mod common;

use common::{bin, count_jobs, example_hive, wait_until, Hive, FAST};
use jaros::log::{read_log, Body};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Longest any one wait of this suite may take.
const WAIT: Duration = Duration::from_secs(90);

/// A node of this suite: `jaros serve` with FAST leases and, optionally, a
/// fault point armed.
struct Node {
    child: Child,
    stderr: PathBuf,
}

impl Node {
    fn start(hive: &Hive, id: &str, fault: Option<&str>) -> Node {
        let stderr = hive.path().join(format!("{id}.stderr"));
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(FAST)
            .args(["--node-id", id, "--pool", "2"])
            .current_dir(hive.path())
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .env_remove("JAROS_FAULT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(fault) = fault {
            cmd.env("JAROS_FAULT", fault);
        }
        Node {
            child: cmd.spawn().unwrap(),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    /// The job the armed fault point stopped the node on, once it has.
    fn wait_for_fault(&self) -> String {
        let mut job = None;
        wait_until(WAIT, "the fault point to stop the node", || {
            job = self.log().lines().find_map(|l| {
                let rest = l.split("reached (job ").nth(1)?;
                Some(rest.split(')').next()?.to_string())
            });
            job.is_some()
        });
        self.wait_for_stop();
        job.unwrap()
    }

    /// Waits until the process is stopped (`T` in /proc/PID/stat).
    fn wait_for_stop(&self) {
        let stat = format!("/proc/{}/stat", self.child.id());
        wait_until(WAIT, "the node to stop", || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
        });
    }

    /// SIGTERM, and the exit code (a stopped node is continued first).
    fn stop(mut self) -> (i32, String) {
        self.signal("CONT");
        self.signal("TERM");
        let code = common::wait_timeout(&mut self.child, Duration::from_secs(60));
        (code, self.log())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Quietly: the node may have exited already.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example hive plus `napper`: a tool decision (`nap`, an executable
/// that sleeps `secs` seconds and prints a result) and an advance.
fn hive_with_a_slow_tool(secs: u32) -> Hive {
    let hive = example_hive();
    hive.write(
        "manifests/tools/nap.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: nap\nspec:\n  type: nap\n  description: Sleeps.\n  command: tools/nap.sh\n  timeout: 30s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write(
        "tools/nap.sh",
        &format!("#!/bin/sh\ncat >/dev/null\nsleep {secs}\necho '{{\"slept\": {secs}}}'\n"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        hive.path().join("tools/nap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    hive.write("manifests/roles/napper.yaml", "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: napper\nspec:\n  types: [nap, advance]\n");
    hive.write(
        "manifests/agents/napper.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: napper\nspec:\n  role: napper\n  template: agents/napper.j2\n",
    );
    hive.write(
        "agents/napper.j2",
        r#"[{"type": "nap", "payload": {}}, {"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
    );
    hive.jaros(&["validate"]).expect(0);
    hive
}

fn submit(hive: &Hive, agent: &str, ids: &[String]) {
    for id in ids {
        hive.jaros(&["submit", agent, "--id", id, "--input", "{}"])
            .expect(0);
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Waits until another node than the paused one has taken `job` over: a
/// later epoch of its lease exists, or its claim is gone (finished).
fn wait_for_takeover(hive: &Hive, job: &str) {
    let claimed = hive.data().join("claimed");
    wait_until(WAIT, "another node to take the job over", || {
        claimed.join(format!("{job}.lease.2")).exists()
            || !claimed.join(format!("{job}.json")).exists()
    });
}

/// Waits until node `b`'s log holds a record of `job` under a later epoch
/// than the first.
fn wait_for_a_record_of_the_new_owner(hive: &Hive, job: &str) {
    let log = hive.data().join("log/b.jsonl");
    wait_until(WAIT, "the new owner's first record of the job", || {
        read_log(&log).is_ok_and(|l| {
            l.records
                .iter()
                .any(|r| r.epoch >= 2 && r.body.job_at().is_some_and(|(j, _)| j.as_str() == job))
        })
    });
}

fn wait_for_all(hive: &Hive, n: usize) {
    wait_until(WAIT, "every job to have a result", || {
        count_jobs(&hive.data(), "done") + count_jobs(&hive.data(), "failed") >= n
    });
    wait_until(WAIT, "every claim to be retired", || {
        count_jobs(&hive.data(), "claimed") == 0
    });
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    match name.starts_with('_') {
                        true => format!(
                            "{name}: {}",
                            std::fs::read_to_string(e.path()).unwrap_or_default()
                        ),
                        false => name,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What counts in the logs, the takeover rule applied: per job, its ends;
/// per decision, its effects; and the records voided.
#[derive(Default, Debug)]
struct Counted {
    ends: HashMap<String, usize>,
    effects: HashMap<String, usize>,
    voided: usize,
}

fn counted(data: &Path) -> Counted {
    let mut per_job: BTreeMap<String, Vec<(u64, u32, Body)>> = BTreeMap::new();
    for entry in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if entry.path().extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for r in read_log(&entry.path()).unwrap().records {
            if let Some((job, at)) = r.body.job_at() {
                per_job
                    .entry(job.to_string())
                    .or_default()
                    .push((r.epoch, at, r.body.clone()));
            }
        }
    }
    let mut out = Counted::default();
    for (job, mut records) in per_job {
        records.sort_by_key(|(_, at, _)| *at);
        let keys: Vec<(u64, u32)> = records.iter().map(|(e, a, _)| (*e, *a)).collect();
        for ((_, _, body), void) in records.iter().zip(jaros::takeover::voided(&keys)) {
            if void {
                out.voided += 1;
                continue;
            }
            match body {
                Body::End { .. } => *out.ends.entry(job.clone()).or_default() += 1,
                Body::Effect { decision, .. } => {
                    *out.effects.entry(decision.to_string()).or_default() += 1
                }
                _ => {}
            }
        }
    }
    out
}

/// Everything that must hold after a pause: one result per job (never
/// done and failed), one counted end per job, one counted effect per
/// decision, and verify and replay pass on the logs as they are.
fn assert_exactly_once(hive: &Hive, jobs: &[String]) -> Counted {
    let data = hive.data();
    for job in jobs {
        let done = data.join(format!("done/{job}.json")).exists();
        let failed = data.join(format!("failed/{job}.json")).exists();
        assert!(done ^ failed, "{job}: done {done}, failed {failed}");
    }
    assert_eq!(
        count_jobs(&data, "done") + count_jobs(&data, "failed"),
        jobs.len(),
        "results: {:?} {:?}",
        listing(&data.join("done")),
        listing(&data.join("failed"))
    );
    let c = counted(&data);
    for job in jobs {
        assert_eq!(c.ends.get(job), Some(&1), "{job} ends that count: {c:?}");
    }
    let twice: Vec<_> = c.effects.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "decisions with two effects: {twice:?}");
    let verify = hive.jaros(&["verify"]);
    assert_eq!(verify.code(), 0, "{}", verify.context());
    let replay = hive.jaros(&["replay", "--json"]);
    assert_eq!(replay.code(), 0, "{}", replay.context());
    let report = replay.json();
    assert_eq!(report["byte_identical"], true, "{report}");
    assert_eq!(report["jobs"], jobs.len() as u64, "{report}");
    assert_eq!(report["voided_records"], c.voided as u64, "{report}");
    c
}

/// The common course: node `a` with `fault` armed works `jobs` until the
/// fault stops it; node `b` starts, takes the stopped job over (and the rest
/// of a's, whose leases lapse with it); `a` is continued; both finish.
fn pause_past_the_lease(hive: &Hive, fault: &str, agent: &str, jobs: &[String]) -> String {
    pause_past_the_lease_until(hive, fault, agent, jobs, wait_for_takeover)
}

/// [`pause_past_the_lease`], continuing `a` once `taken(hive, job)` says
/// the new owner has got far enough with the stopped job.
fn pause_past_the_lease_until(
    hive: &Hive,
    fault: &str,
    agent: &str,
    jobs: &[String],
    taken: fn(&Hive, &str),
) -> String {
    submit(hive, agent, jobs);
    let a = Node::start(hive, "a", Some(fault));
    let job = a.wait_for_fault();
    let b = Node::start(hive, "b", None);
    taken(hive, &job);
    a.signal("CONT");
    wait_for_all(hive, jobs.len());
    let (code_b, log_b) = b.stop();
    let (code_a, log_a) = a.stop();
    assert_eq!(code_a, 0, "{log_a}");
    assert_eq!(code_b, 0, "{log_b}");
    log_a
}

#[test]
fn a_node_paused_while_it_holds_claims_runs_none_of_them_after() {
    let hive = example_hive();
    let jobs = ids("c", 6);
    let log_a = pause_past_the_lease(&hive, "pause-holding-claims", "advance", &jobs);
    assert!(log_a.contains("lost"), "{log_a}");
    assert_exactly_once(&hive, &jobs);
}

#[test]
fn a_record_after_a_fence_check_and_a_pause_is_void() {
    let hive = example_hive();
    let jobs = ids("r", 4);
    // `a` is continued only once `b`'s first record of the job is in b's
    // log: a's record, landing before b had read the job's history, would
    // be history b resumes from, not a record to void.
    let log_a = pause_past_the_lease_until(
        &hive,
        "pause-after-fence",
        "advance",
        &jobs,
        wait_for_a_record_of_the_new_owner,
    );
    assert!(log_a.contains("lost the lease"), "{log_a}");
    let c = assert_exactly_once(&hive, &jobs);
    // The job record the paused node wrote after the takeover is in its
    // log, intact, and voided by the new owner's first record.
    assert!(c.voided >= 1, "{c:?}");
    let verify = hive.jaros(&["verify"]).expect(0).stdout();
    assert!(verify.contains("voided"), "{verify}");
    assert_takeovers_in_metrics(&hive);
}

/// `jaros metrics` counts the takeover by `b` (none by `a`) and a claim
/// for each lease epoch of a job that the logs' records carry.
fn assert_takeovers_in_metrics(hive: &Hive) {
    let metrics = hive.jaros(&["metrics"]).expect(0).stdout();
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let taken = value("jaros_takeovers_total{node=\"b\"}");
    assert!(taken.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(
        value("jaros_takeovers_total{node=\"a\"}"),
        None,
        "{metrics}"
    );
    let mut epochs: BTreeMap<String, std::collections::BTreeSet<(String, u64)>> = BTreeMap::new();
    for node in ["a", "b"] {
        let log = hive.data().join(format!("log/{node}.jsonl"));
        for r in read_log(&log).unwrap().records {
            if let (Some((job, _)), true) = (r.body.job_at(), r.epoch > 0) {
                epochs
                    .entry(node.to_string())
                    .or_default()
                    .insert((job.to_string(), r.epoch));
            }
        }
    }
    // An epoch is one node's: a claim counts once, for its holder.
    for (node, held) in &epochs {
        assert_eq!(
            value(&format!("jaros_claims_total{{node=\"{node}\"}}")),
            Some(held.len() as f64),
            "{node}: {metrics}"
        );
    }
}

/// How many times a tool process was started for `decision`, from every
/// node's audit log (an `allowed` entry goes in just before each start).
fn tool_starts(data: &Path, decision: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(data.join("audit")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .flat_map(|e| read_log(&e.path()).unwrap().records)
        .filter(|r| {
            matches!(&r.body, Body::Audit { decision: d, verdict, .. }
                if d.as_str() == decision && verdict == "allowed")
        })
        .count()
}

#[test]
fn an_effect_is_not_started_by_a_node_that_lost_its_job_during_a_pause() {
    // Fences passed by the first job: its record (1), its tool decision (2),
    // the start of the tool's effect (3). Paused after the second, it
    // records the decision when continued, and must then not start the
    // tool: the new owner does (the pause between the third check and the
    // start is the window the takeover rule covers: the tool runs twice,
    // at least once being the promise).
    let hive = hive_with_a_slow_tool(0);
    let jobs = ids("e", 1);
    let log_a = pause_past_the_lease(&hive, "pause-after-fence:2", "napper", &jobs);
    assert!(log_a.contains("lost the lease"), "{log_a}");
    assert_exactly_once(&hive, &jobs);
    // Only the new owner started the tool.
    assert_eq!(tool_starts(&hive.data(), "e0#1.0"), 1);
}

#[test]
fn a_node_paused_inside_a_tool_run_records_nothing_of_it_after() {
    let hive = hive_with_a_slow_tool(2);
    let jobs = ids("t", 1);
    submit(&hive, "napper", &jobs);
    let a = Node::start(&hive, "a", None);
    // The tool's decision is durable before the tool starts: once it is in
    // the log, the tool is running (for two seconds).
    let log = hive.data().join("log/a.jsonl");
    wait_until(WAIT, "the tool's decision", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"type\":\"nap\""))
    });
    a.signal("STOP");
    a.wait_for_stop();
    let b = Node::start(&hive, "b", None);
    wait_for_takeover(&hive, "t0");
    a.signal("CONT");
    wait_for_all(&hive, jobs.len());
    let (code_b, log_b) = b.stop();
    let (code_a, log_a) = a.stop();
    assert_eq!((code_a, code_b), (0, 0), "{log_a}\n{log_b}");
    assert_exactly_once(&hive, &jobs);
    // At least once (the paused node's run was never recorded, so the new
    // owner ran it again), and never a third time.
    let starts = tool_starts(&hive.data(), "t0#1.0");
    assert!((1..=2).contains(&starts), "{starts} starts");
}

#[test]
fn a_node_paused_about_to_publish_leaves_the_result_to_the_new_owner() {
    let hive = example_hive();
    let jobs = ids("p", 3);
    let log_a = pause_past_the_lease(&hive, "pause-before-publish", "advance", &jobs);
    assert!(
        log_a.contains("before publishing its result"),
        "the paused node published after losing the job: {log_a}"
    );
    assert_exactly_once(&hive, &jobs);
}
