//! Checking manifests: each document against its kind's JSON Schema (with
//! errors pointed at the offending YAML node), then every cross-reference
//! between documents. Files the manifests name (templates, executables,
//! fixtures) are checked where they are read, in [`super::compile`].

use super::types::*;
use super::yaml::{self, Doc, Pos};
use crate::fsx;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most manifest files one hive may hold.
pub const MAX_MANIFEST_FILES: usize = 4096;
/// Deepest directory nesting under `manifests/`.
pub const MAX_MANIFEST_DIR_DEPTH: usize = 16;

/// One error in one file, at the YAML node it is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Diagnostic {
    /// Path relative to the hive, with `/` separators.
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// A manifest with the file and YAML document it came from.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub file: String,
    pub doc: Doc,
    pub m: T,
}

impl<T> Entry<T> {
    /// A diagnostic at the node `pointer` of this entry's document.
    pub fn error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, self.doc.pos(pointer), message)
    }

    /// Where the node `pointer` is, as `file:line:col`.
    pub fn place(&self, pointer: &str) -> String {
        format!("{}:{}", self.file, self.doc.pos(pointer))
    }
}

/// Every manifest of a hive that passed its schema, by kind, in file order.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub nodes: Vec<Entry<NodeManifest>>,
    pub roles: Vec<Entry<RoleManifest>>,
    pub agents: Vec<Entry<AgentManifest>>,
    pub tools: Vec<Entry<ToolManifest>>,
    pub schedules: Vec<Entry<ScheduleManifest>>,
    pub evals: Vec<Entry<EvalManifest>>,
    /// Manifest files read.
    pub files: usize,
    /// Names declared by documents that failed their schema, by kind: they
    /// still count as defined, so one broken document does not also make
    /// every reference to it an error.
    pub invalid_names: BTreeSet<(Kind, String)>,
    /// Decision types declared by Tool documents that failed their schema.
    pub invalid_types: BTreeSet<String>,
    /// Files that could not be read as YAML at all: any name may be defined
    /// in them, so references are not checked for existence while any exist.
    pub unreadable_files: usize,
}

impl Manifests {
    pub fn documents(&self) -> usize {
        self.nodes.len()
            + self.roles.len()
            + self.agents.len()
            + self.tools.len()
            + self.schedules.len()
            + self.evals.len()
    }
}

/// A manifest of any kind, typed.
#[derive(Debug, Clone)]
pub enum AnyManifest {
    Node(NodeManifest),
    Role(RoleManifest),
    Agent(AgentManifest),
    Tool(ToolManifest),
    Schedule(ScheduleManifest),
    Eval(EvalManifest),
}

