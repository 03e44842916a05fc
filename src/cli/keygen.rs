//! `jaros keygen`: a new Ed25519 key that signs a log's checkpoints.

use super::{out, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::log::note::SignerKey;
use std::path::PathBuf;

/// Make an Ed25519 key that signs checkpoints, in the note key format of
/// C2SP signed notes (`PRIVATE+KEY+<name>+<key id>+<key>`, as Go's
/// `golang.org/x/mod/sumdb/note` reads it). Writes the private key to FILE
/// (mode 0600, never over an existing file) and prints the verifier key,
/// which auditors pass to `jaros verify --checkpoint … --key`.
///
/// Name the key after the hive or operator (`example.com/support-hive`);
/// a checkpoint's origin is `<key name>/<node id>`. Point the node
/// manifest's `checkpoint_key` at FILE, and keep FILE outside the data dir.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The key's name: no spaces, no '+'. A schema-less URL is recommended.
    name: String,
    /// Where to write the private key. Default: the name with '/' as '-',
    /// and `.key`, in the current directory.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    ctx.refuse_typed("keygen", true, true)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| CliError::failed(format!("no source of random bytes for the key: {e}")))?;
    let key = SignerKey::from_seed(&args.name, seed)
        .map_err(|e| CliError::bad_input(format!("{e}: name the key like example.com/my-hive")))?;
    let path = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.name.replace('/', "-"))));
    write_private(&path, format!("{}\n", key.encode()).as_bytes())?;
    let verifier = key.verifier().encode();
    out(&format!(
        "{verifier}\n\
         # private key written to {} (mode 0600): name it in the node manifest as\n\
         #   spec: {{ checkpoint_key: {} }}\n\
         # and give the line above (the verifier key) to whoever audits the log.\n",
        path.display(),
        path.display()
    ));
    Ok(Outcome::Success)
}

/// Creates `path` with mode 0600 and `bytes`, durably, refusing to replace
/// an existing file. The file is whole the moment it appears (a crash
/// leaves no empty key behind) and never readable by others, not even as
/// its temp file.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    match crate::fsx::create_durable_exclusive_private(path, bytes) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::bad_input(format!(
            "{} already exists: a key is never overwritten; remove it first or pass another --out",
            path.display()
        ))),
        // Most often a directory that is not there, or not writable.
        Err(e) => Err(CliError::bad_input(e.to_string())),
    }
}
