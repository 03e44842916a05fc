//! Kernel confinement of executable tools with Landlock.
//!
//! Confinement needs a process to restrict itself between `fork` and
//! `exec`, which in Rust takes `unsafe` (`pre_exec`). Jaros forbids `unsafe`,
//! so it re-executes its own binary as a tiny launcher instead:
//! `jaros __sandbox-exec --ro P --rw P [--deny-net] [--uid U --gid G] --
//! TOOL` ([`super::launcher`]), which restricts itself with these rules
//! (among its other layers) and then `exec`s the tool, which inherits the
//! restriction for good. This module owns the path rules and the status.
//!
//! What a tool may reach: read (and execute) the base directories of its
//! agent's `read` globs, read and write (but not create symlinks in) those of
//! its `write` globs, read its
//! own file and the system's run-time files ([`SYSTEM_READ_PATHS`]), read and
//! write its scratch directory; with Landlock ABI 4 or later no TCP bind or
//! connect unless the role grants hosts (Landlock filters ports, not hosts,
//! so any granted host opens the network). Kernel rules work on directories,
//! so they are coarser than globs (`data/*.csv` opens all of `data/`); the
//! built-in tools' handles check the exact globs. The hive's machinery and
//! the data dir are never opened, even under a `**` grant.

use crate::gate::glob_match;
use crate::plan::Plan;
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    RestrictSelf, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The hidden subcommand that runs the launcher.
pub const SANDBOX_SUBCOMMAND: &str = "__sandbox-exec";
/// The launcher's exit code when it could not confine itself.
pub const EXIT_NOT_CONFINED: i32 = 125;
/// The launcher's exit code when the tool could not be executed.
pub const EXIT_NOT_EXECUTED: i32 = 126;
/// How the launcher prefixes what it says on stderr.
pub const LAUNCHER_PREFIX: &str = "jaros sandbox: ";

/// Read-only (and executable) paths any tool needs to start: programs,
/// libraries, the loader's cache. Those that do not exist are skipped.
pub const SYSTEM_READ_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/nix/store",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
];
/// Paths any tool may write: only the bit bucket.
pub const SYSTEM_WRITE_PATHS: &[&str] = &["/dev/null"];

// The newest rights this code was written and tested against; older kernels
// get what they support (best effort), newer ones nothing unknown.
const FS_ABI: ABI = ABI::V9;
const NET_ABI: ABI = ABI::V10;
const SCOPE_ABI: ABI = ABI::V6;

/// The kernel's Landlock ABI version, probed once without restricting anything.
pub fn kernel_abi() -> Result<u32, String> {
    static ABI_PROBE: OnceLock<Result<u32, String>> = OnceLock::new();
    ABI_PROBE
        .get_or_init(|| {
            // No flags and no no_new_privs: this only asks the kernel its version.
            let status = RestrictSelf::default()
                .no_new_privs(false)
                .apply()
                .map_err(|e| format!("cannot probe Landlock: {e}"))?;
            match status.landlock {
                LandlockStatus::Available { effective_abi, kernel_abi } => match kernel_abi {
                    Some(v) => Ok(v as u32),
                    None => effective_abi.to_string().parse().map_err(|_| format!("unknown Landlock ABI {effective_abi}")),
                },
                LandlockStatus::NotEnabled => Err("the kernel has Landlock but it is not enabled (add landlock to the lsm= boot parameter)".into()),
                LandlockStatus::NotImplemented => Err("the kernel has no Landlock (it needs Linux 5.13+ built with CONFIG_SECURITY_LANDLOCK)".into()),
            }
        })
        .clone()
}

/// The unprivileged user and group a tool runs as when its node is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The user (and group) of last resort on Linux, `nobody`/`nogroup`: the
/// default `run_as` of a node started as root (the number, not a name
/// looked up, so it holds where `/etc/passwd` lacks it).
pub const NOBODY: RunAs = RunAs {
    uid: 65534,
    gid: 65534,
};

