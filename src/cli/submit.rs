//! `jaros submit` and `jaros result`: put work into the inbox, read results.

use super::{out_json, parse_input, CliError, CliResult, Ctx};
use crate::datadir::DataDir;
use crate::decision::{AgentName, JobId};
use crate::exit::Outcome;
use crate::node::inbox::{self, JobFile};
use std::time::{Duration, Instant};

/// Submit a job: write `inbox/<id>.json` atomically and durably and print
/// the id. A node picks it up. With --wait, wait for the result and print it
/// (exit 0 DONE, 1 FAILED, 2 not finished in time).
///
/// Example: jaros submit advance --input '{"note": "hi"}' --wait 10
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The agent to run.
    agent: String,
    #[arg(long, default_value = "{}", value_name = "JSON", help = super::INPUT_HELP)]
    input: String,
    /// The job's id (default: a fresh one).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Wait up to this many seconds for the result and print it.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<f64>,
}

/// Print a job's result (`done/<id>.json` or `failed/<id>.json`).
/// Exit 0 DONE, 1 FAILED, 2 no result (yet).
#[derive(clap::Args, Debug)]
pub struct ResultArgs {
    /// The job id `jaros submit` printed.
    id: String,
    /// Wait up to this many seconds for the result.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<f64>,
}

pub fn submit(ctx: &Ctx, args: SubmitArgs) -> CliResult {
    let input = parse_input(&args.input)?;
    let plan = plan_to_check(ctx);
    let data = ctx.data_dir()?;
    let id = write_job(&data, plan.as_ref(), &args.agent, input, args.id)
        .map_err(CliError::bad_input)?;
    match args.wait {
        None => {
            super::out(&format!("{id}\n"));
            Ok(Outcome::Success)
        }
        Some(seconds) => wait_and_print(&data, &id, seconds),
    }
}

/// The plan a submitted job's agent is checked against: with a hive at
/// hand, an unknown agent is refused now rather than in failed/. With
/// invalid manifests the node keeps its old plan: warn, and submit.
pub fn plan_to_check(ctx: &Ctx) -> Option<crate::plan::Plan> {
    match ctx.hive() {
        Ok(hive) => match super::load_plan(&hive) {
            Err(_) => {
                tracing::warn!("warning: the hive's manifests do not validate (`jaros validate`); submitting anyway");
                None
            }
            Ok(plan) => Some(plan),
        },
        Err(_) => None,
    }
}

pub fn result(ctx: &Ctx, args: ResultArgs) -> CliResult {
    let id = JobId::new(args.id).map_err(|e| CliError::bad_input(e.to_string()))?;
    let data = ctx.existing_data_dir()?;
    wait_and_print(&data, &id, args.wait.unwrap_or(0.0))
}

/// The one path a job takes into the inbox, from `jaros submit` and from the
/// console: the agent's name checked (and, with a plan, known to it), then
/// `inbox/<id>.json` written atomically and durably. Returns the job's id.
pub fn write_job(
    data: &DataDir,
    plan: Option<&crate::plan::Plan>,
    agent: &str,
    input: serde_json::Value,
    id: Option<String>,
) -> Result<JobId, String> {
    let agent = AgentName::new(agent).map_err(|e| e.to_string())?;
    if let Some(plan) = plan {
        if !plan.agents.contains_key(agent.as_str()) {
            let known: Vec<&str> = plan.agents.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown agent '{agent}'; this hive's agents are: {}",
                known.join(", ")
            ));
        }
    }
    let id = match id {
        Some(id) => JobId::new(id).map_err(|e| e.to_string())?,
        None => JobId::new(crate::ids::new_job_id()).expect("generated ids are valid"),
    };
    let job = JobFile {
        id: id.clone(),
        agent,
        input,
        parent: None,
        via: None,
        resume: false,
        tree: Default::default(),
    };
    inbox::submit(data, &job)?;
    Ok(id)
}

/// [`write_job`] with a fresh id, for the console.
pub fn submit_job(
    data: &DataDir,
    plan: Option<&crate::plan::Plan>,
    agent: &str,
    input: serde_json::Value,
) -> Result<String, String> {
    write_job(data, plan, agent, input, None).map(|id| id.to_string())
}

/// Where a job's result file is, if it exists.
pub fn find_result(data: &DataDir, id: &JobId) -> Option<(bool, std::path::PathBuf)> {
    let name = format!("{id}.json");
    [
        (true, data.done().join(&name)),
        (false, data.failed().join(&name)),
    ]
    .into_iter()
    .find(|(_, p)| p.exists())
}

fn wait_and_print(data: &DataDir, id: &JobId, seconds: f64) -> CliResult {
    let (value, outcome) = wait_result(data, id, seconds)?;
    out_json(&value);
    Ok(outcome)
}

/// Waits up to `seconds` for a job's result file and returns it with how
/// `jaros result` exits on it (DONE success, FAILED failed); no result in
/// time is an error saying where the job is.
pub fn wait_result(
    data: &DataDir,
    id: &JobId,
    seconds: f64,
) -> Result<(serde_json::Value, Outcome), CliError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0));
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some((done, path)) = find_result(data, id) {
            let text =
                crate::fsx::read_to_string(&path).map_err(|e| CliError::failed(e.to_string()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            let outcome = if done {
                Outcome::Success
            } else {
                Outcome::Failed
            };
            return Ok((value, outcome));
        }
        // Its result was collected by `jaros gc`: the job ran and ended,
        // and its tombstone says how.
        if let Some(stone) = crate::gc::collected(data, id.as_str()) {
            let outcome = if stone.was == "done" {
                Outcome::Success
            } else {
                Outcome::Failed
            };
            let value = serde_json::to_value(&stone)
                .map_err(|e| CliError::failed(format!("job '{id}': its tombstone: {e}")))?;
            return Ok((value, outcome));
        }
        if Instant::now() >= deadline {
            let name = format!("{id}.json");
            let stage = if data.inbox().join(&name).exists() {
                "it is waiting in the inbox (is a node running? `jaros serve`)"
            } else if data.claimed().join(&name).exists() {
                "a node is running it"
            } else {
                "no such job in this data dir"
            };
            return Err(CliError {
                outcome: Outcome::Nothing,
                message: format!("no result for job '{id}' yet: {stage}"),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
