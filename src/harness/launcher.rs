//! The launcher an executable tool is started through (`jaros
//! __sandbox-exec`): it confines its own process layer by layer, then
//! `exec`s the tool, which inherits every layer for good.
//!
//! In order, each before the next can no longer be undone:
//! 1. **Descriptors.** Any descriptor but 0, 1 and 2 that would survive
//!    `exec` (one the node inherited without close-on-exec) stops the launch.
//!    Closing a descriptor by number takes `unsafe` in Rust (`close_range`
//!    and `close` have no safe wrapper in `rustix` 1.x) and Jaros forbids
//!    `unsafe`, so the node has a shell close them on the way to the
//!    launcher ([`closing_shell`]), and the launcher refuses whatever is
//!    still open.
//! 2. **Network namespace** (no host granted): a fresh one with no
//!    interfaces but a loopback that is down. As root directly; otherwise
//!    inside a new user namespace mapping only the node's own ids. Where the
//!    kernel permits neither, the launch goes on without it and the seccomp
//!    layer alone keeps the tool off the network ([`Layers::netns`] says so).
//! 3. **Landlock** ([`super::landlock::restrict_self`]): paths, TCP ports,
//!    abstract UNIX sockets and signals. Refuses the launch if the kernel
//!    enforces nothing.
//! 4. **Privileges.** Every capability leaves the bounding set, then (when
//!    the node is root and a `run_as` user is set) the supplementary groups
//!    are cleared and the tool becomes that user and group; then the
//!    effective, permitted, inheritable and ambient sets are emptied and
//!    `no_new_privs` is set, so no set-uid program can give any back.
//! 5. **seccomp**: `setsid`/`setpgid` fail (nothing leaves the process group
//!    the node kills), `io_uring_setup` fails (its rings would act beyond the
//!    filter), and `socket`/`socketpair` are refused for every family the
//!    grant does not need: with no host granted no socket at all except a
//!    `socketpair(AF_UNIX)`; with hosts, only `AF_INET` and `AF_INET6`.
//!    So no UDP, no DNS, no raw or packet socket, no netlink, and no
//!    connecting to a pathname UNIX socket (that needs a `socket(AF_UNIX)`).
//! 6. **Parent death**: the tool is sent SIGKILL when the node thread that
//!    started it ends, a node killed with SIGKILL included (so a warm MCP
//!    server does not outlive its node; what the tool itself started is
//!    left to notice). Set after the change of user, which would clear it;
//!    a launch whose node is already gone stops here.

use super::landlock::{self, Confinement, EXIT_NOT_CONFINED, EXIT_NOT_EXECUTED, LAUNCHER_PREFIX};
pub use super::landlock::{RunAs, NOBODY};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Which layers a launch put in place, as the launcher reports them in its
/// probe mode (for `jaros status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    /// The tool got a network namespace of its own: `"root"` (unshared
    /// directly), `"user namespace"`, or why not.
    pub netns: Result<String, String>,
    /// The seccomp filter is installed.
    pub seccomp: bool,
    /// Effective, permitted, inheritable, ambient and bounding sets are empty.
    pub caps_dropped: bool,
    /// The user id the tool runs as.
    pub uid: u32,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
}

