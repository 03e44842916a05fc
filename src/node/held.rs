//! The jobs a node holds for retry after their environment failed, and the
//! backoff between tries (see [`super::retry`], which runs them). Shown in
//! the node's status.

use super::lease;
use super::status::HeldJob;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The first wait before a held job is tried again.
pub const HELD_FIRST_MS: u64 = 100;
/// The longest wait between two tries of a held job.
pub const HELD_MAX_MS: u64 = 10_000;
/// The jobs this node holds for retry.
#[derive(Debug, Default)]
pub(super) struct Held {
    jobs: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    shown: HeldJob,
    /// Set by the attempt that was held, taken by the loop that retries.
    due: bool,
}

/// The wait before try number `attempts + 1` of a held job.
pub fn backoff_ms(attempts: u32) -> u64 {
    HELD_FIRST_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(32))
        .min(HELD_MAX_MS)
}

impl Held {
    /// Notes that an attempt at `job` was held for `reason`.
    pub(super) fn hold(&self, job: &str, reason: &str) {
        let now = lease::now_ms();
        let mut jobs = self.jobs.lock().expect("held lock");
        let entry = jobs.entry(job.to_string()).or_insert_with(|| Entry {
            shown: HeldJob {
                job: job.to_string(),
                reason: String::new(),
                attempts: 0,
                since_ms: now,
                retry_at_ms: now,
            },
            due: false,
        });
        entry.shown.attempts += 1;
        entry.shown.reason = reason.to_string();
        entry.shown.retry_at_ms = now + backoff_ms(entry.shown.attempts);
        entry.due = true;
    }

    /// When to try `job` again, if its last attempt was held; forgets a job
    /// whose last attempt was not.
    pub(super) fn take_due(&self, job: &str) -> Option<u64> {
        let mut jobs = self.jobs.lock().expect("held lock");
        match jobs.get_mut(job) {
            Some(entry) if entry.due => {
                entry.due = false;
                Some(entry.shown.retry_at_ms)
            }
            _ => {
                jobs.remove(job);
                None
            }
        }
    }

    pub(super) fn forget(&self, job: &str) {
        self.jobs.lock().expect("held lock").remove(job);
    }

    /// What the node's status shows.
    pub(super) fn snapshot(&self) -> Vec<HeldJob> {
        let jobs = self.jobs.lock().expect("held lock");
        jobs.values().map(|e| e.shown.clone()).collect()
    }
}
