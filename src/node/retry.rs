//! Holding a job whose effect met a failure of the node's environment (a
//! full disk, an I/O error, no file descriptors left): the job is not the
//! agent's to fail. Its decision is recorded, its effect is not; the worker
//! keeps the claim and its lease, waits a backoff that doubles from
//! [`HELD_FIRST_MS`] up to [`HELD_MAX_MS`], and resumes the job, which
//! executes the decision again. A stopping node gives a held job back to
//! the inbox instead of waiting. While held, the job and the reason are in
//! the node's status (`jaros status`, `--json` as `held`).
//!
//! Not bounded in count on purpose: an environment failure lasts until an
//! operator frees space or descriptors, and failing the job then would put
//! the machine's fault on the agent. The wait is bounded, so a job resumes
//! within [`HELD_MAX_MS`] of the environment recovering.

use super::fence::{fence_would_hold, held_epoch};
use super::held::Held;
use super::inbox::JobFile;
use super::shared::Shared;
use super::{inbox, lease};
use crate::job::JobEnd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use super::held::{backoff_ms, HELD_FIRST_MS, HELD_MAX_MS};

/// How often a waiting worker looks whether its node is stopping.
const HELD_POLL_MS: u64 = 10;

/// Runs `job` with `run`, and again after each backoff for as long as its
/// attempts are held; gives it back to the inbox when the node stops or
/// loses the lease meanwhile.
pub(super) fn run_held(
    shared: &Arc<Shared>,
    job: &JobFile,
    resume: bool,
    run: impl Fn(&Arc<Shared>, &JobFile, bool) -> Option<JobEnd>,
) -> Option<JobEnd> {
    let id = job.id.as_str();
    // However this ends (a panic included), the job is no longer shown held.
    let _shown = Shown(&shared.held, id);
    let mut end = run(shared, job, resume);
    while let Some(retry_at) = shared.held.take_due(id) {
        while lease::now_ms() < retry_at {
            if shared.stopping.load(Ordering::SeqCst) || !fence_would_hold(shared, id) {
                shared.held.forget(id);
                give_back(shared, job);
                return None;
            }
            std::thread::sleep(Duration::from_millis(HELD_POLL_MS));
        }
        end = run(shared, job, true);
    }
    end
}

/// Forgets a held job when dropped.
struct Shown<'a>(&'a Held, &'a str);

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// A held job this node will not try again: back to the inbox if the lease
/// is still ours (another node or this one after a restart resumes it),
/// otherwise left to whoever holds it now.
fn give_back(shared: &Shared, job: &JobFile) {
    let id = job.id.as_str();
    let node = &shared.cfg.node_id;
    if !fence_would_hold(shared, id) {
        return;
    }
    match inbox::release(&shared.rt.data, job, held_epoch(shared, id)) {
        Ok(()) => tracing::info!("node {node}: gave held job {id} back to the inbox"),
        Err(e) => tracing::error!("node {node}: cannot give held job {id} back: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_its_first_wait_to_its_bound() {
        assert_eq!(backoff_ms(1), HELD_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * HELD_FIRST_MS);
        assert_eq!(backoff_ms(3), 4 * HELD_FIRST_MS);
        assert_eq!(backoff_ms(60), HELD_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), HELD_MAX_MS);
    }

    #[test]
    fn a_held_job_is_due_once_per_hold_and_forgotten_when_it_runs_through() {
        let held = Held::default();
        held.hold("j1", "ENOSPC (no space left on device): x");
        held.hold("j1", "ENOSPC (no space left on device): y");
        let shown = held.snapshot();
        assert_eq!((shown.len(), shown[0].attempts), (1, 2));
        assert!(shown[0].reason.ends_with(": y"));
        assert!(held.take_due("j1").is_some());
        assert!(
            held.snapshot().len() == 1,
            "shown until its next attempt ends"
        );
        assert!(held.take_due("j1").is_none());
        assert!(held.snapshot().is_empty());
    }
}
