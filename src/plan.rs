//! The compiled plan: the decision-type registry, the grant table, the agents
//! and their prompt templates. The gate and executor read nothing else.
//!
//! Owns the plan's data, its digest, and the built-in part every hive has. It
//! does not own reading manifests (that is [`crate::manifest`], which compiles
//! into this) and holds no model or node configuration.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{self, Digest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

/// Default per-job budgets, used where a role names none.
pub const DEFAULT_MAX_DECISIONS: u32 = 64;
pub const DEFAULT_MAX_MODEL_CALLS: u32 = 16;
pub const DEFAULT_MAX_TOKENS: u64 = 200_000;
pub const DEFAULT_MAX_WALL_MS: u64 = 300_000;
/// The hive's own machinery: never readable or writable through a grant.
/// `evals/` holds the scripted responses a provider reads at call time and
/// `.git/` the hooks git runs: either, written, would act outside any grant.
pub const PROTECTED_PATHS: [&str; 6] = [
    "manifests",
    "agents",
    "tools",
    "evals",
    ".git",
    ".jaros-data",
];
/// Most turns any agent may take in one job.
pub const MAX_STEPS_LIMIT: u32 = 32;
/// Default most hand-offs between a hand-off tree's first job and any job in it.
pub const DEFAULT_MAX_HANDOFF_DEPTH: u32 = 8;
/// Default most jobs one hand-off tree may hold, its first job included.
pub const DEFAULT_MAX_TREE_JOBS: u32 = 64;

/// Limits of a hand-off tree (from the node manifest's `handoff`): the
/// gate refuses a hand-off past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffLimits {
    pub max_depth: u32,
    pub max_jobs: u32,
}

impl Default for HandoffLimits {
    fn default() -> Self {
        HandoffLimits {
            max_depth: DEFAULT_MAX_HANDOFF_DEPTH,
            max_jobs: DEFAULT_MAX_TREE_JOBS,
        }
    }
}

impl HandoffLimits {
    fn is_default(&self) -> bool {
        *self == HandoffLimits::default()
    }
}

/// How a decision type is carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerSpec {
    /// Implemented inside the binary.
    Builtin { name: String },
    /// An executable under the hive's `tools/`.
    Exec {
        /// Path relative to the hive.
        command: String,
        /// sha256 of the executable's bytes when the plan was compiled.
        sha256: Digest,
        timeout_ms: u64,
        max_output_bytes: u64,
        /// Environment variables passed through (all others are cleared).
        env: Vec<String>,
    },
}

/// The built-in handler of every decision type an MCP tool handles: it
/// finds the server and tool in [`Plan::mcp`] by the decision's type.
pub const MCP_HANDLER: &str = "mcp";

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum McpServer {
    /// A process started by the node, speaking over stdin and stdout.
    Stdio {
        /// A path relative to the hive, an absolute path, or a name looked
        /// up in the server's `PATH`.
        command: String,
        args: Vec<String>,
        /// Environment variables passed through (all others are cleared).
        env: Vec<String>,
        /// Absolute directories outside the hive holding the server's own
        /// code, readable (and executable) by it when confined.
        install: Vec<String>,
    },
    /// Streamable HTTP at `url`.
    Http {
        url: String,
        /// HTTP header name to the environment variable holding its value.
        headers_from_env: BTreeMap<String, String>,
    },
}

/// One tool as its server lists it, and as its lock file pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpTool {
    /// Its name on the server, such as `get_current_time`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
    /// JSON Schema of its structured result, when it declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// One MCP server of the plan: how to reach it, its locked tool list, and
/// which of its tools are exposed as which decision types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerPlan {
    pub server: McpServer,
    /// Every tool the lock file lists, sorted by name.
    pub tools: Vec<McpTool>,
    /// Decision type to tool name, for the exposed tools.
    pub exposed: BTreeMap<String, String>,
    /// The lock file, relative to the hive, and its sha256.
    pub lock_file: String,
    pub lock_sha256: Digest,
    pub timeout_ms: u64,
    pub max_output_bytes: u64,
}

/// Which part of a payload the gate checks against a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    /// A path the decision reads, checked against the role's `read` globs.
    Read,
    /// A path the decision writes, checked against the role's `write` globs.
    Write,
    /// An agent the decision hands off to.
    Handoff,
    /// A host the decision reaches.
    Host,
}

/// A payload field (JSON pointer) that is checked against a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// JSON pointer into the payload, such as `/path`.
    pub pointer: String,
    /// What the field names.
    pub kind: ScopeKind,
}

