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
