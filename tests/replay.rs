//! Replay's promises: in memory, the live data dir untouched, twice,
//! divergence and non-determinism caught and named.

mod common;

use common::{fingerprint, Hive};
use jaros::agents::LocalProposer;
use jaros::canon::JsonText;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, Decision, JobId};
use jaros::exec::{Cx, Executor, Handler, Outcome};
use jaros::job::{ProposedTurn, Proposer, Ticket, TurnRequest};
use jaros::log::record::seal;
use jaros::log::{read_log, Body};
use jaros::plan::{AgentKind, AgentSpec, Grant, HandlerSpec, Plan, TypeSpec};
use jaros::replay::{replay, Options};
use jaros::runtime::Runtime;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A handler that claims to be deterministic and is not.
struct Counter(AtomicU64);

impl Handler for Counter {
    fn run(&self, _: &Cx<'_>, _: &Decision) -> Result<Outcome, String> {
        Ok(Outcome::result(
            json!({"n": self.0.fetch_add(1, Ordering::SeqCst)}),
        ))
    }
}

struct Fixed(&'static str);

impl Proposer for Fixed {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        Ok(ProposedTurn {
            text: self.0.to_string(),
            call: None,
        })
    }
}

fn plan_with_counter() -> Plan {
    let mut plan = Plan::builtin();
    plan.types.insert(
        "count".into(),
        TypeSpec {
            handler: HandlerSpec::Builtin {
                name: "count".into(),
            },
            payload_schema: json!({"type": "object"}),
            result_schema: json!({}),
            deterministic: true,
            scopes: vec![],
            description: "count: a deliberately non-deterministic handler".into(),
        },
    );
    plan.roles.insert(
        "counter".into(),
        Grant {
            types: ["count".to_string()].into(),
            ..Grant::default()
        },
    );
    plan.agents.insert(
        "counter".into(),
        AgentSpec {
            role: "counter".into(),
            max_steps: 1,
            kind: AgentKind::Builtin {
                name: "counter".into(),
            },
            description: String::new(),
        },
    );
    plan
}