/// One registered decision type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeSpec {
    pub handler: HandlerSpec,
    pub payload_schema: Value,
    pub result_schema: Value,
    /// Deterministic built-in handlers are re-executed on replay and
    /// compared; the results of the others are recorded and read back.
    pub deterministic: bool,
    pub scopes: Vec<Scope>,
    pub description: String,
}

impl TypeSpec {
    /// Whether replay executes this type again (in memory) and compares,
    /// rather than reading its recorded result back. Executable tools never
    /// run again, whatever their manifest says: replay starts no process.
    pub fn reexecuted_on_replay(&self) -> bool {
        self.deterministic && matches!(self.handler, HandlerSpec::Builtin { .. })
    }

    /// Whether this type's effect reaches outside its job: a file, a child
    /// job, a process. Such a decision is durable before its effect starts,
    /// whoever proposed it (the prime rule follows the effect). Executable
    /// tools always do; of the built-ins, those named in
    /// [`BUILTINS_REACHING_OUTSIDE`].
    pub fn reaches_outside(&self) -> bool {
        match &self.handler {
            HandlerSpec::Exec { .. } => true,
            HandlerSpec::Builtin { name } => BUILTINS_REACHING_OUTSIDE.contains(&name.as_str()),
        }
    }
}

/// The built-in handlers whose effect reaches outside the job (a child job
/// in the inbox, a file in the hive, a call to an MCP server). The others
/// only compute a result: `advance` moves the job's own state machine, and
/// the read-only ones (`fs.read`, `fs.stat`, …) change nothing outside.
pub const BUILTINS_REACHING_OUTSIDE: [&str; 3] = ["handoff", "fs.write", MCP_HANDLER];

/// Per-job limits a role sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub decisions: u32,
    pub model_calls: u32,
    pub tokens: u64,
    pub wall_ms: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            decisions: DEFAULT_MAX_DECISIONS,
            model_calls: DEFAULT_MAX_MODEL_CALLS,
            tokens: DEFAULT_MAX_TOKENS,
            wall_ms: DEFAULT_MAX_WALL_MS,
        }
    }
}

/// What a role grants: default deny, everything listed here is allowed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub types: BTreeSet<String>,
    /// Globs relative to the hive.
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub handoff: BTreeSet<String>,
    pub hosts: BTreeSet<String>,
    pub budget: Budget,
    /// Files with more than one hard link may be read (their other names
    /// may lie outside the read globs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_hard_links: bool,
    /// Decisions that wait for a person's verdict, first applying rule
    /// first. Left out of the plan's JSON when empty, so a role without
    /// approvals keeps its digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRule>,
}

/// One compiled approval rule of a role (see `docs/approval.md`; the payload
/// rule's language lives in [`crate::approval::rule`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    #[serde(rename = "type")]
    pub decision_type: String,
    /// Globs a decision's write scope must match for the rule to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Hand-off targets a decision's hand-off scope must name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub approvers: Vec<String>,
    pub expires_ms: u64,
    /// The executable tool's decision type run when a request is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// How an agent proposes decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AgentKind {
    /// Built into the binary (the `advance` agent).
    Builtin { name: String },
    /// A template renders the decisions directly; no model.
    Template { template: String },
    /// A model proposes the decisions from a rendered prompt.
    Model {
        provider: String,
        model: String,
        template: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
        /// The model answers with one verdict, which the runtime maps to
        /// decisions (see [`crate::verdict`]). Left out of the plan's JSON
        /// when absent, so an agent without verdicts keeps its digest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdicts: Option<Verdicts>,
    },
}

/// A model agent's verdicts: the words it may answer with, each mapped to
/// the decisions the runtime proposes for it, and the worked examples the
/// model is shown first. The mapping is part of the plan, so a resumed job
/// and a replay derive the same decisions from the recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdicts {
    /// Each verdict and its decisions, in the order they are proposed.
    pub map: BTreeMap<String, Vec<DecisionTemplate>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<VerdictExample>,
}

/// One decision a verdict stands for: a fixed type and a payload whose
/// strings may be minijinja templates over the job (see [`crate::verdict`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionTemplate {
    /// The decision type; the agent's role must grant it.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload. A string that is one `{{ expression }}` becomes the expression's value (`"{{ input }}"` is the job input as an object); any other string with template syntax renders to text.
    #[serde(default)]
    pub payload: Value,
}

/// A worked example a verdict agent's model is shown before the job's own
/// input: an input, rendered by the agent's prompt as a job's would be, and
/// the verdict it deserves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictExample {
    /// An input like a job's.
    pub input: Value,
    /// The verdict it deserves; one of the agent's `verdicts`.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub role: String,
    pub max_steps: u32,
    pub kind: AgentKind,
    pub description: String,
}

