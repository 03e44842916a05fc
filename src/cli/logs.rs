//! `jaros logs`: the records of the data dir's logs, readably.

use super::{out, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::log::{read_log, Body, Record};
use std::time::Duration;

/// Print log records: `node#seq kind job …` per line, oldest first. Filter by
/// node, job or kind; --follow keeps printing as nodes append.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this node's log.
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// Only this job's records.
    #[arg(long, value_name = "ID")]
    job: Option<String>,
    /// Only records of this kind (plan, job, model, decision, rejected, effect, end).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only the last N records of each log.
    #[arg(short = 'n', long, value_name = "N")]
    last: Option<usize>,
    /// Print each record as its JSON line.
    #[arg(long)]
    json: bool,
    /// Keep printing new records until interrupted.
    #[arg(short, long)]
    follow: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let mut printed: std::collections::HashMap<std::path::PathBuf, u64> = Default::default();
    loop {
        let logs = data
            .log_files()
            .map_err(|e| CliError::bad_input(e.to_string()))?;
        if logs.is_empty() && !args.follow {
            return Err(CliError {
                outcome: Outcome::Nothing,
                message: format!("no logs under {}", data.log_dir().display()),
            });
        }
        for path in logs {
            let node = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if args.node.as_ref().is_some_and(|n| *n != node) {
                continue;
            }
            let log = read_log(&path).map_err(|e| CliError::failed(e.to_string()))?;
            let seen = printed.get(&path).copied().unwrap_or(0);
            let mut records: Vec<&Record> = log
                .records
                .iter()
                .filter(|r| r.seq > seen)
                .filter(|r| keep(&args, r))
                .collect();
            if seen == 0 {
                if let Some(n) = args.last {
                    records = records.split_off(records.len().saturating_sub(n));
                }
            }
            for r in records {
                if args.json {
                    let (line, _) =
                        crate::log::record::seal_in_epoch(r.seq, &r.prev, r.epoch, &r.body)
                            .map_err(|e| CliError::failed(e.to_string()))?;
                    out(&format!("{line}\n"));
                } else {
                    out(&format!("{node}#{:<6} {}\n", r.seq, describe(&r.body)));
                }
            }
            printed.insert(path.clone(), log.head().0);
        }
        if !args.follow {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn keep(args: &Args, r: &Record) -> bool {
    let kind_ok = args.kind.as_ref().is_none_or(|k| k == r.body.kind());
    let job_ok = args
        .job
        .as_ref()
        .is_none_or(|j| r.body.job_at().is_some_and(|(job, _)| job.as_str() == j));
    kind_ok && job_ok
}

fn describe(body: &Body) -> String {
    let short = |v: &serde_json::Value| crate::decision::excerpt(&v.to_string(), 100);
    match body {
        Body::Plan {
            digest, executor, ..
        } => format!("plan     {} by {executor}", digest.short()),
        Body::Job {
            job,
            agent,
            input,
            parent,
            ..
        } => {
            format!(
                "job      {job} agent {agent} input {}{}",
                short(input),
                parent
                    .as_ref()
                    .map_or(String::new(), |p| format!(" parent {p}"))
            )
        }
        Body::Model {
            job,
            provider,
            model,
            tokens_in,
            tokens_out,
            duration_ms,
            error,
            ..
        } => {
            format!(
            "model    {job} {provider}/{model} tokens {tokens_in}+{tokens_out} {duration_ms} ms{}",
            error.as_ref().map_or(String::new(), |e| format!(" error: {e}"))
        )
        }
        Body::Decision { decision, .. } => format!(
            "decision {} {} {}",
            decision.id,
            decision.kind,
            short(&decision.payload)
        ),
        Body::Rejected {
            decision,
            check,
            reason,
            ..
        } => format!(
            "rejected {} {} [{check}] {reason}",
            decision.id, decision.kind
        ),
        Body::Waiting {
            decision,
            approvers,
            ..
        } => format!(
            "waiting  {} {} {} for {}",
            decision.id,
            decision.kind,
            short(&decision.payload),
            approvers.join(", ")
        ),
        Body::Verdict {
            decision,
            verdict,
            by,
            note,
            reason,
            ..
        } => format!(
            "verdict  {decision} {verdict} by {by}{}",
            reason
                .as_ref()
                .or(note.as_ref())
                .map_or(String::new(), |t| format!(": {t}"))
        ),
        Body::Effect {
            decision,
            result,
            error,
            ..
        } => match error {
            Some(e) => format!("effect   {decision} error: {e}"),
            None => format!(
                "effect   {decision} {}",
                crate::decision::excerpt(result.as_str(), 100)
            ),
        },
        Body::End {
            job, state, reason, ..
        } => format!(
            "end      {job} {state}{}",
            reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
        ),
        // Audit records live in audit/ (see `jaros audit`), not in log/.
        Body::Audit {
            decision,
            action,
            verdict,
            reason,
            ..
        } => format!("audit    {decision} {verdict} {action}: {reason}"),
    }
}
