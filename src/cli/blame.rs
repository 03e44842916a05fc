//! `jaros blame`: who and what made one job end as it did.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::decision::JobId;
use crate::exit::Outcome;
use crate::replay;

/// Show the chain of hand-offs that led to a job, each link with its agent,
/// decision id, type and outcome, and, for a failed job, the counterfactual
/// check: replay the job with the blamed decision removed (or given a
/// successful sibling's recorded result) and say whether the failure goes
/// away. It claims nothing about what the agent would have done instead.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The job to explain.
    job: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let blame = run(ctx, &args.job)?;
    if args.json {
        out_json(&blame);
        return Ok(Outcome::Success);
    }
    let state = blame
        .state
        .map_or("unfinished".to_string(), |s| s.to_string());
    let mut s = format!("job {} (agent {}) ended {state}\n", blame.job, blame.agent);
    if let Some(r) = &blame.reason {
        s += &format!("  reason: {r}\n");
    }
    s += "  chain:\n";
    for (i, link) in blame.chain.iter().enumerate() {
        s += &format!(
            "  {}. {} in job {}: decision {} ({}){}: {}\n",
            i + 1,
            link.agent,
            link.job,
            link.decision
                .as_ref()
                .map_or("-".to_string(), |d| d.to_string()),
            link.kind.as_deref().unwrap_or("-"),
            link.approved_by
                .as_ref()
                .map_or(String::new(), |by| format!(" approved by {by}")),
            link.outcome
        );
    }
    if let Some(c) = &blame.counterfactual {
        s += &format!(
            "  counterfactual: with {} {} the job ends {} — the failure {}\n",
            c.decision,
            if c.method == "removed" {
                "removed".to_string()
            } else {
                format!("given the {}", c.method)
            },
            c.state_without,
            if c.failure_disappears {
                "disappears: this decision is a cause of it"
            } else {
                "remains: this decision alone does not explain it"
            }
        );
    }
    out(&s);
    Ok(Outcome::Success)
}

/// Explains one job of the data dir: also `jaros mcp serve`'s `blame` tool.
pub fn run(ctx: &Ctx, job: &str) -> Result<replay::Blame, CliError> {
    let data = ctx.existing_data_dir()?;
    let job = JobId::new(job).map_err(|e| CliError::bad_input(e.to_string()))?;
    Ok(replay::blame(&data, &super::executor(), &job)?)
}
