//! The fence: whether this node still holds a job's lease, checked before
//! every record, before an effect starts and before a result is published.

use super::lease;
use super::shared::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest a fence waits for the heartbeat to confirm the node's leases
/// after a stall, in leases: past it, the job is given up as lost.
pub(super) const FENCE_WAIT_LEASES: u32 = 4;

/// Whether this node may act for job `id` now: record for it, start one of
/// its effects, publish its result. Another node takes a job over only once
/// its lease has expired, so a lease this node confirmed on disk less than a
/// lease ago (less a margin, for the moment between this check and the act)
/// is its own. Longer ago (a stall, a SIGSTOP: the monotonic clock runs on
/// while the process is stopped), it waits for the heartbeat to look at
/// every lease on disk and mark the lost ones. When the lease holds, the
/// calling thread's next records carry its epoch.
pub(super) fn fence_holds(shared: &Shared, id: &str, effect_ran: bool) -> bool {
    let lease = Duration::from_millis(shared.cfg.lease_ms);
    let fresh_for = lease - lease / 3;
    let give_up = lease * FENCE_WAIT_LEASES;
    let mut waited = Duration::ZERO;
    while shared.beat.since_checked() >= fresh_for {
        if waited >= give_up || (releasing(shared) && !effect_ran) {
            return false;
        }
        std::thread::sleep(FENCE_POLL);
        waited += FENCE_POLL;
    }
    if releasing(shared) && !effect_ran {
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

/// Whether the node is giving its jobs back (a clean stop). A record of an
/// effect that already ran is still written then: thrown away, the effect
/// would run again on resume.
pub(super) fn releasing(shared: &Shared) -> bool {
    shared.releasing.load(Ordering::SeqCst)
}

/// How often a fence waiting for the heartbeat looks again.
pub(super) const FENCE_POLL: Duration = Duration::from_millis(5);

/// The epoch of this node's lease on `id` (every epoch if it holds none).
pub(super) fn held_epoch(shared: &Shared, id: &str) -> u64 {
    shared
        .running
        .lock()
        .expect("running lock")
        .get(id)
        .map_or(lease::MAX_EPOCHS, |r| r.lease.epoch)
}

pub(super) fn fence_would_hold(shared: &Shared, id: &str) -> bool {
    let running = shared.running.lock().expect("running lock");
    running
        .get(id)
        .is_some_and(|r| lease::still_held(&shared.rt.data, &r.lease))
}
