//! Fresh ids for jobs and nodes, and how long a job id may be. This is the
//! edge where time and randomness enter; the ids are then recorded and never
//! recomputed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest file name the data dir's file systems take, in bytes
/// (`NAME_MAX` on Linux, for ext4, xfs, btrfs, tmpfs, NFS and sshfs alike).
pub const NAME_MAX_BYTES: usize = 255;

/// The most a file name made from a job id adds to the id, in bytes. The
/// longest such name is the temp file written beside a job's file or result
/// (`fsx::write_durable`): `.<id>.json.<pid>.<nonce>.<n>.tmp`, at most
/// 1 + 5 + 1 + 10 (a u32 pid) + 1 + 12 (`fsx::NONCE_HEX`) + 1 + 20 (a u64
/// counter) + 4 = 55 bytes more than the id.
/// The others are shorter: `<id>.json` (5), a lease `<id>.lease.<epoch>`
/// (7 + at most 20 digits).
pub const LONGEST_ID_SUFFIX_BYTES: usize = 55;
const _: () =
    assert!(LONGEST_ID_SUFFIX_BYTES == 1 + 5 + 1 + 10 + 1 + crate::fsx::NONCE_HEX + 1 + 20 + 4);

/// The longest job id, in bytes: every file name derived from a job id
/// fits in [`NAME_MAX_BYTES`]. A hand-off child's id `<id>-<turn>.<position>`
/// that would pass it is replaced by a hash (`exec::child_job_id`), and a
/// schedule's slot ids are built to fit (`schedule::fire::slot_job_id`), so
/// no id the runtime makes is longer either. The inbox and `jaros submit`
/// refuse a longer one; the node fails such a file under a name of its own
/// (see `node::inbox::reject`).
pub const MAX_JOB_ID_BYTES: usize = 128;

const _: () = assert!(MAX_JOB_ID_BYTES + LONGEST_ID_SUFFIX_BYTES <= NAME_MAX_BYTES);

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
