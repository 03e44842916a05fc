//! Compiling a Tool manifest that names an MCP server: its lock file is read
//! and checked against the manifest (present, same server, every exposed
//! tool listed), and each exposed tool becomes a decision type
//! `<type>.<tool name>` whose payload schema is the tool's input schema,
//! handled by the built-in [`crate::plan::MCP_HANDLER`].

use super::types::{Expose, McpSpec, ToolManifest};
use super::validate::{Diagnostic, Entry, Manifests};
use crate::canon::Digest;
use crate::mcp::lock;
use crate::plan::{Grant, HandlerSpec, McpServer, McpServerPlan, Plan, TypeSpec, MCP_HANDLER};
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

/// Every decision type defined before MCP tools are compiled (the built-in
/// ones and those of the other Tool manifests), each with what defines it:
/// an MCP tool's type may be none of them.
pub fn taken_types(plan: &Plan, m: &Manifests) -> BTreeMap<String, String> {
    let mut taken: BTreeMap<String, String> = plan
        .types
        .keys()
        .map(|k| (k.clone(), "a built-in decision type".to_string()))
        .collect();
    for t in m.tools.iter().filter(|t| t.m.spec.mcp.is_none()) {
        taken
            .entry(t.m.spec.decision_type.clone())
            .or_insert_with(|| format!("the type of Tool '{}'", t.m.metadata.name));
    }
    taken
}

/// Why a role cannot use the HTTP MCP tools it grants: for each server
/// behind a URL whose host the role's `hosts` do not name, one message.
pub fn unreached_hosts(plan: &Plan, grant: &Grant) -> Vec<String> {
    let mut out = Vec::new();
    for (name, server) in &plan.mcp {
        let McpServer::Http { url, .. } = &server.server else {
            continue;
        };
        let granted: Vec<&str> = server
            .exposed
            .keys()
            .filter(|k| grant.types.contains(*k))
            .map(String::as_str)
            .collect();
        if granted.is_empty() {
            continue;
        }
        match crate::mcp::http::host_granted(&grant.hosts, url) {
            Ok(true) => {}
            Ok(false) => {
                let host = crate::mcp::http::url_host(url)
                    .map(|(h, _)| h)
                    .unwrap_or_default();
                out.push(format!(
                    "the role grants {} of MCP tool '{name}', whose server is at {url}, but not host '{host}': add '{host}' to `hosts`, or stop granting those types",
                    granted.join(", ")
                ));
            }
            // The Tool manifest's own error says what is wrong with the URL.
            Err(_) => {}
        }
    }
    out
}

/// A compiled MCP server and its decision types.
pub type Compiled = (McpServerPlan, Vec<(String, TypeSpec)>);

/// The server of `t` and its decision types, or what is wrong.
pub fn compile(
    hive: &Path,
    t: &Entry<ToolManifest>,
    spec: &McpSpec,
    taken: &mut BTreeMap<String, String>,
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
    if let Some(url) = &spec.url {
        if let Err(why) = crate::mcp::http::url_host(url) {
            errors.push(t.error("/spec/mcp/url", why));
        }
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
                format!("tool '{tool_name}' gives decision type '{kind}', which is not a valid name (letters, digits, `.`, `_`, `-`, at most 128); leave it out of `expose` (list the tools to expose by name)"),
            ));
            continue;
        }
        if let Some(owner) = taken.get(&kind) {
            errors.push(t.error(
                "/spec/expose",
                format!("tool '{tool_name}' gives decision type '{kind}', which is already {owner}; give this Tool another `type`, or leave '{tool_name}' out of `expose`"),
            ));
            continue;
        }
        for (field, schema) in [
            ("input", Some(&tool.input_schema)),
            ("output", tool.output_schema.as_ref()),
        ] {
            if let Some(Err(e)) = schema.map(jsonschema::validator_for) {
                errors.push(t.error(
                    "/spec/expose",
                    format!("tool '{tool_name}' in the lock file {shown} has an {field} schema that is not a valid JSON Schema: {e}; leave it out of `expose`, or {relock}"),
                ));
            }
        }
        taken.insert(
            kind.clone(),
            format!("the type of MCP tool '{tool_name}' of Tool '{name}'"),
        );
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
