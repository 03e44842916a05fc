//! Lock files: the tool list of an MCP server, pinned beside the Tool
//! manifest that declares it (`manifests/tools/git.yaml` with
//! `metadata.name: git` is locked in `manifests/tools/git.mcp-lock.json`),
//! so the plan and its digest do not depend on what a server answers today
//! and a review shows what a new server version changes. Written by `jaros
//! mcp lock` as canonical JSON (keys sorted, tools sorted by name), durably.
//!
//! Owns the file's format, where it lies, and the comparison of two tool
//! lists that names what changed ([`drift`]).

use crate::plan::{McpServer, McpTool};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock format this binary writes and reads.
pub const LOCK_VERSION: u32 = 1;
/// Largest lock file read, in bytes.
pub const MAX_LOCK_BYTES: u64 = 8 * 1024 * 1024;
/// The suffix of a lock file after the Tool manifest's name.
pub const LOCK_SUFFIX: &str = ".mcp-lock.json";

/// A lock file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub lock_version: u32,
    /// The server the list was read from, as the manifest named it when
    /// locked: a changed server makes the lock stale.
    pub server: McpServer,
    /// The protocol version negotiated when locking.
    pub protocol_version: String,
    /// The server's `serverInfo` (name, version), for a reviewer.
    pub server_info: Value,
    /// Every tool listed, sorted by name.
    pub tools: Vec<McpTool>,
}

impl Lock {
    pub fn new(
        server: McpServer,
        protocol_version: String,
        server_info: Value,
        mut tools: Vec<McpTool>,
    ) -> Lock {
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        Lock {
            lock_version: LOCK_VERSION,
            server,
            protocol_version,
            server_info,
            tools,
        }
    }

    /// The file's bytes: canonical JSON and a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut text = crate::canon::to_string_of(self).map_err(|e| e.to_string())?;
        text.push('\n');
        Ok(text.into_bytes())
    }

    pub fn parse(bytes: &[u8], file: &str) -> Result<Lock, String> {
        let lock: Lock = serde_json::from_slice(bytes)
            .map_err(|e| format!("{file}: not a lock file ({e}); run `jaros mcp lock` again"))?;
        if lock.lock_version != LOCK_VERSION {
            return Err(format!(
                "{file}: lock version {} is not {LOCK_VERSION}; run `jaros mcp lock` again",
                lock.lock_version
            ));
        }
        // A lock is what `jaros mcp lock` wrote, or a review of it means
        // little: a tool listed twice (the drift check would see one of
        // them), keys in another order, a JSON key given twice.
        if let Some(pair) = lock.tools.windows(2).find(|p| p[0].name >= p[1].name) {
            return Err(format!(
                "{file}: tool '{}' {} tool '{}': a lock lists each tool once, sorted by name, as `jaros mcp lock` writes it; it was edited by hand: run `jaros mcp lock` again",
                pair[1].name,
                if pair[0].name == pair[1].name { "is listed twice, after" } else { "comes after" },
                pair[0].name
            ));
        }
        let canonical = lock.to_bytes()?;
        if bytes != canonical.as_slice() && bytes != &canonical[..canonical.len() - 1] {
            return Err(format!(
                "{file}: not in the canonical form `jaros mcp lock` writes (it was edited or reformatted by hand); run `jaros mcp lock` again"
            ));
        }
        Ok(lock)
    }
}

/// The lock file of the Tool manifest `name` declared in `manifest_file`
/// (both relative to the hive).
pub fn lock_path(manifest_file: &str, name: &str) -> PathBuf {
    let dir = Path::new(manifest_file)
        .parent()
        .unwrap_or_else(|| Path::new(""));
    dir.join(format!("{name}{LOCK_SUFFIX}"))
}

/// Reads the lock at `rel` (relative to `hive`): the lock and its bytes.
pub fn read(hive: &Path, rel: &Path) -> Result<(Lock, Vec<u8>), String> {
    let path = hive.join(rel);
    let shown = rel.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_LOCK_BYTES {
        return Err(format!(
            "{shown}: {} bytes, above the limit of {MAX_LOCK_BYTES}",
            meta.len()
        ));
    }
    let bytes = crate::fsx::read(&path).map_err(|e| e.to_string())?;
    Ok((Lock::parse(&bytes, &shown)?, bytes))
}

