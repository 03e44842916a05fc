//! Fault points: places in the node where a test stops the process, so a
//! pause lands exactly where the fence must hold (between a check and what
//! it guards). Compiled into every build and inert unless `JAROS_FAULT`
//! names one:
//!
//! - `pause-holding-claims`: after a batch of claims is leased, before any
//!   of its jobs runs;
//! - `pause-after-fence`: after the fence found a job's lease held, before
//!   what it guards: a record appended, or a decision's effect started (a
//!   tool, a file, a child job); `:N` picks the Nth fence passed;
//! - `pause-before-publish`: when the finisher has made a round's end
//!   records durable and is about to publish their results (before it
//!   checks that it still holds their leases).
//!
//! `JAROS_FAULT=NAME` fires at the first time the point is reached;
//! `NAME:N` at the Nth. It fires once per process: the node prints
//! `jaros: fault point NAME reached (job ID); stopping` on stderr and stops
//! itself with SIGSTOP, for the test to continue it (SIGCONT) when it likes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the fault point to fire.
pub const FAULT_ENV: &str = "JAROS_FAULT";

/// Where the node may be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    HoldingClaims,
    AfterFence,
    BeforePublish,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::HoldingClaims => "pause-holding-claims",
            Point::AfterFence => "pause-after-fence",
            Point::BeforePublish => "pause-before-publish",
        }
    }
}

/// The point `JAROS_FAULT` names and at which hit it fires (read once).
fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(FAULT_ENV).ok()?;
            let (name, nth) = match value.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (value, 1),
            };
            Some((name, nth.max(1)))
        })
        .as_ref()
}

/// Fires `point` for `job` if `JAROS_FAULT` names it and this is the hit it
/// names: the process stops until it is continued.
pub fn reached(point: Point, job: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((name, nth)) = armed() else {
        return;
    };
    if name != point.name() || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *nth {
        return;
    }
    tracing::warn!("fault point {name} reached (job {job}); stopping");
    // The line must be out before the stop: a test waits for it.
    crate::logging::flush();
    let me = rustix::process::getpid();
    if let Err(e) = rustix::process::kill_process(me, rustix::process::Signal::STOP) {
        tracing::error!("fault point {name}: cannot stop the process: {e}");
    }
    // The stop is delivered to the process, through another thread: this
    // one may run on for a moment before it stops too. It must not run past
    // the fault point meanwhile.
    std::thread::sleep(STOP_SETTLE);
}

/// Long enough for a process-directed stop to reach every thread (it takes
/// microseconds).
const STOP_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
