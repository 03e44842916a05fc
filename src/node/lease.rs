//! Claim leases: `claimed/<id>.lease.<epoch>`, one name per epoch, each
//! created exclusively, so exactly one node takes any epoch. The owner of the
//! highest epoch holds the job; an expired lease is taken over by creating
//! the next epoch. A node that sees a higher epoch than its own has lost the
//! job and records nothing more for it (fencing).
//!
//! A lease is a hard link to its node's beat file
//! (`claimed/.beat.<node>.<boot ms>`), which names the node and its lease
//! time; the file's modification time is the node's last heartbeat. So a
//! heartbeat is one timestamp update for all of a node's jobs, whatever
//! their number, and taking or dropping a lease allocates and frees no
//! inode (on ext4 without a journal, every inode allocation scans past the
//! recently freed ones: that, not the syncs, bounded a node's throughput).
//! A node dead or hung stops beating, and all its leases expire together.
//!
//! Times compared across nodes are the file system's, never a host's clock:
//! a beat *writes* its file, so the file server stamps its modification
//! time, and a node asking whether a lease expired compares that stamp
//! with a [`Probe`]: a file of its own it has just written on the same file
//! system. Hosts whose clocks disagree still agree on the server's. What a
//! node's own fence trusts is the monotonic clock: since when it last
//! checked its leases on disk ([`Beat::since_checked`]).

use crate::datadir::DataDir;
use crate::fsx::IoError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most epochs probed for one job; a job reclaimed this often is failed.
pub const MAX_EPOCHS: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: String,
    pub node: String,
    pub epoch: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// What a beat file (and so every lease linked to it) holds.
#[derive(Debug, Serialize, Deserialize)]
struct BeatFile {
    node: String,
    lease_ms: u64,
    /// This run of the node (its beat file's name): a lease's content says
    /// which run it links to, on file systems that show a hard link under
    /// an inode number of its own (sshfs).
    #[serde(default)]
    run: String,
}

/// Wall-clock milliseconds: leases compare across hosts, so they use the wall
/// clock; nodes are assumed to agree within a fraction of the lease.
pub fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

fn to_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn path(data: &DataDir, job: &str, epoch: u64) -> PathBuf {
    data.claimed().join(format!("{job}.lease.{epoch}"))
}

/// A node's heartbeat: the file its leases link to.
#[derive(Debug)]
pub struct Beat {
    path: PathBuf,
    file: std::fs::File,
    /// What the beat file holds (every lease linked to it reads the same).
    bytes: Vec<u8>,
    /// The beat file's (device, inode): beats rewrite it in place, so it
    /// stays; read once rather than at every claim.
    inode: (u64, u64),
    node: String,
    lease_ms: u64,
    /// The modification time the file system gave the last beat, in ms
    /// since the Unix epoch.
    last_ms: AtomicU64,
    /// When this beat was started, on the monotonic clock.
    born: Instant,
    /// Monotonic ms after `born` at which the node last confirmed its
    /// leases on disk (see [`Beat::since_checked`]).
    checked_ms: AtomicU64,
}

