//! The node: a long-running process that works a hive's inbox.
//!
//! Owns claiming (atomic renames out of `inbox/`), leases and their
//! heartbeat, the bounded worker pool, resuming unfinished jobs at boot and
//! after another node's lease expires, picking up manifest edits, firing the
//! hive's schedules ([`schedules`]), and a clean shutdown. Work enters only
//! as files; a node never opens a socket.

mod fault;
mod finish;
pub mod inbox;
pub mod lease;
pub mod schedules;
mod spares;
pub mod status;

use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::exec::Executor;
use crate::job::{JobEnd, Proposer, RunError, Runner, Ticket};
use crate::plan::Plan;
use crate::runtime::{self, Runtime};
use inbox::JobFile;
use lease::Lease;
use schedules::{NamedSchedule, Scheduler};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

struct Running {
    lease: Lease,
    /// Set by the heartbeat when another node took a higher epoch.
    lost: bool,
    started: Instant,
}

struct Shared {
    cfg: NodeConfig,
    rt: Runtime,
    /// This node's heartbeat, which every lease it holds links to.
    beat: lease::Beat,
    /// The file system's clock, which other nodes' leases are read against.
    probe: lease::Probe,
    /// Finished claims, reused for results.
    spares: spares::Spares,
    executor: Executor,
    proposer: Arc<dyn Proposer>,
    running: Mutex<HashMap<String, Running>>,
    recent: Mutex<VecDeque<status::RecentJob>>,
    /// Stop claiming new work.
    stopping: AtomicBool,
    /// Stop running work: give it back at the next record.
    releasing: AtomicBool,
    /// Jobs claimed (or resumed) and not yet ended: waiting or running.
    active: AtomicUsize,
    /// Jobs ended and waiting for the finisher to write their results.
    finishing: AtomicUsize,
    /// The last job finished took under [`QUICK_JOB_MS`] from its claim.
    quick: AtomicBool,
    counters: Counters,
    /// A fatal error (a poisoned log): the node must exit non-zero.
    fatal: Mutex<Option<String>>,
    /// Wakes the dispatcher (a worker finished, a claim fell through).
    wake: mpsc::Sender<()>,
}

/// What a finished node reports.
#[derive(Debug)]
pub struct NodeExit {
    pub fatal: Option<String>,
    pub done: u64,
    pub failed: u64,
}

