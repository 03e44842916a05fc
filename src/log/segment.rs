//! Segments: one node's log as a run of sealed files and one open file.
//!
//! The open segment keeps the path a log always had, `log/<node>.jsonl`; a
//! log written before segments existed is simply a log with no sealed
//! segment yet, read and appended to as it is. When the open segment
//! reaches the size its node sets (`log: { segment_bytes }` in the node
//! manifest), the writer seals it: syncs it, makes it read-only and moves it
//! to `log/<node>.segments/<first seq, 20 digits>.jsonl`. Every file in that
//! directory is sealed and never written again (the naming rule readers go
//! by); the chain runs on, the open segment's first record naming the
//! sealed one's last hash as its `prev`.
//!
//! `jaros gc --archive DIR` may move a sealed segment elsewhere; it leaves
//! a stub `<first seq>.archived` in its place naming where it went and the
//! seqs and head hash it holds, and readers follow the stub.
//!
//! Owns the layout and sealing; reading the chain across segments is
//! [`super::read`]'s.

use super::LogError;
use crate::canon::Digest;
use crate::fsx::{self, IoError};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Default size at which a node's open segment is sealed and a new one
/// begun: large enough that a busy node seals one every few hours, small
/// enough that an archive can take them one at a time.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Smallest segment size a manifest may set: below this a segment holds a
/// handful of records and the directory fills with files.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Digits of the first seq in a sealed segment's name: the names sort as
/// their seqs do.
const SEQ_DIGITS: usize = 20;

/// Extension of a stub left where an archived segment was.
const ARCHIVED_EXT: &str = "archived";

/// A closed segment, as the seal hook sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedSegment {
    /// Where the sealed file is now.
    pub path: PathBuf,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of its last record: the next segment's first `prev`.
    pub head: Digest,
}

/// Called once a segment is sealed (from the thread that sealed it, with
/// no lock held): where a signed checkpoint of the log is taken.
pub type SealHook = std::sync::Arc<dyn Fn(&SealedSegment) + Send + Sync>;

/// How a writer rotates its log.
#[derive(Clone)]
pub struct SegmentOptions {
    /// Bytes past which the open segment is sealed (checked after each
    /// batch of records is written, so a segment ends on a record).
    pub segment_bytes: u64,
    pub on_seal: Option<SealHook>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            on_seal: None,
        }
    }
}

impl SegmentOptions {
    /// The options a node manifest's `log:` sets (no hook: the node adds
    /// its checkpoint).
    pub fn from_spec(spec: Option<&crate::manifest::types::LogSpec>) -> SegmentOptions {
        SegmentOptions {
            segment_bytes: spec
                .and_then(|s| s.segment_bytes)
                .unwrap_or(DEFAULT_SEGMENT_BYTES),
            on_seal: None,
        }
    }
}

impl std::fmt::Debug for SegmentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentOptions")
            .field("segment_bytes", &self.segment_bytes)
            .field("on_seal", &self.on_seal.is_some())
            .finish()
    }
}

/// One segment of a log, in chain order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file to read its records from (for an archived one, in the archive).
    pub path: PathBuf,
    /// The seq its name says it starts at (None for the open segment).
    pub first_seq: Option<u64>,
    pub sealed: bool,
    /// For an archived segment: the stub left in its place.
    pub stub: Option<PathBuf>,
}

/// The directory of a log's sealed segments: `log/n1.jsonl` →
/// `log/n1.segments`.
pub fn segments_dir(open: &Path) -> PathBuf {
    let stem = open
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    open.with_file_name(format!("{stem}.segments"))
}

fn sealed_name(first_seq: u64) -> String {
    format!("{first_seq:0width$}.jsonl", width = SEQ_DIGITS)
}

/// The stub an archived segment leaves behind.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ArchivedStub {
    /// Where the segment went.
    pub archived_to: PathBuf,
    #[serde(flatten)]
    pub segment: SealedSegment,
}

/// The sealed segments of the log whose open segment is `open`, then the
/// open one, in chain order. An archived segment is read from where its
/// stub says it went.
pub fn list(open: &Path) -> Result<Vec<Segment>, LogError> {
    let dir = segments_dir(open);
    let mut out = Vec::new();
    for path in fsx::list_dir(&dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        match ext {
            "jsonl" => out.push(Segment {
                path,
                first_seq: Some(first_seq),
                sealed: true,
                stub: None,
            }),
            ARCHIVED_EXT => {
                let stub = read_stub(&path)?;
                out.push(Segment {
                    path: stub.archived_to,
                    first_seq: Some(first_seq),
                    sealed: true,
                    stub: Some(path),
                })
            }
            // A temp file of a stub being written, or a stranger: not a segment.
            _ => continue,
        }
    }
    // Names sort as seqs (fixed width); a stub and its file never both stay.
    out.sort_by_key(|s| s.first_seq);
    out.push(Segment {
        path: open.to_path_buf(),
        first_seq: None,
        sealed: false,
        stub: None,
    });
    Ok(out)
}

