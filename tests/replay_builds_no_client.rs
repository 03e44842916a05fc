//! Replay never builds a model client: with client construction made to
//! panic, a replay of a run with model calls still completes. Alone in its
//! own test binary because the guard is process-wide.

mod common;

use common::Hive;
use jaros::datadir::DataDir;
use jaros::model::{client_for, forbid_clients, ProviderConfig, ProviderKind};

#[test]
fn replay_never_builds_a_model_client() {
    let hive = Hive::empty();
    hive.write("manifests/node.yaml", "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    p:\n      kind: echo\n");
    hive.write(
        "manifests/roles/r.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\nspec:\n  types: [advance]\n",
    );
    hive.write("manifests/agents/a.yaml", "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  role: r\n  model:\n    provider: p\n    model: m\n  prompt: agents/a.j2\n");
    hive.write(
        "agents/a.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
    );
    hive.jaros(&["run", "a", "--id", "m1"]).expect(0);

    forbid_clients(true);
    let built = std::panic::catch_unwind(|| {
        client_for(&ProviderConfig::new("p", ProviderKind::Echo)).is_ok()
    });
    assert!(built.is_err(), "the guard must make construction panic");
    let report = jaros::replay::replay(
        &DataDir::new(hive.data()),
        &jaros::exec::Executor::core(),
        &Default::default(),
    )
    .unwrap();
    forbid_clients(false);
    assert!(report.reproducible());
    assert_eq!((report.model_calls, report.model_records), (0, 1));
}
