//! `jaros trace`: recorded jobs as OpenTelemetry spans, sent by OTLP/HTTP.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::decision::JobId;
use crate::exit::Outcome;
use crate::trace::{self, Selection};

/// Turn recorded jobs into OpenTelemetry spans (job, turn, model call,
/// decision with the gate's verdict, effect; hand-offs as parent and link)
/// and send them to an OTLP/HTTP collector as JSON. Ids derive from job and
/// decision ids, so exporting again sends the same spans. See
/// docs/observability.md.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the hand-off tree (the trace) this job belongs to.
    #[arg(long, conflicts_with = "since")]
    job: Option<String>,
    /// Only jobs started at or after TIME: RFC 3339 (2026-01-31T12:00:00Z)
    /// or a duration ago (30m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// The collector's OTLP/HTTP base URL (e.g. http://127.0.0.1:4318);
    /// `/v1/traces` is appended unless the URL ends with it.
    #[arg(long, value_name = "URL", required_unless_present = "dry_run")]
    otlp: Option<String>,
    /// Print the request bodies (one JSON object a line) and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let selection = Selection {
        job: args
            .job
            .map(JobId::new)
            .transpose()
            .map_err(|e| CliError::bad_input(e.to_string()))?,
        since_ms: args.since.as_deref().map(since_ms).transpose()?,
    };
    let histories = crate::replay::job_histories(&data)?;
    let spans =
        trace::spans(&histories, &selection).map_err(|e| CliError::bad_input(e.to_string()))?;
    let jobs = spans.iter().filter(|s| s.name.starts_with("job ")).count();
    let bodies = trace::requests(&spans);
    if args.dry_run {
        out(&bodies.iter().map(|b| format!("{b}\n")).collect::<String>());
        return Ok(if spans.is_empty() {
            Outcome::Nothing
        } else {
            Outcome::Success
        });
    }
    if spans.is_empty() {
        return Err(CliError {
            outcome: Outcome::Nothing,
            message: format!(
                "no recorded job under {} matches; nothing sent",
                data.root().display()
            ),
        });
    }
    let url = args.otlp.unwrap_or_default();
    trace::send(&url, &bodies).map_err(CliError::failed)?;
    let endpoint = trace::endpoint(&url);
    if args.json {
        out_json(&serde_json::json!({
            "jobs": jobs,
            "spans": spans.len(),
            "requests": bodies.len(),
            "endpoint": endpoint,
        }));
    } else {
        out(&format!(
            "sent {} spans of {jobs} jobs in {} request{} to {endpoint}\n",
            spans.len(),
            bodies.len(),
            if bodies.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(Outcome::Success)
}

/// `--since` as Unix ms: an RFC 3339 time, or a duration before now.
fn since_ms(text: &str) -> Result<u64, CliError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(u64::try_from(t.timestamp_millis()).unwrap_or(0));
    }
    let ago = crate::manifest::types::Duration::parse(text).map_err(|_| {
        CliError::bad_input(format!(
            "--since '{text}' is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration (30m, 2h, 7d)"
        ))
    })?;
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    Ok(now.saturating_sub(ago.ms()))
}
