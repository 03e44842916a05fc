//! The manifest kinds as Rust types. The JSON Schemas in `schemas/` are
//! generated from these types and their doc comments, so every field's doc
//! comment is what an editor shows for it.
//!
//! Unknown fields are refused everywhere (`deny_unknown_fields`); nothing here
//! is `untagged` or `flatten`ed, which would blur errors.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The one API version this binary reads.
pub const API_VERSION: &str = "jaros/v1";
/// Longest duration accepted anywhere, in milliseconds (about 31 years).
pub const MAX_DURATION_MS: u64 = 1_000_000_000_000;
/// Largest worker pool a node may ask for.
pub const MAX_POOL_SIZE: u32 = 256;
/// Default output cap of an executable tool, in bytes.
pub const DEFAULT_TOOL_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Largest output cap an executable tool may ask for, in bytes.
pub const MAX_TOOL_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// The pattern of a manifest name: letters, digits, `.`, `_`, `-`.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";
/// The pattern of a duration such as `250ms`, `30s`, `5m`, `1h30m`, `1d`.
pub const DURATION_PATTERN: &str =
    "^(?=[0-9])([0-9]{1,12}d)?([0-9]{1,12}h)?([0-9]{1,12}m)?([0-9]{1,12}s)?([0-9]{1,12}ms)?$";

/// The kinds of manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Role,
    Agent,
    Tool,
    Schedule,
    Eval,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::Role,
        Kind::Agent,
        Kind::Tool,
        Kind::Schedule,
        Kind::Eval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Role => "Role",
            Kind::Agent => "Agent",
            Kind::Tool => "Tool",
            Kind::Schedule => "Schedule",
            Kind::Eval => "Eval",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The file its schema lives in under `schemas/`.
    pub fn schema_file(self) -> String {
        format!("{}.json", self.as_str().to_ascii_lowercase())
    }

    /// The JSON Schema of a whole manifest of this kind.
    pub fn schema(self) -> Value {
        let settings = schemars::generate::SchemaSettings::draft2020_12();
        let generator = settings.into_generator();
        let schema = match self {
            Kind::Node => generator.into_root_schema_for::<NodeManifest>(),
            Kind::Role => generator.into_root_schema_for::<RoleManifest>(),
            Kind::Agent => generator.into_root_schema_for::<AgentManifest>(),
            Kind::Tool => generator.into_root_schema_for::<ToolManifest>(),
            Kind::Schedule => generator.into_root_schema_for::<ScheduleManifest>(),
            Kind::Eval => generator.into_root_schema_for::<EvalManifest>(),
        };
        let mut value = schema.to_value();
        bound_integers(&mut value);
        if let Value::Object(map) = &mut value {
            map.insert(
                "$id".into(),
                Value::String(format!("https://jaros.dev/schemas/{}", self.schema_file())),
            );
        }
        value
    }
}

