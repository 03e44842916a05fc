//! `jaros mcp`: the MCP subcommands. `lock` pins the tool lists of the MCP
//! servers the hive's Tool manifests name (see [`crate::mcp::lock`]);
//! `serve` (exposing the hive to a coding agent over MCP) lives in
//! [`super::mcp_serve`].

use super::{out, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::manifest::{self, mcp::server_of};
use crate::mcp::lock::{self, Lock};
use std::time::Duration;

/// MCP servers as tools: lock their tool lists.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(clap::Subcommand, Debug)]
enum McpCommand {
    Lock(LockArgs),
    Serve(super::mcp_serve::Args),
}

/// Start each MCP server the hive's Tool manifests name (or only TOOL's)
/// once, unconfined, read its tool list (names, descriptions, input and
/// output schemas) and write it to the lock file beside the manifest
/// (`<name>.mcp-lock.json`, canonical JSON, tools sorted by name). Commit
/// the lock with the manifest: the plan is compiled from it, and a node
/// refuses a server whose live tool list differs from it.
#[derive(clap::Args, Debug)]
pub struct LockArgs {
    /// The Tool manifest (its `metadata.name`) whose server to lock; all by default.
    #[arg(value_name = "TOOL")]
    tool: Option<String>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    match args.command {
        McpCommand::Lock(a) => lock_main(ctx, a),
        McpCommand::Serve(a) => super::mcp_serve::main(ctx, a),
    }
}

fn lock_main(ctx: &Ctx, args: LockArgs) -> CliResult {
    let hive = ctx.hive()?;
    let (manifests, errors) = manifest::validate::load(&hive);
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        return Err(CliError::failed(format!(
            "the manifests do not load; fix these first:\n{}",
            text.join("\n")
        )));
    }
    let servers: Vec<_> = manifests
        .tools
        .iter()
        .filter(|t| t.m.spec.mcp.is_some())
        .filter(|t| args.tool.as_ref().is_none_or(|n| *n == t.m.metadata.name))
        .collect();
    if servers.is_empty() {
        return Err(CliError::bad_input(match &args.tool {
            Some(name) => format!("no Tool manifest named '{name}' with an `mcp:` server"),
            None => "no Tool manifest names an MCP server (`mcp:`)".to_string(),
        }));
    }
    let mut failed = Vec::new();
    for t in servers {
        let name = &t.m.metadata.name;
        let Some(spec) = &t.m.spec.mcp else { continue };
        let server = server_of(spec);
        let timeout = Duration::from_millis(t.m.spec.timeout.ms());
        let rel = lock::lock_path(&t.file, name);
        match crate::harness::mcp::list_unconfined(&hive, &server, timeout) {
            Ok((version, info, tools)) => {
                let lock = Lock::new(server, version, info, tools);
                let bytes = lock.to_bytes().map_err(CliError::failed)?;
                crate::fsx::write_durable(&hive.join(&rel), &bytes)
                    .map_err(|e| CliError::failed(e.to_string()))?;
                out(&format!(
                    "locked {name}: {} tool{} in {}\n",
                    lock.tools.len(),
                    if lock.tools.len() == 1 { "" } else { "s" },
                    rel.display()
                ));
            }
            Err(why) => failed.push(format!("{name}: {why}")),
        }
    }
    if failed.is_empty() {
        Ok(Outcome::Success)
    } else {
        Err(CliError::failed(format!(
            "could not lock:\n{}",
            failed.join("\n")
        )))
    }
}