/// Runs a node until `stop` is set (or until idle, when configured).
pub fn serve(
    cfg: NodeConfig,
    hive: &Path,
    data: DataDir,
    plan_source: PlanSource,
    executor: Executor,
    proposer: Arc<dyn Proposer>,
    stop: Arc<AtomicBool>,
) -> Result<NodeExit, String> {
    let HiveLoad { plan, schedules } = plan_source().map_err(|e| {
        format!("the hive's manifests do not validate; the node does not start:\n{e}")
    })?;
    let rt =
        Runtime::open(hive, data.clone(), cfg.node_id.clone(), plan).map_err(|e| e.to_string())?;
    if rt.open_report.truncated_bytes > 0 {
        eprintln!(
            "jaros: node {}: cut a torn last record ({} bytes) from {} left by a crash",
            cfg.node_id,
            rt.open_report.truncated_bytes,
            rt.log.path().display()
        );
    }
    eprintln!(
        "jaros: node {} serving {} (data {}), pool {}, plan {}",
        cfg.node_id,
        hive.display(),
        data.root().display(),
        cfg.pool_size,
        rt.plan_digest().short()
    );
    let beat = lease::Beat::start(&data, &cfg.node_id, cfg.lease_ms).map_err(|e| e.to_string())?;
    let probe = lease::Probe::open(&data, &cfg.node_id).map_err(|e| e.to_string())?;
    if let Err(e) = lease::check_file_system(&data, &beat) {
        beat.retire();
        probe.remove();
        return Err(e);
    }
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        rt,
        beat,
        probe,
        spares: spares::Spares::new(&data, &cfg.node_id),
        executor,
        proposer,
        running: Mutex::new(HashMap::new()),
        recent: Mutex::new(VecDeque::new()),
        stopping: AtomicBool::new(false),
        releasing: AtomicBool::new(false),
        active: AtomicUsize::new(0),
        finishing: AtomicUsize::new(0),
        quick: AtomicBool::new(false),
        counters: Counters::default(),
        fatal: Mutex::new(None),
        wake: wake_tx.clone(),
    });
    let started_ms = lease::now_ms();
    let (task_tx, task_rx) = mpsc::channel::<Task>();
    let task_rx = Arc::new(Mutex::new(task_rx));
    // Bounded: when results cannot be written as fast as jobs end, workers
    // wait, and with them the claims.
    let (ended_tx, ended_rx) = mpsc::sync_channel::<finish::Ended>(finish::MAX_ROUND);
    let workers: Vec<_> = (0..cfg.pool_size.clamp(1, MAX_POOL_SIZE))
        .map(|i| {
            let shared = shared.clone();
            let rx = task_rx.clone();
            let ended = ended_tx.clone();
            std::thread::Builder::new()
                .name(format!("jaros-worker-{i}"))
                .spawn(move || worker(&shared, &rx, &ended))
                .expect("a worker thread starts")
        })
        .collect();
    drop(ended_tx);
    // Ends once every worker is gone and their last ends are finished.
    let finisher = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("jaros-finisher".into())
            .spawn(move || finish::finisher(&shared, &ended_rx))
            .expect("the finisher thread starts")
    };
    let heartbeat = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("jaros-heartbeat".into())
            .spawn(move || heartbeat_loop(&shared, started_ms))
            .expect("the heartbeat thread starts")
    };

    let _watcher = if cfg.notify {
        watch_inbox(&data.inbox(), wake_tx.clone())
    } else {
        None
    };
    if cfg.notify && _watcher.is_none() {
        eprintln!(
            "jaros: node {}: no OS notifications for {}; scanning every {} ms",
            cfg.node_id,
            data.inbox().display(),
            cfg.scan_ms
        );
    }

    resume_own_jobs(&shared, &task_tx);
    let booted = chrono::Utc::now();
    let mut scheduler =
        Scheduler::new(&cfg.node_id, data.root().to_path_buf(), booted, cfg.verbose);
    scheduler.load(&schedules, booted);
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut last_scan = Instant::now() - Duration::from_secs(3600);
    let mut last_reclaim = Instant::now();
    let mut manifest_print = runtime::hive_fingerprint(hive);
    let mut last_fingerprint = Instant::now();
    let capacity = cfg.pool_size.clamp(1, MAX_POOL_SIZE);
    while !stop.load(Ordering::SeqCst) && shared.fatal.lock().expect("fatal lock").is_none() {
        if queue.is_empty() || last_scan.elapsed() >= Duration::from_millis(cfg.scan_ms) {
            queue = scan_inbox(&data);
            last_scan = Instant::now();
        }
        // Claims come in batches that share one sync. While jobs are quick,
        // they run ahead of the workers by up to a pool's worth, so a batch
        // is ready when workers free up; a slow job leaves the next claim to
        // whichever node frees a worker first.
        let ahead = if shared.quick.load(Ordering::SeqCst) {
            capacity
        } else {
            0
        };
        let free = (capacity + ahead).saturating_sub(shared.active.load(Ordering::SeqCst));
        if free > 0 && !queue.is_empty() {
            let names: Vec<String> = (0..free).map_while(|_| queue.pop_front()).collect();
            claim_batch(&shared, &task_tx, &names);
        }
        if last_reclaim.elapsed() >= Duration::from_millis((cfg.lease_ms / 4).max(50)) {
            reclaim_expired(&shared, &task_tx);
            last_reclaim = Instant::now();
        }
        // Manifest edits are noticed within a scan interval (at most 1 s).
        if last_fingerprint.elapsed() >= Duration::from_millis(cfg.scan_ms.clamp(20, 1000)) {
            last_fingerprint = Instant::now();
            let print = runtime::hive_fingerprint(hive);
            if print != manifest_print {
                manifest_print = print;
                reload_plan(&shared, &plan_source, &mut scheduler);
            }
        }
        let schedules_wait = scheduler.run(chrono::Utc::now());
        if cfg.exit_when_idle
            && queue.is_empty()
            && shared.active.load(Ordering::SeqCst) == 0
            && idle(&data)
        {
            break;
        }
        // Sleep until a notification, a worker finishing, or the scan timer.
        let wait = if queue.is_empty() {
            Duration::from_millis(cfg.scan_ms.min(200))
        } else {
            Duration::from_millis(2)
        }
        .min(schedules_wait);
        let _ = wake_rx.recv_timeout(wait);
        while wake_rx.try_recv().is_ok() {}
    }
    shutdown(&shared, task_tx, workers, finisher);
    let _ = heartbeat.join();
    shared.beat.retire();
    shared.probe.remove();
    shared.spares.clear();
    let fatal = shared.fatal.lock().expect("fatal lock").clone();
    Ok(NodeExit {
        fatal,
        done: shared.counters.done.load(Ordering::SeqCst),
        failed: shared.counters.failed.load(Ordering::SeqCst),
    })
}

