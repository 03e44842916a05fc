//! Fresh ids for jobs and nodes. This is the edge where time and randomness
//! enter; the ids are then recorded and never recomputed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `n` hex digits that differ between processes and calls.
pub fn random_hex(n: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    crate::canon::Digest::of_bytes(seed.as_bytes()).to_hex()[..n].to_string()
}

/// A new job id: `j-<unix ms>-<8 hex>`, sortable by creation time.
pub fn new_job_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("j-{ms}-{}", random_hex(8))
}

/// The UTC time of day, `HH:MM:SS`, for progress lines.
pub fn clock_hms() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}