/// Gives each integer field the range of its Rust type. A schema
/// validator ignores schemars' `format: uint32` and the like, so without
/// this the schema would accept a number the typed parse refuses.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let range: Option<(i128, i128)> = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                Some("uint64" | "uint") => Some((0, u64::MAX.into())),
                Some("int8") => Some((i8::MIN.into(), i8::MAX.into())),
                Some("int16") => Some((i16::MIN.into(), i16::MAX.into())),
                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                Some("int64" | "int") => Some((i64::MIN.into(), i64::MAX.into())),
                _ => None,
            };
            if let Some((min, max)) = range {
                tighten(map, "minimum", min, |old, new| new > old);
                tighten(map, "maximum", max, |old, new| new < old);
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Sets `key` to `bound` unless the bound already there is tighter.
fn tighten(
    map: &mut serde_json::Map<String, Value>,
    key: &str,
    bound: i128,
    tighter: fn(f64, f64) -> bool,
) {
    let keep = map
        .get(key)
        .and_then(Value::as_f64)
        .is_some_and(|old| !tighter(old, bound as f64));
    if keep {
        return;
    }
    let number = match u64::try_from(bound) {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(i64::try_from(bound).expect("an integer type's bound fits i64")),
    };
    map.insert(key.into(), number);
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The API version of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// The first and current version.
    #[serde(rename = "jaros/v1")]
    V1,
}

/// Who a manifest is and what it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The manifest's name, unique among manifests of its kind: letters, digits, `.`, `_`, `-`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What it is for, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels for people and tools; Jaros ignores them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A duration such as `250ms`, `30s`, `5m`, `1h30m` or `1d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration {
    text: String,
    ms: u64,
}

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!("'{text}' is not a duration; write whole numbers with units d, h, m, s or ms, largest first (such as 30s, 5m or 1h30m)")
        };
        // Units in descending order, each at most once.
        const UNITS: [(&str, u64); 5] = [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("ms", 1),
            ("m", 60_000),
            ("s", 1_000),
        ];
        const ORDER: [&str; 5] = ["d", "h", "m", "s", "ms"];
        let mut rest = text;
        let mut total: u64 = 0;
        let mut next = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 12 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let after = &rest[digits..];
            let (unit, factor) = UNITS
                .iter()
                .find(|(u, _)| after.starts_with(u))
                .ok_or_else(bad)?;
            let position = ORDER.iter().position(|u| u == unit).ok_or_else(bad)?;
            if position < next {
                return Err(bad());
            }
            next = position + 1;
            total = total.saturating_add(n.saturating_mul(*factor));
            rest = &after[unit.len()..];
        }
        if total > MAX_DURATION_MS {
            return Err(format!(
                "'{text}' is longer than the longest duration allowed ({MAX_DURATION_MS}ms)"
            ));
        }
        Ok(Duration {
            text: text.to_string(),
            ms: total,
        })
    }

    pub fn ms(&self) -> u64 {
        self.ms
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Duration {
    type Error = String;
    fn try_from(text: String) -> Result<Duration, String> {
        Duration::parse(&text)
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        d.text
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: whole numbers with units d, h, m, s or ms, largest first (such as `30s`, `5m` or `1h30m`).",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

fn duration(text: &str) -> Duration {
    // Only called with the literal defaults below, which parse.
    Duration::parse(text).expect("default durations parse")
}

macro_rules! manifest {
    ($(#[$doc:meta])* $name:ident, $tag:ident, $spec:ty) => {
        /// The `kind` of this manifest.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        pub enum $tag {
            $tag,
        }

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            /// The manifest API version: `jaros/v1`.
            pub api_version: ApiVersion,
            /// What this manifest describes.
            pub kind: $tag,
            /// Its name and description.
            pub metadata: Metadata,
            /// What it declares.
            pub spec: $spec,
        }
    };
}

manifest!(
    /// A Jaros node: where its state lives, its worker pool, claim leases, and the model providers its agents use.
    NodeManifest,
    Node,
    NodeSpec
);
manifest!(
    /// A role: a capability bundle of decision types, file-system scopes, hand-off targets, hosts and budgets.
    RoleManifest,
    Role,
    RoleSpec
);
manifest!(
    /// An agent: its role and how it proposes decisions, by a template or by a model with a prompt template.
    AgentManifest,
    Agent,
    AgentSpec
);
manifest!(
    /// A tool: the decision type it handles, its payload and result schemas, and its built-in or executable implementation.
    ToolManifest,
    Tool,
    ToolSpec
);
manifest!(
    /// A schedule: an agent run with an input at times given by cron, an interval or one instant.
    ScheduleManifest,
    Schedule,
    ScheduleSpec
);
manifest!(
    /// An eval suite: cases that run agents offline with scripted model responses and check what happened.
    EvalManifest,
    Eval,
    EvalSpec
);

// ---------------------------------------------------------------- Node

fn default_pool_size() -> u32 {
    2
}
fn default_lease() -> Duration {
    duration("30s")
}
fn default_heartbeat() -> Duration {
    duration("10s")
}
fn default_scan_interval() -> Duration {
    duration("5s")
}

/// What a node is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Where the node keeps its state (logs, blobs, inbox, results): relative to the hive, or absolute. Default `.jaros-data`. Inside the hive, it is protected from every grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Worker threads that run jobs at once.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 256))]
    pub pool_size: u32,
    /// How long a claimed job stays its node's without a heartbeat before another node may reclaim it.
    #[serde(default = "default_lease")]
    pub lease: Duration,
    /// How often a node renews the leases of the jobs it runs; shorter than `lease`.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Duration,
    /// How often the inbox is scanned when file-system notifications miss a change (as on shared file systems).
    #[serde(default = "default_scan_interval")]
    pub scan_interval: Duration,
    /// Model providers by name; agents name one in `model.provider`.
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
    /// Limits of a hand-off tree (a job, the jobs it hands off to, theirs, …): how deep it may go and how many jobs it may hold. Defaults: depth 8, 64 jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffLimitsSpec>,
    /// How the node starts executable tools.
    #[serde(default, skip_serializing_if = "ToolsSpec::is_default")]
    pub tools: ToolsSpec,
    /// The Ed25519 key that signs the log's checkpoints: a file `jaros keygen` wrote, relative to the hive or absolute. Keep it out of the data dir (whoever can write the data dir must not hold the key). Without it, `jaros checkpoint` needs `--key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<String>,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (e.g. `http://127.0.0.1:4318`; `/v1/traces` is appended): the node sends each job's spans there as the job ends, batched. Spans the collector cannot take in time are dropped and counted (node status, `jaros metrics`), never waited for; `jaros trace` exports them again later, with the same ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^https?://"))]
    pub otlp: Option<String>,
    /// How the node's log is kept: the size its segments are sealed at, and where `jaros gc` archives sealed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSpec>,
    /// How long `jaros gc` keeps results, failed results and unreferenced blobs, and how often the node runs it. Without it, nothing is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

/// How a node's log is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Bytes at which the open segment of the log is sealed (made read-only, never written again) and a new one begun. Default 67108864 (64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4096))]
    pub segment_bytes: Option<u64>,
    /// A directory (relative to the hive, or absolute) that `jaros gc` moves sealed segments to; readers follow them there. Default: sealed segments stay under `log/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

/// How long a node keeps what its jobs leave behind. Logs are never removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    /// How long a finished job's result file is kept after it was written. Default: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Duration>,
    /// How long a failed job's result file is kept. Default: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Duration>,
    /// How long a blob no log record names is kept after it was written. Default: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs: Option<Duration>,
    /// How often a running node applies this retention itself. Default: never (run `jaros gc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
}

/// How a node starts executable tools.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolsSpec {
    /// The user a root node's tools run as: a name from `/etc/passwd` (with its primary group) or `UID[:GID]`. Default `nobody` (65534:65534). A node not running as root runs its tools as its own user and ignores this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^([a-z_][a-z0-9_-]*[$]?|[0-9]+(:[0-9]+)?)$"))]
    pub run_as: Option<String>,
}

