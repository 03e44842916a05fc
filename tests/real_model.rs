//! Against a real model server (llama.cpp with SmolLM2-135M, started by
//! `scripts/model-server.sh start`; `.ci/run` starts it). Assert shapes and
//! reproduction, never the model's wording or judgement.
//!
//! Every test here is `#[ignore]`d: plain `cargo test` lists it as ignored,
//! and `scripts/real-model-tests.sh` (called by `.ci/run`) starts the server
//! and runs each by name. Run without a server, a test fails and says so.

mod common;

use common::{example_hive, Hive};
use std::path::PathBuf;

fn model_dir() -> PathBuf {
    std::env::var_os("JAROS_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/jaros-model")
        })
}

/// The server's base URL from the environment or the file the script
/// writes. Panics, saying what to run, when neither names a listening server:
/// these tests are run on purpose, and one that cannot reach its server fails.
fn url(var: &str, file: &str) -> String {
    if let Ok(u) = std::env::var(var) {
        return u;
    }
    let path = model_dir().join(file);
    let u = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "no real model server: {var} is unset and {} cannot be read ({e}); run scripts/model-server.sh start",
                path.display()
            )
        })
        .trim()
        .to_string();
    // The file may be stale: check something listens there.
    let addr = u
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    if let Err(e) = std::net::TcpStream::connect(addr) {
        panic!(
            "no real model server: {} names {u}, where nothing listens ({e}); run scripts/model-server.sh start",
            path.display()
        );
    }
    u
}

/// Points the example hive's swarm agents at `provider` (kind, base URL).
fn use_provider(hive: &Hive, kind: &str, base_url: &str) {
    let node = std::fs::read_to_string(hive.path().join("manifests/node.yaml")).unwrap();
    let node = node.replace("  providers:\n", &format!("  providers:\n    real:\n      kind: {kind}\n      base_url: {base_url}\n      model: smollm2\n      timeout: 120s\n      max_retries: 1\n"));
    hive.write("manifests/node.yaml", &node);
    for agent in ["planner", "worker", "reviewer"] {
        let path = format!("manifests/agents/{agent}.yaml");
        let text = std::fs::read_to_string(hive.path().join(&path))
            .unwrap()
            .replace("provider: swarm", "provider: real");
        hive.write(&path, &text);
    }
    hive.jaros(&["validate"]).expect(0);
}

fn planner_run(hive: &Hive, id: &str, ticket: &str) -> serde_json::Value {
    let input = serde_json::json!({"id": id, "ticket": ticket}).to_string();
    let run = hive.jaros(&["run", "planner", "--id", id, "--input", &input]);
    assert!(run.code() == 0 || run.code() == 1, "{}", run.context());
    run.json()
}

/// The planner decides on a spam ticket and a genuine one; whatever it
/// decides, the outcome follows its decisions and replay reproduces both with
/// zero model calls.
fn the_planner_on_a_real_model(kind: &str, base_url: &str) {
    let hive = example_hive();
    use_provider(&hive, kind, base_url);
    let spam = planner_run(
        &hive,
        "spam",
        "BUY CHEAP WATCHES NOW!!! best prices click here",
    );
    let genuine = planner_run(
        &hive,
        "genuine",
        "My invoice for October charges me twice. Can you fix it?",
    );
    for result in [&spam, &genuine] {
        let state = result["state"].as_str().unwrap();
        assert!(state == "DONE" || state == "FAILED", "{result}");
        // The outcome follows the decisions: a DONE job ran every decision it proposed.
        if state == "DONE" {
            assert_eq!(result["result"]["rejected"], 0, "{result}");
        }
    }
    let logs = hive
        .jaros(&["logs", "--kind", "model", "--json"])
        .expect(0)
        .stdout();
    assert_eq!(logs.lines().count(), 2, "one model call per job: {logs}");
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["byte_identical"], true);
    assert_eq!(report["deterministic"], true);
    assert_eq!(report["model_calls"], 0);
    assert_eq!(report["model_records"], 2);
    println!(
        "{kind}: spam → {}, genuine → {}",
        spam["state"], genuine["state"]
    );
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn the_planner_runs_on_a_real_model_through_the_openai_adapter_and_replays() {
    the_planner_on_a_real_model("openai", &url("JAROS_MODEL_URL", "url"));
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn the_planner_runs_on_a_real_model_through_the_ollama_adapter_and_replays() {
    the_planner_on_a_real_model("ollama", &url("JAROS_OLLAMA_URL", "ollama_url"));
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn answers_that_follow_the_schema_pass_the_gate() {
    let u = url("JAROS_MODEL_URL", "url");
    let hive = example_hive();
    use_provider(&hive, "openai", &u);
    let result = planner_run(&hive, "g1", "Please reset my password, I am locked out.");
    // Constrained to the decisions schema (types and hand-off targets from the
    // grant), the answer parses and nothing is refused for its shape or scope.
    let results = result["result"]["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{result}");
    for r in results {
        let error = r["error"].as_str().unwrap_or("");
        assert!(
            !error.contains("holds no valid decisions")
                && !error.contains("scope:")
                && !error.contains("registered"),
            "{result}"
        );
    }
}
