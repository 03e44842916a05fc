//! Where things live: finding the hive and its data dir, and the data dir's
//! layout (`log/`, `blobs/`, `inbox/`, `claimed/`, `done/`, `failed/`,
//! `audit/`, `node-id`).

use crate::fsx::{self, IoError};
use std::path::{Path, PathBuf};

/// The data dir's name inside a hive when no other is given.
pub const DEFAULT_DATA_DIR: &str = ".jaros-data";

/// Finds the hive: `explicit` (from `--hive` or `$JAROS_HIVE`), else the
/// nearest directory upward from `cwd` that holds `manifests/`.
pub fn find_hive(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        if !dir.join("manifests").is_dir() {
            return Err(format!(
                "{} is not a hive: it has no manifests/ directory (create one with `jaros init {}`)",
                dir.display(),
                dir.display()
            ));
        }
        return Ok(dir.to_path_buf());
    }
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        if d.join("manifests").is_dir() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(format!(
        "no hive found: neither {} nor any directory above it holds manifests/; pass --hive DIR, set JAROS_HIVE, or create one with `jaros init DIR`",
        cwd.display()
    ))
}

/// A data dir and its layout.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// `explicit` (from `--data-dir` or `$JAROS_DATA_DIR`), else `<hive>/.jaros-data`.
    pub fn resolve(explicit: Option<&Path>, hive: Option<&Path>) -> Result<DataDir, String> {
        match (explicit, hive) {
            (Some(dir), _) => Ok(DataDir::new(dir)),
            (None, Some(hive)) => Ok(DataDir::new(hive.join(DEFAULT_DATA_DIR))),
            (None, None) => Err("no data dir: pass --data-dir DIR or set JAROS_DATA_DIR".into()),
        }
    }

    /// Checks that the data dir exists, for commands that only read it.
    pub fn must_exist(&self) -> Result<(), String> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(format!(
                "data dir {} does not exist: nothing has run here yet (run a job, or pass --data-dir DIR)",
                self.root.display()
            ))
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn log_path(&self, node: &str) -> PathBuf {
        self.log_dir().join(format!("{node}.jsonl"))
    }
    pub fn inbox(&self) -> PathBuf {
        self.root.join("inbox")
    }
    pub fn claimed(&self) -> PathBuf {
        self.root.join("claimed")
    }
    pub fn done(&self) -> PathBuf {
        self.root.join("done")
    }
    pub fn failed(&self) -> PathBuf {
        self.root.join("failed")
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
    /// A node's hash-chained audit log.
    pub fn audit_path(&self, node: &str) -> PathBuf {
        self.audit_dir().join(format!("{node}.jsonl"))
    }

    /// Every node's log, sorted by file name.
    pub fn log_files(&self) -> Result<Vec<PathBuf>, IoError> {
        Ok(fsx::list_dir(&self.log_dir())?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect())
    }

    /// Creates the layout's directories.
    pub fn create(&self) -> Result<(), IoError> {
        for dir in [
            self.log_dir(),
            self.inbox(),
            self.claimed(),
            self.done(),
            self.failed(),
            self.audit_dir(),
        ] {
            fsx::create_dir_all(&dir)?;
        }
        Ok(())
    }
}

/// A created data dir in a new temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn temp() -> (tempfile::TempDir, DataDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = DataDir::new(dir.path());
    data.create().expect("the data dir's folders");
    (dir, data)
}

/// Sets a file's modification time an hour back, for unit tests of ages.
#[cfg(test)]
pub(crate) fn backdate_an_hour(path: &Path) {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("backdating a file");
}
