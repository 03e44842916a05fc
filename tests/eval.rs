//! `jaros eval`: the example suite in the repository, broken agents, invalid
//! files, golden cases from recorded jobs, JUnit, and live mode against the
//! real local model when one is running.

mod common;

use common::{example_hive, fingerprint, run_in, Hive};
use std::path::Path;

/// Asserts the example suite's outcome: every case passes.
fn assert_suite_passes(run: &common::Run) {
    assert_eq!(run.code(), 0, "{}", run.context());
}

#[test]
fn the_example_suite_in_the_repository_passes_and_leaves_the_hive_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hive = root.to_str().unwrap();
    let before = fingerprint(&root.join("manifests"));
    let run = run_in(root, &["--hive", hive, "eval", "manifests/evals", "--json"]);
    assert_suite_passes(&run);
    let report = run.json();
    assert_eq!(report["total"], 10, "{}", run.context());
    let names: Vec<&str> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // The file's order, whatever order the pool finished them in.
    assert_eq!(
        names,
        [
            "advance-completes",
            "system-health-reports",
            "disk-monitor-reports",
            "inventory-lists-the-hive",
            "text-metrics-counts-a-file",
            "echo-proposes-its-prompt",
            "greeter-greets",
            "refund-waits-for-a-person",
            "refund-approved-runs",
            "refund-denied-fails"
        ]
    );
    assert_eq!(fingerprint(&root.join("manifests")), before);
}

#[test]
fn the_text_report_says_pass_or_fail_per_case_then_the_count_and_time() {
    let hive = example_hive();
    let before = fingerprint(hive.path());
    let run = hive.jaros(&["eval"]);
    let text = run.stdout();
    for line in [
        "[PASS] advance-completes",
        "[PASS] text-metrics-counts-a-file",
        "[PASS] echo-proposes-its-prompt",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{}", run.context());
    }
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "{}/10 eval cases passed in ",
            text.matches("[PASS]").count()
        )) && last.ends_with('s'),
        "{}",
        run.context()
    );
    // Nothing of the hive changed, no data dir appeared.
    assert_eq!(fingerprint(hive.path()), before);
    assert!(!hive.data().exists());
}