/// What differs between a locked tool list and a live one, one line per
/// tool: `added tool 'x'`, `removed tool 'y'`, `tool 'z': input_schema,
/// description changed`. Empty when they agree.
pub fn drift(locked: &[McpTool], live: &[McpTool]) -> Vec<String> {
    let by_name = |tools: &[McpTool]| -> BTreeMap<String, McpTool> {
        tools.iter().map(|t| (t.name.clone(), t.clone())).collect()
    };
    let (old, new) = (by_name(locked), by_name(live));
    let mut out = Vec::new();
    for (name, was) in &old {
        match new.get(name) {
            None => out.push(format!("removed tool '{name}'")),
            Some(now) => {
                let mut fields = Vec::new();
                if was.description != now.description {
                    fields.push("description");
                }
                if was.input_schema != now.input_schema {
                    fields.push("input_schema");
                }
                if was.output_schema != now.output_schema {
                    fields.push("output_schema");
                }
                if !fields.is_empty() {
                    out.push(format!("tool '{name}': {} changed", fields.join(", ")));
                }
            }
        }
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        out.push(format!("added tool '{name}'"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, schema: Value) -> McpTool {
        McpTool {
            name: name.into(),
            description: String::new(),
            input_schema: schema,
            output_schema: None,
        }
    }

    /// A lock of an HTTP server with tools of these names, in this order.
    fn lock_of(names: &[&str]) -> Lock {
        let server = McpServer::Http {
            url: "http://127.0.0.1:1/mcp".into(),
            headers_from_env: BTreeMap::new(),
        };
        let tools = names.iter().map(|n| tool(n, json!({}))).collect();
        Lock::new(server, "2025-06-18".into(), json!({"name": "s"}), tools)
    }

    #[test]
    fn drift_names_added_removed_and_changed_fields() {
        let old = vec![tool("a", json!({})), tool("b", json!({}))];
        let new = vec![tool("a", json!({"type": "object"})), tool("c", json!({}))];
        assert_eq!(
            drift(&old, &new),
            vec![
                "tool 'a': input_schema changed".to_string(),
                "removed tool 'b'".to_string(),
                "added tool 'c'".to_string(),
            ]
        );
        assert!(drift(&old, &old).is_empty());
    }

    #[test]
    fn a_lock_is_canonical_and_sorted() {
        let lock = lock_of(&["b", "a"]);
        let bytes = lock.to_bytes().unwrap();
        let back = Lock::parse(&bytes, "x").unwrap();
        assert_eq!(back.tools[0].name, "a");
        assert_eq!(back.to_bytes().unwrap(), bytes);
        // Without its final newline it is the same lock.
        assert!(Lock::parse(&bytes[..bytes.len() - 1], "x").is_ok());
    }

    #[test]
    fn a_lock_edited_by_hand_is_refused() {
        let lock = lock_of(&["a", "b"]);
        let text = String::from_utf8(lock.to_bytes().unwrap()).unwrap();
        // Pretty-printed: same content, not the canonical form.
        let pretty = serde_json::to_string_pretty(&lock).unwrap();
        let err = Lock::parse(pretty.as_bytes(), "x").unwrap_err();
        assert!(err.contains("not in the canonical form"), "{err}");
        // A tool listed twice.
        let mut twice = lock.clone();
        twice.tools.push(tool("b", json!({"type": "object"})));
        let err = Lock::parse(&twice.to_bytes().unwrap(), "x").unwrap_err();
        assert!(err.contains("tool 'b' is listed twice"), "{err}");
        // Out of order.
        let mut unsorted = lock.clone();
        unsorted.tools.reverse();
        let err = Lock::parse(&unsorted.to_bytes().unwrap(), "x").unwrap_err();
        assert!(err.contains("tool 'a' comes after tool 'b'"), "{err}");
        // A key given twice.
        let doubled = text.replacen(
            "{\"lock_version\"",
            "{\"lock_version\":1,\"lock_version\"",
            1,
        );
        assert!(Lock::parse(doubled.as_bytes(), "x").is_err());
    }
}
