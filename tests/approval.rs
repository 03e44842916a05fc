//! Human approval end to end: the role's `approvals:` rules checked by
//! `jaros validate` with positions and shown by the plan; requests listed;
//! verdicts given exactly once, by approvers only; hand-written or malformed
//! verdict files refused. See docs/approval.md.
mod common;
use common::Hive;

/// A hive with role `clerk` granting `fs.write` and `handoff` (to `billing`)
/// with `approvals` as given, and template agents `clerk` and `billing`.
fn hive(approvals: &str) -> Hive {
    let hive = Hive::empty();
    hive.write(
        "manifests/hive.yaml",
        &format!(
            "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: clerk\nspec:\n  types: [fs.write, handoff, advance]\n  write: [\"out/**\"]\n  handoff: [billing]\n  approvals:\n{approvals}\n---\n\
             apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: clerk\nspec:\n  role: clerk\n  template: agents/clerk.j2\n---\n\
             apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: billing\nspec:\n  role: clerk\n  template: agents/billing.j2\n"
        ),
    );
    hive.write(
        "agents/clerk.j2",
        r#"[{"type": "handoff", "payload": {"agent": "billing", "input": {"amount": {{ input.amount | default(0) }}}}}]"#,
    );
    hive.write(
        "agents/billing.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
    );
    hive
}

const GOOD: &str = "    - type: handoff\n      targets: [billing]\n      when: \"input.amount > 100\"\n      approvers: [ops-lead, finance]\n      expires: 4h";

fn errors(hive: &Hive) -> String {
    hive.jaros(&["validate"]).expect(1).stdout()
}

#[test]
fn a_valid_approval_rule_validates_and_the_plan_shows_it() {
    let hive = hive(GOOD);
    hive.jaros(&["validate"]).expect(0);
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    let rule = &plan["plan"]["roles"]["clerk"]["approvals"][0];
    assert_eq!(rule["type"], "handoff", "{plan}");
    assert_eq!(rule["when"], "input.amount > 100");
    assert_eq!(rule["approvers"][1], "finance");
    assert_eq!(rule["expires_ms"], 4 * 3600 * 1000);
    let text = hive.jaros(&["plan"]).expect(0).stdout();
    assert!(
        text.contains("approval") && text.contains("ops-lead"),
        "the plan text shows approvals:\n{text}"
    );
}

#[test]
fn a_bad_payload_rule_is_reported_at_the_rule() {
    let hive = hive(&GOOD.replace("input.amount > 100", "input.amount >> 100"));
    assert_eq!(
        errors(&hive),
        "manifests/hive.yaml:12:13: rule 'input.amount >> 100': expected a literal; write one comparison such as 'amount > 100' or 'tier == \"gold\"': a field path, one of > >= < <= == !=, and a number, a double-quoted string, true, false or null (at character 15)\n1 error\n"
    );
}

#[test]
fn bad_approvers_types_targets_and_durations_are_reported_at_each() {
    let hive = hive(
        "    - type: fs.read\n      approvers: []\n    - type: advance\n      targets: [billing]\n      approvers: [ops, \"bad name\", ops]\n      expires: 40d\n    - type: handoff\n      targets: [nobody]\n      paths: [\"out/**\"]\n      approvers: [ops]",
    );
    let out = errors(&hive);
    for expected in [
        "manifests/hive.yaml:10:13: approval rule for 'fs.read', which this role does not grant",
        "manifests/hive.yaml:11:18: an approval rule needs at least one approver, by name",
        "manifests/hive.yaml:13:16: 'targets' narrows only hand-offs; 'advance' hands off to no one",
        "manifests/hive.yaml:14:24: approver 'bad name' may hold only",
        "manifests/hive.yaml:14:36: approver 'ops' is listed twice",
        "manifests/hive.yaml:15:16: expires '40d' must be from 1s to 30d",
        "manifests/hive.yaml:17:17: hand-off target 'nobody' is not an agent",
        "manifests/hive.yaml:18:14: 'paths' narrows only decisions that write a path",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), 9, "{out}");
}

#[test]
fn a_duration_that_does_not_parse_is_reported_at_the_value() {
    let hive = hive(&GOOD.replace("4h", "soon"));
    assert_eq!(
        errors(&hive),
        "manifests/hive.yaml:14:16: spec.approvals[0].expires 'soon' is not a duration; write whole numbers with units d, h, m, s or ms, largest first (such as 30s, 5m or 1h30m)\n1 error\n"
    );
}

// ------------------------------------------------ requests and verdicts

use common::park_request as park;
use jaros::approval::store::Store;
use jaros::datadir::DataDir;

const FAR: u64 = u64::MAX / 2;

