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

/// Reads one epoch's lease; `None` when the file is gone. A lease file is
/// created empty and then written, so one that does not parse is either
/// being written or was left so by a crash: it counts as held by nobody
/// until a lease's time after it was created.
fn read(data: &DataDir, job: &str, epoch: u64, lease_ms: u64) -> Option<Lease> {
    let path = path(data, job, epoch);
    let bytes = std::fs::read(&path).ok()?;
    serde_json::from_slice(&bytes).ok().or_else(|| {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        let ms = modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
        Some(Lease {
            job: job.into(),
            node: String::new(),
            epoch,
            expires_ms: ms + lease_ms,
        })
    })
}

/// The lease in force: the highest epoch. `lease_ms` is the lease time a
/// lease file still being written is given.
pub fn current(data: &DataDir, job: &str, lease_ms: u64) -> Option<Lease> {
    let mut found = None;
    for epoch in 1..=MAX_EPOCHS {
        match read(data, job, epoch, lease_ms) {
            Some(lease) => found = Some(lease),
            None => break,
        }
    }
    found
}

/// Takes epoch `epoch` of `job`'s lease if nobody has. `Ok(None)`: lost.
///
/// One exclusive create, then the write (readers give a file caught in
/// between its lease time; see [`current`]). Not synced: a lease lost in a
/// crash leaves its claim without a lease, which any node reclaims once the
/// claim is a lease's time old (resuming, never redoing), so durability
/// would buy nothing.
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
    let path = path(data, job, epoch);
    let mut file = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(IoError::new("cannot create", &path, e)),
    };
    std::io::Write::write_all(&mut file, &bytes)
        .map_err(|e| IoError::new("cannot write", &path, e))?;
    Ok(Some(lease))
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

/// Removes the lease files of a finished or released job, epochs 1 to
/// `upto` (the holder's own: a higher one would mean it lost the job).
pub fn remove_all(data: &DataDir, job: &str, upto: u64) {
    for epoch in 1..=upto.min(MAX_EPOCHS) {
        let _ = std::fs::remove_file(path(data, job, epoch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_node_takes_an_epoch_and_the_old_owner_sees_it_lost() {
        let (_dir, data) = crate::datadir::temp();
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
        assert_eq!(current(&data, "j", 10_000).unwrap().node, winners[0].node);
        remove_all(&data, "j", 2);
        assert!(current(&data, "j", 10_000).is_none());
    }

    #[test]
    fn a_lease_caught_before_its_write_is_held_for_a_lease_time_then_expires() {
        let (_dir, data) = crate::datadir::temp();
        std::fs::write(path(&data, "j", 1), b"").unwrap();
        let fresh = current(&data, "j", 10_000).unwrap();
        assert_eq!(fresh.epoch, 1);
        assert!(fresh.expires_ms > now_ms() + 5_000, "{fresh:?}");
        crate::datadir::backdate_an_hour(&path(&data, "j", 1));
        assert!(current(&data, "j", 10_000).unwrap().expires_ms < now_ms());
        assert!(take(&data, "j", "b", 1, 10_000).unwrap().is_none());
        let next = take(&data, "j", "b", 2, 10_000).unwrap().unwrap();
        assert_eq!(current(&data, "j", 10_000).unwrap(), next);
    }
}
