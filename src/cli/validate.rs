//! `jaros validate`: check a hive's manifests, every error at once.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::manifest::{self, Diagnostic};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Check the hive's manifests: YAML syntax, each document against its JSON
/// Schema, then every cross-reference (roles, agents, decision types,
/// hand-off targets, templates that parse, executables that exist) and every
/// schedule's trigger (cron, time zone, interval, jitter, an `at` not past).
///
/// Prints every error as `file:line:col: message` and exits 1; on success
/// prints the counts and the plan digest and exits 0. Fast enough for a
/// pre-commit hook (see .pre-commit-hooks.yaml).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The hive to check (default: --hive, $JAROS_HIVE, or the nearest one upward).
    // Not named `hive`: that id is the global --hive's, which it would hide.
    #[arg(value_name = "HIVE")]
    dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let hive = match (&args.dir, ctx.typed_hive()) {
        (Some(dir), Some(flag)) if !super::same_dir(&ctx.hive_at(dir)?, &ctx.hive_at(flag)?) => {
            return Err(CliError::bad_input(format!(
                "two hives given: {} and --hive {}; give one",
                dir.display(),
                flag.display()
            )))
        }
        (Some(dir), _) => ctx.hive_at(dir)?,
        (None, _) => ctx.hive()?,
    };
    let prefix = ctx.display_prefix(&hive);
    if args.json {
        let (value, outcome) = report(&hive, &prefix);
        out_json(&value);
        return Ok(outcome);
    }
    match manifest::validate_hive(&hive, chrono::Utc::now()) {
        Ok(loaded) => {
            let digest = loaded.plan.digest();
            out(&format!("ok: {}\nplan sha256:{digest}\n", loaded.summary()));
            Ok(Outcome::Success)
        }
        Err(errors) => {
            let mut text = String::new();
            for d in &errors {
                text.push_str(&format!("{prefix}{d}\n"));
            }
            text.push_str(&format!(
                "{} error{}\n",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ));
            out(&text);
            Ok(Outcome::Failed)
        }
    }
}

/// What `jaros validate --json` prints for `hive` (files named with
/// `prefix` before them), and how it exits: also `jaros mcp serve`'s
/// `validate` tool.
pub fn report(hive: &Path, prefix: &str) -> (serde_json::Value, Outcome) {
    match manifest::validate_hive(hive, chrono::Utc::now()) {
        Ok(loaded) => {
            let digest = loaded.plan.digest();
            (
                json!({"ok": true, "counts": loaded.counts(), "digest": digest.to_hex(), "errors": []}),
                Outcome::Success,
            )
        }
        Err(errors) => {
            let errors: Vec<Diagnostic> = errors
                .into_iter()
                .map(|d| Diagnostic {
                    file: format!("{prefix}{}", d.file),
                    ..d
                })
                .collect();
            (json!({"ok": false, "errors": errors}), Outcome::Failed)
        }
    }
}
