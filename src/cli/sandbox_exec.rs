//! `jaros __sandbox-exec`: the launcher that confines an executable tool
//! with Landlock and then becomes it (see [`crate::harness::landlock`]).
//! Hidden: only the harness runs it.

use crate::harness::landlock::{self, Confinement};
use std::ffi::OsString;
use std::path::PathBuf;

/// Confine this process with Landlock, then execute COMMAND.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A path the tool may read (and execute) beneath.
    #[arg(long = "ro", value_name = "PATH")]
    read: Vec<PathBuf>,
    /// A path the tool may read and write beneath.
    #[arg(long = "rw", value_name = "PATH")]
    write: Vec<PathBuf>,
    /// Deny TCP bind and connect.
    #[arg(long)]
    deny_net: bool,
    /// The tool and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Returns only when confining or executing failed: the exit code.
pub fn main(args: Args) -> i32 {
    let confinement = Confinement {
        read: args.read,
        write: args.write,
        deny_net: args.deny_net,
    };
    landlock::exec_confined(&confinement, &args.command)
}