#[test]
fn a_broken_agent_fails_the_suite_with_the_expected_message() {
    let hive = example_hive();
    hive.write(
        "agents/text-metrics.j2",
        r#"[{"type": "text.count", "payload": {"path": "README.md"}}]"#,
    );
    let run = hive.jaros(&["eval", "manifests/evals"]).expect(1);
    let text = run.stdout();
    let expected = "\
[FAIL] text-metrics-counts-a-file
  at manifests/evals/example.yaml:38:7
  payloads[0]
    expected: {\"path\":\"manifests/node.yaml\"} (a subset)
    actual:   {\"path\":\"README.md\"} (payload of text-metrics-counts-a-file#1.0 (text.count))
    at /path: expected \"manifests/node.yaml\", got \"README.md\"
";
    assert!(text.contains(expected), "{}", run.context());
    assert!(
        text.contains("  gate\n    expected: reject (a decision refused)\n"),
        "{}",
        run.context()
    );
    assert!(
        text.contains("[PASS] advance-completes\n"),
        "{}",
        run.context()
    );
}

#[test]
fn a_case_without_expectations_is_an_error_at_its_place() {
    let hive = example_hive();
    hive.write(
        "manifests/evals/empty.yaml",
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: empty\nspec:\n  cases:\n    - name: nothing\n      agent: advance\n    - name: only-false\n      agent: advance\n      expect: {deterministic: false}\n",
    );
    let run = hive
        .jaros(&["eval", "manifests/evals/empty.yaml"])
        .expect(2);
    let err = run.stderr();
    assert!(
        err.contains("manifests/evals/empty.yaml:7:7: case 'nothing' has no expectation"),
        "{}",
        run.context()
    );
    assert!(
        err.contains("manifests/evals/empty.yaml:11:15: case 'only-false' has no expectation"),
        "{}",
        run.context()
    );
    assert!(run.stdout().is_empty());
}

#[test]
fn an_invalid_eval_file_outside_the_hive_is_named_by_line_and_column() {
    let hive = example_hive();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: bad\nspec:\n  cases:\n    - name: a\n      agent: nobody\n      expect: {state: DONE, colour: red}\n",
    )
    .unwrap();
    let shown = file.display().to_string();
    let run = hive.jaros(&["eval", &shown]).expect(2);
    assert!(
        run.stderr().contains(&format!("{shown}:9:")) && run.stderr().contains("colour"),
        "{}",
        run.context()
    );
    std::fs::write(
        &file,
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: bad\nspec:\n  cases:\n    - name: a\n      agent: nobody\n      expect: {state: DONE}\n",
    )
    .unwrap();
    let run = hive.jaros(&["eval", &shown]).expect(2);
    assert!(
        run.stderr().contains(&format!(
            "{shown}:8:14: agent 'nobody' is not in the hive's plan"
        )),
        "{}",
        run.context()
    );
}

#[test]
fn no_cases_is_exit_2() {
    let hive = example_hive();
    let run = hive.jaros(&["eval", "--filter", "no-such-case"]).expect(2);
    assert!(
        run.stderr()
            .contains("none of the 10 cases matches --filter 'no-such-case'"),
        "{}",
        run.context()
    );
    std::fs::create_dir_all(hive.path().join("empty")).unwrap();
    let run = hive.jaros(&["eval", "empty"]).expect(2);
    assert!(
        run.stderr().contains("no eval files found"),
        "{}",
        run.context()
    );
    hive.jaros(&["eval", "missing-dir"]).expect(2);
}

#[test]
fn junit_reports_every_case_with_its_failures() {
    let hive = example_hive();
    hive.write(
        "agents/text-metrics.j2",
        r#"[{"type": "text.count", "payload": {"path": "a<b>&\"c"}}]"#,
    );
    let run = hive.jaros(&["eval", "--junit", "report.xml"]);
    assert_eq!(run.code(), 1, "{}", run.context());
    let xml = std::fs::read_to_string(hive.path().join("report.xml")).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"jaros eval\" tests=\"10\""), "{xml}");
    assert!(
        xml.contains("<testsuite name=\"example\" tests=\"10\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 10, "{xml}");
    assert!(xml.contains("<testcase name=\"advance-completes\" classname=\"example\" file=\"manifests/evals/example.yaml\""), "{xml}");
    // The payload with markup is escaped inside the failure.
    assert!(xml.contains("a&lt;b&gt;&amp;\\&quot;c"), "{xml}");
    assert!(!xml.contains("a<b>"), "{xml}");
    assert_eq!(
        xml.matches("<failure ").count(),
        xml.matches("</failure>").count()
    );
}

// ---- golden cases -----------------------------------------------------------

const NODE: &str = "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    scripted:\n      kind: scripted\n      responses: evals/answers.json\n";
const ROLE: &str =
    "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: stepper\nspec:\n  types: [advance]\n";
const NOTER: &str = "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: noter\nspec:\n  role: stepper\n  template: agents/noter.j2\n";
const THINKER: &str = "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: thinker\nspec:\n  role: stepper\n  model: {provider: scripted, model: m}\n  prompt: agents/thinker.j2\n";

fn golden_hive() -> Hive {
    let hive = Hive::empty();
    hive.write("manifests/node.yaml", NODE);
    hive.write("manifests/roles/stepper.yaml", ROLE);
    hive.write("manifests/agents/noter.yaml", NOTER);
    hive.write("manifests/agents/thinker.yaml", THINKER);
    hive.write(
        "agents/noter.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"], "note": {{ input.text | tojson }}}}]"#,
    );
    hive.write("agents/thinker.j2", "Think about {{ input | tojson }}.");
    hive.write(
        "evals/answers.json",
        r#"[{"decisions": [{"type": "advance", "payload": {"events": ["start", "complete"], "note": "thought"}}]}]"#,
    );
    hive
}