fn err(context: &str) -> impl Fn(rustix::io::Errno) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// Descriptors above 2 that would survive `exec`, by number.
pub fn inheritable_descriptors() -> Result<Vec<i32>, String> {
    let numbers: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("cannot list /proc/self/fd to check for inherited descriptors: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|n| *n > 2)
        .collect();
    // The listing's own descriptor is closed by now: its fdinfo is gone.
    let mut open = Vec::new();
    for n in numbers {
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
            .ok_or_else(|| format!("cannot read the flags of descriptor {n}"))?;
        if flags & libc::O_CLOEXEC == 0 {
            open.push(n);
        }
    }
    Ok(open)
}

/// Runs the launcher without the `SHLVL` bash exports.
const ENV_PROGRAM: &str = "/usr/bin/env";

/// A shell command that closes `leaked` and then executes its arguments
/// (`sh -c SCRIPT LAUNCHER ARGS...`): any POSIX shell for descriptors below
/// 10, bash for larger ones. `None` when no such shell is installed; the
/// launcher then refuses the run.
pub fn closing_shell(leaked: &[i32]) -> Option<(&'static str, String)> {
    let shell = if leaked.iter().all(|n| *n < 10) {
        "/bin/sh"
    } else {
        "/bin/bash"
    };
    if !Path::new(shell).exists() {
        return None;
    }
    let closes: Vec<String> = leaked.iter().map(|n| format!("{n}>&-")).collect();
    // The shell exports PWD of its own, and bash SHLVL even when unset:
    // both go, so the tool's environment stays the cleared one it was given.
    let env = if shell == "/bin/bash" && Path::new(ENV_PROGRAM).exists() {
        format!("{ENV_PROGRAM} -u SHLVL ")
    } else {
        String::new()
    };
    Some((
        shell,
        format!(
            "exec {}; unset PWD OLDPWD; exec {env}\"$0\" \"$@\"",
            closes.join(" ")
        ),
    ))
}

/// The command that starts `launcher`: through [`closing_shell`] when this
/// process holds descriptors that would survive `exec`.
pub fn command(launcher: &Path) -> std::process::Command {
    let leaked = inheritable_descriptors().unwrap_or_default();
    match closing_shell(&leaked) {
        Some((shell, script)) if !leaked.is_empty() => {
            let mut cmd = std::process::Command::new(shell);
            cmd.arg("-c").arg(script).arg(launcher);
            cmd
        }
        _ => std::process::Command::new(launcher),
    }
}

/// A network namespace of its own for this process.
#[expect(
    deprecated,
    reason = "rustix deprecates its safe `unshare` because of CLONE_FILES, which \
              can strand descriptors of other threads; only NEWNET and NEWUSER are \
              passed here, in the single-threaded launcher, and the replacement \
              `unshare_unsafe` would need `unsafe`"
)]
fn own_network(user_namespace: bool) -> Result<String, String> {
    use rustix::thread::{unshare, UnshareFlags};
    match unshare(UnshareFlags::NEWNET) {
        Ok(()) => return Ok("root".into()),
        Err(rustix::io::Errno::PERM) if user_namespace => {}
        Err(e) => return Err(format!("unshare(CLONE_NEWNET) is not permitted here ({e})")),
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNET).map_err(|e| {
        format!("neither unshare(CLONE_NEWNET) nor, unprivileged, unshare(CLONE_NEWUSER|CLONE_NEWNET) is permitted here ({e})")
    })?;
    // Map only the node's own ids, so files keep their owners.
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| format!("cannot write /proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))?;
    Ok("user namespace".into())
}

/// Every capability out of the bounding set (up to the kernel's last one).
fn drop_bounding_set() -> Result<(), String> {
    use rustix::thread::{remove_capability_from_bounding_set, CapabilitySet};
    for bit in 0..64u32 {
        match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << bit)) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => {
                return Err(format!(
                    "cannot drop capability {bit} from the bounding set: {e}"
                ))
            }
        }
    }
    Ok(())
}

/// Becomes `run_as` (groups cleared first), then empties every capability
/// set and sets `no_new_privs`.
fn drop_privileges(run_as: Option<RunAs>) -> Result<(), String> {
    use rustix::fs::{Gid, Uid};
    use rustix::thread::{
        clear_ambient_capability_set, set_capabilities, set_no_new_privs, set_thread_groups,
        set_thread_res_gid, set_thread_res_uid, CapabilitySet, CapabilitySets,
    };
    drop_bounding_set()?;
    if let Some(RunAs { uid, gid }) = run_as {
        // The launcher runs no second thread, so these per-thread calls
        // change the whole process.
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        set_thread_groups(&[]).map_err(err("cannot clear the supplementary groups"))?;
        set_thread_res_gid(gid, gid, gid).map_err(err("cannot change to the run_as group"))?;
        set_thread_res_uid(uid, uid, uid).map_err(err("cannot change to the run_as user"))?;
    }
    clear_ambient_capability_set().map_err(err("cannot clear the ambient capabilities"))?;
    set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(err("cannot drop the capabilities"))?;
    set_no_new_privs(true).map_err(err("cannot set no_new_privs"))?;
    Ok(())
}

