//! What every part of a node shares: its configuration, counters, the
//! jobs it runs, and the state its threads hold in common.

use super::lease::{self, Lease};
use super::schedules::NamedSchedule;
use super::{held, seen, spares, status};
use crate::exec::Executor;
use crate::job::Proposer;
use crate::plan::Plan;
use crate::runtime::Runtime;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most workers a node runs, whatever its manifest says.
pub const MAX_POOL_SIZE: usize = 256;
/// How many recent finished jobs the node keeps in memory for status.
pub const RECENT_JOBS: usize = 64;
/// A job this quick, from claim to result, lets the node claim ahead.
pub const QUICK_JOB_MS: u64 = 100;

/// How a node works; from the node manifest, overridable by flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub pool_size: usize,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub scan_ms: u64,
    pub grace_ms: u64,
    /// Use OS notifications for new inbox files (off on shared file systems).
    pub notify: bool,
    /// Stop once the inbox and claims are empty (demo, benchmarks).
    pub exit_when_idle: bool,
    /// Print a line per finished job.
    pub verbose: bool,
    /// Bytes at which the node's log seals its open segment (the node
    /// manifest's `log.segment_bytes`).
    pub segment_bytes: u64,
    /// The key file that signs a checkpoint whenever the log seals a
    /// segment (the node manifest's `checkpoint_key`, resolved).
    pub checkpoint_key: Option<std::path::PathBuf>,
    /// The node manifest's `retention`, applied every `retention.every`
    /// (nothing without it), and where sealed segments are archived.
    pub retention: Option<crate::manifest::types::RetentionSpec>,
    pub archive: Option<std::path::PathBuf>,
}

impl NodeConfig {
    pub fn new(node_id: String) -> NodeConfig {
        NodeConfig {
            node_id,
            pool_size: 4,
            lease_ms: 30_000,
            heartbeat_ms: 5_000,
            scan_ms: 1_000,
            grace_ms: 10_000,
            notify: true,
            exit_when_idle: false,
            verbose: false,
            segment_bytes: crate::log::segment::DEFAULT_SEGMENT_BYTES,
            checkpoint_key: None,
            retention: None,
            archive: None,
        }
    }
}

/// What a node runs from: the compiled plan and the hive's schedules.
#[derive(Debug, Clone)]
pub struct HiveLoad {
    pub plan: Plan,
    pub schedules: Vec<NamedSchedule>,
}

impl From<crate::manifest::Loaded> for HiveLoad {
    fn from(loaded: crate::manifest::Loaded) -> HiveLoad {
        let schedules = loaded
            .manifests
            .schedules
            .iter()
            .map(|e| NamedSchedule {
                name: e.m.metadata.name.clone(),
                file: e.file.clone(),
                spec: e.m.spec.clone(),
            })
            .collect();
        HiveLoad {
            plan: loaded.plan,
            schedules,
        }
    }
}

/// Where the node gets its plan and schedules: loaded afresh from the hive's
/// manifests, at boot and after every change to them.
pub type PlanSource = Box<dyn Fn() -> Result<HiveLoad, String> + Send + Sync>;

/// Counts a node keeps while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub claimed: AtomicU64,
    pub resumed: AtomicU64,
    pub bad_files: AtomicU64,
}

pub(super) struct Running {
    pub(super) lease: Lease,
    /// Set by the heartbeat when another node took a higher epoch.
    pub(super) lost: bool,
    pub(super) started: Instant,
}

pub(super) struct Shared {
    pub(super) cfg: NodeConfig,
    pub(super) rt: Runtime,
    /// This node's heartbeat, which every lease it holds links to.
    pub(super) beat: lease::Beat,
    /// The file system's clock, which other nodes' leases are read against.
    pub(super) probe: lease::Probe,
    /// Finished claims, reused for results.
    pub(super) spares: spares::Spares,
    /// What the logs hold of job ids, for what the inbox may run.
    pub(super) seen: seen::Seen,
    pub(super) executor: Executor,
    pub(super) proposer: Arc<dyn Proposer>,
    pub(super) running: Mutex<HashMap<String, Running>>,
    pub(super) recent: Mutex<VecDeque<status::RecentJob>>,
    /// Stop claiming new work.
    pub(super) stopping: AtomicBool,
    /// Stop running work: give it back at the next record.
    pub(super) releasing: AtomicBool,
    /// Jobs claimed (or resumed) and not yet ended: waiting or running.
    pub(super) active: AtomicUsize,
    /// Jobs ended and waiting for the finisher to write their results.
    pub(super) finishing: AtomicUsize,
    /// The last job finished took under [`QUICK_JOB_MS`] from its claim.
    pub(super) quick: AtomicBool,
    pub(super) counters: Counters,
    /// Jobs held for retry after their environment failed.
    pub(super) held: held::Held,
    /// A fatal error (a poisoned log): the node must exit non-zero.
    pub(super) fatal: Mutex<Option<String>>,
    /// Wakes the dispatcher (a worker finished, a claim fell through).
    pub(super) wake: mpsc::Sender<()>,
}

/// What a finished node reports.
#[derive(Debug)]
pub struct NodeExit {
    pub fatal: Option<String>,
    pub done: u64,
    pub failed: u64,
}