fn read_stub(path: &Path) -> Result<ArchivedStub, LogError> {
    let text = fsx::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| LogError::Tampered {
        path: path.to_path_buf(),
        line: 1,
        seq: 0,
        reason: format!("not an archived-segment stub: {e}"),
    })
}

/// Whether the open segment exists and has records (a log with only sealed
/// segments has an empty or missing open file until its next append).
pub fn has_sealed(open: &Path) -> bool {
    fsx::list_dir(&segments_dir(open)).is_ok_and(|l| !l.is_empty())
}

/// Seals the open segment `open` (whose handle is `file`, holding records
/// `first_seq..=last_seq`, the last with hash `head`): syncs it, makes it
/// read-only and moves it under the segments directory. The caller opens
/// a new open segment after. A crash at any point leaves either the old
/// layout (the file still open) or the new (the file sealed and no open
/// file, which the next open creates): never a record in two places.
pub fn seal(
    open: &Path,
    file: &File,
    first_seq: u64,
    last_seq: u64,
    head: Digest,
) -> Result<SealedSegment, IoError> {
    file.sync_all()
        .map_err(|e| IoError::new("cannot sync the segment being sealed", open, e))?;
    let dir = segments_dir(open);
    if !dir.exists() {
        fsx::create_dir_all(&dir)?;
        fsx::sync_dir(open.parent().unwrap_or(Path::new(".")))?;
    }
    let mut perms = file
        .metadata()
        .map_err(|e| IoError::new("cannot stat the segment being sealed", open, e))?
        .permissions();
    perms.set_readonly(true);
    file.set_permissions(perms)
        .map_err(|e| IoError::new("cannot make the sealed segment read-only", open, e))?;
    let to = dir.join(sealed_name(first_seq));
    fsx::rename_durable(open, &to)?;
    Ok(SealedSegment {
        path: to,
        first_seq,
        last_seq,
        head,
    })
}

