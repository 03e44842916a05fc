//! `jaros plan --diff [REV]`: what a change to the manifests does to the
//! compiled plan, one line a reviewer can read per change. The hive at a git
//! revision is read with `git archive` into a temp dir and compiled by the
//! same loader as the working tree's, so both sides are real plans.

use super::CliError;
use crate::manifest::Loaded;
use crate::plan::{Grant, Plan};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Longest value a change line shows before it is cut.
const MAX_SHOWN_CHARS: usize = 72;

/// One change between two plans.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `+` added or widened, `-` removed or narrowed, `~` changed.
    pub op: char,
    /// `type`, `role`, `agent`, `template` or `schedule`.
    pub kind: &'static str,
    pub name: String,
    /// What changed inside it (a field, a grant list), if not the whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
    /// The line a reviewer reads.
    pub text: String,
}

/// The parts of a hive the diff compares.
pub struct Side<'a> {
    pub plan: &'a Plan,
    pub schedules: BTreeMap<String, Value>,
}

impl<'a> Side<'a> {
    pub fn of(loaded: &'a Loaded) -> Side<'a> {
        let schedules = loaded
            .manifests
            .schedules
            .iter()
            .map(|s| {
                let spec = serde_json::to_value(&s.m.spec).expect("specs serialize");
                (s.m.metadata.name.clone(), spec)
            })
            .collect();
        Side {
            plan: &loaded.plan,
            schedules,
        }
    }
}

fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_SHOWN_CHARS {
        text.chars().take(MAX_SHOWN_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

fn whole(op: char, kind: &'static str, name: &str, summary: String) -> Change {
    let verb = if op == '+' { "added" } else { "removed" };
    Change {
        op,
        kind,
        name: name.to_string(),
        what: None,
        from: None,
        to: None,
        text: format!("{op} {kind} {name}: {verb}{summary}"),
    }
}

/// Leaves of a JSON value by pointer (`/a/b/0`), so nested fields compare
/// one by one.
fn leaves(v: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        other => {
            out.insert(at, other.clone());
        }
    }
}

/// Field-by-field changes of one entity present on both sides.
fn fields(kind: &'static str, name: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(old, String::new(), &mut a);
    leaves(new, String::new(), &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (from, to) = (a.get(key), b.get(key));
        if from == to {
            continue;
        }
        let field = key.trim_start_matches('/').replace('/', ".");
        let text = match (from, to) {
            (Some(f), Some(t)) => format!("~ {kind} {name}: {field} {} → {}", short(f), short(t)),
            (None, Some(t)) => format!("~ {kind} {name}: {field} set to {}", short(t)),
            (Some(f), None) => format!("~ {kind} {name}: {field} {} removed", short(f)),
            (None, None) => continue,
        };
        out.push(Change {
            op: '~',
            kind,
            name: name.to_string(),
            what: Some(field),
            from: from.cloned(),
            to: to.cloned(),
            text,
        });
    }
}

/// The grant lists, item by item: each added item widens, each removed one
/// narrows.
fn grant(name: &str, old: &Grant, new: &Grant, out: &mut Vec<Change>) {
    let lists: [(&str, &str, Vec<&String>, Vec<&String>); 5] = [
        (
            "types",
            "may propose",
            old.types.iter().collect(),
            new.types.iter().collect(),
        ),
        (
            "read",
            "may read",
            old.read.iter().collect(),
            new.read.iter().collect(),
        ),
        (
            "write",
            "may write",
            old.write.iter().collect(),
            new.write.iter().collect(),
        ),
        (
            "handoff",
            "may hand off to",
            old.handoff.iter().collect(),
            new.handoff.iter().collect(),
        ),
        (
            "hosts",
            "may reach",
            old.hosts.iter().collect(),
            new.hosts.iter().collect(),
        ),
    ];
    for (what, verb, a, b) in lists {
        let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
            (a.into_iter().collect(), b.into_iter().collect());
        for (op, items, tail) in [
            ('+', b.difference(&a), ""),
            ('-', a.difference(&b), " no longer"),
        ] {
            for item in items {
                let verb = if tail.is_empty() {
                    verb.to_string()
                } else {
                    verb.replacen("may", "may no longer", 1)
                };
                out.push(Change {
                    op,
                    kind: "role",
                    name: name.to_string(),
                    what: Some(what.to_string()),
                    from: (op == '-').then(|| Value::String((*item).clone())),
                    to: (op == '+').then(|| Value::String((*item).clone())),
                    text: format!("{op} role {name}: {verb} {item}"),
                });
            }
        }
    }
    // Approval rules, whole: a rule added narrows what runs unattended, a
    // rule removed widens it.
    let rule =
        |r: &crate::plan::ApprovalRule| (json(r).to_string(), super::plan_words::approval_words(r));
    // (the rule as JSON, the rule in words)
    type Rules = BTreeSet<(String, String)>;
    let (a, b): (Rules, Rules) = (
        old.approvals.iter().map(rule).collect(),
        new.approvals.iter().map(rule).collect(),
    );
    for (op, items, verb) in [
        ('-', b.difference(&a), "needs approval for"),
        ('+', a.difference(&b), "no longer needs approval for"),
    ] {
        for (item, words) in items {
            let value: Value = serde_json::from_str(item).unwrap_or(Value::Null);
            out.push(Change {
                op,
                kind: "role",
                name: name.to_string(),
                what: Some("approvals".to_string()),
                from: (op == '+').then(|| value.clone()),
                to: (op == '-').then(|| value.clone()),
                text: format!("{op} role {name}: {verb} {words}"),
            });
        }
    }
    let budget = |b: &crate::plan::Budget| serde_json::to_value(b).expect("budgets serialize");
    let before = out.len();
    fields(
        "role",
        name,
        &budget(&old.budget),
        &budget(&new.budget),
        out,
    );
    for c in &mut out[before..] {
        let field = c.what.clone().unwrap_or_default();
        c.what = Some(format!("budget.{field}"));
        let grows = match (&c.from, &c.to) {
            (Some(f), Some(t)) => t.as_f64() > f.as_f64(),
            _ => false,
        };
        c.op = if grows { '+' } else { '-' };
        c.text = format!(
            "{} role {name}: budget {field} {} → {}",
            c.op,
            c.from.as_ref().map(short).unwrap_or_default(),
            c.to.as_ref().map(short).unwrap_or_default()
        );
    }
}

/// Every change from `old` to `new`, in a stable order: types, roles,
/// agents, templates, schedules.
pub fn diff(old: &Side<'_>, new: &Side<'_>) -> Vec<Change> {
    let mut out = Vec::new();
    // Types (tools among them).
    entities(
        "type",
        &old.plan.types,
        &new.plan.types,
        |t| format!(" ({})", short(&json(&t.handler))),
        |name, a, b, out| fields("type", name, &json(a), &json(b), out),
        &mut out,
    );
    entities(
        "role",
        &old.plan.roles,
        &new.plan.roles,
        |g| {
            let types: Vec<&str> = g.types.iter().map(String::as_str).collect();
            format!(", may propose {}", types.join(", "))
        },
        grant,
        &mut out,
    );
    entities(
        "agent",
        &old.plan.agents,
        &new.plan.agents,
        |a| format!(" (role {})", a.role),
        |name, a, b, out| fields("agent", name, &json(a), &json(b), out),
        &mut out,
    );
    entities(
        "template",
        &old.plan.templates,
        &new.plan.templates,
        |t| format!(" (sha256 {})", t.sha256.short()),
        |name, a, b, out| {
            if a.sha256 != b.sha256 {
                out.push(Change {
                    op: '~',
                    kind: "template",
                    name: name.to_string(),
                    what: Some("sha256".into()),
                    from: Some(Value::String(a.sha256.to_hex())),
                    to: Some(Value::String(b.sha256.to_hex())),
                    text: format!(
                        "~ template {name}: content changed (sha256 {} → {})",
                        a.sha256.short(),
                        b.sha256.short()
                    ),
                });
            }
        },
        &mut out,
    );
    entities(
        "schedule",
        &old.schedules,
        &new.schedules,
        |s| format!(" (agent {})", short(&s["agent"])),
        |name, a, b, out| fields("schedule", name, a, b, out),
        &mut out,
    );
    out
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plan parts serialize")
}

fn entities<T: PartialEq>(
    kind: &'static str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    summary: impl Fn(&T) -> String,
    changed: impl Fn(&str, &T, &T, &mut Vec<Change>),
    out: &mut Vec<Change>,
) {
    for (name, b) in new {
        match old.get(name) {
            None => out.push(whole('+', kind, name, summary(b))),
            Some(a) if a != b => changed(name, a, b, out),
            Some(_) => {}
        }
    }
    for (name, a) in old {
        if !new.contains_key(name) {
            out.push(whole('-', kind, name, summary(a)));
        }
    }
}

/// A temp directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, CliError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| CliError::bad_input(format!("cannot run git (is it installed?): {e}")))?;
    if !out.status.success() {
        return Err(CliError::bad_input(format!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The hive's files (manifests/, agents/, tools/, evals/) as they were at
/// `rev`, written into a new temp dir.
pub fn hive_at_rev(hive: &Path, rev: &str) -> Result<TempDir, CliError> {
    let top = PathBuf::from(git(hive, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        CliError::bad_input(format!(
            "{} is not in a git repository, so there is no revision to compare with ({})",
            hive.display(),
            e.message
        ))
    })?);
    let prefix = git(hive, &["rev-parse", "--show-prefix"])?;
    let prefix = prefix.trim_end_matches('/');
    let commit = git(
        hive,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| CliError::bad_input(format!("'{rev}' is not a git revision here")))?;
    let tree = format!("{commit}:{prefix}");
    let parts: Vec<&str> = crate::manifest::embedded::HIVE_DIRS
        .into_iter()
        .filter(|d| {
            let path = if prefix.is_empty() {
                format!("{commit}:{d}")
            } else {
                format!("{tree}/{d}")
            };
            git(&top, &["cat-file", "-e", &path]).is_ok()
        })
        .collect();
    if !parts.contains(&"manifests") {
        return Err(CliError::bad_input(format!(
            "at {rev}, {} has no manifests/: nothing to compare with",
            if prefix.is_empty() {
                "the repository root"
            } else {
                prefix
            }
        )));
    }
    let dir =
        TempDir(std::env::temp_dir().join(format!("jaros-plan-{}", crate::ids::random_hex(12))));
    crate::fsx::create_dir_all(dir.path()).map_err(|e| CliError::failed(e.to_string()))?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(&top)
        .args(["archive", "--format=tar", &tree])
        .args(&parts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::bad_input(format!("cannot run git: {e}")))?;
    let tar_input = archive.stdout.take().expect("stdout is piped");
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir.path())
        .stdin(tar_input)
        .output()
        .map_err(|e| CliError::bad_input(format!("cannot run tar (is it installed?): {e}")))?;
    let git_out = archive
        .wait_with_output()
        .map_err(|e| CliError::failed(format!("git archive: {e}")))?;
    if !git_out.status.success() || !tar.status.success() {
        return Err(CliError::failed(format!(
            "cannot read the hive at {rev}: {}{}",
            String::from_utf8_lossy(&git_out.stderr).trim(),
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    Ok(dir)
}

/// Loads the hive at `rev` (or says why it cannot).
pub fn load_at_rev(hive: &Path, rev: &str) -> Result<(TempDir, Loaded), CliError> {
    let dir = hive_at_rev(hive, rev)?;
    let loaded = crate::manifest::load_hive(dir.path()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|d| format!("  {d}")).collect();
        CliError::failed(format!(
            "the hive's manifests at {rev} do not validate ({} errors), so there is no plan to compare with:\n{}",
            errors.len(),
            lines.join("\n")
        ))
    })?;
    Ok((dir, loaded))
}