/// A prompt or decision template and its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub source: String,
    pub sha256: Digest,
}

/// The compiled plan. Serializable, so a node records it in its log and replay
/// runs under the plan that was in force, not today's manifests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub types: BTreeMap<String, TypeSpec>,
    pub roles: BTreeMap<String, Grant>,
    pub agents: BTreeMap<String, AgentSpec>,
    pub templates: BTreeMap<String, TemplateSpec>,
    /// Hive paths no grant reaches, whatever its globs say.
    pub protected: Vec<String>,
    /// Limits of every hand-off tree. Left out of the plan's JSON when they
    /// are the defaults, so a plan without them keeps its digest.
    #[serde(default, skip_serializing_if = "HandoffLimits::is_default")]
    pub handoff: HandoffLimits,
    /// MCP servers by the Tool manifest that declares them, with their
    /// locked tool lists. Left out when empty, so a plan without MCP keeps
    /// its digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp: BTreeMap<String, McpServerPlan>,
    #[serde(skip)]
    validators: Arc<OnceLock<HashMap<String, Arc<jsonschema::Validator>>>>,
}

impl PartialEq for Plan {
    fn eq(&self, other: &Plan) -> bool {
        self.types == other.types
            && self.roles == other.roles
            && self.agents == other.agents
            && self.templates == other.templates
            && self.protected == other.protected
            && self.handoff == other.handoff
            && self.mcp == other.mcp
    }
}

impl Plan {
    pub fn new(
        types: BTreeMap<String, TypeSpec>,
        roles: BTreeMap<String, Grant>,
        agents: BTreeMap<String, AgentSpec>,
        templates: BTreeMap<String, TemplateSpec>,
    ) -> Plan {
        Plan {
            types,
            roles,
            agents,
            templates,
            protected: PROTECTED_PATHS.iter().map(|p| p.to_string()).collect(),
            handoff: HandoffLimits::default(),
            mcp: BTreeMap::new(),
            validators: Arc::default(),
        }
    }

    /// The plan every hive starts from: the built-in decision types, the
    /// built-in `advance` agent and its role.
    pub fn builtin() -> Plan {
        let mut roles = BTreeMap::new();
        roles.insert(
            "advance".to_string(),
            Grant {
                types: ["advance".to_string()].into(),
                ..Grant::default()
            },
        );
        let mut agents = BTreeMap::new();
        agents.insert(
            "advance".to_string(),
            AgentSpec {
                role: "advance".into(),
                max_steps: 1,
                kind: AgentKind::Builtin {
                    name: "advance".into(),
                },
                description: "Proposes one advance decision (start, complete) with its input as the note; needs no model.".into(),
            },
        );
        Plan::new(builtin_types(), roles, agents, BTreeMap::new())
    }

    /// The canonical JSON of the plan: what its digest covers and what the log
    /// stores as the plan blob.
    pub fn canonical_json(&self) -> String {
        // The plan holds only strings, numbers that are integers or finite
        // floats from validated manifests, and JSON schemas: always canonical.
        canon::to_string_of(self).expect("a plan has a canonical form")
    }

    pub fn digest(&self) -> Digest {
        Digest::of_bytes(self.canonical_json().as_bytes())
    }

    pub fn from_canonical_json(text: &str) -> Result<Plan, String> {
        serde_json::from_str(text).map_err(|e| format!("not a plan: {e}"))
    }

    /// The MCP server and tool behind decision type `kind`, if an MCP tool
    /// handles it: the declaring manifest's name, its server, the tool.
    pub fn mcp_tool(&self, kind: &str) -> Option<(&str, &McpServerPlan, &McpTool)> {
        self.mcp.iter().find_map(|(manifest, server)| {
            let name = server.exposed.get(kind)?;
            let tool = server.tools.iter().find(|t| &t.name == name)?;
            Some((manifest.as_str(), server, tool))
        })
    }

    /// The grant of an agent's role.
    pub fn grant_of(&self, agent: &str) -> Option<&Grant> {
        self.agents.get(agent).and_then(|a| self.roles.get(&a.role))
    }

    /// Whether decision type `kind` hands off (its handler is the built-in
    /// `handoff`): what a hand-off tree's limits apply to.
    pub fn is_handoff(&self, kind: &str) -> bool {
        self.types.get(kind).is_some_and(
            |t| matches!(&t.handler, HandlerSpec::Builtin { name } if name == "handoff"),
        )
    }