/// Moves a sealed segment to `archive` (under `<archive>/<node>.segments/`),
/// leaving a stub in its place: copied and synced there first, the stub
/// written durably, then the original removed. Returns where it went.
pub fn archive(open: &Path, segment: &SealedSegment, archive: &Path) -> Result<PathBuf, IoError> {
    let dir_name = segments_dir(open)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let dest_dir = archive.join(dir_name);
    fsx::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join(sealed_name(segment.first_seq));
    let bytes = fsx::read(&segment.path)?;
    fsx::write_durable(&dest, &bytes)?;
    let stub = ArchivedStub {
        archived_to: std::path::absolute(&dest).unwrap_or(dest.clone()),
        segment: segment.clone(),
    };
    let stub_path = segment.path.with_file_name(format!(
        "{:0width$}.{ARCHIVED_EXT}",
        segment.first_seq,
        width = SEQ_DIGITS
    ));
    let text = serde_json::to_vec_pretty(&stub).unwrap_or_default();
    fsx::write_durable(&stub_path, &text)?;
    std::fs::remove_file(&segment.path)
        .map_err(|e| IoError::new("cannot remove the archived segment", &segment.path, e))?;
    fsx::sync_dir(segments_dir(open).as_path())?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_dir_sits_beside_the_open_segment() {
        assert_eq!(
            segments_dir(Path::new("/d/log/n1.jsonl")),
            PathBuf::from("/d/log/n1.segments")
        );
        assert_eq!(sealed_name(7), "00000000000000000007.jsonl");
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;
    use crate::decision::{AgentName, JobId};
    use crate::log::{read_log, verify_chain, Body, LogWriter};
    use serde_json::json;
    use std::sync::Mutex;

    fn body(n: u32) -> Body {
        Body::Job {
            job: JobId::new(format!("j{n}")).unwrap(),
            at: 0,
            agent: AgentName::new("advance").unwrap(),
            input: json!({"n": n}),
            plan: Digest::ZERO,
            parent: None,
            via: None,
            started_ms: None,
            depth: None,
            tree_jobs: None,
        }
    }

    /// A log in a new temp dir whose writer seals at MIN_SEGMENT_BYTES, with
    /// `n` records appended; the segments the hook saw sealed.
    fn rotated_log(
        n: u32,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::sync::Arc<Mutex<Vec<SealedSegment>>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (writer, _) = LogWriter::open(&path).unwrap();
        let hook_seen = seen.clone();
        writer.set_segment_options(SegmentOptions {
            segment_bytes: MIN_SEGMENT_BYTES,
            on_seal: Some(std::sync::Arc::new(move |s: &SealedSegment| {
                hook_seen.lock().unwrap().push(s.clone())
            })),
        });
        for i in 0..n {
            writer.append(&body(i)).unwrap();
        }
        drop(writer);
        (dir, path, seen)
    }

    #[test]
    fn a_log_rotates_into_sealed_segments_and_the_chain_runs_on_across_them() {
        let (_dir, path, seen) = rotated_log(100);
        let sealed = seen.lock().unwrap().clone();
        assert!(sealed.len() >= 3, "only {} segments sealed", sealed.len());
        // Each sealed segment is where the hook says, read-only, and starts
        // where the one before it ended.
        let mut next = 1;
        for s in &sealed {
            assert_eq!(s.first_seq, next);
            let meta = std::fs::metadata(&s.path).unwrap();
            assert!(
                meta.permissions().readonly(),
                "{} writable",
                s.path.display()
            );
            next = s.last_seq + 1;
        }
        let log = read_log(&path).unwrap();
        assert_eq!(log.records.len(), 100);
        assert_eq!(log.open_first_seq, next);
        // The hook's head is the chain's hash at that seq.
        let last = sealed.last().unwrap();
        assert_eq!(log.records[last.last_seq as usize - 1].hash, last.head);
        let report = verify_chain(&path, Some((1, log.records[0].hash)));
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.head_seq, 100);
        // Reopened, the writer continues the chain in the open segment.
        let (writer, report) = LogWriter::open(&path).unwrap();
        assert_eq!(report.records, 100);
        assert_eq!(writer.append(&body(1000)).unwrap(), 101);
        drop(writer);
        assert_eq!(read_log(&path).unwrap().head().0, 101);
    }

    #[test]
    fn an_edit_in_a_sealed_segment_is_named_by_its_file_and_line() {
        let (_dir, path, seen) = rotated_log(60);
        let first = seen.lock().unwrap()[0].clone();
        let mut perms = std::fs::metadata(&first.path).unwrap().permissions();
        #[expect(
            clippy::permissions_set_readonly_false,
            reason = "a test edits a sealed segment"
        )]
        perms.set_readonly(false);
        std::fs::set_permissions(&first.path, perms).unwrap();
        let text = std::fs::read_to_string(&first.path).unwrap();
        std::fs::write(&first.path, text.replacen("\"n\":3", "\"n\":4", 1)).unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(
            err.contains(&first.path.display().to_string()) && err.contains("line 4 (seq 4)"),
            "{err}"
        );
        assert!(LogWriter::open(&path).is_err());
        let report = verify_chain(&path, None);
        assert!(report.error.unwrap().contains("00000000000000000001.jsonl"));
    }

    #[test]
    fn a_missing_sealed_segment_breaks_the_chain_at_the_next() {
        let (_dir, path, seen) = rotated_log(60);
        std::fs::remove_file(&seen.lock().unwrap()[1].path).unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(err.contains("a segment is missing"), "{err}");
    }

    #[test]
    fn a_torn_tail_is_cut_from_the_open_segment_only() {
        let (_dir, path, _seen) = rotated_log(60);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"hash\":\"ab").unwrap();
        drop(f);
        let report = verify_chain(&path, None);
        assert!(report.error.is_none(), "{:?}", report.error);
        let torn = report.torn_tail.unwrap();
        assert_eq!(torn.seq, 61);
        let open_lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(torn.line, open_lines);
        let (writer, open) = LogWriter::open(&path).unwrap();
        assert_eq!(open.truncated_bytes, 11);
        assert_eq!(writer.append(&body(99)).unwrap(), 61);
    }

    #[test]
    fn an_archived_segment_is_read_from_the_archive_through_its_stub() {
        let (dir, path, seen) = rotated_log(60);
        let first = seen.lock().unwrap()[0].clone();
        let archive_dir = dir.path().join("archive");
        let to = archive(&path, &first, &archive_dir).unwrap();
        assert!(!first.path.exists());
        assert!(to.starts_with(&archive_dir));
        assert_eq!(read_log(&path).unwrap().records.len(), 60);
        std::fs::remove_file(&to).unwrap();
        let err = read_log(&path).unwrap_err().to_string();
        assert!(err.contains("restore it there"), "{err}");
    }
}
