//! `jaros audit`: print the nodes' audit logs (every mediated action and
//! every refusal), oldest first per node.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::harness::audit::{self, Line};

/// Print the audit log: every file operation and tool run the harness
/// mediated and every refusal (by the gate or a tool's handle), with agent,
/// job, decision, action, verdict and reason. `jaros verify` checks its chain.
///
/// Example: jaros audit --refusals --agent writer
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only refusals.
    #[arg(long)]
    refusals: bool,
    /// Only entries of this agent.
    #[arg(long, value_name = "AGENT")]
    agent: Option<String>,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let files = audit::files(&data.audit_dir()).map_err(|e| CliError::bad_input(e.to_string()))?;
    if files.is_empty() {
        return Err(CliError {
            outcome: Outcome::Nothing,
            message: format!(
                "no audit logs under {}: nothing has been mediated here yet",
                data.audit_dir().display()
            ),
        });
    }
    let mut lines: Vec<Line> = Vec::new();
    for path in &files {
        let read = audit::read(path).map_err(|e| CliError::failed(format!("{e}")))?;
        lines.extend(read.into_iter().filter(|l| {
            (!args.refusals || l.refused()) && args.agent.as_ref().is_none_or(|a| *a == l.agent)
        }));
    }
    if args.json {
        out_json(&lines);
        return Ok(Outcome::Success);
    }
    for l in &lines {
        out(&format!(
            "{}:{} {} {:<7} agent={} job={} decision={} {}: {}\n",
            l.node,
            l.seq,
            l.time,
            l.verdict.to_uppercase(),
            l.agent,
            l.job,
            l.decision,
            l.action,
            l.reason
        ));
    }
    if lines.is_empty() {
        out("no matching audit entries\n");
    }
    Ok(Outcome::Success)
}
