//! `jaros replay`: rebuild every job from the logs and compare.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::decision::JobId;
use crate::exit::Outcome;
use crate::replay::{self, Options, Report};

/// Rebuild the state of every job from the logs, in memory, with zero model
/// calls and zero tool executions, under the plan recorded in the log. Every
/// recomputed state digest is compared with the recorded one; the replay runs
/// twice and the passes are compared. Failed jobs are attributed to the agent
/// and decision behind them.
///
/// Exit 0 when reproducible (failed jobs included), 1 on a divergence or a
/// broken chain, 2 when there is nothing to replay.
///
/// With --under, the policy impact check instead: every recorded decision
/// is asked again of another plan's gate (nothing runs); exit 1 when that
/// plan would refuse a decision that was accepted.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object with the same facts.
    #[arg(long)]
    json: bool,
    /// Replay only this job.
    #[arg(long, value_name = "ID")]
    job: Option<String>,
    /// Replay only records with seq <= SEQ in each log.
    #[arg(long, value_name = "SEQ")]
    until: Option<u64>,
    /// Ask another plan's gate about every recorded decision, in the state
    /// its job had then: which accepted decisions it would refuse, which
    /// refused ones it would allow, per agent and role. DIR is a hive
    /// directory; otherwise a git revision of this hive's repository.
    ///
    /// Example (CI, before merging): jaros replay --under origin/main
    #[arg(long, value_name = "DIR_OR_GIT_REV", conflicts_with_all = ["job", "until"])]
    under: Option<String>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    if let Some(under) = &args.under {
        return super::under::main(ctx, under, args.json);
    }
    let draw = super::progress::wanted(args.json);
    let report = super::progress::with("replay", draw, |progress| {
        run_with(ctx, args.job, args.until, progress)
    })?;
    if args.json {
        out_json(&report);
    } else {
        out(&human(&report));
    }
    Ok(if report.reproducible() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// Replays the data dir's logs (one job, up to a seq): also `jaros mcp
/// serve`'s `replay` tool.
pub fn run(ctx: &Ctx, job: Option<String>, until: Option<u64>) -> Result<Report, CliError> {
    run_with(ctx, job, until, None)
}

/// [`run`], counting what it reads into `progress`.
fn run_with(
    ctx: &Ctx,
    job: Option<String>,
    until: Option<u64>,
    progress: Option<&replay::Progress>,
) -> Result<Report, CliError> {
    let data = ctx.existing_data_dir()?;
    let job = match job {
        Some(j) => Some(JobId::new(j).map_err(|e| CliError::bad_input(e.to_string()))?),
        None => None,
    };
    Ok(replay::replay_with(
        &data,
        &super::executor(),
        &Options { job, until },
        progress,
    )?)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// The human form of a report.
pub fn human(r: &Report) -> String {
    let mut s = String::new();
    s += &format!(
        "replayed {} records from {} log(s) under {}\n",
        r.records,
        r.logs,
        r.data_dir.display()
    );
    s += &format!(
        "  jobs {}, decisions {}, rejected {}\n",
        r.jobs, r.decisions, r.rejected
    );
    s += "  decisions per agent:\n";
    for (agent, st) in &r.per_agent {
        s += &format!(
            "    {agent:<16} jobs {:>5}  decisions {:>6}  rejected {:>4}  failed jobs {:>4}\n",
            st.jobs, st.decisions, st.rejected, st.failed_jobs
        );
    }
    s += &format!(
        "  model calls {} (recorded responses used: {})\n",
        r.model_calls, r.model_records
    );
    s += &format!("  tool executions {} (recorded results read back: {}; deterministic effects re-executed: {})\n", r.tool_executions, r.effects_read_back, r.effects_reexecuted);
    let states: Vec<String> = r
        .final_states
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    s += &format!(
        "  final states: {}{}\n",
        if states.is_empty() {
            "none".into()
        } else {
            states.join(", ")
        },
        if r.unfinished_jobs > 0 {
            format!(", unfinished {}", r.unfinished_jobs)
        } else {
            String::new()
        }
    );
    s += &format!("  byte-identical: {}\n", yes_no(r.byte_identical));
    if let Some(d) = &r.divergence {
        s += &format!(
            "    first divergence: record {}#{} job {} agent {} decision {}: {}\n",
            d.record.log,
            d.record.seq,
            d.job,
            d.agent,
            d.decision
                .as_ref()
                .map_or("-".to_string(), |x| x.to_string()),
            d.what
        );
    }
    if r.voided_records > 0 {
        s += &format!(
            "  voided by a later epoch's takeover (written after the job was lost; not counted): {} record(s)\n",
            r.voided_records
        );
        for v in &r.voided {
            s += &format!("    {} job {}: {}\n", v.log, v.job, v.records);
        }
    }
    s += &format!("  chain intact: {}\n", yes_no(r.chain_intact));
    for e in &r.chain_errors {
        s += &format!("    {e}\n");
    }
    s += &format!(
        "  deterministic (two passes agree): {}\n",
        yes_no(r.deterministic)
    );
    if !r.failures.is_empty() {
        s += "  failed jobs, attributed:\n";
        for f in &r.failures {
            s += &format!(
                "    {} — agent {}, decision {} ({}): {}\n",
                f.job,
                f.agent,
                f.decision
                    .as_ref()
                    .map_or("-".to_string(), |d| d.to_string()),
                f.kind.as_deref().unwrap_or("-"),
                f.reason
            );
            if f.chain.len() > 1 {
                let links: Vec<String> = f
                    .chain
                    .iter()
                    .map(|l| {
                        format!(
                            "{} ({}{})",
                            l.agent,
                            l.job,
                            l.decision
                                .as_ref()
                                .map_or(String::new(), |d| format!(" via {d}"))
                        )
                    })
                    .collect();
                s += &format!("      chain: {}\n", links.join(" → "));
            }
        }
    }
    s += &format!(
        "verdict: {}\n",
        if r.reproducible() {
            "reproducible"
        } else {
            "NOT reproducible"
        }
    );
    s
}
