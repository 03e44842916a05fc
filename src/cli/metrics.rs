//! `jaros metrics`: the Prometheus exposition the console serves at
//! `/metrics`, printed once (for a node_exporter textfile collector).

use super::{out, CliResult, Ctx};
use crate::exit::Outcome;

/// Print Prometheus metrics derived from the data dir (jobs by agent and
/// state, queue depth, durations, tokens, gate refusals, schedule fires,
/// heartbeat ages, log sizes) in the text exposition format. See
/// docs/observability.md.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn main(ctx: &Ctx, _args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    out(&crate::metrics::render(&data, crate::node::lease::now_ms()));
    Ok(Outcome::Success)
}
