//! `jaros console`: the web console over the hive and its data dir.

use super::{CliError, CliResult, Ctx};
use crate::console;
use crate::exit::Outcome;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Serve the web console: Overview, Jobs (submit, queue, a job's timeline
/// and blame), Agents, Reproducibility (replay, log browser), Schedules,
/// Evals, Audit, Help, updated live.
///
/// Prints one line: the URL to open, with the data dir's token in it (kept
/// in <data dir>/console-token, mode 0600). The browser exchanges it for a
/// cookie; every other route answers 401 without it. Binds loopback only,
/// unless --allow-remote. The console never writes manifests, agents or
/// tools; it submits jobs, runs replays and runs the eval suite. SIGINT or
/// SIGTERM stops it: requests in flight are answered, then it exits 0.
///
/// Example: jaros console --addr 127.0.0.1:5500
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = console::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Allow an address other than loopback: anyone who can reach it and
    /// has the token controls the hive's inbox.
    #[arg(long)]
    allow_remote: bool,
}

/// The console's configuration for the hive and data dir of `ctx`.
pub fn config(
    ctx: &Ctx,
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<console::Config, CliError> {
    if !console::is_loopback(&addr) {
        if !allow_remote {
            return Err(CliError::bad_input(format!(
                "{addr} is not a loopback address: the console would be reachable from other machines; pass --allow-remote to mean it"
            )));
        }
        tracing::warn!("warning: the console listens on {addr}, reachable from other machines; anyone with the token controls this hive's inbox (use a TLS proxy in front of it)");
    }
    Ok(console::Config {
        addr,
        allow_remote,
        hive: ctx.hive()?,
        data: ctx.data_dir()?,
        exe: std::env::current_exe().ok(),
        hooks: hooks(),
    })
}

/// The CLI functions the console reuses.
pub fn hooks() -> console::Hooks {
    console::Hooks {
        executor: super::executor,
        schedules: super::schedules::rows,
        submit: super::submit::submit_job,
    }
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let cfg = config(ctx, args.addr, args.allow_remote)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))?;
    }
    let console = console::bind(cfg, stop).map_err(CliError::bad_input)?;
    super::out(&format!("console: {}\n", console.url()));
    console.serve();
    super::out("console: stopped\n");
    Ok(Outcome::Success)
}
