//! Finished claims kept for the node's next results. A finished job's claim
//! is renamed to `done/.spare.<node>.<n>` instead of being removed, and a
//! later result is written through it (overwritten, cut to length, synced,
//! renamed into place): a job then allocates and frees no inode for its
//! claim and result. On ext4 without a journal every inode allocation scans
//! past the recently freed ones, which made inode churn, not the syncs, the
//! bound on a node's jobs per second.
//!
//! A spare is invisible to everything else (dot names are not job files),
//! at most 512 small ones are kept, and they are removed when the node stops
//! or next boots.

use crate::datadir::DataDir;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most spares a node keeps; more finished claims are removed. Twice the
/// finisher's largest round, so a busy node's rounds find a spare for every
/// result and retire as many claims as they take spares: past its first
/// rounds, it allocates and frees no inode at all.
/// (`super::finish::MAX_ROUND`; a test there holds the two together).
pub(super) const MAX_SPARES: usize = 512;
/// A claim larger than this is removed, not kept: a spare should cost a
/// block, not a large input's worth of disk.
const MAX_SPARE_BYTES: u64 = 64 * 1024;

#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    prefix: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: Vec<PathBuf>,
    next: u64,
}

impl Spares {
    /// Spares for `node`; any left by an earlier run of it are removed.
    pub fn new(data: &DataDir, node: &str) -> Spares {
        let spares = Spares {
            dir: data.done(),
            prefix: format!(".spare.{node}."),
            state: Mutex::default(),
        };
        for path in crate::fsx::list_dir(&spares.dir).unwrap_or_default() {
            if spares.is_ours(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
        spares
    }

    fn is_ours(&self, path: &Path) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&self.prefix))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// How many spares are kept now.
    pub fn count(&self) -> usize {
        self.state.lock().expect("spares lock").free.len()
    }

    /// A spare to write a result through, if one is kept.
    pub fn take(&self) -> Option<PathBuf> {
        self.state.lock().expect("spares lock").free.pop()
    }

    /// Retires a finished job's claim: kept as a spare, or removed when
    /// enough are kept (or the rename fails). Not synced: a crash may bring
    /// the claim back, and a claim whose job has ended is finished again
    /// from its records.
    pub fn retire(&self, claimed: &Path) {
        let small = std::fs::metadata(claimed).is_ok_and(|m| m.len() <= MAX_SPARE_BYTES);
        let mut state = self.state.lock().expect("spares lock");
        if small && state.free.len() < MAX_SPARES {
            let spare = self.dir.join(format!("{}{}", self.prefix, state.next));
            state.next += 1;
            if std::fs::rename(claimed, &spare).is_ok() {
                state.free.push(spare);
                return;
            }
        }
        drop(state);
        let _ = std::fs::remove_file(claimed);
    }

    /// Removes every spare kept (at shutdown).
    pub fn clear(&self) {
        for spare in self.state.lock().expect("spares lock").free.drain(..) {
            let _ = std::fs::remove_file(spare);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_claim_carries_the_next_result_and_nothing_is_left_behind() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, data) = crate::datadir::temp();
        let leftover = data.done().join(".spare.a.7");
        let others = data.done().join(".spare.ab.1");
        std::fs::write(&leftover, b"from a crash").unwrap();
        std::fs::write(&others, b"another node's").unwrap();
        let spares = Spares::new(&data, "a");
        assert!(
            !leftover.exists(),
            "an earlier run's spare is removed at boot"
        );
        assert!(others.exists(), "another node's spare is not");
        assert!(spares.take().is_none());

        let claim = data.claimed().join("j1.json");
        std::fs::write(
            &claim,
            br#"{"id":"j1","agent":"a","input":{"long":"...................."}}"#,
        )
        .unwrap();
        let inode = std::fs::metadata(&claim).unwrap().ino();
        spares.retire(&claim);
        assert!(!claim.exists());
        let spare = spares.take().unwrap();
        let result = data.done().join("j2.json");
        let staged = crate::fsx::stage(&result, b"{}", Some(&spare)).unwrap();
        crate::fsx::publish(vec![staged]).unwrap();
        assert_eq!(std::fs::read(&result).unwrap(), b"{}");
        assert_eq!(std::fs::metadata(&result).unwrap().ino(), inode);

        let claim = data.claimed().join("j3.json");
        std::fs::write(&claim, b"{}").unwrap();
        spares.retire(&claim);
        spares.clear();
        let names: Vec<_> = crate::fsx::list_dir(&data.done()).unwrap();
        assert_eq!(names, vec![others, result]);
    }
}