/// What a confined tool may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Read and execute, beneath each.
    pub read: Vec<PathBuf>,
    /// Read, write, create and remove, beneath each.
    pub write: Vec<PathBuf>,
    /// No host granted: deny TCP bind and connect, and (in the launcher) a
    /// network namespace of its own and no sockets.
    pub deny_net: bool,
    /// The user and group the tool becomes (a root node's tools).
    pub run_as: Option<RunAs>,
}

impl Confinement {
    /// The launcher's arguments before `--`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for p in &self.read {
            args.push("--ro".into());
            args.push(p.clone().into_os_string());
        }
        for p in &self.write {
            args.push("--rw".into());
            args.push(p.clone().into_os_string());
        }
        if self.deny_net {
            args.push("--deny-net".into());
        }
        if let Some(RunAs { uid, gid }) = self.run_as {
            args.extend(["--uid".into(), uid.to_string().into()]);
            args.extend(["--gid".into(), gid.to_string().into()]);
        }
        args
    }

    /// The paths, relative to `hive`, for the audit log; the system's
    /// run-time files and the run's own scratch directory (the only paths
    /// outside the hive) are named, not shown.
    pub fn describe(&self, hive: &Path) -> String {
        let show = |ps: &[PathBuf]| -> Vec<String> {
            ps.iter()
                .filter_map(|p| match p.strip_prefix(hive) {
                    Ok(rel) if p.is_dir() => Some(format!("{}/", rel.display())),
                    Ok(rel) => Some(rel.display().to_string()),
                    Err(_) => None,
                })
                .collect()
        };
        let mut read = show(&self.read);
        read.push("its own copy".into());
        read.push("the system's run-time files".into());
        let mut write = show(&self.write);
        write.push("its scratch directory".into());
        format!(
            "read-only {}; read-write {}; network {}",
            read.join(", "),
            write.join(", "),
            if self.deny_net {
                "denied"
            } else {
                "allowed (the role grants hosts)"
            }
        )
    }
}

/// The leading components of a glob that hold no wildcard: the directory
/// (or file) the kernel rule opens.
pub fn glob_base(glob: &str) -> String {
    glob.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .take_while(|c| !c.contains(['*', '?', '[']))
        .collect::<Vec<_>>()
        .join("/")
}

/// The grant's paths as kernel rules for one tool run of `agent`: the base
/// directories of its globs (the hive's root expanded to its entries, the
/// machinery and data dir left out), resolved, and only where they stay
/// inside the hive.
pub fn confinement_for(
    hive: &Path,
    data_dir: Option<&Path>,
    plan: &Plan,
    agent: &str,
    tool: &Path,
    scratch: &Path,
) -> Confinement {
    let grant = plan.grant_of(agent).cloned().unwrap_or_default();
    let hive = std::fs::canonicalize(hive).unwrap_or_else(|_| hive.to_path_buf());
    let data = data_dir.and_then(|d| std::fs::canonicalize(d).ok());
    let allowed = |real: &Path| -> bool {
        let Ok(rel) = real.strip_prefix(&hive) else {
            return false;
        };
        let Some(rel) = rel.to_str() else {
            return false;
        };
        let protected = rel.is_empty()
            || plan
                .protected
                .iter()
                .any(|p| rel == p.as_str() || rel.starts_with(&format!("{p}/")));
        !protected
            && !data
                .as_ref()
                .is_some_and(|d| real.starts_with(d) || d.starts_with(real))
    };
    let bases = |globs: &[String]| -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for glob in globs {
            let base = glob_base(glob);
            let candidates: Vec<PathBuf> = if base.is_empty() {
                // A glob from the hive's root: open each top-level entry its
                // first component matches, never the root itself.
                let first = glob
                    .split('/')
                    .find(|c| !c.is_empty() && *c != ".")
                    .unwrap_or_default();
                crate::fsx::list_dir(&hive)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| {
                        first == "**"
                            || p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|name| glob_match(first, name))
                    })
                    .collect()
            } else {
                vec![hive.join(&base)]
            };
            for candidate in candidates {
                if let Ok(real) = std::fs::canonicalize(&candidate) {
                    if allowed(&real) && !out.contains(&real) {
                        out.push(real);
                    }
                }
            }
        }
        out
    };
    let mut read = bases(&grant.read);
    let write = bases(&grant.write);
    read.retain(|p| !write.contains(p));
    read.push(tool.to_path_buf());
    read.extend(SYSTEM_READ_PATHS.iter().map(PathBuf::from));
    let mut write = write;
    write.push(scratch.to_path_buf());
    write.extend(SYSTEM_WRITE_PATHS.iter().map(PathBuf::from));
    Confinement {
        read,
        write,
        deny_net: grant.hosts.is_empty(),
        run_as: None,
    }
}

