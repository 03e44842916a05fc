//! `jaros new`: scaffolds for the hive's artifacts (agent, role, tool,
//! schedule, eval). Each writes files that validate at once; an agent comes
//! with an eval case that passes unmodified. Nothing is ever overwritten.

use super::{out, CliError, CliResult, Ctx};
use crate::decision::AgentName;
use crate::exit::Outcome;
use crate::fsx;
use std::path::{Path, PathBuf};

/// Write a new agent, role, tool, schedule or eval into the hive: manifests
/// (and the template, script or eval case they need) that validate at once.
/// Refuses a name that is taken or a file that exists; prints what it wrote
/// and what to run next.
///
/// Examples:
///   jaros new agent triage                 # template agent + role + eval case
///   jaros new agent triage --model local   # a model agent on provider `local`
///   jaros new tool lookup --exec           # tools/lookup.sh and its manifest
///   jaros new schedule nightly --agent triage --cron '0 3 * * *'
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// An agent, its prompt or template, a role for it (unless --role), and an
    /// eval case that passes as written.
    Agent(AgentArgs),
    /// A role granting `advance` (add types, paths, hand-offs, hosts).
    Role(RoleArgs),
    /// A tool: a decision type carried out by an executable or a built-in.
    Tool(ToolArgs),
    /// A schedule that submits a job for an agent.
    Schedule(ScheduleArgs),
    /// An eval suite with one case for an agent.
    Eval(EvalArgs),
}

#[derive(clap::Args, Debug)]
struct AgentArgs {
    /// The agent's name (letters, digits, `.`, `_`, `-`).
    name: String,
    /// The role it acts under (default: a new role of the same name).
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// A model agent on this provider of the node manifest, as PROVIDER or
    /// PROVIDER:MODEL (default: the provider's model).
    #[arg(long, value_name = "PROVIDER[:MODEL]", conflicts_with = "template")]
    model: Option<String>,
    /// A template agent: its decisions are rendered, no model (the default).
    #[arg(long)]
    template: bool,
}

#[derive(clap::Args, Debug)]
struct RoleArgs {
    /// The role's name.
    name: String,
}

#[derive(clap::Args, Debug)]
struct ToolArgs {
    /// The tool's name, also its decision type.
    name: String,
    /// Carried out by this built-in handler (fs.read, fs.write, fs.stat,
    /// fs.disk_usage, text.count, sys.info).
    #[arg(long, value_name = "HANDLER", conflicts_with = "exec")]
    builtin: Option<String>,
    /// Carried out by an executable, tools/NAME.sh (the default).
    #[arg(long)]
    exec: bool,
    /// The tools of the MCP server this program starts (stdio), as decision
    /// types NAME.<tool>; lock its tool list with `jaros mcp lock NAME`.
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["exec", "builtin"])]
    mcp: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ScheduleArgs {
    /// The schedule's name.
    name: String,
    /// The agent it submits a job for.
    #[arg(long, value_name = "AGENT")]
    agent: String,
    /// A crontab expression (default: --every 1h).
    #[arg(long, value_name = "EXPR", conflicts_with = "every")]
    cron: Option<String>,
    /// An interval such as 30s, 5m, 1h.
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// The eval suite's name (manifests/evals/NAME.yaml).
    name: String,
    /// The agent its case runs.
    #[arg(long, value_name = "AGENT")]
    agent: String,
}

/// The built-in handlers a tool manifest may name.
const BUILTINS: [&str; 6] = [
    "fs.read",
    "fs.write",
    "fs.stat",
    "fs.disk_usage",
    "text.count",
    "sys.info",
];

/// A file to write: hive-relative path, content, executable.
struct File {
    rel: String,
    text: String,
    executable: bool,
}

impl File {
    fn new(rel: String, text: String) -> File {
        File {
            rel,
            text,
            executable: false,
        }
    }
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    ctx.refuse_typed("new", false, true)?;
    let hive = ctx.hive()?;
    let loaded = super::load_hive(&hive).map_err(|e| CliError {
        message: format!("{}\n(`jaros new` adds to a hive that validates)", e.message),
        ..e
    })?;
    let plan = &loaded.plan;
    let (files, next) = match args.what {
        What::Agent(a) => agent(&loaded, a)?,
        What::Role(r) => {
            let name = checked("role", &r.name)?;
            taken("role", &name, plan.roles.contains_key(&name))?;
            (
                vec![role_file(&name)],
                format!("jaros validate && jaros plan   # then grant it types, paths, hand-offs in manifests/roles/{name}.yaml"),
            )
        }
        What::Tool(t) => tool(plan, t)?,
        What::Schedule(s) => schedule(plan, s)?,
        What::Eval(e) => eval(plan, e)?,
    };
    write_all(&hive, &files)?;
    let prefix = ctx.display_prefix(&hive);
    let mut report = String::new();
    for f in &files {
        report.push_str(&format!("wrote {prefix}{}\n", f.rel));
    }
    report.push_str(&format!("next: {next}\n"));
    out(&report);
    Ok(Outcome::Success)
}

