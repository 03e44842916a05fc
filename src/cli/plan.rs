//! `jaros plan`: the compiled plan, as a table for review or as JSON.

use super::plan_words::{approval_scope, ms};
use super::{out, out_json, CliResult, Ctx};
use crate::exit::Outcome;
use crate::plan::{AgentKind, Budget, HandlerSpec, Plan};
use serde_json::json;

/// Print the plan the hive's manifests compile into: each agent with its
/// role, decision types, file-system globs, hand-off targets and budgets;
/// each decision type with its handler; the templates; and the digest a
/// node records in its log. Made to be read in a pull request.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print `{"digest": ..., "plan": ...}` instead of tables.
    #[arg(long)]
    json: bool,
    /// Compare the plan of the working tree with the plan at a git revision
    /// (default HEAD): types, grants, agents, templates, schedules, one line
    /// per change (`+` added or widened, `-` removed or narrowed, `~` changed).
    /// With --json, one object for bots.
    ///
    /// Example (pre-commit, CI): jaros plan --diff origin/main
    #[arg(long, value_name = "GIT_REV", num_args = 0..=1, default_missing_value = "HEAD")]
    diff: Option<String>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let hive = ctx.hive()?;
    if let Some(rev) = &args.diff {
        return diff(&hive, rev, args.json);
    }
    let plan = super::load_plan(&hive)?;
    if args.json {
        out_json(&json_of(&plan));
    } else {
        out(&render(&plan));
    }
    Ok(Outcome::Success)
}

/// What `jaros plan --json` prints: also `jaros mcp serve`'s `plan` tool.
pub fn json_of(plan: &Plan) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(&plan.canonical_json()).expect("the canonical JSON parses");
    json!({"digest": plan.digest().to_hex(), "plan": value})
}

/// `jaros plan --diff REV`.
fn diff(hive: &std::path::Path, rev: &str, as_json: bool) -> CliResult {
    use super::plan_diff::{self, Side};
    let now = super::load_hive(hive)?;
    let (_dir, then) = plan_diff::load_at_rev(hive, rev)?;
    let changes = plan_diff::diff(&Side::of(&then), &Side::of(&now));
    let (from, to) = (then.plan.digest(), now.plan.digest());
    if as_json {
        out_json(&json!({
            "rev": rev,
            "from": from.to_hex(),
            "to": to.to_hex(),
            "changes": changes,
        }));
    } else {
        let mut text = format!(
            "plan {} ({rev}) → {} (working tree): {} change{}\n",
            from.short(),
            to.short(),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        );
        for c in &changes {
            text.push_str(&c.text);
            text.push('\n');
        }
        out(&text);
    }
    Ok(Outcome::Success)
}

fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.into_iter().map(String::as_str).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn budget(b: &Budget) -> String {
    format!(
        "{} decisions, {} model calls, {} tokens, {}",
        b.decisions,
        b.model_calls,
        b.tokens,
        ms(b.wall_ms)
    )
}

/// Lays rows out in columns under a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            s.push(' ');
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 1));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// The roles' approval rules, when any role has one (see docs/approval.md).
fn approvals(plan: &Plan) -> String {
    let rows: Vec<Vec<String>> = plan
        .roles
        .iter()
        .flat_map(|(name, g)| {
            g.approvals.iter().map(move |a| {
                vec![
                    name.clone(),
                    a.decision_type.clone(),
                    approval_scope(a).unwrap_or_else(|| "-".into()),
                    a.approvers.join(", "),
                    ms(a.expires_ms),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\napprovals ({})\n{}",
        rows.len(),
        table(
            &["ROLE", "TYPE", "APPLIES TO", "APPROVERS", "EXPIRES"],
            &rows
        )
    )
}

/// The plan as tables a reviewer reads.
pub fn render(plan: &Plan) -> String {
    let mut text = format!("plan sha256:{}\n\n", plan.digest());

    text.push_str(&format!("agents ({})\n", plan.agents.len()));
    let rows: Vec<Vec<String>> = plan
        .agents
        .iter()
        .map(|(name, a)| {
            let kind = match &a.kind {
                AgentKind::Builtin { .. } => "built-in".to_string(),
                AgentKind::Template { template } => format!("template {template}"),
                AgentKind::Model {
                    provider,
                    model,
                    template,
                    ..
                } => format!("model {provider}/{model}, prompt {template}"),
            };
            let grant = plan.roles.get(&a.role);
            vec![
                name.clone(),
                kind,
                a.role.clone(),
                a.max_steps.to_string(),
                grant
                    .map(|g| list(&g.types))
                    .unwrap_or_else(|| "(no such role)".into()),
                grant.map(|g| list(&g.read)).unwrap_or_else(|| "-".into()),
                grant.map(|g| list(&g.write)).unwrap_or_else(|| "-".into()),
                grant
                    .map(|g| list(&g.handoff))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    text.push_str(&table(
        &[
            "AGENT",
            "PROPOSES BY",
            "ROLE",
            "STEPS",
            "TYPES",
            "READ",
            "WRITE",
            "HAND-OFF",
        ],
        &rows,
    ));

    text.push_str(&format!("\nroles ({})\n", plan.roles.len()));
    let rows: Vec<Vec<String>> = plan
        .roles
        .iter()
        .map(|(name, g)| vec![name.clone(), budget(&g.budget), list(&g.hosts)])
        .collect();
    text.push_str(&table(&["ROLE", "BUDGET PER JOB", "HOSTS"], &rows));
    text.push_str(&approvals(plan));

    text.push_str(&format!("\ndecision types ({})\n", plan.types.len()));
    let rows: Vec<Vec<String>> = plan
        .types
        .iter()
        .map(|(name, t)| {
            let handler = match &t.handler {
                HandlerSpec::Builtin { name } => format!("built-in {name}"),
                HandlerSpec::Exec {
                    command,
                    sha256,
                    timeout_ms,
                    ..
                } => {
                    format!(
                        "exec {command} (sha256:{}, timeout {})",
                        sha256.short(),
                        ms(*timeout_ms)
                    )
                }
            };
            let scopes: Vec<String> = t
                .scopes
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        serde_json::to_value(s.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        s.pointer
                    )
                })
                .collect();
            vec![
                name.clone(),
                handler,
                if t.deterministic { "yes" } else { "no" }.to_string(),
                list(&scopes),
            ]
        })
        .collect();
    text.push_str(&table(
        &["TYPE", "HANDLER", "DETERMINISTIC", "SCOPES"],
        &rows,
    ));

    text.push_str(&format!("\ntemplates ({})\n", plan.templates.len()));
    let rows: Vec<Vec<String>> = plan
        .templates
        .iter()
        .map(|(name, t)| {
            vec![
                name.clone(),
                format!("sha256:{}", t.sha256.short()),
                format!("{} bytes", t.source.len()),
            ]
        })
        .collect();
    text.push_str(&table(&["TEMPLATE", "CONTENT", "SIZE"], &rows));

    text.push_str(&format!(
        "\nprotected from every grant: {}\n",
        list(&plan.protected)
    ));
    text
}
