//! The heartbeat: renews this node's leases, writes its status, and after a
//! stall past its lease retakes (or gives up) every job it held.

use super::claims::claim_present;
use super::lease;
use super::shared::*;
use super::status;
use crate::runtime::{self};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn heartbeat_loop(shared: &Arc<Shared>, started_ms: u64) {
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
                tracing::error!("node {}: {e}", shared.cfg.node_id);
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
        // Sleep to the next beat. Parked, an idle node's heartbeat wakes
        // once a beat; the node unparks it when it has stopped, so a
        // stopping node is not held up.
        let until = Instant::now() + Duration::from_millis(shared.cfg.heartbeat_ms.clamp(10, 1000));
        loop {
            let now = Instant::now();
            if now >= until || (shared.stopping.load(Ordering::SeqCst) && holds_nothing(shared)) {
                break;
            }
            std::thread::park_timeout(until - now);
        }
    }
}

/// A stall within a lease's 1/STALL_MARGIN_PARTS of the lease is treated
/// as a lease-long one (the lease may be about to expire on another
/// node's reading).
pub(super) const STALL_MARGIN_PARTS: u32 = 10;

/// After a stall: keeps each held job by taking its next epoch, or marks it
/// lost when another node took that epoch first (or finished the job).
pub(super) fn retake_after_stall(shared: &Shared) {
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
                tracing::warn!("node {node}: {e}; giving {id} up");
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
        tracing::warn!(
            "node {node}: stalled longer than the fence trusts; kept {} job(s) under a new epoch ({}), lost {} to other nodes ({})",
            kept.len(),
            some(&kept),
            lost.len(),
            some(&lost)
        );
    }
}

/// Most job ids a message lists.
pub(super) const MAX_IDS_SHOWN: usize = 8;

/// No job of this node is waiting, running or finishing.
pub(super) fn holds_nothing(shared: &Shared) -> bool {
    shared.active.load(Ordering::SeqCst) == 0 && shared.finishing.load(Ordering::SeqCst) == 0
}

pub(super) fn shared_status(shared: &Shared, started_ms: u64, stopped: bool) -> status::NodeStatus {
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
        held: shared.held.snapshot(),
    }
}
