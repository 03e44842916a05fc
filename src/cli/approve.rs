//! `jaros approvals`, `jaros approve` and `jaros deny`: list what waits for a
//! person and give the one verdict that counts (see docs/approval.md).

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::approval::store::{Answer, Given, Request, Store, Verdict, VerdictError};
use crate::decision::{DecisionId, JobId};
use crate::exit::Outcome;
use std::time::{SystemTime, UNIX_EPOCH};

/// List the decisions that wait for a person's verdict: the job, the agent,
/// the decision and its payload, the chain of hand-offs that led to it, who
/// may answer and how long the request has left. Exit 0 (even when nothing
/// waits).
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print one JSON object: {"requests": [...], "unreadable": [...]}.
    #[arg(long)]
    json: bool,
}

/// Approve the decision that waits in JOB; the job resumes on whichever node
/// picks it up and the decision's effect runs. Exactly one verdict counts:
/// if someone answered first, this says who and exits 1. NAME must be one
/// of the approvers the role lists; it is asserted like a git author.
///
/// Example: jaros approve j-123 1.0 --by ops-lead --note "checked the order"
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The job that waits (`jaros approvals` lists them).
    job: String,
    /// The decision: its id (`JOB#1.0`), its turn and position (`1.0`), or its type.
    decision: String,
    /// Who approves: one of the approvers the role lists.
    #[arg(long, value_name = "NAME")]
    by: String,
    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// Deny the decision that waits in JOB: it is refused like a gate rejection
/// (check `approval`), and an agent with turns left sees the reason on its
/// next turn. Exactly one verdict counts, as for `jaros approve`.
///
/// Example: jaros deny j-123 refund --by ops-lead --reason "over the monthly limit"
#[derive(clap::Args, Debug)]
pub struct DenyArgs {
    /// The job that waits.
    job: String,
    /// The decision: its id, its turn and position, or its type.
    decision: String,
    /// Who denies: one of the approvers the role lists.
    #[arg(long, value_name = "NAME")]
    by: String,
    /// Why: the agent and the log see it.
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "2h 5m", "40s", or "expired".
pub fn time_left(request: &Request, now_ms: u64) -> String {
    let Some(left) = request.expires_ms.checked_sub(now_ms).filter(|l| *l > 0) else {
        return "expired".into();
    };
    let secs = left / 1000;
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The chain as `root (agent) → … → job (agent)`.
pub fn chain_text(request: &Request) -> String {
    request
        .chain
        .iter()
        .map(|l| format!("{} ({})", l.job, l.agent))
        .collect::<Vec<_>>()
        .join(" → ")
}

pub fn list(ctx: &Ctx, args: ListArgs) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let store = Store::new(&data);
    let listing = store.list().map_err(|e| CliError::failed(e.to_string()))?;
    let now = now_ms();
    if args.json {
        let requests: Vec<serde_json::Value> = listing
            .requests
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("requests serialize");
                v["left_ms"] = r.expires_ms.saturating_sub(now).into();
                v["expired"] = (now >= r.expires_ms).into();
                v["answered"] =
                    serde_json::to_value(store.answer_of(r)).expect("verdicts serialize");
                v
            })
            .collect();
        let unreadable: Vec<serde_json::Value> = listing
            .bad
            .iter()
            .map(|(p, why)| serde_json::json!({"file": p.display().to_string(), "error": why}))
            .collect();
        out_json(&serde_json::json!({"requests": requests, "unreadable": unreadable}));
        return Ok(Outcome::Success);
    }
    for (path, why) in &listing.bad {
        tracing::warn!("{}: cannot read this request: {why}", path.display());
    }
    if listing.requests.is_empty() {
        out("nothing waits for approval\n");
        return Ok(Outcome::Success);
    }
    let mut text = String::new();
    let mut answered_count = 0;
    for r in &listing.requests {
        let answered = match store.answer_of(r) {
            Some(v) => {
                answered_count += 1;
                format!(
                    "  answered  {} by {}; the job resumes on the next node to pick it up\n",
                    v.verdict.as_str(),
                    v.by
                )
            }
            None => String::new(),
        };
        text.push_str(&format!(
            "{}  {}  {} (agent {})\n  payload   {}\n  chain     {}\n  approvers {}\n  left      {}\n{answered}\n",
            r.job,
            r.decision.id,
            r.decision.kind,
            r.agent,
            crate::decision::excerpt(&r.decision.payload.to_string(), 400),
            chain_text(r),
            r.approvers.join(", "),
            time_left(r, now),
        ));
    }
    text.push_str(&format!(
        "{} waiting{}; answer with `jaros approve JOB DECISION --by NAME` or `jaros deny JOB DECISION --by NAME --reason TEXT`\n",
        listing.requests.len() - answered_count,
        match answered_count {
            0 => String::new(),
            n => format!(", {n} answered"),
        }
    ));
    out(&text);
    Ok(Outcome::Success)
}