impl ToolsSpec {
    fn is_default(&self) -> bool {
        *self == ToolsSpec::default()
    }
}

/// Limits of a hand-off tree, enforced by the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffLimitsSpec {
    /// Most hand-offs between a tree's first job and any job in it. Default 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub max_depth: Option<u32>,
    /// Most jobs one tree may hold, its first job included. Default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_jobs: Option<u32>,
}

/// A kind of model provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// An OpenAI-compatible chat-completions server (OpenAI, llama.cpp server, vLLM, LM Studio).
    Openai,
    /// An Ollama server (`/api/chat`).
    Ollama,
    /// Answers with the rendered prompt itself: for demos and tests.
    Echo,
    /// Answers with responses read from a file, in order: for evals and tests.
    Scripted,
}

/// One model provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// What kind of server or stand-in it is.
    pub kind: ProviderKind,
    /// The server's base URL, such as `http://127.0.0.1:8080` (openai, ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The model used when an agent names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The NAME of the environment variable holding the API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub api_key_env: Option<String>,
    /// How long one request may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retries after a 429, a 5xx or a connection error, with backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub max_retries: Option<u32>,
    /// For `scripted`: a JSON file under the hive holding the list of responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<String>,
}

// ---------------------------------------------------------------- Role

