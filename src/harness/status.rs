//! Whether executable tools run confined, and by which layers: the kernel's
//! Landlock ABI and what the launcher puts in place when probed, in words,
//! for `jaros status` and the audit log.

use super::landlock::{kernel_abi, Confinement, RunAs, LAUNCHER_PREFIX, SANDBOX_SUBCOMMAND};
use super::launcher::Layers;
use parking_lot::Mutex;
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Whether executable tools run confined, and by which layers, for `jaros
/// status` and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfinementStatus {
    /// The kernel's Landlock ABI version, if it has Landlock.
    pub landlock_abi: Option<u32>,
    /// Executable tools run through the launcher, confined by the kernel.
    pub active: bool,
    /// What the launcher put in place when probed (a tool whose role grants
    /// no host), or why the probe failed; `None` when not active.
    pub layers: Option<Result<Layers, String>>,
    /// Why, in words.
    pub reason: String,
}

/// Whether this process can confine tools: the kernel has Landlock and the
/// `jaros` binary can act as the launcher.
pub fn confinement_status() -> ConfinementStatus {
    status_with(
        std::env::current_exe().ok().as_deref(),
        super::launcher::default_run_as(),
    )
}

/// What the launcher at `launcher` puts in place for a tool run as
/// `run_as` with no host granted: run once per launcher and user, in probe
/// mode (it confines itself, reports, and exits).
fn probe(launcher: &Path, run_as: Option<RunAs>) -> Result<Layers, String> {
    type Probes = Vec<((PathBuf, Option<RunAs>), Result<Layers, String>)>;
    static PROBES: Mutex<Probes> = Mutex::new(Vec::new());
    let key = (launcher.to_path_buf(), run_as);
    if let Some((_, known)) = PROBES.lock().iter().find(|(k, _)| *k == key) {
        return known.clone();
    }
    let c = Confinement {
        deny_net: true,
        run_as,
        ..Confinement::default()
    };
    let mut args: Vec<OsString> = vec![SANDBOX_SUBCOMMAND.into(), "--probe".into()];
    args.extend(c.to_args());
    let result = super::launcher::command(launcher)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("the launcher could not be started: {e}"))
        .and_then(|out| {
            if out.status.success() {
                serde_json::from_slice(&out.stdout)
                    .map_err(|e| format!("the launcher's report is not understood: {e}"))
            } else {
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said.trim().trim_start_matches(LAUNCHER_PREFIX);
                Err(format!("the launcher refused ({}): {said}", out.status))
            }
        });
    PROBES.lock().push((key, result.clone()));
    result
}

/// The layers in words, for `jaros status` and the audit log.
pub fn describe_layers(layers: &Layers) -> String {
    let netns = match &layers.netns {
        Ok(how) => format!("a network namespace of its own when no host is granted ({how})"),
        Err(why) => format!("no network namespace of its own: {why}"),
    };
    let seccomp = if layers.seccomp {
        "seccomp: no socket unless hosts are granted (then only TCP/UDP over IPv4/IPv6), no setsid, no io_uring"
    } else {
        "no seccomp filter (the filter compiler does not know this architecture)"
    };
    format!(
        "{netns}; {seccomp}; capabilities dropped (bounding set too), no_new_privs; runs as uid {}",
        layers.uid
    )
}

/// [`confinement_status`] with the launcher and `run_as` given explicitly.
pub fn status_with(launcher: Option<&Path>, run_as: Option<RunAs>) -> ConfinementStatus {
    match (kernel_abi(), launcher) {
        (Ok(abi), Some(launcher)) => {
            let layers = probe(launcher, run_as);
            let net = if abi >= 4 {
                "TCP bind and connect are denied unless the role grants hosts"
            } else {
                "TCP is not restricted by Landlock (it needs ABI 4)"
            };
            let more = match &layers {
                Ok(l) => describe_layers(l),
                Err(why) => format!("a tool cannot start: {why}"),
            };
            ConfinementStatus {
                landlock_abi: Some(abi),
                active: layers.is_ok(),
                reason: format!(
                    "Landlock ABI {abi}: executable tools are confined by the kernel to their agent's granted paths; {net}; {more}"
                ),
                layers: Some(layers),
            }
        }
        (Ok(abi), None) => ConfinementStatus {
            landlock_abi: Some(abi),
            active: false,
            layers: None,
            reason: "the kernel has Landlock but the jaros binary cannot be found to launch tools confined".into(),
        },
        (Err(why), _) => ConfinementStatus {
            landlock_abi: None,
            active: false,
            layers: None,
            reason: format!("Landlock not available: {why}; executable tools run with a cleared environment, a scratch directory, a time-out and an output cap, but unconfined (no network namespace, seccomp filter or dropped privileges either)"),
        },
    }
}