impl Beat {
    /// Creates this run's beat file. The names of earlier runs' beat files
    /// of the same node go (the log lock proves none of them still runs);
    /// their leases keep the old file, and with it its old time, so they
    /// expire and the jobs are resumed.
    pub fn start(data: &DataDir, node: &str, lease_ms: u64) -> Result<Beat, IoError> {
        let prefix = format!(".beat.{node}.");
        for old in crate::fsx::list_dir(&data.claimed())? {
            if old
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|ms| ms.bytes().all(|b| b.is_ascii_digit()))
            {
                let _ = std::fs::remove_file(&old);
            }
        }
        let name = format!("{prefix}{}", now_ms());
        let path = data.claimed().join(&name);
        let bytes = serde_json::to_vec(&BeatFile {
            node: node.into(),
            lease_ms,
            run: format!("{name}.{}", std::process::id()),
        })
        .expect("beat files serialize");
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| IoError::new("cannot create", &path, e))?;
        std::io::Write::write_all(&mut file, &bytes)
            .map_err(|e| IoError::new("cannot write", &path, e))?;
        let inode = {
            use std::os::unix::fs::MetadataExt;
            let meta = file
                .metadata()
                .map_err(|e| IoError::new("cannot read", &path, e))?;
            (meta.dev(), meta.ino())
        };
        let born = Instant::now();
        let beat = Beat {
            path,
            file,
            bytes,
            inode,
            node: node.into(),
            lease_ms,
            last_ms: AtomicU64::new(0),
            born,
            checked_ms: AtomicU64::new(0),
        };
        beat.beat()?;
        beat.checked(born);
        Ok(beat)
    }

    /// Refreshes every lease of this node at once. Not synced: a beat lost
    /// in a crash only makes the leases expire sooner, and a crashed node's
    /// jobs are resumed (never redone) by whoever takes them over. The
    /// time is the file system's (see the module doc): the file's first
    /// byte is rewritten as it is, and the modification time read back.
    pub fn beat(&self) -> Result<(), IoError> {
        let ms = stamp(&self.file).map_err(|e| IoError::new("cannot update", &self.path, e))?;
        self.last_ms.store(ms, Ordering::SeqCst);
        Ok(())
    }

    /// Records that every lease this node holds was confirmed on disk by a
    /// look that started at `at` (monotonic).
    pub fn checked(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.born).as_millis() as u64;
        self.checked_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// How long ago, on the monotonic clock (which runs on while the
    /// process is stopped), this node last confirmed its leases on disk.
    /// Longer than a lease: another node may have taken any of its jobs
    /// over, whatever the node's own memory says.
    pub fn since_checked(&self) -> Duration {
        let now = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.checked_ms.load(Ordering::SeqCst)))
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    /// When this node's leases expire unless it beats again.
    pub fn expires_ms(&self) -> u64 {
        self.last_ms.load(Ordering::SeqCst) + self.lease_ms
    }

    /// Takes epoch `epoch` of `job`'s lease if nobody has. `Ok(None)`: lost.
    /// One hard link: atomic, exclusive, and the lease is complete the
    /// moment it exists.
    pub fn take(&self, data: &DataDir, job: &str, epoch: u64) -> Result<Option<Lease>, IoError> {
        let path = path(data, job, epoch);
        match crate::fsx::link_exclusive(&self.path, &path) {
            Ok(true) => Ok(Some(Lease {
                job: job.into(),
                node: self.node.clone(),
                epoch,
                expires_ms: self.expires_ms(),
            })),
            Ok(false) => Ok(None),
            Err(e) => Err(IoError::new("cannot create", &path, e)),
        }
    }

    /// Removes `lease` if it is still this node's: a link to this beat file.
    /// A job given back to the inbox may have been claimed again by another
    /// node under the same name, which must not lose its lease. A lease
    /// superseded by a later epoch stays: epochs only grow, and the
    /// finisher of the job removes them all.
    pub fn drop_own(&self, data: &DataDir, lease: &Lease) {
        if !still_held(data, lease) {
            return;
        }
        // By content, not inode: sshfs shows a hard link under an inode
        // number of its own.
        let path = path(data, &lease.job, lease.epoch);
        if std::fs::read(&path).is_ok_and(|b| b == self.bytes) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Whether `lease` is still this node's, as the disk says: its epoch's
    /// file is a link to this beat file (not a lease another node took
    /// afresh after the job was finished and submitted again) and nobody
    /// took the next epoch. A link is known by its inode where the file
    /// system shows one inode for both names, else by its content, which
    /// names this node and this run (sshfs shows a hard link under an inode
    /// number of its own: by inode alone, every claim there was dropped and
    /// waited a lease's time to be taken over).
    pub fn holds(&self, data: &DataDir, lease: &Lease) -> bool {
        use std::os::unix::fs::MetadataExt;
        let path = path(data, &lease.job, lease.epoch);
        let Ok(link) = std::fs::metadata(&path) else {
            return false;
        };
        let same_inode = (link.dev(), link.ino()) == self.inode;
        let linked = same_inode
            || (link.len() == self.bytes.len() as u64
                && std::fs::read(&path).is_ok_and(|b| b == self.bytes));
        linked && still_held(data, lease)
    }

    /// Removes this run's beat file name (leases still linked keep it).
    pub fn retire(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Rewrites the first byte of `file` as it is, so the file system stamps
/// its modification time, and returns that time in ms since the Unix epoch.
fn stamp(file: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut first = [0u8; 1];
    let n = file.read_at(&mut first, 0)?;
    file.write_at(&first[..n.max(1)], 0)?;
    Ok(to_ms(file.metadata()?.modified()?))
}

/// A node's reading of the file system's clock: a file of its own in
/// `claimed/` it writes and reads the modification time of, so leases
/// (stamped by the same file system) are compared with a time of the same
/// clock, not the host's.
#[derive(Debug)]
pub struct Probe {
    path: PathBuf,
    file: std::fs::File,
}

impl Probe {
    pub fn open(data: &DataDir, node: &str) -> Result<Probe, IoError> {
        let path = data.claimed().join(format!(".probe.{node}"));
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IoError::new("cannot open", &path, e))?;
        Ok(Probe { path, file })
    }

    /// The file system's time now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> Result<u64, IoError> {
        stamp(&self.file).map_err(|e| IoError::new("cannot update", &self.path, e))
    }

    /// Removes the probe's file (at a clean exit).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Checks, at boot, that the data dir's file system has what leases need
/// (docs/filesystems.md): a hard link made exclusively, that reads as its
/// file, and a rename over an existing name. A node on a file system
/// without them refuses to start, naming what is missing, instead of
/// running jobs it cannot fence.
pub fn check_file_system(data: &DataDir, beat: &Beat) -> Result<(), String> {
    let dir = data.claimed();
    let link = dir.join(format!(".probe-link.{}", beat.node));
    let moved = dir.join(format!(".probe-move.{}", beat.node));
    let _ = std::fs::remove_file(&link);
    let missing = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "the file system of {} lacks {what} ({e}), which claim leases need; see docs/filesystems.md for the file systems a data dir may live on",
            dir.display()
        )
    };
    std::fs::hard_link(&beat.path, &link).map_err(|e| missing("hard links", &e))?;
    let outcome = (|| {
        match std::fs::hard_link(&beat.path, &link) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(missing("exclusive hard links", &e)),
            Ok(()) => {
                return Err(missing(
                    "exclusive hard links",
                    &"a second link under a taken name succeeded",
                ))
            }
        }
        let read = std::fs::read(&link).map_err(|e| missing("hard links", &e))?;
        if read != beat.bytes {
            return Err(missing("hard links", &"the link does not read as its file"));
        }
        std::fs::write(&moved, b"").map_err(|e| missing("file creation", &e))?;
        std::fs::rename(&moved, &link).map_err(|e| missing("rename over a name", &e))?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_file(&moved);
    outcome
}

