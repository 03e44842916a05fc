//! `jaros run`: one job in the foreground, no node.

use super::{out_json, parse_input, CliError, CliResult, Ctx};
use crate::decision::{AgentName, JobId};
use crate::exit::Outcome;
use crate::job::Ticket;
use crate::runtime::{self, Runtime};
use crate::state::State;

/// How often `jaros run` tries a job held for a failure of its environment
/// before it gives up (the job stays unfinished in the log).
pub const RUN_HELD_ATTEMPTS: u32 = 8;

/// Run one job in the foreground through the same gate, log and executor as
/// a node, and print its result. For scripts, debugging and CI. Exit 0
/// DONE, 1 FAILED, 3 when a decision waits for a person's verdict: the job
/// is parked, `jaros approve`/`deny` answer it and a node resumes it.
///
/// Example: jaros run advance --input '{"note": "hello"}'
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The agent to run (see `jaros plan` for the hive's agents).
    agent: String,
    #[arg(long, default_value = "{}", value_name = "JSON", help = super::INPUT_HELP)]
    input: String,
    /// The job's id (default: a fresh one).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Whose log to append to (default: the data dir's stable node id).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let input = parse_input(&args.input)?;
    let agent =
        AgentName::new(args.agent.clone()).map_err(|e| CliError::bad_input(e.to_string()))?;
    let hive = ctx.hive()?;
    let loaded = super::load_hive(&hive)?;
    let plan = loaded.plan.clone();
    if !plan.agents.contains_key(agent.as_str()) {
        let known: Vec<&str> = plan.agents.keys().map(String::as_str).collect();
        return Err(CliError::bad_input(format!(
            "unknown agent '{agent}'; this hive's agents are: {}",
            known.join(", ")
        )));
    }
    let job = match args.id {
        Some(id) => JobId::new(id).map_err(|e| CliError::bad_input(e.to_string()))?,
        None => JobId::new(crate::ids::new_job_id()).expect("generated ids are valid"),
    };
    let data = ctx.data_dir()?;
    let node_id = match args.node_id {
        Some(id) => id,
        None => runtime::stable_node_id(&data).map_err(|e| CliError::bad_input(e.to_string()))?,
    };
    let rt =
        Runtime::open(&hive, data, node_id, plan).map_err(|e| CliError::failed(e.to_string()))?;
    let live = rt.live_io();
    if live.job_exists(job.as_str()) {
        return Err(CliError::bad_input(format!(
            "job '{job}' exists already in {}; pick another --id",
            rt.data.root().display()
        )));
    }
    let executor = super::executor_for(&loaded)?;
    let proposer = super::proposer(&hive, &loaded);
    let runner = rt.runner(&executor, &*proposer, &live, &|| true);
    let ticket = Ticket {
        job,
        agent,
        input,
        parent: None,
        via: None,
    };
    let mut end = runner.run(&ticket, &[]);
    // A job held for a failure of the environment (a full disk) is tried
    // again after a backoff, as a node does, a bounded number of times here.
    let mut attempts = 0;
    while let Err(crate::job::RunError::Held { reason, .. }) = &end {
        attempts += 1;
        if attempts > RUN_HELD_ATTEMPTS {
            break;
        }
        let wait = crate::node::retry::backoff_ms(attempts);
        tracing::warn!("held for retry (attempt {attempts} of {RUN_HELD_ATTEMPTS}, next in {wait} ms): {reason}");
        std::thread::sleep(std::time::Duration::from_millis(wait));
        rt.log
            .flush()
            .map_err(|e| CliError::failed(e.to_string()))?;
        let history = crate::replay::job_history(&rt.data, &ticket.job)
            .map_err(|e| CliError::failed(e.to_string()))?;
        end = runner.run(&ticket, &history);
    }
    if let Err(crate::job::RunError::Parked { waiting, .. }) = &end {
        park(&rt, &ticket, waiting)?;
        // The rule's notifier, if it names one: its outcome is audited.
        crate::node::notify::run(&rt.plan(), &executor, &live, &ticket.job, waiting);
        return Ok(Outcome::Waiting);
    }
    let end = end.map_err(|e| CliError::failed(e.to_string()))?;
    let result = crate::runtime::result_file(&end, &rt.node_id);
    crate::runtime::write_result(&rt.data, &end, &result)
        .map_err(|e| CliError::failed(e.to_string()))?;
    out_json(&result);
    Ok(if end.state == State::Done {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// A decision waits for a person: the job parks as a node parks it (the
/// request file, the ticket under `approvals/parked/`), so `jaros approve`
/// or `jaros deny` answers it and a node (`jaros serve`) resumes it. Prints
/// what waits and how to answer; exits [`crate::exit::WAITING`].
fn park(rt: &Runtime, ticket: &Ticket, waiting: &crate::fold::Waiting) -> Result<(), CliError> {
    rt.log
        .flush()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let job = crate::node::inbox::JobFile {
        id: ticket.job.clone(),
        agent: ticket.agent.clone(),
        input: ticket.input.clone(),
        parent: None,
        via: None,
        resume: true,
        tree: Default::default(),
    };
    let now = crate::node::lease::now_ms();
    crate::node::park::park(&rt.data, &rt.node_id, &job, waiting, 0, now)
        .map_err(|e| CliError::failed(e.to_string()))?;
    let d = &waiting.decision;
    out_json(&serde_json::json!({
        "job": ticket.job,
        "agent": ticket.agent,
        "state": "WAITING",
        "decision": d.id,
        "type": d.kind,
        "payload": d.payload,
        "approvers": waiting.approvers,
        "expires_ms": waiting.expires_ms,
    }));
    let short = d.id.as_str().rsplit('#').next().unwrap_or_default();
    eprintln!(
        "jaros: job {job} waits for a person's verdict on decision {id} ({kind}); approvers: {who}\n  \
         jaros approve {job} {short} --by NAME [--note TEXT]\n  \
         jaros deny {job} {short} --by NAME --reason TEXT\n\
         then a node (`jaros serve`) resumes the job; `jaros result {job} --wait S` prints its end",
        job = ticket.job,
        id = d.id,
        kind = d.kind,
        who = waiting.approvers.join(", "),
    );
    Ok(())
}
