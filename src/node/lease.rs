//! Claim leases: `claimed/<id>.lease.<epoch>`, one file per epoch, each
//! created exclusively, so exactly one node takes any epoch. The owner of the
//! highest epoch holds the job and keeps its lease fresh; an expired lease is
//! taken over by creating the next epoch. A node that sees a higher epoch
//! than its own has lost the job and records nothing more for it (fencing).

use crate::datadir::DataDir;
use crate::fsx::{self, IoError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most epochs probed for one job; a job reclaimed this often is failed.
pub const MAX_EPOCHS: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: String,
    pub node: String,
    pub epoch: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Wall-clock milliseconds: leases compare across hosts, so they use the wall
/// clock; nodes are assumed to agree within a fraction of the lease.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn path(data: &DataDir, job: &str, epoch: u64) -> PathBuf {
    data.claimed().join(format!("{job}.lease.{epoch}"))
}

fn read(data: &DataDir, job: &str, epoch: u64) -> Option<Lease> {
    let bytes = std::fs::read(path(data, job, epoch)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The lease in force: the highest epoch.
pub fn current(data: &DataDir, job: &str) -> Option<Lease> {
    let mut found = None;
    for epoch in 1..=MAX_EPOCHS {
        if !path(data, job, epoch).exists() {
            break;
        }
        found = read(data, job, epoch).or(Some(Lease {
            job: job.into(),
            node: String::new(),
            epoch,
            expires_ms: 0,
        }));
    }
    found
}

/// Takes epoch `epoch` of `job`'s lease if nobody has. `Ok(None)`: lost.
///
/// Exclusive but not synced: a lease lost in a crash leaves its claim without
/// a lease, which any node treats as expired and reclaims (resuming, never
/// redoing), so durability would buy nothing.
pub fn take(
    data: &DataDir,
    job: &str,
    node: &str,
    epoch: u64,
    lease_ms: u64,
) -> Result<Option<Lease>, IoError> {
    let lease = Lease {
        job: job.into(),
        node: node.into(),
        epoch,
        expires_ms: now_ms() + lease_ms,
    };
    let bytes = serde_json::to_vec(&lease).expect("leases serialize");
    Ok(fsx::create_exclusive_unsynced(&path(data, job, epoch), &bytes)?.then_some(lease))
}

/// Extends the owner's lease. The owner alone writes its epoch's file; like
/// [`take`], atomically but without a sync.
pub fn renew(data: &DataDir, lease: &mut Lease, lease_ms: u64) -> Result<(), IoError> {
    lease.expires_ms = now_ms() + lease_ms;
    fsx::write_atomic_unsynced(
        &path(data, &lease.job, lease.epoch),
        &serde_json::to_vec(&*lease).expect("leases serialize"),
    )
}

/// Whether `lease` is still the one in force: nobody took the next epoch.
pub fn still_held(data: &DataDir, lease: &Lease) -> bool {
    !path(data, &lease.job, lease.epoch + 1).exists()
}

/// Removes one lease file (a lease taken on a job that turned out finished).
pub fn remove(data: &DataDir, lease: &Lease) {
    let _ = std::fs::remove_file(path(data, &lease.job, lease.epoch));
}

/// Removes every lease file of a finished or released job.
pub fn remove_all(data: &DataDir, job: &str) {
    for epoch in 1..=MAX_EPOCHS {
        if std::fs::remove_file(path(data, job, epoch)).is_err() && epoch > 1 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_node_takes_an_epoch_and_the_old_owner_sees_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let first = take(&data, "j", "a", 1, 10_000).unwrap().unwrap();
        assert!(take(&data, "j", "b", 1, 10_000).unwrap().is_none());
        assert!(still_held(&data, &first));
        let winners: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = ["b", "c", "d"]
                .iter()
                .map(|n| s.spawn(|| take(&data, "j", n, 2, 10_000).unwrap()))
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.len(), 1);
        assert!(!still_held(&data, &first));
        assert_eq!(current(&data, "j").unwrap().node, winners[0].node);
        remove_all(&data, "j");
        assert!(current(&data, "j").is_none());
    }
}