fn run_one(
    hive: &Hive,
    plan: Plan,
    executor: &Executor,
    proposer: &dyn Proposer,
    agent: &str,
    id: &str,
) {
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let runner = rt.runner(executor, proposer, &live, &|| true);
    let ticket = Ticket {
        job: JobId::new(id).unwrap(),
        agent: AgentName::new(agent).unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    runner.run(&ticket, &[]).unwrap();
}

#[test]
fn a_non_deterministic_handler_is_flagged_by_replay() {
    let hive = Hive::empty();
    let executor = Executor::core().with("count", Arc::new(Counter(AtomicU64::new(0))));
    run_one(
        &hive,
        plan_with_counter(),
        &executor,
        &Fixed(r#"[{"type":"count","payload":{}}]"#),
        "counter",
        "c1",
    );
    let report = replay(&DataDir::new(hive.data()), &executor, &Options::default()).unwrap();
    assert!(
        !report.deterministic,
        "two passes of a counting handler must disagree"
    );
    assert!(!report.byte_identical);
    let d = report.divergence.clone().expect("the divergence is named");
    assert_eq!(d.job.as_str(), "c1");
    assert_eq!(d.agent.as_str(), "counter");
    assert_eq!(d.decision.unwrap().as_str(), "c1#1.0");
    assert!(d.what.contains("re-executing 'count'"), "{}", d.what);
    assert!(!report.reproducible());
}

/// A read-back result is read back as recorded; one that no JSON value
/// holds (a number out of range, in a line made by hand) is a divergence at
/// its effect, not a panic.
#[test]
fn a_recorded_result_is_read_back_and_an_unreadable_one_is_a_divergence() {
    let hive = Hive::empty();
    let mut plan = plan_with_counter();
    plan.types.get_mut("count").unwrap().deterministic = false;
    let executor = Executor::core().with("count", Arc::new(Counter(AtomicU64::new(0))));
    run_one(
        &hive,
        plan.clone(),
        &executor,
        &Fixed(r#"[{"type":"count","payload":{}}]"#),
        "counter",
        "c1",
    );
    let data = DataDir::new(hive.data());
    let report = replay(&data, &executor, &Options::default()).unwrap();
    assert!(report.reproducible(), "{:?}", report.divergence);
    assert_eq!(report.effects_read_back, 1);
    let path = hive.log_file();
    let index = position_of(&path, |b| matches!(b, Body::Effect { .. }));
    let unreadable: JsonText = serde_json::from_str(r#"{"n":1e400}"#).unwrap();
    assert!(unreadable.to_value().is_err());
    reseal_with(&path, index, |body| {
        if let Body::Effect { result, .. } = body {
            *result = unreadable.clone();
        }
    });
    let report = replay(&data, &executor, &Options::default()).unwrap();
    assert!(report.chain_intact);
    let d = report.divergence.expect("the divergence is named");
    assert_eq!(d.record.seq, index as u64 + 1);
    assert_eq!(d.decision.unwrap().as_str(), "c1#1.0");
    assert!(d.what.contains("job state after the effect"), "{}", d.what);
}

#[test]
fn a_deterministic_run_replays_byte_identically_and_leaves_the_data_dir_untouched() {
    let hive = Hive::empty();
    let executor = Executor::core();
    for i in 0..3 {
        run_one(
            &hive,
            Plan::builtin(),
            &executor,
            &LocalProposer::default(),
            "advance",
            &format!("a{i}"),
        );
    }
    let before = fingerprint(&hive.data());
    let report = replay(&DataDir::new(hive.data()), &executor, &Options::default()).unwrap();
    assert_eq!(
        fingerprint(&hive.data()),
        before,
        "replay wrote into the live data dir"
    );
    assert!(report.reproducible(), "{report:?}");
    assert_eq!(
        (
            report.jobs,
            report.decisions,
            report.model_calls,
            report.tool_executions
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(report.final_states.get("DONE"), Some(&3));
}

/// Rewrites one record with `edit` and re-seals the whole chain after it, as
/// a tamperer who knows the format would: the chain is intact, only replay can
/// tell.
fn reseal_with(path: &std::path::Path, index: usize, edit: impl Fn(&mut Body)) {
    let log = read_log(path).unwrap();
    let mut prev = jaros::canon::Digest::ZERO;
    let mut out = String::new();
    for (i, record) in log.records.into_iter().enumerate() {
        let mut body = record.body;
        if i == index {
            edit(&mut body);
        }
        let (line, hash) = seal(i as u64 + 1, &prev, &body).unwrap();
        out += &line;
        out.push('\n');
        prev = hash;
    }
    std::fs::write(path, out).unwrap();
}

/// Where the first record that `is` picks sits in the log at `path`.
fn position_of(path: &std::path::Path, is: impl Fn(&Body) -> bool) -> usize {
    let log = read_log(path).unwrap();
    log.records.iter().position(|r| is(&r.body)).unwrap()
}

/// An effect's result, edited to say the job failed.
fn effect_says_failed(body: &mut Body) {
    if let Body::Effect { result, .. } = body {
        *result = JsonText::from_value(&json!({"from": "PENDING", "to": "FAILED"})).unwrap();
    }
}

#[test]
fn a_hand_edited_effect_is_a_divergence_named_by_record_job_agent_and_decision() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance", "--id", "e1", "--input", "{}"])
        .expect(0);
    let path = hive.log_file();
    let index = position_of(&path, |b| matches!(b, Body::Effect { .. }));
    reseal_with(&path, index, effect_says_failed);
    let run = hive.jaros(&["replay", "--json"]).expect(1);
    let report = run.json();
    assert_eq!(report["chain_intact"], true);
    assert_eq!(report["byte_identical"], false);
    let d = &report["divergence"];
    assert_eq!(d["record"]["seq"], index as u64 + 1);
    assert_eq!(
        (
            d["job"].as_str(),
            d["agent"].as_str(),
            d["decision"].as_str()
        ),
        (Some("e1"), Some("advance"), Some("e1#1.0"))
    );
    // The human form names it too.
    let human = hive.jaros(&["replay"]).expect(1).stdout();
    assert!(
        human.contains("first divergence: record")
            && human.contains("job e1 agent advance decision e1#1.0"),
        "{human}"
    );
}

/// An end's result is compared as the canonical text the log holds: a
/// changed step result is named, and so is the same value written other
/// than canonically (a line the writer never writes).
#[test]
fn a_hand_edited_end_result_is_a_divergence_that_shows_both_results() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance", "--id", "r1", "--input", "{}"])
        .expect(0);
    hive.jaros(&["replay"]).expect(0);
    let path = hive.log_file();
    let original = std::fs::read(&path).unwrap();
    let log = read_log(&path).unwrap();
    let index = log
        .records
        .iter()
        .position(|r| matches!(r.body, Body::End { .. }))
        .unwrap();
    let Body::End { result, .. } = &log.records[index].body else {
        unreachable!()
    };
    let recorded = result.to_value().unwrap();
    assert_eq!(recorded["results"][0]["result"]["to"], "DONE");
    let mut changed = recorded.clone();
    changed["results"][0]["result"]["to"] = json!("FAILED");
    let spaced = result.as_str().replacen('{', "{ ", 1);
    for (edit, shows) in [
        (JsonText::from_value(&changed).unwrap(), "\"to\":\"FAILED\""),
        (
            serde_json::from_str::<JsonText>(&spaced).unwrap(),
            "{ \"decisions\"",
        ),
    ] {
        std::fs::write(&path, &original).unwrap();
        reseal_with(&path, index, |body| {
            if let Body::End { result, .. } = body {
                *result = edit.clone();
            }
        });
        let report = hive.jaros(&["replay", "--json"]).expect(1).json();
        assert_eq!(report["chain_intact"], true);
        let d = &report["divergence"];
        assert_eq!(d["record"]["seq"], index as u64 + 1);
        assert_eq!(d["job"], "r1");
        let what = d["what"].as_str().unwrap();
        assert!(
            what.starts_with("the job's result is {\"decisions\":1,")
                && what.contains("\"to\":\"DONE\"")
                && what
                    .split("the log records")
                    .nth(1)
                    .unwrap()
                    .contains(shows),
            "{what}"
        );
    }
}

/// A log past two 4,096-line chunks is read in parts, one per thread (on a
/// machine with two cores or more): records in a later part are named by
/// their own seq, and `--until` cuts inside one.
#[test]
fn a_log_read_in_parts_names_its_records_and_cuts_at_until_like_one_list() {
    let hive = Hive::empty();
    let rt = Arc::new(
        Runtime::open(
            hive.path(),
            DataDir::new(hive.data()),
            "n1".into(),
            Plan::builtin(),
        )
        .unwrap(),
    );
    let executor = Arc::new(Executor::core());
    let (threads, jobs) = (4, 2_100); // four records a job: 8,400 records
    std::thread::scope(|s| {
        for t in 0..threads {
            let (rt, executor) = (rt.clone(), executor.clone());
            s.spawn(move || {
                let live = rt.live_io();
                let proposer = LocalProposer::default();
                let runner = rt.runner(&executor, &proposer, &live, &|| true);
                for i in (t..jobs).step_by(threads) {
                    let ticket = Ticket {
                        job: JobId::new(format!("p{i}")).unwrap(),
                        agent: AgentName::new("advance").unwrap(),
                        input: json!({}),
                        parent: None,
                        via: None,
                    };
                    runner.run(&ticket, &[]).unwrap();
                }
            });
        }
    });
    drop(rt);
    let dir = DataDir::new(hive.data());
    let records = read_log(&hive.log_file()).unwrap().records.len() as u64;
    let until = records - 1_000;
    let cut = replay(
        &dir,
        &executor,
        &Options {
            job: None,
            until: Some(until),
        },
    )
    .unwrap();
    assert!(cut.reproducible(), "{cut:?}");
    assert_eq!(cut.records, until);
    // An effect near the end, edited and resealed: named by its own seq.
    let path = hive.log_file();
    let log = read_log(&path).unwrap();
    let index = log
        .records
        .iter()
        .rposition(|r| matches!(r.body, Body::Effect { .. }))
        .unwrap();
    let Body::Effect { job, .. } = &log.records[index].body else {
        unreachable!()
    };
    reseal_with(&path, index, effect_says_failed);
    let report = replay(&dir, &executor, &Options::default()).unwrap();
    let d = report.divergence.expect("the edit is found");
    assert_eq!((d.record.seq, &d.job), (index as u64 + 1, job));
    assert_eq!(report.records, records);
}

#[test]
fn an_effect_edited_without_resealing_breaks_the_chain() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance", "--id", "e2"]).expect(0);
    let path = hive.log_file();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"to\":\"DONE\"", "\"to\":\"FAILED\"");
    std::fs::write(&path, text).unwrap();
    let report = hive.jaros(&["replay", "--json"]).expect(1).json();
    assert_eq!(report["chain_intact"], false);
    hive.jaros(&["verify"]).expect(1);
}

#[test]
fn replay_exit_codes_are_0_reproducible_1_divergent_2_nothing() {
    let hive = Hive::empty();
    std::fs::create_dir_all(hive.data().join("log")).unwrap();
    let nothing = hive.jaros(&["replay"]).expect(2);
    assert!(
        nothing.stderr().contains("nothing to replay"),
        "{}",
        nothing.stderr()
    );
    hive.jaros(&["run", "advance"]).expect(0);
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn a_failed_job_is_attributed_to_its_agent_and_decision() {
    let hive = Hive::empty();
    let executor = Executor::core();
    // The advance agent's role cannot propose `handoff`: rejected, job fails.
    let bad = Fixed(r#"[{"type":"handoff","payload":{"agent":"advance"}}]"#);
    run_one(&hive, Plan::builtin(), &executor, &bad, "advance", "f1");
    let report = replay(&DataDir::new(hive.data()), &executor, &Options::default()).unwrap();
    assert!(report.reproducible(), "{report:?}");
    assert_eq!(report.failures.len(), 1);
    let f = &report.failures[0];
    assert_eq!(
        (
            f.agent.as_str(),
            f.decision.as_ref().unwrap().as_str(),
            f.kind.as_deref()
        ),
        ("advance", "f1#1.0", Some("handoff"))
    );
    assert!(
        f.reason
            .contains("role 'advance' of agent 'advance' does not grant decision type 'handoff'"),
        "{}",
        f.reason
    );
}

#[test]
fn every_decision_of_a_turn_runs_in_order() {
    let hive = Hive::empty();
    let executor = Executor::core();
    let turn = Fixed(
        r#"[{"type":"advance","payload":{"events":["start"]}},{"type":"advance","payload":{"events":["block"]}},{"type":"advance","payload":{"events":["unblock","complete"]}}]"#,
    );
    run_one(&hive, Plan::builtin(), &executor, &turn, "advance", "m1");
    let done = std::fs::read_dir(hive.data().join("log")).unwrap().count();
    assert_eq!(done, 1);
    let report = replay(&DataDir::new(hive.data()), &executor, &Options::default()).unwrap();
    assert_eq!(report.decisions, 3);
    assert_eq!(report.final_states.get("DONE"), Some(&1), "{report:?}");
}

#[test]
fn a_failing_multi_event_decision_applies_nothing() {
    let hive = Hive::empty();
    let executor = Executor::core();
    // complete is undefined from PENDING: start must not be half-applied.
    let turn = Fixed(r#"[{"type":"advance","payload":{"events":["start","reset"]}}]"#);
    run_one(&hive, Plan::builtin(), &executor, &turn, "advance", "t1");
    let log = read_log(&hive.log_file()).unwrap();
    let effect = log.records.iter().find_map(|r| match &r.body {
        Body::Effect { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(
        effect.unwrap().as_deref(),
        Some("no transition from RUNNING on event 'reset' (event 1 of the decision)")
    );
    let end = log.records.iter().find_map(|r| match &r.body {
        Body::End { state, .. } => Some(*state),
        _ => None,
    });
    // PENDING --fail--> FAILED: the start was not applied.
    assert_eq!(end, Some(jaros::state::State::Failed));
    let report = replay(&DataDir::new(hive.data()), &executor, &Options::default()).unwrap();
    assert!(report.reproducible());
}
