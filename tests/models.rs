//! Model agents at the job level: whatever a provider does (fails, answers
//! nonsense, proposes what the role does not grant), the job records it, is
//! attributed, and replays; and agents that take several turns see the
//! results of the earlier ones.

mod common;

use common::Hive;

const ROLE: &str = "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: talker\nspec:\n  types: [advance]\n  budget:\n    decisions: 4\n    model_calls: 3\n";

fn hive_with(provider: &str, template: &str, max_steps: u32) -> Hive {
    let hive = Hive::empty();
    hive.write("manifests/node.yaml", &format!("apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n{provider}"));
    hive.write("manifests/roles/talker.yaml", ROLE);
    hive.write(
        "manifests/agents/talker.yaml",
        &format!("apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: talker\nspec:\n  role: talker\n  max_steps: {max_steps}\n  model:\n    provider: p\n    model: m\n  prompt: agents/talker.j2\n"),
    );
    hive.write("agents/talker.j2", template);
    hive.jaros(&["validate"]).expect(0);
    hive
}

const ECHO: &str = "    p:\n      kind: echo\n";

#[test]
fn a_model_server_that_is_down_fails_the_job_with_a_recorded_reason() {
    let hive = hive_with("    p:\n      kind: openai\n      base_url: http://127.0.0.1:9\n      max_retries: 0\n      timeout: 2s\n", "hello", 1);
    let result = hive
        .jaros(&["run", "talker", "--id", "down"])
        .expect(1)
        .json();
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("model call of turn 1 failed: provider 'p' (model 'm')"),
        "{reason}"
    );
    let model = hive.jaros(&["logs", "--kind", "model"]).expect(0).stdout();
    assert!(model.contains("error: provider 'p'"), "{model}");
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["failures"][0]["agent"], "talker");
    assert_eq!(report["model_calls"], 0);
}

#[test]
fn unregistered_types_and_bad_payloads_are_recorded_rejections() {
    let hive = hive_with(
        ECHO,
        r#"[{"type": "launch.missiles", "payload": {}}, {"type": "advance", "payload": {"events": ["explode"]}}]"#,
        1,
    );
    let result = hive
        .jaros(&["run", "talker", "--id", "bad"])
        .expect(1)
        .json();
    let errors: Vec<&str> = result["result"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors[0],
        "rejected: registered: decision type 'launch.missiles' is not registered in the plan"
    );
    assert!(
        errors[1].starts_with("rejected: schema: payload/events/0: "),
        "{}",
        errors[1]
    );
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["failures"][0]["decision"], "bad#1.1");
}

#[test]
fn text_that_is_not_decisions_is_a_recorded_rejection_not_a_panic() {
    let hive = hive_with(ECHO, "I think we should probably start the job, maybe.", 1);
    let result = hive
        .jaros(&["run", "talker", "--id", "prose"])
        .expect(1)
        .json();
    let error = result["result"]["results"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "rejected: structure: the turn's text holds no valid decisions: not valid JSON"
        ),
        "{error}"
    );
    let rejected = hive
        .jaros(&["logs", "--kind", "rejected"])
        .expect(0)
        .stdout();
    assert!(
        rejected.contains("prose#1.0 unparsed [structure]"),
        "{rejected}"
    );
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn a_multi_turn_agent_sees_earlier_results_and_stops_at_a_terminal_advance() {
    // Turn 1 starts the job; turn 2 sees one result and completes it; a third
    // turn would be asked for only if the job had not ended.
    let template = r#"{% if results | length == 0 %}[{"type": "advance", "payload": {"events": ["start"]}}]{% else %}[{"type": "advance", "payload": {"events": ["complete"], "note": "saw {{ results[0].result.to }}"}}]{% endif %}"#;
    let hive = hive_with(ECHO, template, 3);
    let result = hive
        .jaros(&["run", "talker", "--id", "turns"])
        .expect(0)
        .json();
    let ids: Vec<&str> = result["result"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["turns#1.0", "turns#2.0"]);
    let models = hive.jaros(&["logs", "--kind", "model"]).expect(0).stdout();
    assert_eq!(models.lines().count(), 2, "{models}");
    let decisions = hive
        .jaros(&["logs", "--kind", "decision"])
        .expect(0)
        .stdout();
    assert!(decisions.contains(r#""note":"saw RUNNING""#), "{decisions}");
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn the_model_call_budget_ends_a_job_that_keeps_asking() {
    // Never terminal, always asking: the role allows three model calls.
    let template = r#"{% if results | length == 0 %}[{"type": "advance", "payload": {"events": ["start"]}}]{% else %}[{"type": "advance", "payload": {"events": ["block", "unblock"]}}]{% endif %}"#;
    let hive = hive_with(ECHO, template, 8);
    let result = hive
        .jaros(&["run", "talker", "--id", "greedy"])
        .expect(1)
        .json();
    assert_eq!(
        result["reason"], "budget: the job has used its 3 model calls",
        "{result}"
    );
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn no_output_or_record_holds_the_api_key() {
    let key = "sk-test-DO-NOT-LEAK-4242424242";
    let hive = hive_with("    p:\n      kind: openai\n      base_url: http://127.0.0.1:9\n      api_key_env: JAROS_TEST_KEY\n      max_retries: 0\n      timeout: 2s\n", "hello", 1);
    let out = std::process::Command::new(common::bin())
        .args(["run", "talker", "--id", "k"])
        .current_dir(hive.path())
        .env("JAROS_TEST_KEY", key)
        .output()
        .unwrap();
    let mut everything =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for args in [
        &["logs", "--json"][..],
        &["replay", "--json"][..],
        &["status", "--json"][..],
        &["plan", "--json"][..],
    ] {
        let run = hive.jaros(args);
        everything += &run.stdout();
        everything += &run.stderr();
    }
    for file in common::walk(hive.path()) {
        everything += &String::from_utf8_lossy(&std::fs::read(hive.path().join(file)).unwrap());
    }
    assert!(
        everything.contains("JAROS_TEST_KEY"),
        "the variable's name is fine to show"
    );
    assert!(
        !everything.contains(key) && !everything.contains("DO-NOT-LEAK"),
        "the API key leaked"
    );
}
