//! The node's main loop: boot, claim what the inbox holds (woken by file
//! notifications or a scan), reload manifests when they change, fire
//! schedules, and shut down cleanly.

use super::claims::{claim_batch, reclaim_expired, resume_own_jobs, Task};
use super::heartbeat::heartbeat_loop;
use super::inbox;
use super::lease;
use super::schedules::Scheduler;
use super::shared::*;
use super::worker::worker;
use super::{finish, held, seen, spares};
use crate::datadir::DataDir;
use crate::exec::Executor;
use crate::job::Proposer;
use crate::runtime::{self, Runtime};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stopping node waits for the checkpoints of segments it sealed.
const CHECKPOINT_GRACE: Duration = Duration::from_secs(30);

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
    // A signed checkpoint of each sealed segment, with the manifest's key.
    let on_seal = match &cfg.checkpoint_key {
        Some(path) => {
            let text = crate::fsx::read_to_string(path).map_err(|e| {
                format!("{e} (the node manifest's checkpoint_key; `jaros keygen NAME --out FILE` makes one)")
            })?;
            let key = crate::log::note::SignerKey::parse(&text).map_err(|e| {
                format!(
                    "{}: {e} (the node manifest's checkpoint_key)",
                    path.display()
                )
            })?;
            let key = Arc::new(key);
            // What a seal before the last stop could not sign.
            crate::log::checkpoint::sign_unsigned(
                data.clone(),
                cfg.node_id.clone(),
                key.clone(),
                None,
            );
            Some(crate::log::checkpoint::seal_hook(
                data.clone(),
                cfg.node_id.clone(),
                key,
            ))
        }
        None => None,
    };
    rt.log.set_segment_options(crate::log::SegmentOptions {
        segment_bytes: cfg.segment_bytes,
        on_seal,
    });
    for (report, path) in [
        (&rt.open_report, rt.log.path()),
        (&rt.audit.open_report, rt.audit.path()),
    ] {
        if report.truncated_bytes > 0 {
            tracing::warn!(
                "node {}: cut a torn last record ({} bytes) from {} left by a crash",
                cfg.node_id,
                report.truncated_bytes,
                path.display()
            );
        }
    }
    tracing::info!(
        "node {} serving {} (data {}), pool {}, plan {}",
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
        seen: seen::Seen::default(),
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
        held: held::Held::default(),
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
        tracing::info!(
            "node {}: no OS notifications for {}; scanning every {} ms",
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
    let mut retention =
        super::retention::Retention::new(cfg.retention.as_ref(), cfg.archive.clone());
    while !stop.load(Ordering::SeqCst) && shared.fatal.lock().expect("fatal lock").is_none() {
        if queue.is_empty() || last_scan.elapsed() >= Duration::from_millis(cfg.scan_ms) {
            // Parked jobs whose verdict came (or whose time ran out) go
            // back to the inbox, even when the verdict was given while
            // every node was down.
            super::park::wake_due(&data, super::lease::now_ms());
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
        if let Some(retention) = &mut retention {
            retention.tick(&data, &cfg.node_id);
        }
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
    let deadline = Instant::now() + CHECKPOINT_GRACE;
    while crate::log::checkpoint::signing() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let unsigned = crate::log::checkpoint::signing();
    if unsigned > 0 {
        tracing::warn!(
            "node {}: {unsigned} checkpoint(s) of sealed segments not yet signed at exit (take one with `jaros checkpoint`)",
            shared.cfg.node_id
        );
    }
    // Everything is released: the heartbeat's last beat writes the final
    // status now, not at its next beat.
    heartbeat.thread().unpark();
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

pub(super) fn idle(data: &DataDir) -> bool {
    let jobs = |dir: PathBuf| {
        crate::fsx::list_dir(&dir)
            .map(|l| l.iter().any(|p| inbox::id_of(p).is_some()))
            .unwrap_or(false)
    };
    !jobs(data.inbox()) && !jobs(data.claimed())
}

pub(super) fn scan_inbox(data: &DataDir) -> VecDeque<String> {
    crate::fsx::list_dir(&data.inbox())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| inbox::id_of(p).is_some())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

pub(super) fn watch_inbox(
    dir: &Path,
    wake: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
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

/// Picks up manifest edits: the new plan, and the new schedules (which the
/// plan digest does not cover). A hive that does not validate keeps both.
pub(super) fn reload_plan(shared: &Arc<Shared>, source: &PlanSource, scheduler: &mut Scheduler) {
    match source() {
        Ok(HiveLoad { plan, schedules }) => {
            match shared.rt.set_plan(plan) {
                Ok(true) => tracing::info!(
                    "node {}: manifests changed; plan {} in force for new jobs",
                    shared.cfg.node_id,
                    shared.rt.plan_digest().short()
                ),
                Ok(false) => {}
                Err(e) => *shared.fatal.lock().expect("fatal lock") = Some(e.to_string()),
            }
            scheduler.load(&schedules, chrono::Utc::now());
        }
        Err(errors) => tracing::error!(
            "node {}: manifests changed but do not validate; keeping plan {} and its schedules:\n{errors}",
            shared.cfg.node_id,
            shared.rt.plan_digest().short()
        ),
    }
}

pub(super) fn shutdown(
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
        tracing::warn!(
            "node {}: {} job(s) still claimed at exit",
            shared.cfg.node_id,
            remaining.len()
        );
    }
}