pub fn approve(ctx: &Ctx, args: ApproveArgs) -> CliResult {
    give(
        ctx,
        &args.job,
        &args.decision,
        Answer::Approve,
        args.by,
        args.note,
        None,
    )
}

pub fn deny(ctx: &Ctx, args: DenyArgs) -> CliResult {
    if args.reason.trim().is_empty() {
        return Err(CliError::bad_input("--reason must say why"));
    }
    give(
        ctx,
        &args.job,
        &args.decision,
        Answer::Deny,
        args.by,
        None,
        Some(args.reason),
    )
}

/// Resolves DECISION against the request that waits in `job`: a full id,
/// `turn.position`, or the type of the waiting decision.
fn resolve(store: &Store, job: &JobId, text: &str) -> Result<DecisionId, CliError> {
    let request = store
        .request(job)
        .map_err(|e| CliError::failed(e.to_string()))?
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "job {job} waits for no verdict; `jaros approvals` lists what waits"
            ))
        })?;
    let id = &request.decision.id;
    let short = id.as_str().rsplit('#').next().unwrap_or_default();
    if text == id.as_str() || text == short || text == request.decision.kind {
        Ok(id.clone())
    } else {
        Err(CliError::bad_input(format!(
            "job {job} waits on decision {id} ({}), not '{text}'",
            request.decision.kind
        )))
    }
}

fn give(
    ctx: &Ctx,
    job: &str,
    decision: &str,
    answer: Answer,
    by: String,
    note: Option<String>,
    reason: Option<String>,
) -> CliResult {
    let job = JobId::new(job).map_err(|e| CliError::bad_input(e.to_string()))?;
    if !crate::approval::valid_name(&by) {
        return Err(CliError::bad_input(format!(
            "--by '{by}' is not a name an approval rule can list"
        )));
    }
    let data = ctx.existing_data_dir()?;
    let store = Store::new(&data);
    let decision = resolve(&store, &job, decision)?;
    let verdict = Verdict {
        job: job.clone(),
        decision,
        verdict: answer,
        by,
        at_ms: now_ms(),
        note,
        reason,
    };
    match crate::approval::give_verdict(&data, &verdict) {
        Ok(Given::Counted) => {
            out(&format!(
                "{} {} by {}; the job resumes on the next node to pick it up\n",
                verdict.decision,
                if answer == Answer::Approve {
                    "approved"
                } else {
                    "denied"
                },
                verdict.by
            ));
            Ok(Outcome::Success)
        }
        Ok(Given::AlreadyGiven(first)) => Err(CliError::failed(format!(
            "{} was already answered: {} by {}; that verdict counts",
            first.decision,
            first.verdict.as_str(),
            first.by
        ))),
        Err(e @ (VerdictError::NotApprover { .. } | VerdictError::Malformed { .. })) => {
            Err(CliError::bad_input(e.to_string()))
        }
        Err(e @ (VerdictError::NoRequest { .. } | VerdictError::OtherDecision { .. })) => {
            Err(CliError::bad_input(e.to_string()))
        }
        Err(VerdictError::Io(e)) => Err(CliError::failed(e.to_string())),
    }
}