/// What a role grants: default deny, everything listed is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Decision types the role's agents may propose (built-in, such as `advance`, or handled by a Tool manifest).
    #[serde(default)]
    pub types: Vec<String>,
    /// Globs, relative to the hive, of paths its agents may read (`*` within a directory, `**` across directories).
    #[serde(default)]
    pub read: Vec<String>,
    /// Globs, relative to the hive, of paths its agents may write.
    #[serde(default)]
    pub write: Vec<String>,
    /// Agents its agents may hand work off to.
    #[serde(default)]
    pub handoff: Vec<String>,
    /// Hosts its agents' tools may reach.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Whether its agents may read files with more than one hard link (whose other names may lie outside `read`). Default false: such files are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_hard_links: bool,
    /// Limits per job; each one left out takes its default.
    #[serde(default)]
    pub budget: BudgetSpec,
    /// Decisions that wait for a person's verdict before they take effect (see docs/approval.md). The first rule that applies decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalSpec>,
}

fn default_approval_expiry() -> Duration {
    duration("24h")
}

/// One approval rule of a role: which decisions wait for a person, who may answer, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// The decision type that needs a verdict; the role must grant it.
    #[serde(rename = "type")]
    pub decision_type: String,
    /// Only `fs.write`: globs, relative to the hive, of the paths whose writes need a verdict (default: every path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Only `handoff`: the hand-off targets that need a verdict (default: every target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// A payload rule such as `amount > 100` (field path, comparison, number or string literal); a payload it cannot answer needs a verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Who may give the verdict, by name (asserted like a git author).
    pub approvers: Vec<String>,
    /// How long a request lives before it counts as denied with the reason "expired" (default `24h`, at most `30d`).
    #[serde(default = "default_approval_expiry")]
    pub expires: Duration,
    /// A decision type of an executable Tool (a script under `tools/`) run through the harness, confined like any tool, when a request is made: its payload is the request (job, agent, decision, approvers, deadline), to post to a team's chat. Its outcome is audited; it never holds up or fails the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// Limits per job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Decisions accepted per job (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<u32>,
    /// Model calls per job (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_calls: Option<u32>,
    /// Model tokens, in and out, per job (default 200000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Wall-clock time per job (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<Duration>,
}

// ---------------------------------------------------------------- Agent

fn default_max_steps() -> u32 {
    1
}

/// How an agent proposes decisions: exactly one of `template`, or `model` with `prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["template"], "not": {"anyOf": [{"required": ["model"]}, {"required": ["prompt"]}]}},
    {"required": ["model", "prompt"], "not": {"required": ["template"]}}
]))]
pub struct AgentSpec {
    /// The role whose grants bound what this agent may do.
    pub role: String,
    /// What the agent does, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Turns the agent may take in one job; each turn sees the results of the earlier ones.
    #[serde(default = "default_max_steps")]
    #[schemars(range(min = 1, max = 32))]
    pub max_steps: u32,
    /// A deterministic agent: a minijinja template under `agents/` that renders a JSON list of `{type, payload}` decisions. No model is called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A model agent: the model that proposes its decisions (requires `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// A model agent's prompt: a minijinja template under `agents/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A model agent that answers with one word instead of decisions: each verdict it may give (`spam`, `request`, ...) and the decisions the runtime proposes for it, gated like any proposal. The model is asked for `{"verdict": ...}` under constrained decoding, with no system message; an answer outside these verdicts is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub verdicts: BTreeMap<String, Vec<crate::plan::DecisionTemplate>>,
    /// A verdict agent's worked examples, shown to the model as earlier turns (its prompt rendered for each input, then the verdict as the answer) before the job's own input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub examples: Vec<crate::plan::VerdictExample>,
}

