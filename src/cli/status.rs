//! `jaros status` and `jaros watch`: the node, the jobs and the pool.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::node::status::{overview, Overview};
use std::time::Duration;

/// Show the nodes (live or not, pool, running jobs, last heartbeat), job
/// counts from the data dir's files, so they are right across restarts and
/// nodes, and the hive's schedules (as `jaros schedules` does). Exit 0 when at least one node is live (a container health check),
/// 1 otherwise; with --node, exit 0 only when that node is live.
///
/// Example (a pod's probe, on a volume shared by several nodes; the pod
/// sets JAROS_NODE_ID to its own name): jaros status
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Exit 0 only when this node (its --node-id) is live: a health check
    /// for one node among several sharing a data dir.
    #[arg(long, env = "JAROS_NODE_ID", value_name = "ID")]
    node: Option<String>,
}

/// Refresh a one-line summary every second until interrupted.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    every: f64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let o = overview(&data);
    if args.json {
        out_json(&json_of(ctx, &o));
    } else {
        let confinement = super::confinement(ctx);
        let schedules = super::schedules_status(ctx);
        out(&human(&o));
        let collected = crate::gc::collected_count(&data);
        if collected > 0 {
            out(&format!(
                "collected: {collected} job(s) whose results `jaros gc` removed\n"
            ));
        }
        out(&format!("confinement: {confinement}\n"));
        match schedules.as_array() {
            Some(list) if !list.is_empty() => {
                out(&format!(
                    "schedules:\n{}",
                    super::schedules::human(list, "  ")
                ));
            }
            Some(_) => {}
            None => out(&format!(
                "schedules: cannot list: {}\n",
                schedules["error"].as_str().unwrap_or("?")
            )),
        }
    }
    if let Some(id) = &args.node {
        return match o.nodes.iter().find(|n| &n.status.node == id) {
            Some(n) if n.live => Ok(Outcome::Success),
            Some(_) => Err(CliError::failed(format!(
                "node '{id}' is not live: its last heartbeat is too old or it stopped"
            ))),
            None => {
                let known: Vec<&str> = o.nodes.iter().map(|n| n.status.node.as_str()).collect();
                Err(CliError::failed(format!(
                    "no node '{id}' in {}; nodes here: {}",
                    o.data_dir,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        };
    }
    Ok(if o.live_nodes > 0 {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// What `jaros status --json` prints: also `jaros mcp serve`'s `status` tool.
pub fn json_of(ctx: &Ctx, o: &Overview) -> serde_json::Value {
    let mut v = serde_json::to_value(o).expect("serializes");
    v["confinement"] = serde_json::json!(super::confinement(ctx));
    v["schedules"] = super::schedules_status(ctx);
    if let Ok(data) = ctx.existing_data_dir() {
        v["jobs"]["collected"] = serde_json::json!(crate::gc::collected_count(&data));
    }
    v
}

fn human(o: &Overview) -> String {
    let mut s = format!("data dir {}\n", o.data_dir);
    s += &format!(
        "jobs: inbox {}, claimed {}, done {}, failed {}\n",
        o.jobs.inbox, o.jobs.claimed, o.jobs.done, o.jobs.failed
    );
    if o.nodes.is_empty() {
        s += "nodes: none has run here (start one with `jaros serve`)\n";
    }
    for n in &o.nodes {
        let st = &n.status;
        s += &format!(
            "node {:<14} {:<7} pid {:<7} pool {:>3}  running {:>3}  done {:>7}  failed {:>5}  resumed {:>4}  heartbeat {:.1}s ago  plan {}\n",
            st.node,
            if n.live { "live" } else if st.stopped { "stopped" } else { "silent" },
            st.pid,
            st.pool_size,
            st.running.len(),
            st.done,
            st.failed,
            st.resumed,
            n.age_ms as f64 / 1000.0,
            &st.plan[..12.min(st.plan.len())]
        );
        for h in &st.held {
            s += &format!(
                "    {} held for retry (attempt {}, next in {:.1}s): {}\n",
                h.job,
                h.attempts,
                h.retry_at_ms.saturating_sub(st.beat_ms) as f64 / 1000.0,
                h.reason
            );
        }
        for r in st.recent.iter().rev().take(5) {
            s += &format!("    {} {} {} ({} ms)\n", r.job, r.agent, r.state, r.took_ms);
        }
    }
    s
}

pub fn watch(ctx: &Ctx, args: WatchArgs) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let mut n = 0;
    loop {
        let o = overview(&data);
        let running: usize = o
            .nodes
            .iter()
            .filter(|n| n.live)
            .map(|n| n.status.running.len())
            .sum();
        out(&format!(
            "{} inbox {:>6}  claimed {:>5}  done {:>8}  failed {:>6}  | nodes live {}  running {}\n",
            crate::ids::clock_hms(),
            o.jobs.inbox,
            o.jobs.claimed,
            o.jobs.done,
            o.jobs.failed,
            o.live_nodes,
            running
        ));
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(Duration::from_secs_f64(args.every.clamp(0.05, 3600.0)));
    }
}