fn idle(data: &DataDir) -> bool {
    let jobs = |dir: PathBuf| {
        crate::fsx::list_dir(&dir)
            .map(|l| l.iter().any(|p| inbox::id_of(p).is_some()))
            .unwrap_or(false)
    };
    !jobs(data.inbox()) && !jobs(data.claimed())
}

fn scan_inbox(data: &DataDir) -> VecDeque<String> {
    crate::fsx::list_dir(&data.inbox())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| inbox::id_of(p).is_some())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

fn watch_inbox(dir: &Path, wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind};
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only arrivals: the node's own listing of the inbox (an open) and
        // its claims (renames away) must not wake it again.
        let arrival = event.is_ok_and(|e| {
            matches!(
                e.kind,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
            )
        });
        if arrival {
            let _ = wake.send(());
        }
    })
    .ok()?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some(watcher)
}

enum Task {
    /// Read and run a job file this node has just claimed and leased.
    Claimed { path: PathBuf },
    /// Run a job this node already holds the lease of (resumed or reclaimed).
    Run { job: JobFile, resume: bool },
}

/// Claims inbox files by renaming them into `claimed/`, makes the renames
/// durable with one directory sync (before any of their jobs can record),
/// leases each and queues it for a worker. A name another node claimed
/// first is skipped.
fn claim_batch(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>, names: &[String]) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let data = &shared.rt.data;
    let node = &shared.cfg.node_id;
    let claimed: Vec<PathBuf> = names
        .iter()
        .filter_map(|name| match inbox::claim(data, name) {
            Ok(path) => path,
            Err(e) => {
                eprintln!("jaros: node {node}: {e}");
                None
            }
        })
        .collect();
    if claimed.is_empty() {
        return;
    }
    if let Err(e) = crate::fsx::sync_dir(&data.claimed()) {
        // Unleased, the claims are taken over a lease's time from now.
        eprintln!("jaros: node {node}: {e}");
        return;
    }
    let mut leased = None;
    for path in claimed {
        shared.counters.claimed.fetch_add(1, Ordering::SeqCst);
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        // Only the first epoch: a lease here means another node took this
        // claim over in the moment before ours (or a crash left one); that
        // node runs it, or its lease expires and the job is reclaimed.
        match shared.beat.take(data, &id, 1) {
            Ok(Some(lease)) => {
                shared.active.fetch_add(1, Ordering::SeqCst);
                hold(shared, &id, lease);
                leased.get_or_insert(id.clone());
                if tasks.send(Task::Claimed { path }).is_err() {
                    finish::free_slot(shared, &id);
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("jaros: node {node}: {e}"),
        }
    }
    if let Some(id) = leased {
        fault::reached(fault::Point::HoldingClaims, &id);
    }
}

fn start(
    shared: &Arc<Shared>,
    tasks: &mpsc::Sender<Task>,
    job: JobFile,
    lease: Lease,
    resume: bool,
) {
    shared.active.fetch_add(1, Ordering::SeqCst);
    hold(shared, job.id.as_str(), lease);
    if tasks.send(Task::Run { job, resume }).is_err() {
        shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts job `id` as running under `lease` (the heartbeat renews it).
fn hold(shared: &Shared, id: &str, lease: Lease) {
    shared.running.lock().expect("running lock").insert(
        id.to_string(),
        Running {
            lease,
            lost: false,
            started: Instant::now(),
        },
    );
}

/// At boot: jobs whose lease names this node were ours before a crash or a
/// restart; the log lock proves no other process of this node id runs.
fn resume_own_jobs(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>) {
    let data = &shared.rt.data;
    for path in crate::fsx::list_dir(&data.claimed()).unwrap_or_default() {
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        let Some(current) = lease::current(data, &id, shared.cfg.lease_ms) else {
            continue;
        };
        if current.node != shared.cfg.node_id {
            continue;
        }
        take_over(shared, tasks, &path, &id, current.epoch + 1);
    }
}

/// Takes over claimed jobs whose lease expired (their node died or hung).
fn reclaim_expired(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>) {
    let data = &shared.rt.data;
    // Leases carry the file system's time; so must the time they are
    // compared with (hosts' clocks may disagree with it and each other).
    let now = match shared.probe.now_ms() {
        Ok(now) => now,
        Err(e) => {
            eprintln!(
                "jaros: node {}: {e}; no takeovers until it can",
                shared.cfg.node_id
            );
            return;
        }
    };
    for path in crate::fsx::list_dir(&data.claimed()).unwrap_or_default() {
        if shared.stopping.load(Ordering::SeqCst)
            || shared.active.load(Ordering::SeqCst) >= shared.cfg.pool_size
        {
            return;
        }
        let Some(id) = inbox::id_of(&path) else {
            continue;
        };
        if shared
            .running
            .lock()
            .expect("running lock")
            .contains_key(&id)
        {
            continue;
        }
        // No lease yet: a claim in progress; give it a lease's time from
        // the moment of the claim.
        let (expired, next) = match lease::current(data, &id, shared.cfg.lease_ms) {
            Some(l) => (l.expires_ms < now, l.epoch + 1),
            None => (
                inbox::claim_age(&path).is_some_and(|a| a.as_millis() as u64 > shared.cfg.lease_ms),
                1,
            ),
        };
        if expired {
            take_over(shared, tasks, &path, &id, next);
        }
    }
}

fn take_over(shared: &Arc<Shared>, tasks: &mpsc::Sender<Task>, path: &Path, id: &str, epoch: u64) {
    let data = &shared.rt.data;
    let lease = match shared.beat.take(data, id, epoch) {
        Ok(Some(lease)) => lease,
        _ => return,
    };
    if !path.exists() {
        // Its holder finished it between our look and our lease.
        lease::remove(data, &lease);
        return;
    }
    let job = match inbox::read_job(path, &shared.rt.plan()) {
        Ok(job) => job,
        // Finished meanwhile, seen through a cached listing or cached
        // attributes (a network file system): not a bad file.
        Err(_) if !claim_present(path) => {
            lease::remove(data, &lease);
            return;
        }
        Err(reason) => {
            let _ = inbox::fail_bad_file(data, path, &reason);
            lease::remove_all(data, id, lease.epoch);
            return;
        }
    };
    shared.counters.resumed.fetch_add(1, Ordering::SeqCst);
    start(shared, tasks, job, lease, true);
}

/// Whether a claim file is there, asked of the file server itself: an open
/// is never answered from a cache, where a listing or a `stat` may be (an
/// sshfs or NFS client caches both).
fn claim_present(path: &Path) -> bool {
    !matches!(std::fs::File::open(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn worker(
    shared: &Arc<Shared>,
    tasks: &Arc<Mutex<mpsc::Receiver<Task>>>,
    ended: &mpsc::SyncSender<finish::Ended>,
) {
    loop {
        let task = tasks.lock().expect("task lock").recv();
        let (job, resume) = match task {
            Err(_) => return,
            Ok(Task::Run { job, resume }) => (job, resume),
            Ok(Task::Claimed { path }) if !claim_still_ours(shared, &path) => {
                // Queued while the node was paused past its lease: another
                // node has it now (or has finished it).
                finish::free_slot(shared, &inbox::id_of(&path).unwrap_or_default());
                continue;
            }
            Ok(Task::Claimed { path }) => match inbox::read_job(&path, &shared.rt.plan()) {
                Ok(job) => {
                    let resume = job.resume;
                    (job, resume)
                }
                Err(reason) => {
                    fail_claimed_file(shared, &path, &reason);
                    continue;
                }
            },
        };
        let id = job.id.to_string();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(shared, &job, resume)
        }));
        match outcome {
            // The finisher writes its result; the slot is free now.
            Ok(Some(end)) => {
                finish::hand_over(shared);
                if let Err(mpsc::SendError(e)) = ended.send(finish::Ended { job, end }) {
                    shared.finishing.fetch_sub(1, Ordering::SeqCst);
                    finish::finish(shared, &e.job, &e.end);
                    drop(shared.running.lock().expect("running lock").remove(&id));
                }
                continue;
            }
            Ok(None) => {}
            Err(panic) => {
                let reason = format!(
                    "the job's run panicked: {}",
                    crate::exec::panic_text(&panic)
                );
                fail_after_panic(shared, &job, reason);
            }
        }
        finish::free_slot(shared, &id);
    }
}

/// Whether a claim queued for a worker is still this node's to run: the
/// fence holds for it (after a pause, once the heartbeat has looked).
fn claim_still_ours(shared: &Shared, path: &Path) -> bool {
    let id = inbox::id_of(path).unwrap_or_default();
    let ours = fence_holds(shared, &id);
    if !ours {
        eprintln!(
            "jaros: node {}: lost the lease on {id} before running it; another node has it",
            shared.cfg.node_id
        );
    }
    ours
}

/// Fails a claimed job file that cannot run, with its reason, and frees
/// its slot.
fn fail_claimed_file(shared: &Arc<Shared>, path: &Path, reason: &str) {
    let node = &shared.cfg.node_id;
    shared.counters.bad_files.fetch_add(1, Ordering::SeqCst);
    match inbox::fail_bad_file(&shared.rt.data, path, reason) {
        Ok(failed) => eprintln!(
            "jaros: node {node}: {} failed: {reason} ({})",
            path.file_name().unwrap_or_default().to_string_lossy(),
            failed.display()
        ),
        Err(e) => eprintln!("jaros: node {node}: {e}"),
    }
    // Freeing the slot drops the lease too.
    finish::free_slot(shared, &inbox::id_of(path).unwrap_or_default());
}

/// A job fails only itself: a panic outside the handlers is recorded as the
/// job's failure and its result written.
fn fail_after_panic(shared: &Arc<Shared>, job: &JobFile, reason: String) {
    let history = job_history(shared, &job.id).unwrap_or_default();
    let live = shared.rt.live_io();
    // The failure is recorded under the job's own lease epoch (its run may
    // have panicked before any fence set it on this thread), or none.
    let epoch = shared
        .running
        .lock()
        .expect("running lock")
        .get(job.id.as_str())
        .map_or(0, |r| r.lease.epoch);
    crate::log::set_thread_epoch(epoch);
    let end = {
        let runner = runner_for(shared, &live, &job.id);
        runner.abort(&history, reason.clone()).ok().flatten()
    };
    let end = end.unwrap_or(JobEnd {
        job: job.id.clone(),
        agent: job.agent.clone(),
        state: crate::state::State::Failed,
        result: serde_json::Value::Null,
        reason: Some(reason),
        blame: None,
        seq: 0,
    });
    finish::finish(shared, job, &end);
}

/// A job's history from every node's log. This node's own records may still
/// be on their way to its file (another thread writes them), so they are
/// flushed first.
fn job_history(shared: &Shared, id: &JobId) -> Result<Vec<crate::log::Body>, String> {
    shared.rt.log.flush().map_err(|e| e.to_string())?;
    crate::replay::job_history(&shared.rt.data, id).map_err(|e| e.to_string())
}

fn runner_for<'a>(shared: &'a Shared, live: &'a runtime::HiveIo, _job: &JobId) -> Runner<'a> {
    shared
        .rt
        .runner(&shared.executor, &*shared.proposer, live, &NO_FENCE)
}

static NO_FENCE: fn() -> bool = || true;

/// Runs a job to its end; the end, when there is one, is for the finisher
/// (its record not yet durable). Every other outcome is dealt with here.
fn run_job(shared: &Arc<Shared>, job: &JobFile, resume: bool) -> Option<JobEnd> {
    let id = job.id.to_string();
    let history = if resume {
        match job_history(shared, &job.id) {
            Ok(h) => h,
            Err(e) => {
                eprintln!(
                    "jaros: node {}: cannot read the history of {id}: {e}",
                    shared.cfg.node_id
                );
                return None;
            }
        }
    } else {
        Vec::new()
    };
    let live = shared.rt.live_io();
    let fence = || {
        let holds = fence_holds(shared, &id);
        if holds {
            fault::reached(fault::Point::AfterFence, &id);
        }
        holds
    };
    let runner = Runner {
        fence: &fence,
        defer_end: true,
        ..runner_for(shared, &live, &job.id)
    };
    let ticket = Ticket {
        job: job.id.clone(),
        agent: job.agent.clone(),
        input: job.input.clone(),
        parent: job.parent.clone(),
        via: job.via.clone(),
    };
    match runner.run(&ticket, &history) {
        Ok(end) => return Some(end),
        Err(RunError::Fenced(_)) => {
            if shared.releasing.load(Ordering::SeqCst) && fence_would_hold(shared, &id) {
                // Shutting down: give the job back for another node to resume.
                let _ = inbox::release(&shared.rt.data, job, held_epoch(shared, &id));
                eprintln!(
                    "jaros: node {}: released {id} to the inbox (shutdown grace expired)",
                    shared.cfg.node_id
                );
            } else {
                eprintln!(
                    "jaros: node {}: lost the lease on {id}; another node resumes it",
                    shared.cfg.node_id
                );
            }
        }
        Err(RunError::Log(e)) => {
            *shared.fatal.lock().expect("fatal lock") = Some(e.to_string());
        }
        Err(e) => {
            let end = JobEnd {
                job: job.id.clone(),
                agent: job.agent.clone(),
                state: crate::state::State::Failed,
                result: serde_json::Value::Null,
                reason: Some(e.to_string()),
                blame: None,
                seq: 0,
            };
            finish::finish(shared, job, &end);
        }
    }
    None
}

/// Longest a fence waits for the heartbeat to confirm the node's leases
/// after a stall, in leases: past it, the job is given up as lost.
const FENCE_WAIT_LEASES: u32 = 4;

/// Whether this node may act for job `id` now: record for it, start one of
/// its effects, publish its result. Another node takes a job over only once
/// its lease has expired, so a lease this node confirmed on disk less than a
/// lease ago (less a margin, for the moment between this check and the act)
/// is its own. Longer ago (a stall, a SIGSTOP: the monotonic clock runs on
/// while the process is stopped), it waits for the heartbeat to look at
/// every lease on disk and mark the lost ones. When the lease holds, the
/// calling thread's next records carry its epoch.
fn fence_holds(shared: &Shared, id: &str) -> bool {
    let lease = Duration::from_millis(shared.cfg.lease_ms);
    let fresh_for = lease - lease / 3;
    let give_up = lease * FENCE_WAIT_LEASES;
    let mut waited = Duration::ZERO;
    while shared.beat.since_checked() >= fresh_for {
        if waited >= give_up || shared.releasing.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(FENCE_POLL);
        waited += FENCE_POLL;
    }
    if shared.releasing.load(Ordering::SeqCst) {
        return false;
    }
    let running = shared.running.lock().expect("running lock");
    match running.get(id) {
        Some(r) if !r.lost => {
            crate::log::set_thread_epoch(r.lease.epoch);
            true
        }
        _ => false,
    }
}

/// How often a fence waiting for the heartbeat looks again.
const FENCE_POLL: Duration = Duration::from_millis(5);

/// The epoch of this node's lease on `id` (every epoch if it holds none).
fn held_epoch(shared: &Shared, id: &str) -> u64 {
    shared
        .running
        .lock()
        .expect("running lock")
        .get(id)
        .map_or(lease::MAX_EPOCHS, |r| r.lease.epoch)
}

fn fence_would_hold(shared: &Shared, id: &str) -> bool {
    let running = shared.running.lock().expect("running lock");
    running
        .get(id)
        .is_some_and(|r| lease::still_held(&shared.rt.data, &r.lease))
}

/// Picks up manifest edits: the new plan, and the new schedules (which the
/// plan digest does not cover). A hive that does not validate keeps both.
fn reload_plan(shared: &Arc<Shared>, source: &PlanSource, scheduler: &mut Scheduler) {
    match source() {
        Ok(HiveLoad { plan, schedules }) => {
            match shared.rt.set_plan(plan) {
                Ok(true) => eprintln!(
                    "jaros: node {}: manifests changed; plan {} in force for new jobs",
                    shared.cfg.node_id,
                    shared.rt.plan_digest().short()
                ),
                Ok(false) => {}
                Err(e) => *shared.fatal.lock().expect("fatal lock") = Some(e.to_string()),
            }
            scheduler.load(&schedules, chrono::Utc::now());
        }
        Err(errors) => eprintln!(
            "jaros: node {}: manifests changed but do not validate; keeping plan {} and its schedules:\n{errors}",
            shared.cfg.node_id,
            shared.rt.plan_digest().short()
        ),
    }
}

fn heartbeat_loop(shared: &Arc<Shared>, started_ms: u64) {
    let data = &shared.rt.data;
    let mut last_status = Instant::now() - Duration::from_secs(3600);
    let lease = Duration::from_millis(shared.cfg.lease_ms);
    loop {
        let done = shared.stopping.load(Ordering::SeqCst) && holds_nothing(shared);
        // The fences count from before the look at the disk.
        let looked = Instant::now();
        // Close to a lease or longer since the last look (a stall, a
        // pause): the leases' times on disk are old, and another node may
        // take any of them over at any moment. Renew first (from now on no
        // node starts a takeover), then take the next epoch of every job:
        // exclusive, so either this node still has the job, under a new
        // epoch, or another node took it over meanwhile and this node has
        // lost it. (A shorter stall only holds the fences up until the look
        // below: no lease can have expired.)
        let stalled = shared.beat.since_checked() >= lease - lease / STALL_MARGIN_PARTS;
        let renewed = match shared.beat.beat() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("jaros: node {}: {e}", shared.cfg.node_id);
                false
            }
        };
        if stalled {
            retake_after_stall(shared);
        } else {
            for r in shared.running.lock().expect("running lock").values_mut() {
                r.lost = r.lost || !lease::still_held(data, &r.lease);
            }
        }
        // Unrenewed, the leases are as old as before: the fences wait on.
        if renewed {
            shared.beat.checked(looked);
        }
        // Deferred records wait in memory for a batch or a sync; this puts
        // them in the file for readers in other processes (`jaros logs`,
        // another node) at most a beat late. A failure poisons the log, and
        // the next durable append reports it.
        let _ = shared.rt.log.flush();
        if done || last_status.elapsed() >= Duration::from_millis(shared.cfg.heartbeat_ms.min(1000))
        {
            status::write_node_status(shared_status(shared, started_ms, done), data);
            last_status = Instant::now();
        }
        if done {
            return;
        }
        // Sleep in short steps so a stopping node is not held up.
        let until = Instant::now() + Duration::from_millis(shared.cfg.heartbeat_ms.clamp(10, 1000));
        while Instant::now() < until
            && !(shared.stopping.load(Ordering::SeqCst) && holds_nothing(shared))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A stall within a lease's 1/STALL_MARGIN_PARTS of the lease is treated
/// as a lease-long one (the lease may be about to expire on another
/// node's reading).
const STALL_MARGIN_PARTS: u32 = 10;

/// After a stall: keeps each held job by taking its next epoch, or marks it
/// lost when another node took that epoch first (or finished the job).
fn retake_after_stall(shared: &Shared) {
    let data = &shared.rt.data;
    let node = &shared.cfg.node_id;
    let mut running = shared.running.lock().expect("running lock");
    let (mut kept, mut lost) = (Vec::new(), Vec::new());
    for (id, r) in running.iter_mut().filter(|(_, r)| !r.lost) {
        let next = r.lease.epoch + 1;
        let taken = if next > lease::MAX_EPOCHS {
            Ok(None)
        } else {
            shared.beat.take(data, id, next)
        };
        match taken {
            Ok(Some(new)) if claim_present(&data.claimed().join(format!("{id}.json"))) => {
                r.lease = new;
                kept.push(id.as_str());
            }
            Ok(Some(new)) => {
                // Finished by another node meanwhile: the epoch is a stray.
                lease::remove(data, &new);
                r.lost = true;
                lost.push(id.as_str());
            }
            Ok(None) => {
                r.lost = true;
                lost.push(id.as_str());
            }
            Err(e) => {
                eprintln!("jaros: node {node}: {e}; giving {id} up");
                r.lost = true;
                lost.push(id.as_str());
            }
        }
    }
    if !(kept.is_empty() && lost.is_empty()) {
        let some = |ids: &[&str]| {
            ids.iter()
                .take(MAX_IDS_SHOWN)
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "jaros: node {node}: stalled longer than the fence trusts; kept {} job(s) under a new epoch ({}), lost {} to other nodes ({})",
            kept.len(),
            some(&kept),
            lost.len(),
            some(&lost)
        );
    }
}

/// Most job ids a message lists.
const MAX_IDS_SHOWN: usize = 8;

/// No job of this node is waiting, running or finishing.
fn holds_nothing(shared: &Shared) -> bool {
    shared.active.load(Ordering::SeqCst) == 0 && shared.finishing.load(Ordering::SeqCst) == 0
}

fn shared_status(shared: &Shared, started_ms: u64, stopped: bool) -> status::NodeStatus {
    let running = shared.running.lock().expect("running lock");
    status::NodeStatus {
        node: shared.cfg.node_id.clone(),
        pid: std::process::id(),
        executor: runtime::executor_identity(),
        started_ms,
        beat_ms: lease::now_ms(),
        heartbeat_ms: shared.cfg.heartbeat_ms,
        stopped,
        pool_size: shared.cfg.pool_size,
        running: running
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        plan: shared.rt.plan_digest().to_hex(),
        done: shared.counters.done.load(Ordering::SeqCst),
        failed: shared.counters.failed.load(Ordering::SeqCst),
        resumed: shared.counters.resumed.load(Ordering::SeqCst),
        bad_files: shared.counters.bad_files.load(Ordering::SeqCst),
        recent: shared
            .recent
            .lock()
            .expect("recent lock")
            .iter()
            .cloned()
            .collect(),
    }
}

fn shutdown(
    shared: &Arc<Shared>,
    tasks: mpsc::Sender<Task>,
    workers: Vec<std::thread::JoinHandle<()>>,
    finisher: std::thread::JoinHandle<()>,
) {
    shared.stopping.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_millis(shared.cfg.grace_ms);
    while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if shared.active.load(Ordering::SeqCst) > 0 {
        shared.releasing.store(true, Ordering::SeqCst);
    }
    drop(tasks);
    for w in workers {
        let _ = w.join();
    }
    // The workers are gone, so the finisher ends once it has finished theirs.
    let _ = finisher.join();
    let remaining: HashSet<String> = shared
        .running
        .lock()
        .expect("running lock")
        .keys()
        .cloned()
        .collect();
    if !remaining.is_empty() {
        eprintln!(
            "jaros: node {}: {} job(s) still claimed at exit",
            shared.cfg.node_id,
            remaining.len()
        );
    }
}
