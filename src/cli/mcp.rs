//! `jaros mcp`: Jaros and the Model Context Protocol. This file only routes
//! the subcommands; each lives in a file of its own.

use super::{CliResult, Ctx};

/// Jaros and the Model Context Protocol (MCP).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(clap::Subcommand, Debug)]
enum McpCommand {
    Serve(super::mcp_serve::Args),
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    match args.command {
        McpCommand::Serve(args) => super::mcp_serve::main(ctx, args),
    }
}
