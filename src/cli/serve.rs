//! `jaros serve`: boot a node on the hive.

use super::{CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::node;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Boot a node: compile the manifests (and recompile on change), repair and
/// verify this node's log, resume its unfinished jobs, then work the inbox
/// and fire the hive's schedules until SIGINT or SIGTERM (stop claiming,
/// finish or release what is running, flush, exit 0).
///
/// Several nodes may share one data dir (NFS, EFS, a RWX volume): give each
/// its own --node-id. Work enters as files: `jaros submit AGENT --input JSON`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// This node's id, naming its log (default: the data dir's stable id).
    #[arg(long, env = "JAROS_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// Worker threads (default: the node manifest's pool_size).
    #[arg(long, value_name = "N")]
    pool: Option<usize>,
    /// Claim lease in milliseconds (default: the node manifest's lease).
    #[arg(long, value_name = "MS")]
    lease_ms: Option<u64>,
    /// Lease renewal interval in milliseconds (default: the manifest's heartbeat).
    #[arg(long, value_name = "MS")]
    heartbeat_ms: Option<u64>,
    /// Fallback inbox scan interval in milliseconds (default: the manifest's scan_interval).
    #[arg(long, value_name = "MS")]
    scan_ms: Option<u64>,
    /// How long running jobs may finish at shutdown before they are released.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    grace_ms: u64,
    /// Do not use OS notifications; scan only (shared file systems).
    #[arg(long)]
    no_notify: bool,
    /// Exit once the inbox and all claims are empty.
    #[arg(long)]
    exit_when_idle: bool,
    /// Print a line for every finished job.
    #[arg(short, long)]
    verbose: bool,
    /// Also serve the web console on a thread of this node, at ADDR
    /// (default 127.0.0.1:5500); a console that fails never stops the node.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::console::DEFAULT_ADDR)]
    console: Option<std::net::SocketAddr>,
    /// With --console: allow an address other than loopback.
    #[arg(long, requires = "console")]
    allow_remote: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let hive = ctx.hive()?;
    let loaded = super::load_hive(&hive)?;
    let data = ctx.data_dir()?;
    let node_id = match args.node_id {
        Some(id) => crate::decision::JobId::new(id.clone())
            .map(|_| id)
            .map_err(|e| CliError::bad_input(format!("--node-id: {e}")))?,
        None => {
            crate::runtime::stable_node_id(&data).map_err(|e| CliError::bad_input(e.to_string()))?
        }
    };
    let mut cfg = super::node_config(&loaded, node_id);
    if let Some(p) = args.pool {
        cfg.pool_size = p.clamp(1, node::MAX_POOL_SIZE);
    }
    cfg.lease_ms = args.lease_ms.unwrap_or(cfg.lease_ms).max(100);
    cfg.heartbeat_ms = args
        .heartbeat_ms
        .unwrap_or(cfg.heartbeat_ms)
        .clamp(10, cfg.lease_ms / 2);
    cfg.scan_ms = args.scan_ms.unwrap_or(cfg.scan_ms).max(1);
    cfg.grace_ms = args.grace_ms;
    cfg.notify = !args.no_notify;
    cfg.exit_when_idle = args.exit_when_idle;
    cfg.verbose = args.verbose;
    cfg.checkpoint_key = loaded
        .manifests
        .nodes
        .first()
        .and_then(|n| n.m.spec.checkpoint_key.as_ref())
        .map(|k| hive.join(k));
    if let Some(node) = loaded.manifests.nodes.first() {
        cfg.retention = node.m.spec.retention.clone();
        cfg.archive = node
            .m
            .spec
            .log
            .as_ref()
            .and_then(|l| l.archive.as_ref())
            .map(|a| hive.join(a));
    }
    if let Some(url) = loaded
        .manifests
        .nodes
        .first()
        .and_then(|n| n.m.spec.otlp.as_deref())
    {
        crate::live_trace::start(&data, &cfg.node_id, url).map_err(CliError::failed)?;
    }
    let data_for_export = data.clone();
    let node_id_for_export = cfg.node_id.clone();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))?;
    }
    let source_hive = hive.clone();
    let source: node::PlanSource = Box::new(move || {
        crate::manifest::load_hive(&source_hive)
            .map(node::HiveLoad::from)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|d| format!("  {d}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    });
    if let Some(addr) = args.console {
        // The console is the CLI's, started beside the node: the node's
        // code never sees it, and its failure is only printed.
        let started = super::console::config(ctx, addr, args.allow_remote)
            .map_err(|e| e.message)
            .and_then(|cfg| crate::console::spawn(cfg, stop.clone()));
        match started {
            Ok(url) => super::out(&format!("console: {url}\n")),
            Err(e) => tracing::error!("the console did not start, the node runs without it: {e}"),
        }
    }
    let executor = super::executor_for(&loaded)?;
    let proposer = super::proposer(&hive, &loaded);
    // The node loads the hive itself (at boot and on every change): this
    // copy, its manifests' documents and all, has done its work.
    drop(loaded);
    let exit = node::serve(cfg, &hive, data, source, executor, proposer, stop)
        .map_err(CliError::failed)?;
    if crate::live_trace::counts().is_some() {
        // The last batch, and the status file's counters after it.
        crate::live_trace::flush(crate::live_trace::SEND_TIMEOUT_MS * 2);
        node::status::write_export_counts(&data_for_export, &node_id_for_export);
    }
    match exit.fatal {
        Some(fatal) => Err(CliError::failed(format!("the node stopped: {fatal}"))),
        None => {
            tracing::info!("node stopped ({} done, {} failed)", exit.done, exit.failed);
            Ok(Outcome::Success)
        }
    }
}