/// What a tool may do beneath a writable path: everything but create
/// symlinks, so no tool can plant one for the built-in tools' handles to
/// follow between their check and their use.
fn writable() -> landlock::BitFlags<AccessFs> {
    let mut access = AccessFs::from_all(FS_ABI);
    access.remove(AccessFs::MakeSym);
    access
}

/// Restricts the calling thread (the launcher is single-threaded) to `c`.
/// Paths that do not exist are skipped. Refuses to report success if the
/// kernel enforced nothing.
pub fn restrict_self(c: &Confinement) -> Result<(), String> {
    let err = |e: landlock::RulesetError| e.to_string();
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(FS_ABI))
        .map_err(err)?;
    if c.deny_net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(NET_ABI))
            .map_err(err)?;
    }
    ruleset = ruleset.scope(Scope::from_all(SCOPE_ABI)).map_err(err)?;
    let mut created = ruleset.create().map_err(err)?;
    // The tool's own /proc entry (the launcher's pid is the tool's after
    // exec): its status, limits and maps, nothing of another process.
    let own_proc = std::fs::canonicalize("/proc/self").ok();
    let rules = c
        .read
        .iter()
        .chain(own_proc.iter())
        .map(|p| (p, AccessFs::from_read(FS_ABI)))
        .chain(c.write.iter().map(|p| (p, writable())));
    for (path, access) in rules {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let access = if meta.is_dir() {
            access
        } else {
            access & AccessFs::from_file(FS_ABI)
        };
        let fd = PathFd::new(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("the kernel enforced none of the rules".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_globs_base_is_its_wildcard_free_prefix() {
        assert_eq!(glob_base("notes/**"), "notes");
        assert_eq!(glob_base("data/*.csv"), "data");
        assert_eq!(glob_base("a/b/c.txt"), "a/b/c.txt");
        assert_eq!(glob_base("**"), "");
        assert_eq!(glob_base("./x/?/y"), "x");
    }

    #[test]
    fn a_root_grant_opens_the_hives_entries_but_never_its_machinery() {
        let dir = tempfile::tempdir().unwrap();
        let hive = dir.path();
        for d in [
            "notes",
            "manifests",
            "agents",
            "tools",
            "evals",
            ".git/hooks",
            ".jaros-data",
            "elsewhere",
        ] {
            std::fs::create_dir_all(hive.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("/etc", hive.join("etc-link")).unwrap();
        let mut plan = Plan::builtin();
        let grant = plan.roles.get_mut("advance").unwrap();
        grant.write = vec!["**".into()];
        grant.read = vec!["notes/**".into()];
        let tool = hive.join("tools/t.sh");
        let c = confinement_for(
            hive,
            Some(&hive.join("elsewhere")),
            &plan,
            "advance",
            &tool,
            Path::new("/tmp/s"),
        );
        let hive = std::fs::canonicalize(hive).unwrap();
        assert!(c.write.contains(&hive.join("notes")));
        for forbidden in [
            "manifests",
            "agents",
            "tools",
            "evals",
            ".git",
            ".jaros-data",
            "elsewhere",
        ] {
            assert!(
                !c.write.contains(&hive.join(forbidden)),
                "{forbidden} opened: {c:?}"
            );
        }
        assert!(
            !c.write.iter().any(|p| p.starts_with("/etc")),
            "a symlink out of the hive was followed: {c:?}"
        );
        assert!(
            !c.read.contains(&hive.join("notes")),
            "notes is read-write already"
        );
        assert!(c.deny_net);
    }
}