/// The seccomp filter described in the module doc. `false` on an
/// architecture the filter compiler does not know (nothing filtered).
fn install_seccomp(hosts_granted: bool) -> Result<bool, String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let Ok(arch) = TargetArch::try_from(std::env::consts::ARCH) else {
        return Ok(false);
    };
    let e = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
    let family_is_not = |family: i32| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64)
    };
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_setsid,
        libc::SYS_setpgid,
        libc::SYS_io_uring_setup,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    // An empty rule list refuses the call whatever its arguments.
    let socket = if hosts_granted {
        vec![SeccompRule::new(vec![
            family_is_not(libc::AF_INET).map_err(e)?,
            family_is_not(libc::AF_INET6).map_err(e)?,
        ])
        .map_err(e)?]
    } else {
        Vec::new()
    };
    rules.insert(libc::SYS_socket, socket);
    rules.insert(
        libc::SYS_socketpair,
        vec![SeccompRule::new(vec![family_is_not(libc::AF_UNIX).map_err(e)?]).map_err(e)?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(e)?;
    let program: BpfProgram = filter.try_into().map_err(e)?;
    seccompiler::apply_filter(&program)
        .map_err(|e| format!("cannot apply the seccomp filter: {e}"))?;
    Ok(true)
}

/// Puts every layer in place for `c`, in the module doc's order.
pub fn confine(c: &Confinement) -> Result<Layers, String> {
    let parent = rustix::process::getppid();
    let inherited = inheritable_descriptors()?;
    if !inherited.is_empty() {
        let list: Vec<String> = inherited.iter().map(i32::to_string).collect();
        let (what, verb) = if list.len() == 1 {
            ("descriptor", "is")
        } else {
            ("descriptors", "are")
        };
        return Err(format!(
            "{what} {} {verb} open without close-on-exec and would reach the tool; \
             start the node without {} (whatever starts jaros passed {} on)",
            list.join(", "),
            if list.len() == 1 { "it" } else { "them" },
            if list.len() == 1 { "it" } else { "them" },
        ));
    }
    let netns = if c.deny_net {
        // A root node's tool changes to its run_as user next, which a user
        // namespace mapping only the node's ids would not know.
        own_network(c.run_as.is_none())
    } else {
        Err("the role grants hosts".into())
    };
    landlock::restrict_self(c)?;
    drop_privileges(c.run_as)?;
    let seccomp = install_seccomp(!c.deny_net)?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(err("cannot ask for a signal when the node ends"))?;
    if rustix::process::getppid() != parent {
        return Err("the node that started the tool is gone".into());
    }
    Ok(Layers {
        netns,
        seccomp,
        caps_dropped: true,
        uid: rustix::process::geteuid().as_raw(),
        no_new_privs: true,
    })
}

/// The launcher: confine this process to `c`, then become `command` (or,
/// with no command and `probe`, print the [`Layers`] as JSON and exit 0).
/// Returns only on failure (or after a probe), with the exit code to use.
pub fn exec_confined(c: &Confinement, command: &[OsString], probe: bool) -> i32 {
    let layers = match confine(c) {
        Ok(layers) => layers,
        Err(e) => {
            eprintln!("{LAUNCHER_PREFIX}cannot confine the tool: {e}");
            return EXIT_NOT_CONFINED;
        }
    };
    if probe {
        match serde_json::to_string(&layers) {
            Ok(json) => {
                println!("{json}");
                return 0;
            }
            Err(e) => {
                eprintln!("{LAUNCHER_PREFIX}cannot report the layers: {e}");
                return EXIT_NOT_CONFINED;
            }
        }
    }
    let Some((program, args)) = command.split_first() else {
        eprintln!("{LAUNCHER_PREFIX}no command to run after --");
        return EXIT_NOT_EXECUTED;
    };
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!(
        "{LAUNCHER_PREFIX}cannot execute {}: {error}",
        Path::new(program).display()
    );
    EXIT_NOT_EXECUTED
}

/// The user a node manifest's `tools.run_as` names: `UID[:GID]` (the
/// group defaults to the user id), or a user name looked up in
/// `/etc/passwd` (with its primary group).
pub fn parse_run_as(text: &str) -> Result<RunAs, String> {
    if let Some((uid, gid)) = text.split_once(':') {
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("'{text}' is neither a user name nor UID[:GID]"))
        };
        return Ok(RunAs {
            uid: number(uid)?,
            gid: number(gid)?,
        });
    }
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(RunAs { uid, gid: uid });
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find user '{text}': {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == text).then(|| {
                Some(RunAs {
                    uid: fields[2].parse().ok()?,
                    gid: fields[3].parse().ok()?,
                })
            })?
        })
        .ok_or_else(|| format!("no user '{text}' in /etc/passwd; name another, or give UID:GID"))
}

/// The `run_as` of a root node: the manifest's `tools.run_as`, else
/// [`NOBODY`]; `None` for a node not running as root.
pub fn run_as_for(configured: Option<&str>) -> Result<Option<RunAs>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    configured
        .map(parse_run_as)
        .transpose()
        .map(|r| Some(r.unwrap_or(NOBODY)))
}

/// The `run_as` of a node that names none: [`NOBODY`] when the node is
/// root, else `None` (its tools run as the node's own user, which is
/// unprivileged already).
pub fn default_run_as() -> Option<RunAs> {
    rustix::process::geteuid().is_root().then_some(NOBODY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_takes_numbers_or_a_user_name() {
        assert_eq!(
            parse_run_as("4242").unwrap(),
            RunAs {
                uid: 4242,
                gid: 4242
            }
        );
        assert_eq!(parse_run_as("10:20").unwrap(), RunAs { uid: 10, gid: 20 });
        assert_eq!(parse_run_as("root").unwrap(), RunAs { uid: 0, gid: 0 });
        let e = parse_run_as("no-such-user-here").unwrap_err();
        assert!(
            e.contains("no user 'no-such-user-here' in /etc/passwd"),
            "{e}"
        );
        assert!(parse_run_as("1:x")
            .unwrap_err()
            .contains("neither a user name nor UID[:GID]"));
    }
}