/// Reads one epoch's lease; `None` when it is gone. One that does not parse
/// (not written by a node) counts as held by nobody a lease's time after its
/// file last changed.
fn read(data: &DataDir, job: &str, epoch: u64, lease_ms: u64) -> Option<Lease> {
    read_at(&path(data, job, epoch), job, epoch, lease_ms)
}

fn read_at(path: &Path, job: &str, epoch: u64, lease_ms: u64) -> Option<Lease> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    let beat_ms = to_ms(file.metadata().and_then(|m| m.modified()).ok()?);
    let (node, lease_ms) = match serde_json::from_slice::<BeatFile>(&bytes) {
        Ok(beat) => (beat.node, beat.lease_ms),
        Err(_) => (String::new(), lease_ms),
    };
    Some(Lease {
        job: job.into(),
        node,
        epoch,
        expires_ms: beat_ms + lease_ms,
    })
}

/// The lease in force: the highest epoch. `lease_ms` is the lease time a
/// lease that does not parse is given. One missing epoch below a present
/// one is passed over (a lease its holder dropped as a later one was
/// being taken), so an epoch in use is never taken a second time.
pub fn current(data: &DataDir, job: &str, lease_ms: u64) -> Option<Lease> {
    let mut found = None;
    let mut epoch = 1;
    while epoch <= MAX_EPOCHS {
        match read(data, job, epoch, lease_ms) {
            Some(lease) => found = Some(lease),
            None if epoch < MAX_EPOCHS && path(data, job, epoch + 1).exists() => {}
            None => break,
        }
        epoch += 1;
    }
    found
}

/// Whether `lease` is still the one in force: nobody took the next epoch.
pub fn still_held(data: &DataDir, lease: &Lease) -> bool {
    !path(data, &lease.job, lease.epoch + 1).exists()
}

/// Removes one lease (a lease taken on a job that turned out finished).
pub fn remove(data: &DataDir, lease: &Lease) {
    let _ = std::fs::remove_file(path(data, &lease.job, lease.epoch));
}