#[test]
fn a_golden_case_from_a_recorded_job_passes_and_fails_once_the_template_changes() {
    let hive = golden_hive();
    hive.jaros(&[
        "run",
        "noter",
        "--id",
        "job-1",
        "--input",
        r#"{"text": "hi"}"#,
    ])
    .expect(0);
    let run = hive
        .jaros(&["eval", "--from-log", "job-1", "--out", "golden.yaml"])
        .expect(0);
    let yaml = std::fs::read_to_string(hive.path().join("golden.yaml")).unwrap();
    assert!(
        yaml.contains(
            "    - name: \"job-1\"\n      agent: \"noter\"\n      input: {\"text\": \"hi\"}\n"
        ),
        "{yaml}\n{}",
        run.context()
    );
    assert!(yaml.contains("        types: [\"advance\"]\n"), "{yaml}");
    assert!(
        yaml.contains("          - {\"from\": \"PENDING\", \"to\": \"DONE\"}\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("        state: DONE\n        deterministic: true\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("responses"), "{yaml}");
    let run = hive.jaros(&["eval", "golden.yaml"]).expect(0);
    assert!(
        run.stdout().starts_with("[PASS] job-1\n"),
        "{}",
        run.context()
    );

    // The agent now behaves differently.
    hive.write(
        "agents/noter.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"], "note": "changed"}}]"#,
    );
    let run = hive.jaros(&["eval", "golden.yaml"]).expect(1);
    let expected = "\
[FAIL] job-1
  at golden.yaml:11:7
  payloads[0]
    expected: {\"events\":[\"start\",\"complete\"],\"note\":\"hi\"} (a subset)
    actual:   {\"events\":[\"start\",\"complete\"],\"note\":\"changed\"} (payload of job-1#1.0 (advance))
    at /note: expected \"hi\", got \"changed\"
";
    assert!(run.stdout().contains(expected), "{}", run.context());
}

#[test]
fn a_golden_case_of_a_model_agent_replays_its_responses_and_fails_once_the_role_changes() {
    let hive = golden_hive();
    hive.jaros(&["run", "thinker", "--id", "job-2", "--input", "{}"])
        .expect(0);
    let run = hive.jaros(&["eval", "--from-log", "job-2"]).expect(0);
    let yaml = run.stdout();
    assert!(
        yaml.contains("      responses:\n        - \"{\\\"decisions\\\""),
        "{yaml}"
    );
    // Golden cases carry their responses: the provider's file may change.
    hive.write("evals/answers.json", "[]");
    hive.write("manifests/evals/golden.yaml", &yaml);
    let run = hive.jaros(&["eval"]).expect(0);
    assert!(
        run.stdout().starts_with("[PASS] job-2\n"),
        "{}",
        run.context()
    );

    // The role no longer grants what the agent proposes.
    hive.write(
        "manifests/roles/stepper.yaml",
        &ROLE.replace("types: [advance]", "types: [handoff]"),
    );
    let run = hive.jaros(&["eval"]).expect(1);
    let text = run.stdout();
    assert!(text.contains("  gate\n    expected: accept (no decision refused)\n    actual:   rejected: job-2#1.0 (advance) granted: role 'stepper' of agent 'thinker' does not grant decision type 'advance'\n"), "{}", run.context());
    assert!(
        text.contains("  state\n    expected: DONE\n    actual:   FAILED ("),
        "{}",
        run.context()
    );
}

#[test]
fn from_log_of_an_unknown_job_is_exit_2() {
    let hive = golden_hive();
    hive.jaros(&[
        "run",
        "noter",
        "--id",
        "job-1",
        "--input",
        r#"{"text": "x"}"#,
    ])
    .expect(0);
    let run = hive.jaros(&["eval", "--from-log", "nope"]).expect(2);
    assert!(
        run.stderr().contains("job 'nope' is not in any log"),
        "{}",
        run.context()
    );
}

// ---- live mode --------------------------------------------------------------

/// The real model server's OpenAI-compatible base URL. Panics, saying what
/// to run, when the model-server script has not written one: the live test is
/// run on purpose, and without its server it fails.
fn real_model_url() -> String {
    let dir = std::env::var("JAROS_MODEL_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/jaros-model",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = Path::new(&dir).join("url");
    match std::fs::read_to_string(&path) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => panic!(
            "no real model server: {} is missing or empty; run scripts/model-server.sh start",
            path.display()
        ),
    }
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn live_mode_asks_the_real_model_and_reports_a_pass_rate_per_case() {
    let url = real_model_url();
    let hive = Hive::empty();
    hive.write(
        "manifests/node.yaml",
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    local:\n      kind: openai\n      base_url: http://127.0.0.1:9\n      model: SmolLM2-135M-Instruct\n      timeout: 120s\n",
    );
    hive.write("manifests/roles/stepper.yaml", ROLE);
    hive.write(
        "manifests/agents/stepper.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: stepper\nspec:\n  role: stepper\n  model: {provider: local, model: SmolLM2-135M-Instruct, temperature: 0, seed: 7, max_tokens: 120}\n  prompt: agents/stepper.j2\n",
    );
    hive.write(
        "agents/stepper.j2",
        "Propose exactly one decision of type \"advance\" whose payload is {\"events\": [\"start\", \"complete\"]}. The job input is {{ input | tojson }}.",
    );
    hive.write(
        "manifests/evals/live.yaml",
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: live\nspec:\n  cases:\n    - name: steps\n      agent: stepper\n      input: {task: finish}\n      expect: {types: [advance], state: DONE}\n",
    );
    // Offline, a case of a network provider without responses is refused.
    let run = hive.jaros(&["eval"]).expect(2);
    assert!(
        run.stderr().contains("jaros eval --live"),
        "{}",
        run.context()
    );

    let provider = format!("local={url}");
    let run = hive.jaros(&[
        "eval",
        "--live",
        "--runs",
        "2",
        "--min-pass-rate",
        "0",
        "--provider-url",
        &provider,
        "--json",
    ]);
    assert_eq!(run.code(), 0, "{}", run.context());
    let report = run.json();
    eprintln!("{report:#}");
    assert_eq!(report["live"], true);
    assert_eq!(report["runs"], 2);
    let case = &report["cases"][0];
    assert_eq!(case["name"], "steps");
    assert_eq!(case["runs"], 2);
    let passed = case["passed_runs"].as_u64().unwrap();
    assert!(passed <= 2);
    assert_eq!(case["pass_rate"].as_f64().unwrap(), passed as f64 / 2.0);

    // The text form names the runs; a rate above what passed fails the case.
    let run = hive.jaros(&["eval", "--live", "--runs", "1", "--provider-url", &provider]);
    let text = run.stdout();
    assert!(
        text.contains("[PASS] steps  1/1 runs passed (100%)")
            || text.contains("[FAIL] steps  0/1 runs passed (0%)"),
        "{}",
        run.context()
    );
    assert_eq!(
        run.code(),
        i32::from(text.contains("[FAIL]")),
        "{}",
        run.context()
    );
    assert!(
        text.contains("eval cases passed (live, 1 run each, min pass rate 1)"),
        "{}",
        run.context()
    );
}

#[test]
fn live_options_are_checked() {
    let hive = example_hive();
    hive.jaros(&["eval", "--runs", "2"]).expect(2);
    let run = hive
        .jaros(&["eval", "--live", "--min-pass-rate", "1.5"])
        .expect(2);
    assert!(
        run.stderr().contains("--min-pass-rate 1.5"),
        "{}",
        run.context()
    );
    let run = hive
        .jaros(&["eval", "--provider-url", "nope=http://x"])
        .expect(2);
    assert!(
        run.stderr().contains("no provider 'nope'"),
        "{}",
        run.context()
    );
}

const REFUND_INPUT: &str =
    "{id: T4, ticket: \"Please refund the 250 EUR I paid for a plan I cancelled the same day.\"}";

fn refund_suite(cases: &str) -> String {
    format!(
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: refunds\nspec:\n  cases:\n{cases}"
    )
}

#[test]
fn a_case_gives_verdicts_and_expects_the_parked_state_or_the_outcome() {
    let hive = example_hive();
    let input = REFUND_INPUT;
    hive.write(
        "manifests/evals/refunds.yaml",
        &refund_suite(&format!(
            "    - name: waits
      agent: worker
      input: {input}
      expect: {{types: [refund], state: WAITING}}
    - name: approved
      agent: worker
      input: {input}
      verdicts: [{{decision: refund, verdict: approve, by: demo-operator, note: ok}}]
      expect: {{results: [{{refunded: 250}}, {{}}], state: DONE, deterministic: true}}
    - name: denied
      agent: worker
      input: {input}
      verdicts: [{{decision: \"1.0\", verdict: deny, by: demo-operator, reason: too late}}]
      expect: {{gate: reject, reason: \"denied by demo-operator: too late\", state: FAILED}}
    - name: approved-but-expected-waiting
      agent: worker
      input: {input}
      verdicts: [{{decision: refund, verdict: approve, by: demo-operator}}]
      expect: {{state: WAITING}}
    - name: waiting-but-expected-done
      agent: worker
      input: {input}
      expect: {{state: DONE}}
    - name: a-verdict-nothing-waits-for
      agent: advance
      verdicts: [{{decision: refund, verdict: approve, by: demo-operator}}]
      expect: {{state: DONE}}
    - name: a-stranger-answers
      agent: worker
      input: {input}
      verdicts: [{{decision: refund, verdict: approve, by: mallory}}]
      expect: {{state: DONE}}
"
        )),
    );
    let run = hive
        .jaros(&["eval", "manifests/evals/refunds.yaml"])
        .expect(1);
    let text = run.stdout();
    for pass in ["waits", "approved", "denied"] {
        assert!(
            text.contains(&format!("[PASS] {pass}\n")),
            "{}",
            run.context()
        );
    }
    for (fail, why) in [
        (
            "approved-but-expected-waiting",
            "  state\n    expected: WAITING\n    actual:   DONE\n",
        ),
        (
            "waiting-but-expected-done",
            "  state\n    expected: DONE\n    actual:   WAITING on waiting-but-expected-done#1.0 (refund) (no verdict given)\n",
        ),
        (
            "a-verdict-nothing-waits-for",
            "  verdicts[0]\n    expected: decision 'refund' waits for this verdict\n    actual:   no decision it names waited for a verdict\n",
        ),
        (
            "a-stranger-answers",
            "'mallory' may not answer this request; its approvers are: demo-operator",
        ),
    ] {
        assert!(
            text.contains(&format!("[FAIL] {fail}\n")),
            "{}",
            run.context()
        );
        assert!(text.contains(why), "{why}\n{}", run.context());
    }
    assert!(!hive.data().exists(), "{}", run.context());
}

#[test]
fn a_denial_without_a_reason_is_an_error_at_its_place() {
    let hive = example_hive();
    hive.write(
        "manifests/evals/refunds.yaml",
        &refund_suite(&format!(
            "    - name: denied
      agent: worker
      input: {REFUND_INPUT}
      verdicts:
        - {{decision: refund, verdict: deny, by: demo-operator}}
      expect: {{state: FAILED}}
"
        )),
    );
    let run = hive
        .jaros(&["eval", "manifests/evals/refunds.yaml"])
        .expect(2);
    assert!(
        run.stderr().contains(
            "manifests/evals/refunds.yaml:11:11: a denial needs a `reason` (the agent and the log see it)"
        ),
        "{}",
        run.context()
    );
}

/// The example planner's triage (`evals/triage.yaml`) on the real model, the
/// way the README measures it: every answer is one verdict whose decision
/// the gate lets through its schema, and the share of right verdicts does not
/// fall below what SmolLM2-135M was measured to reach (temperature 0 and a
/// fixed seed, so the outcome is the same on every run of one input).
#[test]
#[ignore = "needs a model server: scripts/real-model-tests.sh"]
fn the_planner_triages_tickets_on_the_real_model_at_its_measured_rate() {
    /// Cases of `evals/triage.yaml` (8 spam, 9 genuine) that must pass on
    /// every run, per class. Measured on SmolLM2-135M-Instruct Q4_1 under
    /// llama.cpp's server with the planner's verdicts and examples as
    /// committed: spam 5 or 6 of 8 rejected (one close ticket follows the
    /// server's prompt cache), genuine 9 of 9 accepted, the same on every run
    /// of one invocation. The floors sit below, so a server build that
    /// shifts an answer does not fail CI; a prompt, example or
    /// mapping change that makes the model answer one verdict to everything
    /// (8 of 17, as before verdicts) fails on one class or the other.
    const MIN_SPAM_REJECTED: usize = 4;
    const MIN_GENUINE_ACCEPTED: usize = 7;
    const RUNS: u64 = 2;
    /// The cases in `evals/triage.yaml`.
    const TRIAGE_CASES: usize = 17;
    let url = real_model_url();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runs = RUNS.to_string();
    let run = run_in(
        root,
        &[
            "--hive",
            root.to_str().unwrap(),
            "eval",
            "evals/triage.yaml",
            "--live",
            "--runs",
            &runs,
            "--min-pass-rate",
            "0",
            "--model-url",
            &url,
            "--json",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    let report = run.json();
    eprintln!("{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), TRIAGE_CASES, "{}", run.context());
    for case in cases {
        for failure in case["failures"].as_array().into_iter().flatten() {
            let text = failure.to_string();
            assert!(
                !text.contains("schema") && !text.contains("budget"),
                "{}: an answer was malformed or too long: {text}",
                case["name"]
            );
            if failure["check"] == "types" {
                let actual: Vec<String> =
                    serde_json::from_str(failure["actual"].as_str().unwrap()).unwrap();
                assert_eq!(
                    actual.len(),
                    1,
                    "{}: not one decision: {text}",
                    case["name"]
                );
            }
        }
    }
    let passing = |class: &str| {
        cases
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with(class))
            .filter(|c| c["passed_runs"].as_u64() == Some(RUNS))
            .count()
    };
    let (spam, genuine) = (passing("spam-"), passing("genuine-"));
    assert!(
        spam >= MIN_SPAM_REJECTED && genuine >= MIN_GENUINE_ACCEPTED,
        "spam rejected {spam} of 8 (floor {MIN_SPAM_REJECTED}), genuine accepted {genuine} of 9 (floor {MIN_GENUINE_ACCEPTED}) on every run: {}",
        run.context()
    );
}
