//! Compiling a Tool manifest that names an MCP server: its lock file is read
//! and checked against the manifest (present, same server, every exposed
//! tool listed), and each exposed tool becomes a decision type
//! `<type>.<tool name>` whose payload schema is the tool's input schema,
//! handled by the built-in [`crate::plan::MCP_HANDLER`].

use super::types::{Expose, McpSpec, ToolManifest};
use super::validate::{Diagnostic, Entry};
use crate::canon::Digest;
use crate::mcp::lock;
use crate::plan::{HandlerSpec, McpServer, McpServerPlan, TypeSpec, MCP_HANDLER};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The server a manifest's `mcp:` names, as the plan and the lock hold it.
pub fn server_of(spec: &McpSpec) -> McpServer {
    match (&spec.command, &spec.url) {
        (_, Some(url)) if spec.command.is_none() => McpServer::Http {
            url: url.clone(),
            headers_from_env: spec.headers_from_env.clone(),
        },
        (command, _) => McpServer::Stdio {
            command: command.clone().unwrap_or_default(),
            args: spec.args.clone(),
            env: spec.env_allow.clone(),
            install: spec.install.clone(),
        },
    }
}

/// The decision type of MCP tool `tool` of the Tool manifest whose `type` is `prefix`.
pub fn decision_type(prefix: &str, tool: &str) -> String {
    format!("{prefix}.{tool}")
}

/// The result schema of every MCP decision type: what its effect records.
pub fn result_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["content", "isError"],
        "properties": {
            "content": {"type": "array"},
            "isError": {"type": "boolean"},
            "structuredContent": {}
        }
    })
}

/// A compiled MCP server and its decision types.
pub type Compiled = (McpServerPlan, Vec<(String, TypeSpec)>);

/// The server of `t` and its decision types, or what is wrong.
pub fn compile(
    hive: &Path,
    t: &Entry<ToolManifest>,
    spec: &McpSpec,
) -> Result<Compiled, Vec<Diagnostic>> {
    let s = &t.m.spec;
    let name = &t.m.metadata.name;
    let mut errors = Vec::new();
    if spec.command.is_some() == spec.url.is_some() {
        errors.push(t.error(
            "/spec/mcp",
            "an MCP server has exactly one of `command` (stdio) or `url` (Streamable HTTP)",
        ));
    }
    if spec.url.is_some()
        && !(spec.args.is_empty() && spec.env_allow.is_empty() && spec.install.is_empty())
    {
        errors.push(t.error(
            "/spec/mcp",
            "`args`, `env_allow` and `install` are for a stdio server (`command`), not `url`",
        ));
    }
    for dir in &spec.install {
        if !dir.starts_with('/') {
            errors.push(t.error(
                "/spec/mcp/install",
                format!("install directory '{dir}' is not absolute"),
            ));
        }
    }
    if s.builtin.is_some() || !s.env.is_empty() || !s.scopes.is_empty() || s.deterministic {
        errors.push(t.error(
            "/spec",
            "an MCP tool takes no `builtin`, `env`, `scopes` or `deterministic`; its server's environment is `mcp.env_allow`",
        ));
    }
    let Some(expose) = &s.expose else {
        errors.push(t.error(
            "/spec/mcp",
            "an MCP tool names the server's tools it exposes: `expose: [name, ...]` or `expose: \"*\"`",
        ));
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let rel = lock::lock_path(&t.file, name);
    let shown = rel.display().to_string();
    let relock = format!("run `jaros mcp lock {name}` (it starts the server once and writes {shown}), then commit {shown}");
    let (locked, bytes) = match lock::read(hive, &rel) {
        Ok(found) => found,
        Err(_) if !hive.join(&rel).exists() => {
            return Err(vec![t.error(
                "/spec/mcp",
                format!("MCP tool '{name}' has no lock file {shown}; {relock}"),
            )])
        }
        Err(why) => return Err(vec![t.error("/spec/mcp", format!("{why}; {relock}"))]),
    };
    let server = server_of(spec);
    if locked.server != server {
        return Err(vec![t.error(
            "/spec/mcp",
            format!("the lock file {shown} is stale: it was written for another server than the manifest names now; {relock}"),
        )]);
    }
    let names: Vec<String> = match expose {
        Expose::All => locked.tools.iter().map(|t| t.name.clone()).collect(),
        Expose::Names(names) => names.clone(),
    };
    let mut exposed = BTreeMap::new();
    let mut types = Vec::new();
    for tool_name in names {
        let Some(tool) = locked.tools.iter().find(|x| x.name == tool_name) else {
            errors.push(t.error(
                "/spec/expose",
                format!("tool '{tool_name}' is not in the lock file {shown} (it lists {}); fix `expose`, or {relock}",
                    locked.tools.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")),
            ));
            continue;
        };
        let kind = decision_type(&s.decision_type, &tool.name);
        if !regex_name(&kind) {
            errors.push(t.error(
                "/spec/expose",
                format!("tool '{tool_name}' gives decision type '{kind}', which is not a valid name (letters, digits, `.`, `_`, `-`, at most 128)"),
            ));
            continue;
        }
        exposed.insert(kind.clone(), tool.name.clone());
        types.push((
            kind,
            TypeSpec {
                handler: HandlerSpec::Builtin {
                    name: MCP_HANDLER.to_string(),
                },
                payload_schema: tool.input_schema.clone(),
                result_schema: result_schema(),
                deterministic: false,
                scopes: Vec::new(),
                description: tool.description.clone(),
            },
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let plan = McpServerPlan {
        server,
        tools: locked.tools,
        exposed,
        lock_file: shown,
        lock_sha256: Digest::of_bytes(&bytes),
        timeout_ms: s.timeout.ms(),
        max_output_bytes: s.max_output_bytes,
    };
    Ok((plan, types))
}

fn regex_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A role's `types` with each glob (`git.*`) replaced by the registered
/// types it matches; names are kept as written.
pub fn expand_types(
    granted: &[String],
    registered: &BTreeMap<String, TypeSpec>,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for ty in granted {
        if ty.contains(['*', '?']) {
            out.extend(
                registered
                    .keys()
                    .filter(|k| crate::gate::glob_match(ty, k))
                    .cloned(),
            );
        } else {
            out.insert(ty.clone());
        }
    }
    out
}