#[test]
fn approvals_lists_the_job_decision_payload_chain_approvers_and_time_left() {
    let hive = hive(GOOD);
    DataDir::new(hive.data()).create().unwrap();
    let none = hive.jaros(&["approvals"]).expect(0).stdout();
    assert_eq!(none, "nothing waits for approval\n");
    park(&hive, "job-1", FAR);
    park(&hive, "job-2", 2);
    let text = hive.jaros(&["approvals"]).expect(0).stdout();
    for part in [
        "job-1  job-1#1.0  handoff (agent clerk)",
        r#"{"agent":"billing","input":{"amount":500}}"#,
        "chain     job-1 (clerk)",
        "approvers ops-lead, finance",
        "left      expired",
        "2 waiting",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    let json = hive.jaros(&["approvals", "--json"]).expect(0).json();
    let requests = json["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{json}");
    assert_eq!(requests[0]["decision"]["type"], "handoff");
    assert_eq!(requests[1]["expired"], true);
    assert_eq!(requests[0]["expired"], false);
}

#[test]
fn an_approver_not_on_the_list_is_refused_and_nothing_is_written() {
    let hive = hive(GOOD);
    let request = park(&hive, "job-1", FAR);
    let run = hive
        .jaros(&["approve", "job-1", "1.0", "--by", "mallory"])
        .expect(2);
    assert!(
        run.stderr().contains(
            "'mallory' may not answer this request; its approvers are: ops-lead, finance"
        ),
        "{}",
        run.context()
    );
    let store = Store::new(&DataDir::new(hive.data()));
    assert!(!store.verdict_path(&request.decision.id).exists());
    assert!(
        store.parked_path(&request.job).exists(),
        "the job stays parked"
    );
}

#[test]
fn a_verdict_counts_once_and_moves_the_job_back_to_the_inbox() {
    let hive = hive(GOOD);
    let request = park(&hive, "job-1", FAR);
    let out = hive
        .jaros(&[
            "approve", "job-1", "handoff", "--by", "finance", "--note", "ok",
        ])
        .expect(0)
        .stdout();
    assert!(out.contains("job-1#1.0 approved by finance"), "{out}");
    assert!(hive.data().join("inbox/job-1.json").exists());
    // Until a node records it, the request is listed as answered.
    let listed = hive.jaros(&["approvals"]).expect(0).stdout();
    assert!(
        listed.contains("answered  approve by finance") && listed.contains("0 waiting, 1 answered"),
        "{listed}"
    );
    let json = hive.jaros(&["approvals", "--json"]).expect(0).json();
    assert_eq!(json["requests"][0]["answered"]["note"], "ok", "{json}");
    let store = Store::new(&DataDir::new(hive.data()));
    assert!(!store.parked_path(&request.job).exists());
    let second = hive
        .jaros(&[
            "deny",
            "job-1",
            "job-1#1.0",
            "--by",
            "ops-lead",
            "--reason",
            "no",
        ])
        .expect(1);
    assert!(
        second
            .stderr()
            .contains("job-1#1.0 was already answered: approve by finance; that verdict counts"),
        "{}",
        second.context()
    );
    let verdict = store
        .verdict(&request.job, &request.decision.id, &request.approvers)
        .unwrap()
        .unwrap();
    assert_eq!(
        (verdict.by.as_str(), verdict.note.as_deref()),
        ("finance", Some("ok"))
    );
}

#[test]
fn two_verdicts_at_once_exactly_one_counts() {
    for round in 0..8 {
        let hive = hive(GOOD);
        let job = format!("job-{round}");
        park(&hive, &job, FAR);
        let path = hive.path().to_path_buf();
        let racers: Vec<_> = [("approve", "finance"), ("deny", "ops-lead")]
            .into_iter()
            .map(|(verb, by)| {
                let (path, job) = (path.clone(), job.clone());
                std::thread::spawn(move || {
                    let mut args = vec![verb, job.as_str(), "1.0", "--by", by];
                    if verb == "deny" {
                        args.extend(["--reason", "racing"]);
                    }
                    common::run_in(&path, &args).code()
                })
            })
            .collect();
        let mut codes: Vec<i32> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![0, 1],
            "exactly one verdict counts in round {round}"
        );
        let verdicts = std::fs::read_dir(hive.data().join("approvals/verdicts"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(verdicts, 1);
    }
}

#[test]
fn a_denial_needs_a_reason_and_a_decision_that_does_not_wait_is_refused() {
    let hive = hive(GOOD);
    park(&hive, "job-1", FAR);
    hive.jaros(&["deny", "job-1", "1.0", "--by", "finance", "--reason", " "])
        .expect(2);
    // A note is one line: no forged log lines, no terminal escapes.
    for text in [
        "ok\nn1#9     verdict  job-1#1.0 approve by ops-lead",
        "\u{1b}[2Jok",
    ] {
        let run = hive
            .jaros(&["deny", "job-1", "1.0", "--by", "finance", "--reason", text])
            .expect(2);
        assert!(
            run.stderr()
                .contains("one line of text, without control characters"),
            "{}",
            run.context()
        );
    }
    let store = Store::new(&DataDir::new(hive.data()));
    assert_eq!(
        std::fs::read_dir(store.verdicts()).map_or(0, |d| d.count()),
        0
    );
    let run = hive
        .jaros(&["approve", "job-1", "2.0", "--by", "finance"])
        .expect(2);
    assert!(
        run.stderr()
            .contains("job job-1 waits on decision job-1#1.0 (handoff), not '2.0'"),
        "{}",
        run.context()
    );
    hive.jaros(&["approve", "job-9", "1.0", "--by", "finance"])
        .expect(2);
}

#[test]
fn a_hand_written_verdict_for_someone_not_on_the_list_or_malformed_is_refused_when_read() {
    let hive = hive(GOOD);
    let request = park(&hive, "job-1", FAR);
    let store = Store::new(&DataDir::new(hive.data()));
    std::fs::create_dir_all(store.verdicts()).unwrap();
    let path = store.verdict_path(&request.decision.id);
    std::fs::write(
        &path,
        r#"{"job": "job-1", "decision": "job-1#1.0", "verdict": "approve", "by": "mallory", "at_ms": 5}"#,
    )
    .unwrap();
    let refused = store
        .verdict(&request.job, &request.decision.id, &request.approvers)
        .unwrap_err();
    assert!(
        refused
            .reason
            .contains("'mallory' is not among the approvers"),
        "{refused:?}"
    );
    std::fs::write(&path, "{not json").unwrap();
    let refused = store
        .verdict(&request.job, &request.decision.id, &request.approvers)
        .unwrap_err();
    assert!(
        refused.reason.contains("not a valid verdict"),
        "{refused:?}"
    );
    store.refuse(&refused, 7).unwrap();
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(store.refused()).unwrap().count(), 1);
    // Refused, the decision can be answered again.
    hive.jaros(&["approve", "job-1", "1.0", "--by", "finance"])
        .expect(0);
}

// ------------------------------------------------ the node parks and resumes

fn wait_result(hive: &Hive, job: &str) -> serde_json::Value {
    let run = hive.jaros(&["result", job, "--wait", "60"]);
    assert!(matches!(run.code(), 0 | 1), "{}", run.context());
    run.json()
}

fn wait_parked(hive: &Hive, job: &str) {
    let path = hive.data().join(format!("approvals/parked/{job}.json"));
    common::wait_until(
        std::time::Duration::from_secs(60),
        "the job to park",
        || path.exists(),
    );
}

/// Submits a `clerk` job for `amount` and waits until it parks.
fn submit_and_park(hive: &Hive, id: &str, amount: u32) {
    let input = format!(r#"{{"amount": {amount}}}"#);
    hive.jaros(&["submit", "clerk", "--id", id, "--input", &input])
        .expect(0);
    wait_parked(hive, id);
}

fn replay_is_reproducible(hive: &Hive) -> serde_json::Value {
    let replay = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(replay["byte_identical"], true, "{replay}");
    assert_eq!(replay["model_calls"], 0);
    replay
}

#[test]
fn an_approved_decision_parks_its_job_then_runs_on_the_verdict_and_replays() {
    let hive = hive(GOOD);
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&[
        "submit",
        "clerk",
        "--id",
        "big",
        "--input",
        r#"{"amount": 500}"#,
    ])
    .expect(0);
    hive.jaros(&[
        "submit",
        "clerk",
        "--id",
        "small",
        "--input",
        r#"{"amount": 5}"#,
    ])
    .expect(0);
    assert_eq!(
        wait_result(&hive, "small")["state"],
        "DONE",
        "a small amount needs no verdict"
    );
    wait_parked(&hive, "big");
    assert!(
        !hive.data().join("claimed/big.json").exists(),
        "a parked job holds no claim"
    );
    let listed = hive.jaros(&["approvals", "--json"]).expect(0).json();
    assert_eq!(listed["requests"][0]["job"], "big", "{listed}");
    assert_eq!(
        listed["requests"][0]["decision"]["payload"]["input"]["amount"],
        500
    );
    hive.jaros(&[
        "approve", "big", "handoff", "--by", "ops-lead", "--note", "checked",
    ])
    .expect(0);
    let result = wait_result(&hive, "big");
    assert_eq!(result["state"], "DONE", "{result}");
    let child = wait_result(&hive, "big-1.0");
    assert_eq!(child["state"], "DONE", "the approved hand-off ran: {child}");
    let _ = node.stop();
    let log = hive.jaros(&["logs", "--job", "big"]).expect(0).stdout();
    assert!(
        log.contains("waiting") && log.contains("verdict  big#1.0 approve by ops-lead: checked"),
        "{log}"
    );
    assert_eq!(
        hive.jaros(&["approvals", "--json"]).expect(0).json()["requests"],
        serde_json::json!([]),
        "the request is closed"
    );
    replay_is_reproducible(&hive);
}

#[test]
fn a_denied_decision_is_refused_with_its_reason_and_replays() {
    let hive = hive(GOOD);
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    hive.jaros(&[
        "deny",
        "big",
        "1.0",
        "--by",
        "finance",
        "--reason",
        "over the limit",
    ])
    .expect(0);
    let result = wait_result(&hive, "big");
    assert_eq!(result["state"], "FAILED", "{result}");
    assert!(
        result
            .to_string()
            .contains("approval: denied by finance: over the limit"),
        "{result}"
    );
    assert!(
        !hive.data().join("done/big-1.0.json").exists(),
        "the hand-off never ran"
    );
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn an_expired_request_is_denied_as_expired() {
    let hive = hive(&GOOD.replace("4h", "1s"));
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&[
        "submit",
        "clerk",
        "--id",
        "big",
        "--input",
        r#"{"amount": 500}"#,
    ])
    .expect(0);
    let result = wait_result(&hive, "big");
    assert_eq!(result["state"], "FAILED", "{result}");
    assert!(result.to_string().contains("approval: expired"), "{result}");
    let _ = node.stop();
    let log = hive.jaros(&["logs", "--job", "big"]).expect(0).stdout();
    assert!(
        log.contains("verdict  big#1.0 deny by jaros: expired"),
        "{log}"
    );
    replay_is_reproducible(&hive);
}

#[test]
fn a_node_killed_while_a_job_is_parked_and_the_verdict_given_while_down_resumes_on_another_node() {
    let hive = hive(GOOD);
    let mut args = vec!["--node-id", "n1"];
    args.extend_from_slice(common::FAST);
    let first = common::Node::start(hive.path(), &args);
    submit_and_park(&hive, "big", 500);
    first.signal("KILL");
    drop(first);
    // Every node is down: the verdict is a file, and only the file.
    hive.jaros(&["approve", "big", "1.0", "--by", "finance"])
        .expect(0);
    let mut args = vec!["--node-id", "n2"];
    args.extend_from_slice(common::FAST);
    let second = common::Node::start(hive.path(), &args);
    let result = wait_result(&hive, "big");
    assert_eq!(result["state"], "DONE", "{result}");
    assert_eq!(wait_result(&hive, "big-1.0")["state"], "DONE");
    let _ = second.stop();
    // The waiting record is n1's, the verdict and the effect n2's.
    let n2 = std::fs::read_to_string(hive.data().join("log/n2.jsonl")).unwrap();
    assert!(n2.contains(r#""kind":"verdict""#), "{n2}");
    let n1 = std::fs::read_to_string(hive.data().join("log/n1.jsonl")).unwrap();
    assert!(n1.contains(r#""kind":"waiting""#));
    replay_is_reproducible(&hive);
}

#[test]
fn a_verdict_left_in_the_data_dir_while_the_command_died_still_wakes_the_job() {
    // The command writes the verdict, then moves the ticket; if it dies in
    // between, the node's scan moves it.
    let hive = hive(GOOD);
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    let store = Store::new(&DataDir::new(hive.data()));
    let request = store.request(&"big".parse().unwrap()).unwrap().unwrap();
    let verdict = jaros::approval::store::Verdict {
        job: request.job.clone(),
        decision: request.decision.id.clone(),
        verdict: jaros::approval::store::Answer::Approve,
        by: "ops-lead".into(),
        at_ms: 1,
        note: None,
        reason: None,
    };
    assert_eq!(
        store.give(&verdict).unwrap(),
        jaros::approval::store::Given::Counted
    );
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_hand_written_verdict_for_a_stranger_is_refused_audited_and_the_job_keeps_waiting() {
    let hive = hive(GOOD);
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    let store = Store::new(&DataDir::new(hive.data()));
    std::fs::write(
        store.verdict_path(&jaros::decision::DecisionId::new(&"big".parse().unwrap(), 1, 0)),
        r#"{"job": "big", "decision": "big#1.0", "verdict": "approve", "by": "mallory", "at_ms": 5}"#,
    )
    .unwrap();
    common::wait_until(std::time::Duration::from_secs(60), "the refusal", || {
        std::fs::read_dir(store.refused()).is_ok_and(|d| d.count() == 1)
    });
    wait_parked(&hive, "big");
    let audit = hive.jaros(&["audit", "--json"]).stdout();
    assert!(
        audit.contains("'mallory' is not among the approvers"),
        "{audit}"
    );
    hive.jaros(&["approve", "big", "1.0", "--by", "finance"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_multi_turn_agent_sees_the_denial_and_its_reason_and_answers_with_another_decision() {
    let hive = hive(GOOD);
    hive.write(
        "manifests/reviser.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: reviser\nspec:\n  role: clerk\n  max_steps: 2\n  template: agents/reviser.j2\n",
    );
    hive.write(
        "agents/reviser.j2",
        r#"{% if turn == 1 %}[{"type": "handoff", "payload": {"agent": "billing", "input": {"amount": 500}}}]{% else %}[{"type": "advance", "payload": {"events": ["start", "complete"], "note": {{ results[0].error | tojson }}}}]{% endif %}"#,
    );
    hive.jaros(&["validate"]).expect(0);
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&["submit", "reviser", "--id", "rev"]).expect(0);
    wait_parked(&hive, "rev");
    hive.jaros(&[
        "deny", "rev", "1.0", "--by", "finance", "--reason", "too much",
    ])
    .expect(0);
    let result = wait_result(&hive, "rev");
    assert_eq!(result["state"], "DONE", "{result}");
    assert!(
        result
            .to_string()
            .contains("rejected: approval: denied by finance: too much"),
        "the second turn saw the denial and its reason: {result}"
    );
    assert!(!hive.data().join("done/rev-1.0.json").exists());
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn blame_names_the_approver_when_an_approved_decision_led_to_a_failure() {
    let hive = hive(GOOD);
    // Billing fails: `complete` from PENDING is no transition.
    hive.write(
        "agents/billing.j2",
        r#"[{"type": "advance", "payload": {"events": ["complete"]}}]"#,
    );
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    hive.jaros(&["approve", "big", "1.0", "--by", "ops-lead"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big-1.0")["state"], "FAILED");
    let _ = node.stop();
    let text = hive.jaros(&["blame", "big-1.0"]).expect(0).stdout();
    assert!(
        text.contains("clerk in job big: decision big#1.0 (handoff) approved by ops-lead: handed off to billing"),
        "{text}"
    );
    let json = hive.jaros(&["blame", "big-1.0", "--json"]).expect(0).json();
    assert_eq!(json["chain"][0]["approved_by"], "ops-lead", "{json}");
    replay_is_reproducible(&hive);
}

#[test]
fn jaros_run_meeting_a_rule_parks_the_job_says_how_to_answer_and_exits_3() {
    let hive = hive(GOOD);
    let run = hive
        .jaros(&[
            "run",
            "clerk",
            "--id",
            "big",
            "--input",
            r#"{"amount": 500}"#,
        ])
        .expect(3);
    let printed = run.json();
    assert_eq!(printed["state"], "WAITING", "{}", run.context());
    assert_eq!(printed["decision"], "big#1.0");
    assert_eq!(
        printed["approvers"],
        serde_json::json!(["ops-lead", "finance"])
    );
    assert!(
        run.stderr()
            .contains("jaros approve big 1.0 --by NAME [--note TEXT]"),
        "{}",
        run.context()
    );
    assert!(hive.data().join("approvals/parked/big.json").is_file());
    assert!(!hive.data().join("claimed/big.json").exists());
    // Its id is taken while it waits: a second job under it is refused.
    let again = hive
        .jaros(&[
            "submit",
            "clerk",
            "--id",
            "big",
            "--input",
            r#"{"amount": 5}"#,
        ])
        .expect(2);
    assert!(
        again
            .stderr()
            .contains("job 'big' exists already (approvals/parked/big.json in the data dir)"),
        "{}",
        again.context()
    );
    assert!(!hive.data().join("inbox/big.json").exists());
    let listed = hive.jaros(&["approvals", "--json"]).expect(0).json();
    assert_eq!(listed["requests"][0]["job"], "big", "{listed}");
    // Answered, then resumed by a node like any parked job.
    hive.jaros(&["approve", "big", "1.0", "--by", "ops-lead"])
        .expect(0);
    let node = common::Node::start(hive.path(), common::FAST);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    assert_eq!(wait_result(&hive, "big-1.0")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

/// A tool that "posts" a request: prints the job the request names.
const NOTIFIER: &str = "#!/bin/sh\ninput=$(cat)\njob=$(printf '%s' \"$input\" | tr '\\n' ' ' | sed -n 's/.*\"job\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p')\n[ -n \"$job\" ] || { echo 'no job in the request' >&2; exit 1; }\nprintf '{\"posted\": \"%s\"}\\n' \"$job\"\n";

/// [`hive`] with an executable tool `notify-chat` as GOOD's notifier.
fn notifying_hive(script: &str) -> Hive {
    let hive = hive(&format!("{GOOD}\n      notify: notify-chat"));
    hive.write(
        "manifests/tools/notify-chat.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: notify-chat\nspec:\n  type: notify-chat\n  command: tools/notify.sh\n  timeout: 5s\n",
    );
    hive.write("tools/notify.sh", script);
    std::fs::set_permissions(
        hive.path().join("tools/notify.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    hive
}

#[test]
fn a_notifier_runs_through_the_harness_when_a_request_is_made_and_is_audited() {
    let hive = notifying_hive(NOTIFIER);
    hive.jaros(&["validate"]).expect(0);
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    let mut audit = String::new();
    common::wait_until(
        std::time::Duration::from_secs(30),
        "the notifier's audit entry",
        || {
            audit = hive.jaros(&["audit"]).stdout();
            audit.contains("notify notify-chat")
        },
    );
    assert!(audit.contains(r#"{"posted":"big"}"#), "{audit}");
    hive.jaros(&["approve", "big", "handoff", "--by", "finance"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_failing_notifier_neither_holds_up_nor_fails_the_job() {
    let hive = notifying_hive("#!/bin/sh\necho 'the chat is down' >&2\nexit 1\n");
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    let mut audit = String::new();
    common::wait_until(
        std::time::Duration::from_secs(30),
        "the notifier's refusal in the audit",
        || {
            audit = hive.jaros(&["audit", "--refusals"]).stdout();
            audit.contains("the notifier failed")
        },
    );
    hive.jaros(&["approve", "big", "handoff", "--by", "finance"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE", "{audit}");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_notifier_must_be_an_executable_tool() {
    let hive = hive(&format!("{GOOD}\n      notify: advance"));
    let out = errors(&hive);
    assert!(
        out.contains("notifier 'advance' is not the type of an executable Tool"),
        "{out}"
    );
}

#[test]
fn jaros_run_runs_the_notifier_before_it_exits_waiting() {
    let hive = notifying_hive(NOTIFIER);
    let run = hive.jaros(&[
        "run",
        "clerk",
        "--id",
        "fg",
        "--input",
        r#"{"amount": 500}"#,
    ]);
    assert_eq!(run.code(), 3, "{}", run.context());
    let audit = hive.jaros(&["audit"]).stdout();
    assert!(
        audit.contains("notify notify-chat") && audit.contains(r#"{"posted":"fg"}"#),
        "{audit}"
    );
}

// ------------------------------------------------ adversaries

/// Runs `jaros ARGS` in the hive, killed after `limit`: a command that
/// blocks (on a FIFO, say) fails here instead of hanging the suite.
fn jaros_within(hive: &Hive, args: &[&str], limit: std::time::Duration) -> (i32, String) {
    let out = hive.path().join(format!("out-{}.txt", args.join("-")));
    let mut child = std::process::Command::new(common::bin())
        .args(args)
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let code = common::wait_timeout(&mut child, limit);
    (code, std::fs::read_to_string(&out).unwrap())
}

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Calls `f` on a thread and fails if it has not returned within `limit`.
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

#[test]
fn a_fifo_or_a_link_in_the_approvals_dir_neither_hangs_a_reader_nor_counts() {
    let hive = hive(GOOD);
    let request = park(&hive, "job-1", FAR);
    let store = Store::new(&DataDir::new(hive.data()));
    // A request file that is a FIFO would block every reader: the node's
    // scan, the console, `jaros approvals`.
    mkfifo(&store.requests().join("fifo.json"));
    // A link could make the node read any file as a request or a verdict.
    let outside = hive.path().join("outside.json");
    std::fs::copy(store.request_path(&request.job), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, store.requests().join("link.json")).unwrap();
    let (code, out) = jaros_within(
        &hive,
        &["approvals", "--json"],
        std::time::Duration::from_secs(20),
    );
    assert_eq!(code, 0, "jaros approvals blocked or failed: {out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["requests"].as_array().unwrap().len(), 1, "{json}");
    let unreadable = json["unreadable"].to_string();
    for what in [
        "a FIFO (named pipe), not a regular file",
        "a symbolic link, not a regular file",
    ] {
        assert!(
            unreadable.contains(what),
            "missing {what:?} in {unreadable}"
        );
    }
    // The same for a verdict: a FIFO and a link to a valid verdict by an
    // approver are both refused, never read.
    let verdict = store.verdict_path(&request.decision.id);
    let valid = hive.path().join("valid-verdict.json");
    std::fs::write(
        &valid,
        r#"{"job": "job-1", "decision": "job-1#1.0", "verdict": "approve", "by": "finance", "at_ms": 5}"#,
    )
    .unwrap();
    std::fs::create_dir_all(store.verdicts()).unwrap();
    for (make, what) in [
        (
            Box::new(|p: &std::path::Path| mkfifo(p)) as Box<dyn Fn(&std::path::Path)>,
            "a FIFO",
        ),
        (
            Box::new(|p: &std::path::Path| std::os::unix::fs::symlink(&valid, p).unwrap()),
            "a symbolic link",
        ),
    ] {
        make(&verdict);
        let (store, job, id, approvers) = (
            Store::new(&DataDir::new(hive.data())),
            request.job.clone(),
            request.decision.id.clone(),
            request.approvers.clone(),
        );
        let read = within(
            std::time::Duration::from_secs(20),
            "reading a verdict",
            move || store.verdict(&job, &id, &approvers),
        );
        let refused = read.expect_err(what);
        assert!(refused.reason.contains(what), "{refused:?}");
        std::fs::remove_file(&verdict).unwrap();
    }
}

#[test]
fn a_malformed_a_fifo_and_a_strangers_verdict_are_each_refused_and_audited_by_the_node() {
    let hive = hive(GOOD);
    let node = common::Node::start(hive.path(), common::FAST);
    submit_and_park(&hive, "big", 500);
    let store = Store::new(&DataDir::new(hive.data()));
    let path = store.verdict_path(&jaros::decision::DecisionId::new(
        &"big".parse().unwrap(),
        1,
        0,
    ));
    type Plant = fn(&std::path::Path);
    let attempts: [(&str, Plant); 3] = [
        ("not a valid verdict", |p| {
            std::fs::write(p, "{not json").unwrap()
        }),
        ("a FIFO (named pipe), not a regular file", |p| mkfifo(p)),
        ("'mallory' is not among the approvers", |p| {
            std::fs::write(p, r#"{"job": "big", "decision": "big#1.0", "verdict": "approve", "by": "mallory", "at_ms": 5}"#).unwrap()
        }),
    ];
    for (i, (why, plant)) in attempts.iter().enumerate() {
        plant(&path);
        common::wait_until(std::time::Duration::from_secs(60), why, || {
            std::fs::read_dir(store.refused()).is_ok_and(|d| d.count() == i + 1)
        });
        wait_parked(&hive, "big");
        let audit = hive.jaros(&["audit", "--json"]).stdout();
        assert!(audit.contains(why), "{why} not audited: {audit}");
    }
    assert!(
        !hive.data().join("done/big-1.0.json").exists(),
        "no refused verdict let the hand-off run"
    );
    hive.jaros(&["approve", "big", "1.0", "--by", "finance"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

/// A hive whose role may write anywhere in the hive (`**`) and whose agent
/// `forger` tries, on its first turn, to give its second turn's hand-off a
/// verdict by writing into the data dir's approval files: directly, under
/// other spellings, and through a link planted in its own scope.
fn forging_hive() -> Hive {
    let hive = hive(GOOD);
    hive.write(
        "manifests/forger.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: forger\nspec:\n  types: [fs.write, handoff]\n  write: [\"**\"]\n  handoff: [billing]\n  approvals:\n    - type: handoff\n      approvers: [ops-lead]\n---\n\
         apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: forger\nspec:\n  role: forger\n  max_steps: 2\n  template: agents/forger.j2\n",
    );
    let verdict = r#"{\"job\": \"forge\", \"decision\": \"forge#2.0\", \"verdict\": \"approve\", \"by\": \"ops-lead\", \"at_ms\": 1}"#;
    let writes: Vec<String> = FORGED_PATHS
        .iter()
        .map(|p| {
            format!(
                r#"{{"type": "fs.write", "payload": {{"path": "{p}", "content": "{verdict}"}}}}"#
            )
        })
        .collect();
    // The writes through the link fail the job (a failed effect); the others
    // are gate rejections the agent has a turn left after.
    let (direct, linked) = writes.split_at(FORGED_PATHS.len() - 1);
    hive.write(
        "agents/forger.j2",
        &format!(
            r#"{{% if input.via_link | default(false) %}}[{}]{{% elif turn == 1 %}}[{}]{{% else %}}[{{"type": "handoff", "payload": {{"agent": "billing", "input": {{}}}}}}]{{% endif %}}"#,
            linked.join(", "),
            direct.join(", ")
        ),
    );
    std::fs::create_dir_all(hive.path().join("out")).unwrap();
    std::os::unix::fs::symlink(
        hive.data().join("approvals/verdicts"),
        hive.path().join("out/sneak"),
    )
    .unwrap();
    hive
}

const FORGED_PATHS: [&str; 5] = [
    ".jaros-data/approvals/verdicts/forge.2.0.json",
    "./.jaros-data//approvals/verdicts/forge.2.0.json",
    ".jaros-data/approvals/requests/forge.json",
    ".jaros-data/approvals/parked/forge.json",
    "out/sneak/forge.2.0.json",
];

#[test]
fn an_agent_that_may_write_anywhere_cannot_write_itself_a_verdict() {
    let hive = forging_hive();
    DataDir::new(hive.data()).create().unwrap();
    hive.jaros(&["validate"]).expect(0);
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&[
        "submit",
        "forger",
        "--id",
        "sneak",
        "--input",
        r#"{"via_link": true}"#,
    ])
    .expect(0);
    let sneak = wait_result(&hive, "sneak");
    assert_eq!(sneak["state"], "FAILED", "{sneak}");
    assert!(
        sneak.to_string().contains("passes through a symlink"),
        "{sneak}"
    );
    hive.jaros(&["submit", "forger", "--id", "forge", "--input", "{}"])
        .expect(0);
    wait_parked(&hive, "forge");
    let store = Store::new(&DataDir::new(hive.data()));
    let request = store.request(&"forge".parse().unwrap()).unwrap().unwrap();
    assert_eq!(request.decision.id.as_str(), "forge#2.0", "{request:?}");
    assert!(
        std::fs::read_dir(store.verdicts()).unwrap().count() == 0,
        "a verdict file was written by the agent"
    );
    // Every write was refused and audited.
    let audit = hive.jaros(&["audit", "--refusals", "--json"]).stdout();
    assert_eq!(
        audit.lines().filter(|l| l.contains("forge#1.")).count(),
        FORGED_PATHS.len() - 1,
        "{audit}"
    );
    assert!(audit.lines().any(|l| l.contains("sneak#1.0")), "{audit}");
    // It still waits; only a person's verdict moves it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(store.parked_path(&request.job).exists());
    assert!(!hive.data().join("done/forge-2.0.json").exists());
    hive.jaros(&["approve", "forge", "2.0", "--by", "ops-lead"])
        .expect(0);
    assert_eq!(wait_result(&hive, "forge-2.0")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_crash_between_the_waiting_record_and_the_park_parks_the_job_again_on_takeover() {
    // `jaros run` records `waiting` and parks; put the data dir back as a
    // node that died right after the record leaves it: the ticket still
    // claimed, no request file, no lease.
    let hive = hive(GOOD);
    hive.jaros(&[
        "run",
        "clerk",
        "--id",
        "big",
        "--input",
        r#"{"amount": 500}"#,
    ])
    .expect(3);
    let store = Store::new(&DataDir::new(hive.data()));
    let id: jaros::decision::JobId = "big".parse().unwrap();
    std::fs::rename(store.parked_path(&id), hive.data().join("claimed/big.json")).unwrap();
    std::fs::remove_file(store.request_path(&id)).unwrap();
    let node = common::Node::start(hive.path(), common::FAST);
    wait_parked(&hive, "big");
    let request = store
        .request(&id)
        .unwrap()
        .expect("the request is written again");
    assert_eq!(request.decision.id.as_str(), "big#1.0");
    let log = hive.jaros(&["logs", "--job", "big"]).expect(0).stdout();
    assert_eq!(
        log.matches("waiting").count(),
        1,
        "the decision was not proposed or recorded twice: {log}"
    );
    hive.jaros(&["approve", "big", "1.0", "--by", "finance"])
        .expect(0);
    assert_eq!(wait_result(&hive, "big")["state"], "DONE");
    assert_eq!(wait_result(&hive, "big-1.0")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn two_verdicts_at_once_while_two_nodes_race_one_counts_the_job_runs_once_and_replays() {
    let hive = hive(GOOD);
    let nodes: Vec<common::Node> = ["n1", "n2"]
        .into_iter()
        .map(|id| {
            let mut args = vec!["--node-id", id];
            args.extend_from_slice(common::FAST);
            common::Node::start(hive.path(), &args)
        })
        .collect();
    submit_and_park(&hive, "big", 500);
    let path = hive.path().to_path_buf();
    let racers: Vec<_> = [("approve", "finance"), ("deny", "ops-lead")]
        .into_iter()
        .map(|(verb, by)| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut args = vec![verb, "big", "1.0", "--by", by];
                if verb == "deny" {
                    args.extend(["--reason", "racing"]);
                }
                (verb, common::run_in(&path, &args).code())
            })
        })
        .collect();
    let results: Vec<(&str, i32)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&str> = results.iter().filter(|r| r.1 == 0).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let result = wait_result(&hive, "big");
    let expected = if winners[0] == "approve" {
        "DONE"
    } else {
        "FAILED"
    };
    assert_eq!(result["state"], expected, "{results:?}: {result}");
    if expected == "DONE" {
        assert_eq!(wait_result(&hive, "big-1.0")["state"], "DONE");
    }
    for node in nodes {
        let _ = node.stop();
    }
    // One verdict record in all the logs, and the job ended once.
    let log = hive.jaros(&["logs", "--job", "big"]).expect(0).stdout();
    assert_eq!(log.matches("verdict  big#1.0").count(), 1, "{log}");
    assert_eq!(log.matches("end ").count(), 1, "{log}");
    replay_is_reproducible(&hive);
}

#[test]
fn each_decision_of_a_turn_that_a_rule_holds_waits_for_its_own_verdict() {
    let hive = hive(GOOD);
    hive.write(
        "manifests/pair.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: pair\nspec:\n  role: clerk\n  template: agents/pair.j2\n",
    );
    hive.write(
        "agents/pair.j2",
        r#"[{"type": "handoff", "payload": {"agent": "billing", "input": {"amount": 500}}}, {"type": "handoff", "payload": {"agent": "billing", "input": {"amount": 700}}}, {"type": "fs.write", "payload": {"path": "out/{{ input.name }}.txt", "content": "after both"}}]"#,
    );
    let node = common::Node::start(hive.path(), common::FAST);
    for job in ["yes", "no"] {
        let input = format!(r#"{{"name": "{job}"}}"#);
        hive.jaros(&["submit", "pair", "--id", job, "--input", &input])
            .expect(0);
        wait_parked(&hive, job);
    }
    let store = Store::new(&DataDir::new(hive.data()));
    // Approving the first decision does not approve the second: it waits in
    // its turn, under its own request.
    hive.jaros(&["approve", "yes", "1.0", "--by", "finance"])
        .expect(0);
    common::wait_until(
        std::time::Duration::from_secs(60),
        "the second request",
        || {
            store
                .request(&"yes".parse().unwrap())
                .ok()
                .flatten()
                .is_some_and(|r| r.decision.id.as_str() == "yes#1.1")
        },
    );
    wait_parked(&hive, "yes");
    assert!(
        !hive.path().join("out/yes.txt").exists(),
        "the decision after the waiting one ran before its turn"
    );
    hive.jaros(&["approve", "yes", "1.1", "--by", "ops-lead"])
        .expect(0);
    assert_eq!(wait_result(&hive, "yes")["state"], "DONE");
    assert!(hive.path().join("out/yes.txt").exists());
    // A denial is refused as the gate refuses: the rest of the turn is still
    // gated in order (the second hand-off waits for its own verdict, the
    // write runs), and the job fails at the end of its last turn.
    hive.jaros(&["deny", "no", "1.0", "--by", "finance", "--reason", "no"])
        .expect(0);
    common::wait_until(
        std::time::Duration::from_secs(60),
        "the second request of 'no'",
        || {
            store
                .request(&"no".parse().unwrap())
                .ok()
                .flatten()
                .is_some_and(|r| r.decision.id.as_str() == "no#1.1")
        },
    );
    wait_parked(&hive, "no");
    hive.jaros(&[
        "deny", "no", "1.1", "--by", "ops-lead", "--reason", "neither",
    ])
    .expect(0);
    let result = wait_result(&hive, "no");
    assert_eq!(result["state"], "FAILED", "{result}");
    assert!(
        result.to_string().contains("denied by finance: no"),
        "the job fails on the turn's first refusal: {result}"
    );
    assert!(!hive.data().join("done/no-1.0.json").exists());
    assert!(!hive.data().join("done/no-1.1.json").exists());
    assert!(hive.path().join("out/no.txt").exists());
    let _ = node.stop();
    let log = hive.jaros(&["logs", "--job", "no"]).expect(0).stdout();
    assert_eq!(log.matches("waiting").count(), 2, "{log}");
    assert_eq!(log.matches("verdict  no#").count(), 2, "{log}");
    replay_is_reproducible(&hive);
}

#[test]
fn a_request_in_a_handed_off_job_lists_its_chain_root_first_with_the_time_left() {
    let hive = hive(GOOD);
    // Billing hands a small amount on as a large one: the second hand-off,
    // in the child job, is the one that waits.
    hive.write(
        "agents/billing.j2",
        r#"{% if input.amount < 100 %}[{"type": "handoff", "payload": {"agent": "billing", "input": {"amount": 500}}}]{% else %}[{"type": "advance", "payload": {"events": ["start", "complete"]}}]{% endif %}"#,
    );
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&[
        "submit",
        "clerk",
        "--id",
        "root",
        "--input",
        r#"{"amount": 5}"#,
    ])
    .expect(0);
    wait_parked(&hive, "root-1.0");
    let json = hive.jaros(&["approvals", "--json"]).expect(0).json();
    let request = &json["requests"][0];
    assert_eq!(request["job"], "root-1.0", "{json}");
    assert_eq!(request["agent"], "billing");
    assert_eq!(request["decision"]["id"], "root-1.0#1.0");
    assert_eq!(
        request["chain"],
        serde_json::json!([
            {"job": "root", "agent": "clerk", "via": "root#1.0"},
            {"job": "root-1.0", "agent": "billing"}
        ]),
        "{json}"
    );
    let left = request["left_ms"].as_u64().unwrap();
    assert!(left > 3 * 3600 * 1000 && left <= 4 * 3600 * 1000, "{json}");
    assert_eq!(request["answered"], serde_json::Value::Null);
    let text = hive.jaros(&["approvals"]).expect(0).stdout();
    assert!(
        text.contains("chain     root (clerk) → root-1.0 (billing)")
            && text.contains("left      3h 5"),
        "{text}"
    );
    hive.jaros(&["approve", "root-1.0", "1.0", "--by", "ops-lead"])
        .expect(0);
    assert_eq!(wait_result(&hive, "root-1.0-1.0")["state"], "DONE");
    let _ = node.stop();
    replay_is_reproducible(&hive);
}

#[test]
fn a_ticket_written_by_hand_for_a_parked_job_cannot_change_its_agent_or_input() {
    let hive = hive(GOOD);
    hive.write(
        "manifests/two.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: two\nspec:\n  role: clerk\n  max_steps: 2\n  template: agents/two.j2\n",
    );
    hive.write(
        "agents/two.j2",
        r#"{% if turn == 1 %}[{"type": "handoff", "payload": {"agent": "billing", "input": {"amount": 500}}}]{% else %}[{"type": "advance", "payload": {"events": ["start", "complete"], "note": {{ input.tag | tojson }}}}]{% endif %}"#,
    );
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&[
        "submit",
        "two",
        "--id",
        "t",
        "--input",
        r#"{"tag": "original"}"#,
    ])
    .expect(0);
    wait_parked(&hive, "t");
    // The inbox is where work enters: a file there, marked to resume the
    // parked job, names another agent and another input.
    let forged = hive.data().join("inbox/t.json");
    std::fs::write(
        &forged,
        r#"{"id": "t", "agent": "billing", "input": {"tag": "forged"}, "resume": true}"#,
    )
    .unwrap();
    common::wait_until(
        std::time::Duration::from_secs(60),
        "the ticket to be taken",
        || !forged.exists(),
    );
    wait_parked(&hive, "t");
    hive.jaros(&["approve", "t", "1.0", "--by", "finance"])
        .expect(0);
    let result = wait_result(&hive, "t");
    assert_eq!(result["state"], "DONE", "{result}");
    assert_eq!(result["agent"], "two", "{result}");
    let _ = node.stop();
    let log = hive.jaros(&["logs", "--job", "t"]).expect(0).stdout();
    assert!(
        log.contains(r#""note":"original""#) && !log.contains("forged"),
        "the second turn ran as the recorded agent on the recorded input: {log}"
    );
    replay_is_reproducible(&hive);
}

/// A rule on a number cannot be slipped past with an integer no double
/// holds: 9007199254740993 compared as a double is 9007199254740992, the
/// one account the rule lets through, and it would be recorded as that
/// number too. Such a payload is refused before any rule is asked, the
/// refusal replays, and a job input holding one is refused at submission.
#[test]
fn an_integer_no_double_holds_cannot_slip_past_a_rule() {
    let hive = hive(
        "    - type: handoff\n      targets: [billing]\n      when: \"input.account != 9007199254740992\"\n      approvers: [ops-lead]",
    );
    hive.write(
        "agents/clerk.j2",
        r#"[{"type": "handoff", "payload": {"agent": "billing", "input": {"account": 9007199254740993}}}]"#,
    );
    let node = common::Node::start(hive.path(), common::FAST);
    hive.jaros(&["submit", "clerk", "--id", "pay"]).expect(0);
    let result = wait_result(&hive, "pay");
    let _ = node.stop();
    assert_eq!(result["state"], "FAILED", "{result}");
    assert!(
        result
            .to_string()
            .contains("/input/account is 9007199254740993, an integer no double holds"),
        "{result}"
    );
    assert!(
        !hive.data().join("done/pay-1.0.json").exists()
            && !hive.data().join("approvals/parked/pay.json").exists(),
        "the hand-off neither ran nor waited"
    );
    replay_is_reproducible(&hive);
    let refused = hive
        .jaros(&[
            "submit",
            "clerk",
            "--input",
            r#"{"account": 9007199254740993}"#,
        ])
        .expect(2);
    assert!(
        refused.stderr().contains("send it as a string"),
        "{}",
        refused.context()
    );
}
