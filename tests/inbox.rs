//! The inbox under hostile or unlucky input: special files, ids too long for
//! the names they derive, a finished job's id dropped in again (also one
//! another node's log gained after this node cached its listing), lineage a
//! file claims for itself, an input the log could not record as it is, and
//! claims another node finished meanwhile. Each
//! ends with a result or a refusal that says why, and the node runs on.

mod common;

use common::{count_jobs, example_hive, wait_until, Hive, Node};
use jaros::log::{read_log, Body};
use std::path::Path;
use std::time::Duration;

/// The longest job id (`jaros::ids::MAX_JOB_ID_BYTES`).
const MAX_ID: usize = jaros::ids::MAX_JOB_ID_BYTES;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    common::FAST
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

fn inbox(hive: &Hive) -> std::path::PathBuf {
    let dir = hive.data().join("inbox");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts a job file into the inbox as a submitter should: whole, by a rename
/// (a node may claim a file the moment its name appears).
fn drop_in(inbox: &Path, name: &str, text: &str) {
    let temp = inbox.parent().unwrap().join(".drop-in.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, inbox.join(name)).unwrap();
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every file of `failed/`, as (name, reason, file it rejected).
fn failures(hive: &Hive) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = std::fs::read_dir(hive.data().join("failed"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .map(|p| {
            let v = read_json(&p);
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                v["reason"].as_str().unwrap_or_default().to_string(),
                v["file"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The reason of the failure that rejected the file named `file`.
fn reason_for(hive: &Hive, file: &str) -> String {
    failures(hive)
        .into_iter()
        .find(|(name, _, f)| f == file || name == file)
        .map(|(_, reason, _)| reason)
        .unwrap_or_else(|| panic!("no failure for {file}: {:?}", failures(hive)))
}

/// Job files (not leases, beats or temp files) left in `claimed/`.
fn claimed_files(hive: &Hive) -> Vec<String> {
    std::fs::read_dir(hive.data().join("claimed"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// `job` records per job id, across every log.
fn job_records(data: &Path, id: &str) -> Vec<Body> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if entry.path().extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for r in read_log(&entry.path()).unwrap().records {
            if matches!(&r.body, Body::Job { job, .. } if job.as_str() == id) {
                out.push(r.body);
            }
        }
    }
    out
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn special_files_in_the_inbox_fail_with_what_they_are_and_the_node_runs_on_and_stops() {
    let hive = example_hive();
    let inbox = inbox(&hive);
    // Three FIFOs for a pool of two: each would hold a worker forever.
    for name in ["fifo1", "fifo2", "fifo3"] {
        mkfifo(&inbox.join(format!("{name}.json")));
    }
    // A link to an endless device: the node must not follow it.
    std::os::unix::fs::symlink("/dev/zero", inbox.join("zero.json")).unwrap();
    std::fs::create_dir(inbox.join("x.json")).unwrap();
    std::fs::write(inbox.join("x.json/inside"), b"a directory with content").unwrap();
    // A valid job file outside the data dir, linked into the inbox.
    let outside = hive.path().join("outside.json");
    std::fs::write(&outside, r#"{"id":"outside","agent":"advance","input":{}}"#).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("outside.json")).unwrap();

    let node = Node::start(hive.path(), &args(&["--node-id", "n1", "--pool", "2"]));
    let run = hive
        .jaros(&["submit", "advance", "--id", "after", "--wait", "30"])
        .expect(0);
    assert_eq!(run.json()["state"], "DONE");
    wait_until(
        Duration::from_secs(20),
        "every special file handled",
        || failures(&hive).len() == 6,
    );
    for name in ["fifo1", "fifo2", "fifo3"] {
        let reason = reason_for(&hive, &format!("{name}.json"));
        assert_eq!(
            reason,
            "rejected job file: it is a FIFO (named pipe), not a regular file; a job file is a regular file holding a JSON object",
            "{name}"
        );
    }
    for name in ["zero", "outside"] {
        let reason = reason_for(&hive, &format!("{name}.json"));
        assert!(
            reason.contains("it is a symbolic link, not a regular file"),
            "{name}: {reason}"
        );
    }
    let reason = reason_for(&hive, "x.json");
    assert!(
        reason.contains("it is a directory, not a regular file"),
        "{reason}"
    );
    assert!(
        job_records(&hive.data(), "outside").is_empty(),
        "the linked job ran"
    );
    assert!(!hive.data().join("done/outside.json").exists());
    assert!(std::fs::read_to_string(&outside)
        .unwrap()
        .contains("outside"));
    wait_until(Duration::from_secs(20), "the claims to be removed", || {
        claimed_files(&hive).is_empty()
    });
    assert!(!inbox.join("x.json").exists() && !hive.data().join("claimed/x.json").exists());
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("out of memory"), "{log}");
}

/// A template agent that hands its job to `advance`: lineage made by the
/// runtime.
fn passer_hive() -> Hive {
    let hive = example_hive();
    hive.write(
        "manifests/roles/passer.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: passer\nspec:\n  types: [handoff, advance]\n  handoff: [advance]\n",
    );
    hive.write(
        "manifests/agents/passer.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: passer\nspec:\n  role: passer\n  template: agents/passer.j2\n",
    );
    hive.write(
        "agents/passer.j2",
        r#"[{"type": "handoff", "payload": {"agent": "advance", "input": {"from": "passer"}}}]"#,
    );
    hive.jaros(&["validate"]).expect(0);
    hive
}

#[test]
fn ids_too_long_for_their_file_names_fail_under_a_safe_name_and_the_longest_allowed_runs() {
    let hive = passer_hive();
    let inbox = inbox(&hive);
    let id250 = "a".repeat(250);
    let id129 = "b".repeat(129);
    for id in [&id250, &id129] {
        std::fs::write(
            inbox.join(format!("{id}.json")),
            format!(r#"{{"id":"{id}","agent":"advance","input":{{}}}}"#),
        )
        .unwrap();
    }
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    // The longest id the inbox accepts runs, and so does its hand-off child.
    let longest = "c".repeat(MAX_ID);
    let run = hive
        .jaros(&["submit", "passer", "--id", &longest, "--wait", "30"])
        .expect(0);
    assert_eq!(run.json()["state"], "DONE");
    let child = run.json()["result"]["results"][0]["result"]["job"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(child.len() <= MAX_ID, "{child}");
    hive.jaros(&["result", &child, "--wait", "30"]).expect(0);
    // One past it: refused by submit, and failed by the node.
    let too_long = "d".repeat(MAX_ID + 1);
    let refused = hive
        .jaros(&["submit", "advance", "--id", &too_long])
        .expect(2);
    assert!(
        refused.stderr().contains("longer than 128 bytes"),
        "{}",
        refused.stderr()
    );
    wait_until(Duration::from_secs(20), "both long ids failed", || {
        failures(&hive).len() == 2
    });
    for (name, reason, file) in failures(&hive) {
        assert!(name.starts_with('_') && name.len() < 64, "{name}");
        assert!(file == format!("{id250}.json") || file == format!("{id129}.json"));
        assert!(reason.contains("is longer than 128 bytes"), "{reason}");
    }
    wait_until(Duration::from_secs(20), "the claims to be removed", || {
        claimed_files(&hive).is_empty()
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("too long"), "{log}");
    hive.jaros(&["replay"]).expect(0);
}

/// 9007199254740993 is no double: the log would record the job's input as
/// 9007199254740992, so the job file is failed with where the number is.
/// 9007199254740994 is a double, and its job runs.
#[test]
fn an_input_integer_no_double_holds_fails_its_file_and_a_double_runs() {
    let hive = example_hive();
    let inbox = inbox(&hive);
    drop_in(
        &inbox,
        "odd.json",
        r#"{"id":"odd","agent":"advance","input":{"account":[1,9007199254740993]}}"#,
    );
    drop_in(
        &inbox,
        "even.json",
        r#"{"id":"even","agent":"advance","input":{"account":[1,9007199254740994]}}"#,
    );
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    let even = hive.jaros(&["result", "even", "--wait", "30"]).expect(0);
    assert_eq!(even.json()["state"], "DONE", "{}", even.context());
    wait_until(Duration::from_secs(20), "odd.json to fail", || {
        !failures(&hive).is_empty()
    });
    let reason = reason_for(&hive, "odd.json");
    assert!(
        reason.contains("/account/1 is 9007199254740993, an integer no double holds"),
        "{reason}"
    );
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(job_records(&hive.data(), "odd").is_empty(), "odd never ran");
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn a_finished_jobs_id_dropped_into_the_inbox_is_refused_and_never_runs_twice() {
    let hive = example_hive();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    hive.jaros(&["submit", "advance", "--id", "f1", "--wait", "30"])
        .expect(0);
    hive.jaros(&["submit", "advance", "--id", "f2", "--wait", "30"])
        .expect(0);
    let inbox = inbox(&hive);
    // The same id again, valid; then an invalid file with a finished id.
    drop_in(
        &inbox,
        "f1.json",
        r#"{"id":"f1","agent":"advance","input":{"again":true}}"#,
    );
    wait_until(
        Duration::from_secs(20),
        "the valid duplicate refused",
        || failures(&hive).len() == 1,
    );
    drop_in(&inbox, "f2.json", "{not json");
    wait_until(
        Duration::from_secs(20),
        "the invalid duplicate refused",
        || failures(&hive).len() == 2,
    );
    // A result removed (as retention does): the log still knows.
    std::fs::remove_file(hive.data().join("done/f1.json")).unwrap();
    drop_in(
        &inbox,
        "f1.json",
        r#"{"id":"f1","agent":"advance","input":{"third":true}}"#,
    );
    wait_until(Duration::from_secs(20), "the third copy refused", || {
        failures(&hive).len() == 3 && count_jobs(&hive.data(), "inbox") == 0
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    for (name, reason, _) in failures(&hive) {
        assert!(name.starts_with("_rejected-"), "{name}: {reason}");
        assert!(
            reason.contains("has run already") && reason.contains("submit it under a new id"),
            "{reason}"
        );
    }
    assert!(!hive.data().join("failed/f1.json").exists());
    assert!(!hive.data().join("failed/f2.json").exists());
    assert!(hive.data().join("done/f2.json").exists());
    assert_eq!(job_records(&hive.data(), "f1").len(), 1);
    assert_eq!(job_records(&hive.data(), "f2").len(), 1);
    assert_eq!(claimed_files(&hive), Vec::<String>::new());
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn an_id_another_nodes_log_gained_after_the_node_cached_its_listing_is_refused() {
    let hive = example_hive();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    hive.jaros(&["submit", "advance", "--id", "g1", "--wait", "30"])
        .expect(0);
    // Past the time the node lists `log/` at every claim: it now lists it
    // again only when the directory changes.
    std::thread::sleep(Duration::from_secs(3));
    hive.jaros(&["submit", "advance", "--id", "g2", "--wait", "30"])
        .expect(0);
    // A second node's log appears and ends job g3 (its result not written,
    // or removed by retention).
    std::fs::write(
        hive.data().join("log/n2.jsonl"),
        "{\"job\":\"g3\",\"kind\":\"end\",\"seq\":1}\n",
    )
    .unwrap();
    drop_in(
        &inbox(&hive),
        "g3.json",
        r#"{"id":"g3","agent":"advance","input":{}}"#,
    );
    wait_until(Duration::from_secs(20), "g3 refused", || {
        failures(&hive).len() == 1 && count_jobs(&hive.data(), "inbox") == 0
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    let (name, reason, _) = &failures(&hive)[0];
    assert!(name.starts_with("_rejected-"), "{name}: {reason}");
    assert!(reason.contains("a log records its end"), "{reason}");
    assert!(!hive.data().join("done/g3.json").exists());
}

#[test]
fn lineage_a_file_claims_for_itself_is_refused_and_a_real_handoff_child_runs() {
    let hive = passer_hive();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    let run = hive
        .jaros(&["submit", "passer", "--id", "p1", "--wait", "30"])
        .expect(0);
    let child = run.json()["result"]["results"][0]["result"]["job"]
        .as_str()
        .unwrap()
        .to_string();
    let child_result = hive
        .jaros(&["result", &child, "--wait", "30"])
        .expect(0)
        .json();
    assert_eq!(child_result["state"], "DONE");
    let inbox = inbox(&hive);
    // A hand-off that never happened; and a real hand-off's links copied
    // onto another id.
    drop_in(
        &inbox,
        "forged.json",
        r#"{"id":"forged","agent":"advance","input":{},"parent":"p0","via":"p0#1.0"}"#,
    );
    drop_in(
        &inbox,
        "copied.json",
        r#"{"id":"copied","agent":"advance","input":{"from":"passer"},"parent":"p1","via":"p1#1.0"}"#,
    );
    // A root job that gives itself a place in a tree.
    drop_in(
        &inbox,
        "placed.json",
        r#"{"id":"placed","agent":"advance","input":{},"depth":0,"tree_jobs":64}"#,
    );
    wait_until(Duration::from_secs(20), "all three refused", || {
        failures(&hive).len() == 3
    });
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    for id in ["forged", "copied", "placed"] {
        let reason = reason_for(&hive, &format!("{id}.json"));
        assert!(
            reason.contains("lineage is set by the runtime only"),
            "{id}: {reason}"
        );
        assert!(job_records(&hive.data(), id).is_empty(), "{id} ran");
    }
    let records = job_records(&hive.data(), &child);
    assert!(
        matches!(&records[..], [Body::Job { parent: Some(p), .. }] if p.as_str() == "p1"),
        "{records:?}"
    );
    let blame = hive.jaros(&["blame", &child, "--json"]).expect(0).json();
    assert_eq!(blame["chain"][0]["job"], "p1", "{blame}");
    hive.jaros(&["replay"]).expect(0);
}

/// A hive whose `talker` agent waits on a model server that never answers,
/// besides the built-in `advance`.
fn talker_hive(port: u16) -> Hive {
    let hive = Hive::empty();
    hive.write("manifests/node.yaml", &format!("apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    p:\n      kind: openai\n      base_url: http://127.0.0.1:{port}\n      max_retries: 0\n      timeout: 4s\n"));
    hive.write(
        "manifests/roles/talker.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: talker\nspec:\n  types: [advance]\n",
    );
    hive.write("manifests/agents/talker.yaml", "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: talker\nspec:\n  role: talker\n  model:\n    provider: p\n    model: m\n  prompt: agents/talker.j2\n");
    hive.write("agents/talker.j2", "hello");
    hive.jaros(&["validate"]).expect(0);
    hive
}

#[test]
fn a_queued_claim_another_node_finished_meanwhile_is_dropped_not_failed() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hive = talker_hive(silent.local_addr().unwrap().port());
    let a = Node::start(hive.path(), &args(&["--node-id", "a", "--pool", "1"]));
    // A quick job first: the node then claims ahead of its one worker, so
    // a job submitted while the slow one runs waits in its queue. Whether
    // the last job counted as quick depends on the machine's load: try
    // again until the claim ahead is seen.
    let claimed = |id: &str| hive.data().join(format!("claimed/{id}.json")).exists();
    let ended = |id: &str| {
        ["done", "failed"]
            .iter()
            .any(|stage| hive.data().join(format!("{stage}/{id}.json")).exists())
    };
    let mut attempt = 0;
    let (slow, queued) = loop {
        attempt += 1;
        assert!(attempt <= 5, "the node never claimed ahead of its worker");
        let (quick, slow, queued) = (
            format!("q{attempt}"),
            format!("slow{attempt}"),
            format!("queued{attempt}"),
        );
        hive.jaros(&["submit", "advance", "--id", &quick, "--wait", "30"])
            .expect(0);
        hive.jaros(&["submit", "talker", "--id", &slow]).expect(0);
        wait_until(Duration::from_secs(20), "the slow job claimed", || {
            claimed(&slow)
        });
        hive.jaros(&["submit", "advance", "--id", &queued])
            .expect(0);
        wait_until(Duration::from_secs(30), "the next job claimed", || {
            claimed(&queued) || ended(&queued)
        });
        // Claimed while the slow job still runs (not in the moment between
        // its result and the retiring of its claim).
        if claimed(&queued) && claimed(&slow) && !ended(&slow) {
            break (slow, queued);
        }
        wait_until(Duration::from_secs(30), "both jobs to end", || {
            ended(&slow) && ended(&queued)
        });
    };
    a.signal("STOP");
    // Node b takes both over once a's lease has expired, and finishes the
    // queued one.
    let b = Node::start(hive.path(), &args(&["--node-id", "b"]));
    let done = hive
        .jaros(&["result", &queued, "--wait", "30"])
        .expect(0)
        .json();
    assert_eq!(done["log"]["node"], "b");
    a.signal("CONT");
    // a's worker comes back to the claim it queued before the pause.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !a.log().contains(&queued) {
        assert!(
            std::time::Instant::now() < deadline,
            "a did not deal with its queued claim {queued}:\n{}\n--- b:\n{}\n--- status:\n{}\n--- files:\n{}",
            a.log(),
            b.log(),
            hive.jaros(&["status", "--json"]).stdout(),
            common::walk(&hive.data()).join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, log_a) = a.stop();
    assert_eq!(code, 0, "{log_a}");
    assert!(
        log_a.contains(&format!("dropped its claim on {queued}")),
        "{log_a}"
    );
    wait_until(Duration::from_secs(30), "the slow job to end", || {
        ended(&slow)
    });
    let (code, log_b) = b.stop();
    assert_eq!(code, 0, "{log_b}");
    for (_, reason, _) in failures(&hive) {
        assert!(
            !reason.contains(&hive.path().display().to_string()),
            "{reason}"
        );
    }
    for id in (1..=attempt)
        .map(|n| format!("q{n}"))
        .chain([queued.clone()])
    {
        assert!(hive.data().join(format!("done/{id}.json")).exists(), "{id}");
        assert!(
            !hive.data().join(format!("failed/{id}.json")).exists(),
            "{id} has both a done and a failed result: {}",
            std::fs::read_to_string(hive.data().join(format!("failed/{id}.json"))).unwrap()
        );
    }
    drop(silent);
}