/// The model a model agent calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// A provider named in the Node manifest's `providers`.
    pub provider: String,
    /// The model's name at that provider.
    pub model: String,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// Sampling seed, where the provider honours one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Most tokens one response may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
}

// ---------------------------------------------------------------- Tool

fn default_tool_timeout() -> Duration {
    duration("30s")
}
fn default_max_output_bytes() -> u64 {
    DEFAULT_TOOL_OUTPUT_BYTES
}
fn empty_schema() -> Value {
    Value::Object(Default::default())
}

/// A decision type and how it is carried out: exactly one of `builtin`, `command` or `mcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["builtin"], "not": {"anyOf": [{"required": ["command"]}, {"required": ["mcp"]}]}},
    {"required": ["command"], "not": {"anyOf": [{"required": ["builtin"]}, {"required": ["mcp"]}]}},
    {"required": ["mcp"], "not": {"anyOf": [{"required": ["builtin"]}, {"required": ["command"]}]}}
]))]
pub struct ToolSpec {
    /// The decision type this tool handles, such as `greet`; roles grant it by this name.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub decision_type: String,
    /// What the tool does, in a sentence.
    #[serde(default)]
    pub description: String,
    /// JSON Schema every payload must satisfy before the gate accepts the decision.
    #[serde(default = "empty_schema")]
    pub payload_schema: Value,
    /// JSON Schema of the tool's result.
    #[serde(default = "empty_schema")]
    pub result_schema: Value,
    /// Whether the same payload always gives the same result. Deterministic tools are re-run on replay and compared; the results of the others are recorded and read back.
    #[serde(default)]
    pub deterministic: bool,
    /// Payload fields the gate checks against the role's grants.
    #[serde(default)]
    pub scopes: Vec<crate::plan::Scope>,
    /// A handler built into the binary, such as `fs.read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// An executable under `tools/`, relative to the hive: it reads the payload as JSON on stdin and prints the result as JSON on stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How long the executable may run.
    #[serde(default = "default_tool_timeout")]
    pub timeout: Duration,
    /// Environment variables passed through to the executable; all others are cleared.
    #[serde(default)]
    pub env: Vec<String>,
    /// Most bytes of output the executable may print (for an MCP server: of one call's answer).
    #[serde(default = "default_max_output_bytes")]
    #[schemars(range(min = 1, max = 67108864))]
    pub max_output_bytes: u64,
    /// An MCP server whose tools become decision types named `<type>.<tool name>` (such as `git.git_log`); its tool list is pinned in a lock file beside this manifest, written by `jaros mcp lock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<Box<McpSpec>>,
    /// Which of the MCP server's tools become decision types: a list of tool names, or `"*"` for all. Only with `mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,
}

/// An MCP server: exactly one of `command` (stdio) or `url` (Streamable HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["command"], "not": {"required": ["url"]}},
    {"required": ["url"], "not": {"required": ["command"]}}
]))]
pub struct McpSpec {
    /// The server's program, started by the node and spoken to over stdin and stdout: a path relative to the hive, an absolute path, or a name looked up in the server's `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables passed through to `command`; all others are cleared (`PATH` is `/usr/bin:/bin` unless passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_allow: Vec<String>,
    /// Absolute paths outside the hive the server needs to read: its own code (a virtualenv, a `node_modules`) and the system files it reads (`/etc/ssl` for node, `/etc/gitconfig` for git); readable and executable by it under confinement, nothing else outside the hive and the system's run-time files is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<String>,
    /// The server's Streamable HTTP endpoint, such as `https://mcp.example.com/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HTTP headers sent to `url`, each taken from the named environment variable of the node (such as `Authorization: MCP_TOKEN`); values are never recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_from_env: BTreeMap<String, String>,
}

/// Which tools of an MCP server are exposed: a list of names, or `"*"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expose {
    All,
    Names(Vec<String>),
}

impl Serialize for Expose {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expose::All => s.serialize_str("*"),
            Expose::Names(names) => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Expose {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Expose, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "*" => Ok(Expose::All),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom(
                        "expose: each tool name is a string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Expose::Names),
            _ => Err(serde::de::Error::custom(
                "expose: a list of tool names, or \"*\" for all",
            )),
        }
    }
}