/// Removes the leases of a finished or released job, epochs 1 to `upto`
/// (the holder's own: a higher one would mean it lost the job).
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
        let beats: Vec<Beat> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| Beat::start(&data, n, 10_000).unwrap())
            .collect();
        let first = beats[0].take(&data, "j", 1).unwrap().unwrap();
        assert!(beats[1].take(&data, "j", 1).unwrap().is_none());
        assert!(still_held(&data, &first));
        let winners: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = beats[1..]
                .iter()
                .map(|b| s.spawn(|| b.take(&data, "j", 2).unwrap()))
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.len(), 1);
        assert!(!still_held(&data, &first));
        let now = current(&data, "j", 1).unwrap();
        assert_eq!(
            (now.node.as_str(), now.epoch),
            (winners[0].node.as_str(), 2)
        );
        remove_all(&data, "j", 2);
        assert!(current(&data, "j", 10_000).is_none());
    }

    #[test]
    fn a_lease_shown_under_an_inode_of_its_own_is_still_held_by_its_node() {
        // sshfs shows a hard link under an inode number of its own: the
        // lease reads as the beat file but is not the same inode. Here a
        // copy plays that link.
        let (_dir, data) = crate::datadir::temp();
        let a = Beat::start(&data, "a", 10_000).unwrap();
        let b = Beat::start(&data, "b", 10_000).unwrap();
        let lease = a.take(&data, "j", 1).unwrap().unwrap();
        assert!(a.holds(&data, &lease));
        let file = path(&data, "j", 1);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        assert!(a.holds(&data, &lease), "its own lease, under another inode");
        assert!(!b.holds(&data, &lease), "another node's lease is not b's");
        // Another node's lease under the same name is not a's.
        std::fs::remove_file(&file).unwrap();
        assert!(
            !a.holds(&data, &lease),
            "a lease that is gone is held by nobody"
        );
        let other = b.take(&data, "j", 1).unwrap().unwrap();
        assert!(!a.holds(&data, &other));
        assert!(b.holds(&data, &other));
        // A later epoch taken: lost, whatever the file of this one says.
        b.take(&data, "j", 2).unwrap().unwrap();
        assert!(!b.holds(&data, &other));
    }

    #[test]
    fn a_lease_lives_as_long_as_its_nodes_heartbeat() {
        let (_dir, data) = crate::datadir::temp();
        let beat = Beat::start(&data, "a", 10_000).unwrap();
        let lease = beat.take(&data, "j", 1).unwrap().unwrap();
        let read = current(&data, "j", 1).unwrap();
        assert_eq!(read, lease);
        assert!(read.expires_ms >= now_ms() + 9_000, "{read:?}");
        // A node that stops beating: its leases expire, all at once.
        crate::datadir::backdate_an_hour(&beat.path);
        beat.take(&data, "k", 1).unwrap().unwrap();
        for job in ["j", "k"] {
            assert!(
                current(&data, job, 1).unwrap().expires_ms < now_ms(),
                "{job}"
            );
        }
        // One beat renews them all.
        beat.beat().unwrap();
        for job in ["j", "k"] {
            assert_eq!(
                current(&data, job, 1).unwrap().expires_ms,
                beat.expires_ms()
            );
        }
        // A node drops its own lease, never another's under the same name.
        beat.drop_own(&data, &lease);
        assert!(current(&data, "j", 1).is_none());
        let other = Beat::start(&data, "b", 10_000).unwrap();
        other.take(&data, "j", 1).unwrap().unwrap();
        beat.drop_own(&data, &lease);
        assert_eq!(current(&data, "j", 1).unwrap().node, "b");
    }

    #[test]
    fn a_restarted_node_leaves_its_old_leases_to_expire() {
        let (_dir, data) = crate::datadir::temp();
        let old = Beat::start(&data, "a", 10_000).unwrap();
        old.take(&data, "j", 1).unwrap().unwrap();
        crate::datadir::backdate_an_hour(&old.path);
        let other = Beat::start(&data, "ab", 10_000).unwrap();
        std::thread::sleep(Duration::from_millis(5)); // a new name
        let new = Beat::start(&data, "a", 10_000).unwrap();
        new.beat().unwrap();
        assert!(!old.path.exists(), "the old run's name is gone");
        assert!(
            other.path.exists(),
            "another node's beat file is not touched"
        );
        let lease = current(&data, "j", 1).unwrap();
        assert_eq!(lease.node, "a");
        assert!(lease.expires_ms < now_ms(), "{lease:?}");
    }

    #[test]
    fn a_local_file_system_has_what_leases_need_and_the_probe_reads_its_clock() {
        let (_dir, data) = crate::datadir::temp();
        let beat = Beat::start(&data, "a", 10_000).unwrap();
        check_file_system(&data, &beat).unwrap();
        let names: Vec<_> = crate::fsx::list_dir(&data.claimed()).unwrap();
        assert_eq!(names.len(), 1, "the check leaves nothing behind: {names:?}");
        let probe = Probe::open(&data, "a").unwrap();
        let (before, fs_now) = (now_ms(), probe.now_ms().unwrap());
        // The same clock here, up to the file system's timestamp grain.
        assert!(fs_now + 1_000 >= before && fs_now <= now_ms() + 1_000);
        // A beat takes the file system's time too, and so every lease.
        crate::datadir::backdate_an_hour(&beat.path);
        beat.beat().unwrap();
        beat.take(&data, "j", 1).unwrap().unwrap();
        assert!(current(&data, "j", 1).unwrap().expires_ms + 1_000 >= fs_now + 10_000);
    }

    #[test]
    fn a_lease_that_does_not_parse_expires_a_lease_time_after_its_change() {
        let (_dir, data) = crate::datadir::temp();
        std::fs::write(path(&data, "j", 1), b"").unwrap();
        assert!(current(&data, "j", 10_000).unwrap().expires_ms > now_ms() + 5_000);
        crate::datadir::backdate_an_hour(&path(&data, "j", 1));
        assert!(current(&data, "j", 10_000).unwrap().expires_ms < now_ms());
    }
}