/// The manifest files of a hive: every `*.yaml` and `*.yml` under
/// `manifests/`, recursively, sorted, hidden entries skipped. Paths are
/// relative to the hive.
pub fn manifest_files(hive: &Path) -> Result<Vec<String>, Diagnostic> {
    let mut out = Vec::new();
    walk(hive, Path::new("manifests"), 0, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(hive: &Path, rel: &Path, depth: usize, out: &mut Vec<String>) -> Result<(), Diagnostic> {
    let rel_text = rel_string(rel);
    let err = |message: String| Diagnostic::new(&rel_text, Pos::START, message);
    if depth > MAX_MANIFEST_DIR_DEPTH {
        return Err(err(format!(
            "directories nest deeper than {MAX_MANIFEST_DIR_DEPTH} levels under manifests/"
        )));
    }
    for path in fsx::list_dir(&hive.join(rel)).map_err(|e| err(e.to_string()))? {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let child = rel.join(&name);
        // Directory symlinks are not followed: no loops, nothing outside the hive.
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| err(format!("cannot inspect {}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(hive, &child, depth + 1, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            if out.len() >= MAX_MANIFEST_FILES {
                return Err(err(format!(
                    "more than {MAX_MANIFEST_FILES} manifest files under manifests/"
                )));
            }
            out.push(rel_string(&child));
        }
    }
    Ok(())
}

fn rel_string(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads and checks every manifest file of `hive`, each document against
/// its schema. Returns what passed and every error found.
pub fn load(hive: &Path) -> (Manifests, Vec<Diagnostic>) {
    let mut manifests = Manifests::default();
    let mut errors = Vec::new();
    let files = match manifest_files(hive) {
        Ok(files) => files,
        Err(e) => return (manifests, vec![e]),
    };
    manifests.files = files.len();
    let schemas = Schemas::default();
    for file in files {
        let path: PathBuf = hive.join(&file);
        let bytes = match read_capped(&path) {
            Ok(bytes) => bytes,
            Err(message) => {
                errors.push(Diagnostic::new(&file, Pos::START, message));
                manifests.unreadable_files += 1;
                continue;
            }
        };
        let docs = match yaml::parse(&bytes) {
            Ok(docs) => docs,
            Err(e) => {
                manifests.unreadable_files += usize::from(!e.empty);
                errors.push(Diagnostic::new(&file, e.pos, e.message));
                continue;
            }
        };
        for doc in docs {
            match schemas.check(&doc) {
                Ok(m) => add(&mut manifests, &file, doc, m),
                Err(errs) => {
                    remember_names(&mut manifests, &doc.value);
                    errors.extend(
                        errs.into_iter()
                            .map(|(pos, msg)| Diagnostic::new(&file, pos, msg)),
                    );
                }
            }
        }
    }
    (manifests, errors)
}

/// Reads a file, refusing one over [`yaml::MAX_MANIFEST_BYTES`] without
/// reading all of it.
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(yaml::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > yaml::MAX_MANIFEST_BYTES {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(format!(
            "the file is {size} bytes, over the limit of {} bytes for a manifest",
            yaml::MAX_MANIFEST_BYTES
        ));
    }
    Ok(bytes)
}

fn remember_names(m: &mut Manifests, value: &Value) {
    let Ok(kind) = document_kind(value) else {
        return;
    };
    if let Some(name) = value.pointer("/metadata/name").and_then(Value::as_str) {
        m.invalid_names.insert((kind, name.to_string()));
    }
    if kind == Kind::Tool {
        if let Some(ty) = value.pointer("/spec/type").and_then(Value::as_str) {
            m.invalid_types.insert(ty.to_string());
        }
    }
}

fn add(m: &mut Manifests, file: &str, doc: Doc, manifest: AnyManifest) {
    let file = file.to_string();
    match manifest {
        AnyManifest::Node(x) => m.nodes.push(Entry { file, doc, m: x }),
        AnyManifest::Role(x) => m.roles.push(Entry { file, doc, m: x }),
        AnyManifest::Agent(x) => m.agents.push(Entry { file, doc, m: x }),
        AnyManifest::Tool(x) => m.tools.push(Entry { file, doc, m: x }),
        AnyManifest::Schedule(x) => m.schedules.push(Entry { file, doc, m: x }),
        AnyManifest::Eval(x) => m.evals.push(Entry { file, doc, m: x }),
    }
}

// ------------------------------------------------------------ one document

/// The kind a document declares, or why it declares none.
pub fn document_kind(value: &Value) -> Result<Kind, (String, String)> {
    let expected = Kind::ALL.map(Kind::as_str).join(", ");
    let Value::Object(map) = value else {
        return Err((
            String::new(),
            "a manifest must be a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    match map.get("kind") {
        None => Err((
            String::new(),
            format!("missing required field 'kind' (one of {expected})"),
        )),
        Some(Value::String(text)) => Kind::parse(text).ok_or_else(|| {
            (
                "/kind".into(),
                format!("unknown kind '{text}'; expected one of {expected}"),
            )
        }),
        Some(_) => Err((
            "/kind".into(),
            format!("kind must be a string, one of {expected}"),
        )),
    }
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

impl Compiled {
    fn new(kind: Kind) -> Compiled {
        let schema = kind.schema();
        // The schemas are generated from our own types; a test pins that
        // each one compiles.
        let validator = jsonschema::validator_for(&schema).expect("generated schemas compile");
        Compiled { schema, validator }
    }
}

/// The compiled schema of each kind, each compiled when it is first needed.
///
/// A document is checked by its typed parse, which accepts exactly what its
/// kind's JSON Schema accepts (the rules serde alone cannot state live in
/// [`semantic`]; the agreement tests and the manifest fuzzer hold the two
/// together). Only a document the parser refuses is run through its
/// schema, whose errors point at the node at fault. So a valid hive loads
/// without compiling a schema: the validators, and the meta-schema the
/// `jsonschema` crate checks each schema against and keeps for the life of
/// the process, weigh about 1.5 MB, which an idle node does not carry.
#[derive(Default)]
pub struct Schemas {
    compiled: [OnceLock<Compiled>; Kind::ALL.len()],
}

impl Schemas {
    /// One set for the whole process, for callers that check documents one
    /// at a time and often (the fuzz target).
    pub fn shared() -> &'static Schemas {
        static SHARED: OnceLock<Schemas> = OnceLock::new();
        SHARED.get_or_init(Schemas::default)
    }

    fn of(&self, kind: Kind) -> &Compiled {
        // `Kind::ALL` lists the kinds in declaration order.
        self.compiled[kind as usize].get_or_init(|| Compiled::new(kind))
    }

    /// Whether `value` passes the JSON Schema of the kind it declares.
    pub fn accept(&self, value: &Value) -> bool {
        match document_kind(value) {
            Ok(kind) => self.of(kind).validator.is_valid(value),
            Err(_) => false,
        }
    }

    /// Checks one document: its kind, then the typed parse; when that
    /// refuses it, the schema's errors if it has any, else the parser's.
    /// Errors carry the position of the node they are about.
    pub fn check(&self, doc: &Doc) -> Result<AnyManifest, Vec<(Pos, String)>> {
        let kind = document_kind(&doc.value).map_err(|(ptr, msg)| vec![(doc.pos(&ptr), msg)])?;
        let refusal = match parse_typed(kind, &doc.value) {
            Ok(manifest) => return Ok(manifest),
            Err(refusal) => refusal,
        };
        let compiled = self.of(kind);
        let mut errors: Vec<(Pos, String)> = Vec::new();
        for error in compiled.validator.iter_errors(&doc.value) {
            errors.extend(describe(kind, &compiled.schema, doc, &error));
        }
        if errors.is_empty() {
            return Err(vec![(doc.pos(""), refusal)]);
        }
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

/// The typed parse alone, without the schema: what the runtime accepts.
/// Tests check that it agrees with the schema on every fixture.
pub fn parse_document(value: &Value) -> Result<AnyManifest, String> {
    let kind = document_kind(value).map_err(|(_, m)| m)?;
    parse_typed(kind, value)
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}

fn parse_typed(kind: Kind, value: &Value) -> Result<AnyManifest, String> {
    let m = match kind {
        Kind::Node => AnyManifest::Node(typed(value)?),
        Kind::Role => AnyManifest::Role(typed(value)?),
        Kind::Agent => AnyManifest::Agent(typed(value)?),
        Kind::Tool => AnyManifest::Tool(typed(value)?),
        Kind::Schedule => AnyManifest::Schedule(typed(value)?),
        Kind::Eval => AnyManifest::Eval(typed(value)?),
    };
    semantic(&m)?;
    Ok(m)
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} '{name}' {NAME_RULE}"))
    }
}

const NAME_RULE: &str = "may hold only letters, digits, '.', '_' and '-', must start with a letter or digit, and is at most 128 bytes";

/// The rules the schema states that serde types alone do not: ranges,
/// "exactly one of", name patterns. Kept in step with the schema by the
/// schema-agreement tests.
fn semantic(m: &AnyManifest) -> Result<(), String> {
    let name = match m {
        AnyManifest::Node(x) => &x.metadata.name,
        AnyManifest::Role(x) => &x.metadata.name,
        AnyManifest::Agent(x) => &x.metadata.name,
        AnyManifest::Tool(x) => &x.metadata.name,
        AnyManifest::Schedule(x) => &x.metadata.name,
        AnyManifest::Eval(x) => &x.metadata.name,
    };
    check_name("metadata.name", name)?;
    match m {
        AnyManifest::Node(x) => {
            if !(1..=MAX_POOL_SIZE).contains(&x.spec.pool_size) {
                return Err(format!("spec.pool_size must be from 1 to {MAX_POOL_SIZE}"));
            }
            for p in x.spec.providers.values() {
                if p.max_retries.is_some_and(|r| r > 10) {
                    return Err("max_retries must be at most 10".into());
                }
                if let Some(env) = &p.api_key_env {
                    let ok = env
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                        && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        return Err(format!(
                            "api_key_env '{env}' is not an environment variable name"
                        ));
                    }
                }
            }
        }
        AnyManifest::Agent(x) => {
            let s = &x.spec;
            if !(1..=crate::plan::MAX_STEPS_LIMIT).contains(&s.max_steps) {
                return Err(format!(
                    "spec.max_steps must be from 1 to {}",
                    crate::plan::MAX_STEPS_LIMIT
                ));
            }
            match (&s.template, &s.model, &s.prompt) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                _ => return Err(AGENT_ONE_OF.into()),
            }
            if let Some(model) = &s.model {
                if model.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
                    return Err("spec.model.temperature must be from 0 to 2".into());
                }
                if model.max_tokens == Some(0) {
                    return Err("spec.model.max_tokens must be at least 1".into());
                }
            }
        }
        AnyManifest::Tool(x) => {
            let s = &x.spec;
            check_name("spec.type", &s.decision_type)?;
            let handlers = [s.builtin.is_some(), s.command.is_some(), s.mcp.is_some()];
            if handlers.iter().filter(|b| **b).count() != 1 {
                return Err(TOOL_ONE_OF.into());
            }
            if !(1..=MAX_TOOL_OUTPUT_BYTES).contains(&s.max_output_bytes) {
                return Err(format!(
                    "spec.max_output_bytes must be from 1 to {MAX_TOOL_OUTPUT_BYTES}"
                ));
            }
        }
        AnyManifest::Schedule(x) => {
            let s = &x.spec;
            let set = [s.cron.is_some(), s.every.is_some(), s.at.is_some()];
            if set.iter().filter(|b| **b).count() != 1 {
                return Err(SCHEDULE_ONE_OF.into());
            }
        }
        AnyManifest::Eval(x) => {
            if x.spec.cases.is_empty() {
                return Err("spec.cases must hold at least 1 case".into());
            }
            if x.spec
                .cases
                .iter()
                .any(|c| c.responses.is_some() && c.responses_file.is_some())
            {
                return Err(EVAL_RESPONSES.into());
            }
        }
        AnyManifest::Role(_) => {}
    }
    Ok(())
}

const AGENT_ONE_OF: &str =
    "an agent needs exactly one of 'template' (a template agent) or 'model' together with 'prompt' (a model agent)";
const TOOL_ONE_OF: &str = "a tool needs exactly one of 'builtin', 'command' or 'mcp'";
const SCHEDULE_ONE_OF: &str = "a schedule needs exactly one of 'cron', 'every' or 'at'";
const EVAL_RESPONSES: &str = "an eval case takes 'responses' or 'responses_file', not both";

/// A JSON pointer as a field path a person reads: `spec.cases[0].agent`.
pub fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    if out.is_empty() {
        "the document".into()
    } else {
        out
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn expected_type(kind: &jsonschema::error::TypeKind) -> String {
    let one = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "integer" => "an integer".to_string(),
        "array" => "a list".to_string(),
        "object" => "a mapping".to_string(),
        "null" => "null".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        jsonschema::error::TypeKind::Single(t) => one(t),
        jsonschema::error::TypeKind::Multiple(set) => {
            let names: Vec<String> = set
                .iter()
                .filter(|t| t.to_string() != "null")
                .map(|t| one(&t))
                .collect();
            names.join(" or ")
        }
    }
}

/// Follows a schema path through `$ref`s to the schema object it names.
fn resolve_schema<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for token in path.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token == "$ref" {
            let target = cur.get("$ref")?.as_str()?;
            cur = root.pointer(target.strip_prefix('#')?)?;
        } else {
            cur = match cur {
                Value::Object(map) => map.get(&token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
    }
    Some(cur)
}

fn describe(
    kind: Kind,
    schema: &Value,
    doc: &Doc,
    error: &jsonschema::ValidationError<'_>,
) -> Vec<(Pos, String)> {
    use jsonschema::error::ValidationErrorKind as K;
    let pointer = error.instance_path().as_str().to_string();
    let field = field_path(&pointer);
    let at = doc.pos(&pointer);
    let instance = error.instance();
    let found = || short(instance);
    let message = match error.kind() {
        K::AdditionalProperties { unexpected } => {
            let schema_path = error.schema_path().as_str();
            let parent = schema_path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let allowed: Vec<String> = resolve_schema(schema, parent)
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            return unexpected
                .iter()
                .map(|name| {
                    let child = format!("{pointer}/{}", yaml::pointer_token(name));
                    let hint = match closest(name, &allowed) {
                        Some(best) => format!(" (did you mean '{best}'?)"),
                        None => String::new(),
                    };
                    let place = if pointer.is_empty() {
                        String::new()
                    } else {
                        format!(" in {field}")
                    };
                    (
                        doc.key_pos(&child),
                        format!(
                            "unknown field '{name}'{place}{hint}; allowed: {}",
                            allowed.join(", ")
                        ),
                    )
                })
                .collect();
        }
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            if pointer.is_empty() {
                format!("missing required field '{name}'")
            } else {
                format!("missing required field '{name}' in {field}")
            }
        }
        K::Type { kind } => format!(
            "{field} must be {}, not {}",
            expected_type(kind),
            type_name(instance)
        ),
        K::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| {
                            o.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| o.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("{field} must be {}, not {}", one_of(&opts), found())
        }
        K::Constant { expected_value } => {
            format!("{field} must be {expected_value}, not {}", found())
        }
        K::Pattern { pattern } if pattern == NAME_PATTERN => {
            format!("{field} {} {NAME_RULE}", found())
        }
        K::Pattern { pattern } if pattern == DURATION_PATTERN => {
            format!("{field} {} is not a duration; write whole numbers with units d, h, m, s or ms, largest first (such as 30s, 5m or 1h30m)", found())
        }
        K::Pattern { pattern } => {
            format!("{field} {} does not match the pattern {pattern}", found())
        }
        K::Minimum { limit } => format!("{field} must be at least {limit}, not {}", found()),
        K::Maximum { limit } => format!("{field} must be at most {limit}, not {}", found()),
        K::MinItems { limit } => format!(
            "{field} must hold at least {limit} item{}",
            if *limit == 1 { "" } else { "s" }
        ),
        K::OneOfNotValid { context } | K::AnyOf { context } => {
            let branches =
                resolve_schema(schema, error.schema_path().as_str()).and_then(Value::as_array);
            let consts: Option<Vec<String>> = branches.map(|b| {
                b.iter()
                    .filter_map(|s| {
                        s.get("const").map(|c| {
                            c.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| c.to_string())
                        })
                    })
                    .collect()
            });
            match consts {
                // An enum whose variants carry descriptions.
                Some(opts) if !opts.is_empty() && Some(opts.len()) == branches.map(Vec::len) => {
                    format!("{field} must be {}, not {}", one_of(&opts), found())
                }
                _ if pointer == "/spec" && matches!(error.kind(), K::OneOfNotValid { .. }) => {
                    one_of_rule(kind, error)
                }
                // An optional value (`T` or null): describe what is wrong with the `T`.
                _ => {
                    let inner: Vec<&jsonschema::ValidationError<'_>> = context
                        .iter()
                        .flatten()
                        .filter(|e| !matches!(e.kind(), K::Type { kind: jsonschema::error::TypeKind::Single(t) } if t.to_string() == "null"))
                        .collect();
                    match inner.first() {
                        Some(first) => return describe(kind, schema, doc, first),
                        None => format!("{field}: {error}"),
                    }
                }
            }
        }
        K::OneOfMultipleValid { .. } if pointer == "/spec" => one_of_rule(kind, error),
        K::Not { .. } if kind == Kind::Eval => EVAL_RESPONSES.into(),
        _ => format!("{field}: {error}"),
    };
    vec![(at, message)]
}

fn one_of_rule(kind: Kind, error: &jsonschema::ValidationError<'_>) -> String {
    match kind {
        Kind::Agent => AGENT_ONE_OF.into(),
        Kind::Tool => TOOL_ONE_OF.into(),
        Kind::Schedule => SCHEDULE_ONE_OF.into(),
        _ => format!("spec: {error}"),
    }
}

fn one_of(options: &[String]) -> String {
    match options {
        [one] => format!("'{one}'"),
        _ => format!(
            "one of {}",
            options
                .iter()
                .map(|o| format!("'{o}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A value, shortened for a message.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        text.chars().take(57).collect::<String>() + "..."
    } else {
        text
    }
}

/// The allowed name closest to a misspelt one, when it is close enough.
fn closest(name: &str, allowed: &[String]) -> Option<String> {
    allowed
        .iter()
        .map(|a| (edit_distance(name, a), a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min()
        .map(|(_, a)| a.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ------------------------------------------------------- cross-references

/// Checks every reference between manifests: names unique per kind, roles,
/// agents, decision types, hand-off targets, providers.
pub fn cross_check(m: &Manifests, builtin: &crate::plan::Plan) -> Vec<Diagnostic> {
    let mut errors = Vec::new();

    // Names unique per kind; built-in names are taken.
    fn unique<T>(
        errors: &mut Vec<Diagnostic>,
        kind: &str,
        entries: &[Entry<T>],
        name: impl Fn(&T) -> &str,
        builtin: &BTreeSet<String>,
    ) {
        let mut seen: BTreeMap<&str, &Entry<T>> = BTreeMap::new();
        for e in entries {
            let n = name(&e.m);
            if builtin.contains(n) {
                errors.push(e.error(
                    "/metadata/name",
                    format!("{kind} '{n}' is built in; choose another name"),
                ));
            } else if let Some(first) = seen.get(n) {
                errors.push(e.error(
                    "/metadata/name",
                    format!(
                        "duplicate {kind} '{n}': already defined at {}",
                        first.place("/metadata/name")
                    ),
                ));
            } else {
                seen.insert(n, e);
            }
        }
    }
    let none = BTreeSet::new();
    let builtin_agents: BTreeSet<String> = builtin.agents.keys().cloned().collect();
    let builtin_roles: BTreeSet<String> = builtin.roles.keys().cloned().collect();
    unique(&mut errors, "Node", &m.nodes, |x| &x.metadata.name, &none);
    unique(
        &mut errors,
        "Role",
        &m.roles,
        |x| &x.metadata.name,
        &builtin_roles,
    );
    unique(
        &mut errors,
        "Agent",
        &m.agents,
        |x| &x.metadata.name,
        &builtin_agents,
    );
    unique(&mut errors, "Tool", &m.tools, |x| &x.metadata.name, &none);
    unique(
        &mut errors,
        "Schedule",
        &m.schedules,
        |x| &x.metadata.name,
        &none,
    );
    unique(&mut errors, "Eval", &m.evals, |x| &x.metadata.name, &none);
    if let [first, rest @ ..] = m.nodes.as_slice() {
        for e in rest {
            errors.push(e.error(
                "/kind",
                format!(
                    "a hive has one Node manifest; the first is at {}",
                    first.place("/kind")
                ),
            ));
        }
    }

    // Decision types: built in, or handled by exactly one tool.
    let mut types: BTreeMap<&str, &Entry<ToolManifest>> = BTreeMap::new();
    let builtin_handlers: BTreeSet<&str> = builtin
        .types
        .values()
        .filter_map(|t| match &t.handler {
            crate::plan::HandlerSpec::Builtin { name } => Some(name.as_str()),
            crate::plan::HandlerSpec::Exec { .. } => None,
        })
        .collect();
    for t in &m.tools {
        let ty = t.m.spec.decision_type.as_str();
        if builtin.types.contains_key(ty) {
            errors.push(t.error(
                "/spec/type",
                format!("decision type '{ty}' is built in; a Tool cannot redefine it"),
            ));
        } else if let Some(first) = types.get(ty) {
            errors.push(t.error(
                "/spec/type",
                format!(
                    "decision type '{ty}' is already handled by Tool '{}' at {}",
                    first.m.metadata.name,
                    first.place("/spec/type")
                ),
            ));
        } else {
            types.insert(ty, t);
        }
        if let Some(name) = &t.m.spec.builtin {
            if !builtin_handlers.contains(name.as_str()) {
                let known: Vec<&str> = builtin_handlers.iter().copied().collect();
                errors.push(t.error(
                    "/spec/builtin",
                    format!(
                        "no built-in handler '{name}'; built in: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        for (i, scope) in t.m.spec.scopes.iter().enumerate() {
            if !scope.pointer.starts_with('/') {
                errors.push(t.error(
                    &format!("/spec/scopes/{i}/pointer"),
                    format!(
                        "scope pointer '{}' must be a JSON pointer into the payload, such as /path",
                        scope.pointer
                    ),
                ));
            }
        }
        for field in ["payload_schema", "result_schema"] {
            let schema = if field == "payload_schema" {
                &t.m.spec.payload_schema
            } else {
                &t.m.spec.result_schema
            };
            if let Err(e) = jsonschema::validator_for(schema) {
                errors.push(t.error(
                    &format!("/spec/{field}"),
                    format!("{field} is not a valid JSON Schema: {e}"),
                ));
            }
        }
    }
    // While a file is unreadable, anything may be defined in it.
    let blind = m.unreadable_files > 0;
    // An MCP tool's types are `<type>.<tool>`: which tools its lock file
    // lists is checked when the plan is compiled.
    let mcp_prefixes: BTreeSet<String> = m
        .tools
        .iter()
        .filter(|t| t.m.spec.mcp.is_some())
        .map(|t| format!("{}.", t.m.spec.decision_type))
        .collect();
    let registered = |ty: &str| {
        let is_glob = ty.contains(['*', '?']);
        blind
            || builtin.types.contains_key(ty)
            || types.contains_key(ty) && !mcp_prefixes.contains(&format!("{ty}."))
            || m.invalid_types.contains(ty)
            || mcp_prefixes.iter().any(|p| ty.starts_with(p.as_str()))
            || is_glob
                && builtin
                    .types
                    .keys()
                    .map(String::as_str)
                    .chain(types.keys().copied())
                    .any(|known| crate::gate::glob_match(ty, known))
    };
    let invalid = |kind: Kind| {
        m.invalid_names
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, n)| n.as_str())
    };

    // Roles.
    let roles: BTreeSet<&str> = m
        .roles
        .iter()
        .map(|r| r.m.metadata.name.as_str())
        .chain(builtin.roles.keys().map(String::as_str))
        .chain(invalid(Kind::Role))
        .collect();
    let agents: BTreeSet<&str> = m
        .agents
        .iter()
        .map(|a| a.m.metadata.name.as_str())
        .chain(builtin.agents.keys().map(String::as_str))
        .chain(invalid(Kind::Agent))
        .collect();
    for r in &m.roles {
        for (i, ty) in r.m.spec.types.iter().enumerate() {
            if !registered(ty) {
                errors.push(r.error(
                    &format!("/spec/types/{i}"),
                    format!("decision type '{ty}' is not registered: it is neither built in nor handled by a Tool manifest"),
                ));
            }
        }
        for (i, target) in r.m.spec.handoff.iter().enumerate() {
            if !blind && !agents.contains(target.as_str()) {
                errors.push(r.error(
                    &format!("/spec/handoff/{i}"),
                    format!("hand-off target '{target}' is not an agent"),
                ));
            }
        }
        check_approvals(r, &types, builtin, &agents, blind, &mut errors);
        for field in ["read", "write"] {
            let globs = if field == "read" {
                &r.m.spec.read
            } else {
                &r.m.spec.write
            };
            for (i, glob) in globs.iter().enumerate() {
                if let Err(why) = check_glob(glob) {
                    errors.push(r.error(
                        &format!("/spec/{field}/{i}"),
                        format!("glob '{glob}' {why}"),
                    ));
                }
            }
        }
    }

    // Agents.
    let providers: Option<&BTreeMap<String, Provider>> =
        m.nodes.first().map(|n| &n.m.spec.providers);
    for a in &m.agents {
        let role = a.m.spec.role.as_str();
        if !blind && !roles.contains(role) {
            let known: Vec<&str> = roles.iter().copied().collect();
            errors.push(a.error(
                "/spec/role",
                format!("role '{role}' is not defined; roles: {}", known.join(", ")),
            ));
        }
        let grant_types: Option<Vec<&str>> = m
            .roles
            .iter()
            .find(|r| r.m.metadata.name == role)
            .map(|r| r.m.spec.types.iter().map(String::as_str).collect())
            .or_else(|| {
                let g = builtin.roles.get(role)?;
                Some(g.types.iter().map(String::as_str).collect())
            });
        let granted = |ty: &str| {
            let types = grant_types.as_ref().filter(|_| !blind)?;
            Some(
                types
                    .iter()
                    .any(|g| *g == ty || crate::gate::glob_match(g, ty)),
            )
        };
        let spec = &a.m.spec;
        for (pointer, message) in crate::verdict::check(
            &spec.verdicts,
            &spec.examples,
            spec.model.is_some(),
            &granted,
        ) {
            errors.push(a.error(&pointer, message));
        }
        if let Some(model) = &a.m.spec.model {
            let p = model.provider.as_str();
            if blind || m.invalid_names.iter().any(|(k, _)| *k == Kind::Node) {
                continue;
            }
            match providers {
                None => errors.push(a.error(
                    "/spec/model/provider",
                    format!("provider '{p}' is not defined: the hive has no Node manifest with providers"),
                )),
                Some(map) if !map.contains_key(p) => {
                    let known: Vec<&str> = map.keys().map(String::as_str).collect();
                    errors.push(a.error(
                        "/spec/model/provider",
                        format!("provider '{p}' is not defined in the Node manifest; providers: {}", known.join(", ")),
                    ))
                }
                Some(_) => {}
            }
        }
    }

    // Schedules and evals name agents.
    for s in &m.schedules {
        let agent = s.m.spec.agent.as_str();
        if !blind && !agents.contains(agent) {
            errors.push(s.error("/spec/agent", format!("agent '{agent}' is not defined")));
        }
    }
    for e in &m.evals {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, case) in e.m.spec.cases.iter().enumerate() {
            if !blind && !agents.contains(case.agent.as_str()) {
                errors.push(e.error(
                    &format!("/spec/cases/{i}/agent"),
                    format!("agent '{}' is not defined", case.agent),
                ));
            }
            if let Some(first) = names.insert(case.name.as_str(), i) {
                errors.push(e.error(
                    &format!("/spec/cases/{i}/name"),
                    format!(
                        "duplicate case name '{}': case {first} has it already",
                        case.name
                    ),
                ));
            }
        }
    }
    errors
}

/// Compiles every schedule's trigger as of `now` and reports each that does
/// not compile at the field at fault: an invalid cron expression, an unknown
/// time zone, a malformed or zero interval, a bad jitter, an `at` that is
/// malformed or already past. A running node checks the same rules (all but
/// the past `at`) when it loads a schedule, and skips the ones that fail.
pub fn check_schedules(m: &Manifests, now: chrono::DateTime<chrono::Utc>) -> Vec<Diagnostic> {
    m.schedules
        .iter()
        .filter_map(|s| {
            let e = crate::schedule::compile(&s.m.spec, now).err()?;
            let pointer = match e.field {
                "spec" => "/spec".to_string(),
                field => format!("/spec/{field}"),
            };
            Some(s.error(&pointer, e.message))
        })
        .collect()
}

/// A grant glob is relative to the hive and stays inside it.
/// A role's `approvals:` rules: each names a type the role grants, narrows
/// only by scopes that type has, parses its payload rule, and names people
/// who may answer within a bounded time.
fn check_approvals(
    r: &Entry<RoleManifest>,
    types: &BTreeMap<&str, &Entry<ToolManifest>>,
    builtin: &crate::plan::Plan,
    agents: &BTreeSet<&str>,
    blind: bool,
    errors: &mut Vec<Diagnostic>,
) {
    use crate::plan::ScopeKind;
    let scopes_of = |ty: &str| -> Option<Vec<ScopeKind>> {
        if let Some(spec) = builtin.types.get(ty) {
            return Some(spec.scopes.iter().map(|s| s.kind).collect());
        }
        types
            .get(ty)
            .map(|t| t.m.spec.scopes.iter().map(|s| s.kind).collect())
    };
    for (i, a) in r.m.spec.approvals.iter().enumerate() {
        let at = |field: &str| format!("/spec/approvals/{i}{field}");
        let ty = a.decision_type.as_str();
        if !r.m.spec.types.iter().any(|t| t == ty) {
            errors.push(r.error(
                &at("/type"),
                format!("approval rule for '{ty}', which this role does not grant; add it to spec.types or remove the rule"),
            ));
        }
        let scopes = scopes_of(ty);
        let has = |kind: ScopeKind| blind || scopes.as_ref().is_none_or(|s| s.contains(&kind));
        if !a.paths.is_empty() && !has(ScopeKind::Write) {
            errors.push(r.error(
                &at("/paths"),
                format!("'paths' narrows only decisions that write a path (such as fs.write); '{ty}' writes none"),
            ));
        }
        for (j, glob) in a.paths.iter().enumerate() {
            if let Err(why) = check_glob(glob) {
                errors.push(r.error(&at(&format!("/paths/{j}")), format!("glob '{glob}' {why}")));
            }
        }
        if !a.targets.is_empty() && !has(ScopeKind::Handoff) {
            errors.push(r.error(
                &at("/targets"),
                format!("'targets' narrows only hand-offs; '{ty}' hands off to no one"),
            ));
        }
        for (j, target) in a.targets.iter().enumerate() {
            if !blind && !agents.contains(target.as_str()) {
                errors.push(r.error(
                    &at(&format!("/targets/{j}")),
                    format!("hand-off target '{target}' is not an agent"),
                ));
            } else if !r.m.spec.handoff.iter().any(|h| h == target) {
                errors.push(r.error(
                    &at(&format!("/targets/{j}")),
                    format!("this role does not grant hand-off to '{target}' (spec.handoff), so no decision could wait for it"),
                ));
            }
        }
        if let Some(rule) = &a.when {
            if let Err(e) = crate::approval::rule::Rule::parse(rule) {
                errors.push(r.error(&at("/when"), format!("rule '{rule}': {e}")));
            }
        }
        if a.approvers.is_empty() {
            errors.push(r.error(
                &at("/approvers"),
                "an approval rule needs at least one approver, by name",
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, name) in a.approvers.iter().enumerate() {
            if !crate::approval::valid_name(name) {
                errors.push(r.error(
                    &at(&format!("/approvers/{j}")),
                    format!("approver '{name}' {NAME_RULE}"),
                ));
            } else if !seen.insert(name.as_str()) {
                errors.push(r.error(
                    &at(&format!("/approvers/{j}")),
                    format!("approver '{name}' is listed twice"),
                ));
            }
        }
        if let Some(notify) = &a.notify {
            let executable = types
                .get(notify.as_str())
                .is_some_and(|t| t.m.spec.command.is_some());
            if !blind && !executable {
                errors.push(r.error(
                    &at("/notify"),
                    format!("notifier '{notify}' is not the type of an executable Tool (one with `command:` under tools/)"),
                ));
            }
        }
        let ms = a.expires.ms();
        if !(crate::approval::MIN_EXPIRY_MS..=crate::approval::MAX_EXPIRY_MS).contains(&ms) {
            errors.push(r.error(
                &at("/expires"),
                format!("expires '{}' must be from 1s to 30d", a.expires.as_str()),
            ));
        }
    }
}

fn check_glob(glob: &str) -> Result<(), &'static str> {
    if glob.is_empty() {
        return Err("is empty");
    }
    if glob.starts_with('/') || glob.starts_with('\\') {
        return Err("must be relative to the hive, not absolute");
    }
    if glob.split('/').any(|c| c == "..") {
        return Err("must not contain '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_like_code() {
        assert_eq!(field_path("/spec/cases/0/agent"), "spec.cases[0].agent");
        assert_eq!(field_path(""), "the document");
    }

    #[test]
    fn close_names_are_suggested() {
        let allowed = vec!["role".to_string(), "template".to_string()];
        assert_eq!(closest("rol", &allowed).as_deref(), Some("role"));
        assert_eq!(closest("templte", &allowed).as_deref(), Some("template"));
        assert_eq!(closest("zzzzzz", &allowed), None);
    }

    #[test]
    fn every_generated_schema_compiles() {
        let schemas = Schemas::default();
        for kind in Kind::ALL {
            // Compiles (or panics), and sits at its kind's place.
            assert_eq!(schemas.of(kind).schema, kind.schema(), "{kind:?}");
        }
    }
}
