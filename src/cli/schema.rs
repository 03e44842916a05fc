//! `jaros schema`: write or check the JSON Schemas of the manifest kinds.

use super::{out, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::fsx;
use crate::manifest::Kind;
use std::path::PathBuf;

/// Write the JSON Schema of every manifest kind (generated from the Rust
/// types, descriptions from their doc comments), or check that the written
/// ones are current. Point a YAML language server at them to complete and
/// check manifests in an editor.
///
/// Example (CI): jaros schema --check
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory the schemas live in (default: the hive's schemas/,
    /// where its manifests' `$schema` modelines point).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write nothing; exit 1 naming every schema file that is missing or stale.
    #[arg(long)]
    check: bool,
}

/// The text of a kind's schema file.
pub fn schema_text(kind: Kind) -> String {
    serde_json::to_string_pretty(&kind.schema()).expect("schemas serialize") + "\n"
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    // The schemas depend on this binary alone: a data dir means nothing here,
    // and --hive only says where schemas/ is when --out does not.
    ctx.refuse_typed("schema", args.out.is_some(), true)?;
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => ctx
            .hive()
            .map_err(|e| {
                CliError::bad_input(format!(
                    "{}; or name the directory with --out DIR",
                    e.message
                ))
            })?
            .join("schemas"),
    };
    let mut stale = Vec::new();
    let mut report = String::new();
    for kind in Kind::ALL {
        let path = dir.join(kind.schema_file());
        let text = schema_text(kind);
        let current = std::fs::read(&path).ok();
        let fresh = current.as_deref() == Some(text.as_bytes());
        if args.check {
            if !fresh {
                stale.push(path.display().to_string());
            }
            continue;
        }
        if fresh {
            report.push_str(&format!("unchanged {}\n", path.display()));
        } else {
            fsx::create_dir_all(&dir).map_err(|e| CliError::bad_input(e.to_string()))?;
            fsx::write_durable(&path, text.as_bytes())
                .map_err(|e| CliError::failed(e.to_string()))?;
            report.push_str(&format!("wrote {}\n", path.display()));
        }
    }
    if args.check {
        if stale.is_empty() {
            out(&format!(
                "{} schemas in {} are current\n",
                Kind::ALL.len(),
                dir.display()
            ));
            return Ok(Outcome::Success);
        }
        return Err(CliError::failed(format!(
            "stale or missing schema files: {}; regenerate them with `jaros schema --out {}`",
            stale.join(", "),
            dir.display()
        )));
    }
    out(&report);
    Ok(Outcome::Success)
}
