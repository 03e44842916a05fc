//! `jaros __sandbox-exec`: the launcher that confines an executable tool
//! (see [`crate::harness::launcher`]) and then becomes it. Hidden: only the
//! harness runs it.

use crate::harness::landlock::Confinement;
use crate::harness::launcher::{self, RunAs};
use std::ffi::OsString;
use std::path::PathBuf;

/// Confine this process, then execute COMMAND.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A path the tool may read (and execute) beneath.
    #[arg(long = "ro", value_name = "PATH")]
    read: Vec<PathBuf>,
    /// A path the tool may read and write beneath.
    #[arg(long = "rw", value_name = "PATH")]
    write: Vec<PathBuf>,
    /// No host is granted: no network namespace shared, no socket.
    #[arg(long)]
    deny_net: bool,
    /// The user id to run the tool as (with --gid).
    #[arg(long, requires = "gid")]
    uid: Option<u32>,
    /// The group id to run the tool as (with --uid).
    #[arg(long, requires = "uid")]
    gid: Option<u32>,
    /// Confine, print the layers in place as JSON, and exit instead of
    /// executing anything.
    #[arg(long, conflicts_with = "command")]
    probe: bool,
    /// The tool and its arguments.
    #[arg(last = true, required_unless_present = "probe", value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Returns only when confining or executing failed (or after a probe): the
/// exit code.
pub fn main(args: Args) -> i32 {
    let confinement = Confinement {
        read: args.read,
        write: args.write,
        deny_net: args.deny_net,
        run_as: args.uid.zip(args.gid).map(|(uid, gid)| RunAs { uid, gid }),
    };
    launcher::exec_confined(&confinement, &args.command, args.probe)
}