    /// The compiled payload validator of a decision type.
    pub fn payload_validator(&self, kind: &str) -> Option<Arc<jsonschema::Validator>> {
        let map = self.validators.get_or_init(|| {
            self.types
                .iter()
                .filter_map(|(name, spec)| {
                    // Schemas were checked when the plan was compiled; one that
                    // does not compile here has no validator and the gate
                    // refuses its decisions (see gate::check_schema).
                    jsonschema::validator_for(&spec.payload_schema)
                        .ok()
                        .map(|v| (name.clone(), Arc::new(v)))
                })
                .collect()
        });
        map.get(kind).cloned()
    }
}

/// The payload schema of `advance`.
pub fn advance_payload_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "items": {"enum": ["start", "block", "unblock", "complete", "fail", "reset"]},
                "minItems": 1,
                "maxItems": 16
            },
            "note": {}
        },
        "required": ["events"],
        "additionalProperties": false
    })
}

fn builtin(
    description: &str,
    payload_schema: Value,
    result_schema: Value,
    deterministic: bool,
    scopes: Vec<Scope>,
) -> TypeSpec {
    let name = description
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    TypeSpec {
        handler: HandlerSpec::Builtin { name },
        payload_schema,
        result_schema,
        deterministic,
        scopes,
        description: description.to_string(),
    }
}

/// A payload naming a `path`, plus `extra` properties, all of them
/// required: a write without its content is the gate's to refuse.
fn path_payload(extra: Value) -> Value {
    let mut props = json!({"path": {"type": "string", "minLength": 1, "maxLength": 4096}});
    if let (Value::Object(p), Value::Object(e)) = (&mut props, extra) {
        p.extend(e);
    }
    let required: Vec<&String> = props
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn scope(pointer: &str, kind: ScopeKind) -> Vec<Scope> {
    vec![Scope {
        pointer: pointer.into(),
        kind,
    }]
}

/// The decision types built into every hive.
pub fn builtin_types() -> BTreeMap<String, TypeSpec> {
    let any = json!({});
    let mut t = BTreeMap::new();
    t.insert(
        "advance".into(),
        builtin(
            "advance: drive the job's state machine with events",
            advance_payload_schema(),
            json!({"type": "object", "required": ["from", "to"]}),
            true,
            vec![],
        ),
    );
    t.insert(
        "handoff".into(),
        builtin(
            "handoff: enqueue a job for another agent, linked to this one",
            json!({
                "type": "object",
                "properties": {"agent": {"type": "string", "minLength": 1}, "input": {}},
                "required": ["agent"],
                "additionalProperties": false
            }),
            json!({"type": "object", "required": ["job"]}),
            true,
            scope("/agent", ScopeKind::Handoff),
        ),
    );
    t.insert(
        "fs.read".into(),
        builtin(
            "fs.read: read a text file inside the read grant",
            path_payload(json!({})),
            any.clone(),
            false,
            scope("/path", ScopeKind::Read),
        ),
    );
    t.insert(
        "fs.write".into(),
        builtin(
            "fs.write: write a text file inside the write grant",
            path_payload(json!({"content": {"type": "string"}})),
            any.clone(),
            true,
            scope("/path", ScopeKind::Write),
        ),
    );
    t.insert(
        "fs.stat".into(),
        builtin(
            "fs.stat: describe a file or list a directory (capped) inside the read grant",
            path_payload(json!({})),
            any.clone(),
            false,
            scope("/path", ScopeKind::Read),
        ),
    );
    t.insert(
        "fs.disk_usage".into(),
        builtin(
            "fs.disk_usage: total, used and free bytes of the file system holding a path",
            path_payload(json!({})),
            any.clone(),
            false,
            scope("/path", ScopeKind::Read),
        ),
    );
    t.insert(
        "text.count".into(),
        builtin(
            "text.count: lines, words, chars and bytes of a file (size capped)",
            path_payload(json!({})),
            any.clone(),
            false,
            scope("/path", ScopeKind::Read),
        ),
    );
    t.insert(
        "sys.info".into(),
        builtin(
            "sys.info: the host's OS, architecture, CPU count, memory and uptime",
            json!({"type": "object", "additionalProperties": false}),
            any,
            false,
            vec![],
        ),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_changes_with_any_part_of_the_plan() {
        let a = Plan::builtin();
        let mut b = Plan::builtin();
        assert_eq!(a.digest(), b.digest());
        b.roles.get_mut("advance").unwrap().budget.decisions = 1;
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn a_plan_round_trips_through_its_canonical_json() {
        let a = Plan::builtin();
        let b = Plan::from_canonical_json(&a.canonical_json()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn every_builtin_schema_compiles() {
        let plan = Plan::builtin();
        for name in plan.types.keys() {
            assert!(plan.payload_validator(name).is_some(), "{name}");
        }
    }
}