/// A name as manifests accept it, or an error saying the rule.
fn checked(what: &str, name: &str) -> Result<String, CliError> {
    AgentName::new(name).map_err(|_| {
        CliError::bad_input(format!(
            "{what} name '{name}' is not allowed: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most {} bytes",
            crate::decision::MAX_NAME_BYTES
        ))
    })?;
    Ok(name.to_string())
}

fn taken(what: &str, name: &str, is_taken: bool) -> Result<(), CliError> {
    if is_taken {
        return Err(CliError::bad_input(format!(
            "the hive already defines {what} '{name}'; pick another name"
        )));
    }
    Ok(())
}

/// Writes every file, or none if any exists.
fn write_all(hive: &Path, files: &[File]) -> Result<(), CliError> {
    let existing: Vec<&str> = files
        .iter()
        .filter(|f| hive.join(&f.rel).symlink_metadata().is_ok())
        .map(|f| f.rel.as_str())
        .collect();
    if !existing.is_empty() {
        return Err(CliError::bad_input(format!(
            "{} exist{} already; nothing was written (`jaros new` never overwrites: pick another name or remove them)",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        )));
    }
    for f in files {
        let path: PathBuf = hive.join(&f.rel);
        if let Some(parent) = path.parent() {
            fsx::create_dir_all(parent).map_err(|e| CliError::failed(e.to_string()))?;
        }
        fsx::write_durable(&path, f.text.as_bytes())
            .map_err(|e| CliError::failed(e.to_string()))?;
        if f.executable {
            make_executable(&path)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| CliError::failed(format!("cannot make {} executable: {e}", path.display())))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<(), CliError> {
    Ok(())
}

fn role_file(name: &str) -> File {
    File::new(
        format!("manifests/roles/{name}.yaml"),
        format!(
            "# yaml-language-server: $schema=../../schemas/role.json
apiVersion: jaros/v1
kind: Role
metadata:
  name: {name}
  description: What agents with this role may do.
spec:
  # Decision types it may propose; add tools' types here.
  types: [advance]
  # read: [\"notes/**\"]      file-system globs, relative to the hive
  # write: [\"notes/**\"]
  # handoff: [other-agent]   agents it may hand work to
  # hosts: [api.example.com] hosts its tools may reach
  budget:
    decisions: 8
    model_calls: 4
    wall_time: 1m
"
        ),
    )
}

fn agent(loaded: &crate::manifest::Loaded, a: AgentArgs) -> Result<(Vec<File>, String), CliError> {
    let plan = &loaded.plan;
    let name = checked("agent", &a.name)?;
    taken("agent", &name, plan.agents.contains_key(&name))?;
    taken(
        "eval suite",
        &name,
        loaded
            .manifests
            .evals
            .iter()
            .any(|e| e.m.metadata.name == name),
    )?;
    let mut files = Vec::new();
    let role = match a.role {
        Some(role) => {
            let role = checked("role", &role)?;
            let Some(grant) = plan.roles.get(&role) else {
                let known: Vec<&str> = plan.roles.keys().map(String::as_str).collect();
                return Err(CliError::bad_input(format!(
                    "no role '{role}' in this hive; roles: {} (or leave out --role to get a new one)",
                    known.join(", ")
                )));
            };
            if !grant.types.contains("advance") {
                return Err(CliError::bad_input(format!(
                    "role '{role}' does not grant `advance`, which the new agent proposes; add it to the role's types, or leave out --role"
                )));
            }
            role
        }
        None => {
            taken("role", &name, plan.roles.contains_key(&name))?;
            files.push(role_file(&name));
            name.clone()
        }
    };
    let decisions = r#"[{"type": "advance", "payload": {"events": ["start", "complete"], "note": {{ input | tojson }}}}]"#;
    let (spec, template, responses) = match &a.model {
        None => (
            format!("  template: agents/{name}.j2\n"),
            format!(
                "{{#- {name}: renders its decisions from the job's input, no model.
    Decisions are a JSON list of {{\"type\": ..., \"payload\": ...}}. -#}}
{decisions}
"
            ),
            String::new(),
        ),
        Some(m) => {
            let (provider, model) = match m.split_once(':') {
                Some((p, m)) => (p.to_string(), Some(m.to_string())),
                None => (m.clone(), None),
            };
            let providers = loaded
                .manifests
                .nodes
                .first()
                .map(|n| n.m.spec.providers.clone())
                .unwrap_or_default();
            let Some(p) = providers.get(&provider) else {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                return Err(CliError::bad_input(format!(
                    "no model provider '{provider}' in the node manifest; providers: {} (add one under spec.providers in manifests/node.yaml)",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            };
            let model = model
                .or_else(|| p.model.clone())
                .unwrap_or_else(|| provider.clone());
            (
                format!(
                    "  model:\n    provider: {provider}\n    model: {}\n    temperature: 0\n    seed: 7\n    max_tokens: 512\n  prompt: agents/{name}.j2\n",
                    serde_json::to_string(&model).expect("strings serialize")
                ),
                format!(
                    "{{#- {name}: the prompt its model sees; the model answers with decisions
    the role grants, as {{\"decisions\": [...]}}. -#}}
You are {name}. Read the job's input and decide what to do.
Input: {{{{ input | tojson }}}}

Propose one `advance` decision with events [\"start\", \"complete\"] and a short note.
"
                ),
                "      # The model's answers, scripted: the eval runs offline, zero model calls.\n      responses:\n        - '{\"decisions\": [{\"type\": \"advance\", \"payload\": {\"events\": [\"start\", \"complete\"], \"note\": \"done\"}}]}'\n".to_string(),
            )
        }
    };
    files.push(File::new(
        format!("manifests/agents/{name}.yaml"),
        format!(
            "# yaml-language-server: $schema=../../schemas/agent.json
apiVersion: jaros/v1
kind: Agent
metadata:
  name: {name}
spec:
  role: {role}
  description: What {name} does, in a sentence.
{spec}"
        ),
    ));
    files.push(File::new(format!("agents/{name}.j2"), template));
    files.push(File::new(
        format!("manifests/evals/{name}.yaml"),
        format!(
            "# yaml-language-server: $schema=../../schemas/eval.json
apiVersion: jaros/v1
kind: Eval
metadata:
  name: {name}
  description: {name}'s tests, offline.
spec:
  cases:
    - name: {name}-completes
      agent: {name}
      input: {{note: hello}}
{responses}      expect:
        types: [advance]
        gate: accept
        state: DONE
        deterministic: true
"
        ),
    ));
    let next = format!(
        "jaros validate && jaros eval manifests/evals/{name}.yaml && jaros run {name} --input '{{\"note\": \"hi\"}}'"
    );
    Ok((files, next))
}

fn tool(plan: &crate::plan::Plan, t: ToolArgs) -> Result<(Vec<File>, String), CliError> {
    let name = checked("tool", &t.name)?;
    taken("decision type", &name, plan.types.contains_key(&name))?;
    let manifest = format!("manifests/tools/{name}.yaml");
    let head = format!(
        "# yaml-language-server: $schema=../../schemas/tool.json
apiVersion: jaros/v1
kind: Tool
metadata:
  name: {name}
spec:
  type: {name}
  description: What {name} does, in a sentence.
"
    );
    if let Some(command) = &t.mcp {
        let files = vec![File::new(
            manifest,
            format!(
                "{head}  mcp:\n    command: {}\n    args: []\n    env_allow: []\n    install: []\n  expose: \"*\"\n  timeout: 30s\n  max_output_bytes: 1048576\n",
                serde_json::to_string(command).expect("a string serializes"),
            ),
        )];
        let next = format!(
            "jaros mcp lock {name}   # starts the server once and writes manifests/tools/{name}.mcp-lock.json; commit it, then grant `{name}.*` (or single tools) in a role"
        );
        return Ok((files, next));
    }
    let files = match t.builtin {
        Some(builtin) => {
            if !BUILTINS.contains(&builtin.as_str()) {
                return Err(CliError::bad_input(format!(
                    "no built-in handler '{builtin}'; built-ins: {}",
                    BUILTINS.join(", ")
                )));
            }
            let builtin_type = plan.types.get(&builtin);
            let schema = builtin_type
                .map(|t| t.payload_schema.clone())
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            let scopes = builtin_type
                .map(|t| serde_json::to_value(&t.scopes).expect("scopes serialize"))
                .unwrap_or_else(|| serde_json::json!([]));
            vec![File::new(
                manifest,
                format!(
                    "{head}  builtin: {builtin}\n  deterministic: {}\n  payload_schema: {}\n  scopes: {}\n",
                    builtin_type.is_some_and(|t| t.deterministic),
                    serde_json::to_string(&schema).expect("schemas serialize"),
                    serde_json::to_string(&scopes).expect("scopes serialize"),
                ),
            )]
        }
        None => vec![
            File::new(
                manifest,
                format!(
                    "{head}  command: tools/{name}.sh
  timeout: 5s
  env: []
  max_output_bytes: 65536
  deterministic: true
  payload_schema:
    type: object
    properties:
      text: {{type: string, maxLength: 1024}}
    additionalProperties: false
  result_schema:
    type: object
    properties:
      received: {{type: object}}
    required: [received]
"
                ),
            ),
            File {
                rel: format!("tools/{name}.sh"),
                text: format!(
                    "#!/bin/sh
# {name}: reads the decision's payload as JSON on stdin and prints its result
# as JSON on stdout; a non-zero exit fails the decision. It runs with a cleared
# environment, in a scratch directory, confined to its role's grants.
set -eu
payload=$(cat)
printf '{{\"received\": %s}}\\n' \"$payload\"
"
                ),
                executable: true,
            },
        ],
    };
    let next = format!(
        "jaros validate   # then add `{name}` to a role's types, and have an agent propose {{\"type\": \"{name}\", \"payload\": {{...}}}}"
    );
    Ok((files, next))
}

fn schedule(plan: &crate::plan::Plan, s: ScheduleArgs) -> Result<(Vec<File>, String), CliError> {
    let name = checked("schedule", &s.name)?;
    known_agent(plan, &s.agent)?;
    let trigger = match (&s.cron, &s.every) {
        (Some(cron), _) => format!(
            "cron: {}",
            serde_json::to_string(cron).expect("strings serialize")
        ),
        (None, Some(every)) => format!(
            "every: {}",
            serde_json::to_string(every).expect("strings serialize")
        ),
        (None, None) => "every: 1h".to_string(),
    };
    let file = File::new(
        format!("manifests/schedules/{name}.yaml"),
        format!(
            "# yaml-language-server: $schema=../../schemas/schedule.json
apiVersion: jaros/v1
kind: Schedule
metadata:
  name: {name}
  description: When {agent} runs, and why.
spec:
  agent: {agent}
  input: {{}}
  {trigger}
  timezone: UTC
  # After downtime: skip the missed runs, run once, or all (bounded).
  catch_up: skip
  enabled: true
",
            agent = s.agent
        ),
    );
    Ok((
        vec![file],
        "jaros validate && jaros schedules   # a running node (`jaros serve`) fires it".to_string(),
    ))
}

fn eval(plan: &crate::plan::Plan, e: EvalArgs) -> Result<(Vec<File>, String), CliError> {
    let name = checked("eval suite", &e.name)?;
    let spec = known_agent(plan, &e.agent)?;
    let model = matches!(spec.kind, crate::plan::AgentKind::Model { .. });
    let responses = if model {
        "      # The model's answers, scripted (one per turn): zero model calls.\n      responses: ['{\"decisions\": []}']\n"
    } else {
        ""
    };
    let file = File::new(
        format!("manifests/evals/{name}.yaml"),
        format!(
            "# yaml-language-server: $schema=../../schemas/eval.json
apiVersion: jaros/v1
kind: Eval
metadata:
  name: {name}
spec:
  cases:
    - name: {name}-runs
      agent: {agent}
      input: {{}}
{responses}      # Add what must hold: decisions, types, payloads, gate (accept or
      # reject, with reason), results, state (DONE or FAILED).
      expect:
        deterministic: true
",
            agent = e.agent
        ),
    );
    Ok((
        vec![file],
        format!("jaros eval manifests/evals/{name}.yaml"),
    ))
}

fn known_agent<'p>(
    plan: &'p crate::plan::Plan,
    agent: &str,
) -> Result<&'p crate::plan::AgentSpec, CliError> {
    plan.agents.get(agent).ok_or_else(|| {
        let known: Vec<&str> = plan.agents.keys().map(String::as_str).collect();
        CliError::bad_input(format!(
            "no agent '{agent}' in this hive; agents: {}",
            known.join(", ")
        ))
    })
}