impl JsonSchema for Expose {
    fn schema_name() -> Cow<'static, str> {
        "Expose".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A list of tool names, or \"*\" for all.",
            "oneOf": [
                {"const": "*"},
                {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
            ]
        })
    }
}

// ---------------------------------------------------------------- Schedule

// One spec type for schedules: the manifest's `spec` is what the schedule
// module compiles and fires, so the two can never drift apart.
pub use crate::schedule::{CatchUp, ScheduleSpec};

// ---------------------------------------------------------------- Eval

/// Eval cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// The cases, run in order.
    #[schemars(length(min = 1))]
    pub cases: Vec<EvalCase>,
}

/// One eval case: an agent run offline, and what must be true of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"required": ["responses", "responses_file"]}))]
pub struct EvalCase {
    /// The case's name, unique in its suite.
    pub name: String,
    /// The agent to run.
    pub agent: String,
    /// The job's input (any JSON value; null when absent).
    #[serde(default)]
    pub input: Value,
    /// Scripted model responses, in order (model agents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<Vec<String>>,
    /// A JSON file under `evals/` holding the list of scripted responses, instead of `responses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_file: Option<String>,
    /// What a person answers when a decision waits for a verdict (an
    /// approval rule of the agent's role holds it); a decision none of
    /// these names stays waiting and the job ends the case parked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<EvalVerdict>,
    /// What must be true when the job ends.
    #[serde(default)]
    pub expect: Expect,
}

/// A person's verdict an eval case gives on a decision that waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalVerdict {
    /// The decision: its `turn.position` (`1.0`) or its type (the first
    /// waiting decision of that type not yet answered).
    pub decision: String,
    /// Approve or deny.
    pub verdict: EvalAnswer,
    /// Who answers: one of the rule's approvers.
    pub by: String,
    /// A note with an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why, with a denial (required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An eval verdict's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvalAnswer {
    Approve,
    Deny,
}

/// The gate's verdict on a case's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GateVerdict {
    Accept,
    Reject,
}

/// A job's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FinalState {
    #[serde(rename = "DONE")]
    Done,
    #[serde(rename = "FAILED")]
    Failed,
    /// Parked: a decision waits for a person's verdict the case does not give.
    #[serde(rename = "WAITING")]
    Waiting,
}

/// Expectations of an eval case; each one left out is not checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How many decisions were proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<u32>,
    /// The proposed decision types, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// For each decision in order, an object its payload must contain (a subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Vec<Value>>,
    /// Whether the gate accepted every decision or rejected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateVerdict>,
    /// A substring of the rejection or failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For each result in order, an object it must contain (a subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<Value>>,
    /// The job's final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FinalState>,
    /// Whether replaying the job must be deterministic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deterministic: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(Duration::parse("250ms").unwrap().ms(), 250);
        assert_eq!(Duration::parse("30s").unwrap().ms(), 30_000);
        assert_eq!(Duration::parse("1h30m").unwrap().ms(), 5_400_000);
        assert_eq!(Duration::parse("1d").unwrap().ms(), 86_400_000);
        for bad in ["", "5", "m", "30m1h", "5 m", "-1s", "1s1s", "1.5s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_duration_pattern_agrees_with_the_parser() {
        let schema = serde_json::json!({"type": "string", "pattern": DURATION_PATTERN});
        let v = jsonschema::validator_for(&schema).unwrap();
        for text in [
            "250ms",
            "30s",
            "1h30m",
            "1d2h3m4s5ms",
            "",
            "5",
            "m",
            "30m1h",
            "5 m",
            "-1s",
            "1s1s",
            "1.5s",
            "5ms",
            "5m5s",
        ] {
            assert_eq!(
                v.is_valid(&serde_json::json!(text)),
                Duration::parse(text).is_ok(),
                "{text}"
            );
        }
    }
}
