//! Retention: removing what a node's jobs leave behind once the node
//! manifest's `retention:` says it is old enough, and archiving sealed
//! log segments.
//!
//! Owns `jaros gc`'s plan and its application. What it removes: result
//! files (`done/`, `failed/`) older than `retention.results` /
//! `retention.failed`, each replaced first by a durable tombstone
//! `collected/<job>.json` so the job reads as collected, not missing; and
//! blobs older than `retention.blobs` that no record of any log (every
//! segment, archived ones too, and the audit logs) names. Logs are never
//! removed; sealed segments may be moved to an archive directory (see
//! [`crate::log::segment::archive`]), where readers follow them.

use crate::datadir::DataDir;
use crate::fsx::{self, IoError};
use crate::log::segment::{self, SealedSegment};
use crate::manifest::types::RetentionSpec;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Hex digits of a blob's name (sha256).
const BLOB_HEX_LEN: usize = 64;

/// The tombstone of a job whose result file gc removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Collected {
    pub job: String,
    /// `collected`, always: what `jaros result` prints as the job's state.
    pub state: String,
    /// Whether the result removed was a success (`done`) or a failure (`failed`).
    pub was: String,
    /// When gc removed it (Unix ms).
    pub collected_ms: u64,
    /// The removed result's size.
    pub bytes: u64,
}

/// One thing gc removes or moves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    /// `result`, `failed`, `blob` or `segment` (archived, not removed).
    pub kind: &'static str,
    pub path: PathBuf,
    pub bytes: u64,
    /// For a segment: where it goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<PathBuf>,
}

/// What a gc run did (or, dry, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub actions: Vec<Action>,
    /// Bytes removed from the data dir (archived segments count: they
    /// leave it).
    pub bytes_freed: u64,
}

/// The directory of tombstones.
pub fn collected_dir(data: &DataDir) -> PathBuf {
    data.root().join("collected")
}

/// The tombstone of a job whose result was collected, if it has one.
pub fn collected(data: &DataDir, job: &str) -> Option<Collected> {
    let path = collected_dir(data).join(format!("{job}.json"));
    let text = fsx::read_to_string(&path).ok()?;
    serde_json::from_str(&text).ok()
}

/// How many jobs' results were collected.
pub fn collected_count(data: &DataDir) -> usize {
    fsx::list_dir(&collected_dir(data))
        .map(|l| {
            l.iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// Runs gc over `data` as `retention` says, at `now_ms`; with `archive`,
/// moves every sealed segment of every log there. Dry: only reports.
pub fn run(
    data: &DataDir,
    retention: &RetentionSpec,
    archive: Option<&Path>,
    now_ms: u64,
    dry_run: bool,
) -> Result<Report, IoError> {
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let results = [
        ("result", "done", data.done(), retention.results.as_ref()),
        ("failed", "failed", data.failed(), retention.failed.as_ref()),
    ];
    for (kind, was, dir, keep) in results {
        let Some(keep) = keep else { continue };
        for path in older_than(&dir, keep.ms(), now_ms, |p| {
            p.extension().is_some_and(|e| e == "json")
        })? {
            let bytes = size(&path);
            if !dry_run {
                collect_result(data, &path, was, bytes, now_ms)?;
            }
            report.actions.push(Action {
                kind,
                path,
                bytes,
                to: None,
            });
        }
    }
    if let Some(keep) = &retention.blobs {
        let blob_dir = data.root().join("blobs").join("sha256");
        let candidates = older_than(&blob_dir, keep.ms(), now_ms, |p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.len() == BLOB_HEX_LEN && n.bytes().all(|b| b.is_ascii_hexdigit())
            })
        })?;
        if !candidates.is_empty() {
            let referenced = referenced_blobs(data)?;
            for path in candidates {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if referenced.contains(&name) {
                    continue;
                }
                let bytes = size(&path);
                if !dry_run {
                    std::fs::remove_file(&path)
                        .map_err(|e| IoError::new("cannot remove blob", &path, e))?;
                }
                report.actions.push(Action {
                    kind: "blob",
                    path,
                    bytes,
                    to: None,
                });
            }
            if !dry_run {
                fsx::sync_dir(&blob_dir)?;
            }
        }
    }
    if let Some(archive) = archive {
        for open in all_logs(data)? {
            for sealed in local_sealed(&open)? {
                let bytes = size(&sealed.path);
                let to = if dry_run {
                    archive
                        .join(segment::segments_dir(&open).file_name().unwrap_or_default())
                        .join(sealed.path.file_name().unwrap_or_default())
                } else {
                    segment::archive(&open, &sealed, archive)?
                };
                report.actions.push(Action {
                    kind: "segment",
                    path: sealed.path,
                    bytes,
                    to: Some(to),
                });
            }
        }
    }
    report.bytes_freed = report.actions.iter().map(|a| a.bytes).sum();
    Ok(report)
}

/// Writes the job's tombstone durably, then removes its result file.
fn collect_result(
    data: &DataDir,
    path: &Path,
    was: &str,
    bytes: u64,
    now_ms: u64,
) -> Result<(), IoError> {
    let job = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stone = Collected {
        job: job.clone(),
        state: "collected".into(),
        was: was.into(),
        collected_ms: now_ms,
        bytes,
    };
    let dir = collected_dir(data);
    fsx::create_dir_all(&dir)?;
    let text = serde_json::to_vec_pretty(&stone).unwrap_or_default();
    fsx::write_durable(&dir.join(format!("{job}.json")), &text)?;
    std::fs::remove_file(path).map_err(|e| IoError::new("cannot remove result", path, e))?;
    fsx::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Files in `dir` that `keep` selects, last modified `keep_ms` or more
/// before `now_ms`.
fn older_than(
    dir: &Path,
    keep_ms: u64,
    now_ms: u64,
    keep: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, IoError> {
    let mut out = Vec::new();
    for path in fsx::list_dir(dir)? {
        if !keep(&path) {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| IoError::new("cannot stat", &path, e))?;
        if !meta.is_file() {
            continue;
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| d.as_millis() as u64);
        if now_ms.saturating_sub(modified_ms) >= keep_ms {
            out.push(path);
        }
    }
    Ok(out)
}

/// Every log and audit log of the data dir (their open segments' paths).
fn all_logs(data: &DataDir) -> Result<Vec<PathBuf>, IoError> {
    let mut logs = data.log_files()?;
    logs.extend(
        fsx::list_dir(&data.audit_dir())?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl")),
    );
    Ok(logs)
}

/// The sealed segments still under the log's own directory (not archived).
fn local_sealed(open: &Path) -> Result<Vec<SealedSegment>, IoError> {
    let segments = segment::list(open).map_err(|e| {
        IoError::new(
            "cannot list the segments of",
            open,
            std::io::Error::other(e.to_string()),
        )
    })?;
    let sealed: Vec<_> = segments.iter().filter(|s| s.sealed).collect();
    let mut out = Vec::new();
    for (i, s) in sealed.iter().enumerate() {
        if s.stub.is_some() {
            continue;
        }
        let first_seq = s.first_seq.unwrap_or(1);
        // The next segment's first seq, less one; the open segment's, when
        // this is the last sealed one, is read from the file's own lines.
        let last_seq = match sealed.get(i + 1).and_then(|n| n.first_seq) {
            Some(next) => next - 1,
            None => first_seq + line_count(&s.path)?.saturating_sub(1),
        };
        out.push(SealedSegment {
            path: s.path.clone(),
            first_seq,
            last_seq,
            head: last_hash(&s.path)?,
        });
    }
    Ok(out)
}

fn line_count(path: &Path) -> Result<u64, IoError> {
    Ok(fsx::read(path)?.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// The `hash` of a sealed segment's last record (for its archive stub).
fn last_hash(path: &Path) -> Result<crate::canon::Digest, IoError> {
    let bytes = fsx::read(path)?;
    let last = bytes
        .strip_suffix(b"\n")
        .unwrap_or(&bytes)
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(last).unwrap_or_default();
    Ok(value["hash"]
        .as_str()
        .and_then(crate::canon::Digest::from_hex)
        .unwrap_or(crate::canon::Digest::ZERO))
}

/// The names of every blob some record names: every 64-hex-digit string
/// in any log's lines (a record's own hashes too, which only keeps more).
fn referenced_blobs(data: &DataDir) -> Result<BTreeSet<String>, IoError> {
    let mut names = BTreeSet::new();
    for open in all_logs(data)? {
        let segments = segment::list(&open).map_err(|e| {
            IoError::new(
                "cannot list the segments of",
                &open,
                std::io::Error::other(e.to_string()),
            )
        })?;
        for s in segments {
            let bytes = match fsx::read(&s.path) {
                Ok(b) => b,
                Err(e) if !s.sealed && e.kind() == std::io::ErrorKind::NotFound => continue,
                // An archived segment gone: gc cannot tell what it names,
                // so it removes no blob at all.
                Err(e) => return Err(e),
            };
            hex_strings(&bytes, &mut names);
        }
    }
    Ok(names)
}

/// Adds every `"<64 hex digits>"` in `bytes` to `names`.
fn hex_strings(bytes: &[u8], names: &mut BTreeSet<String>) {
    let mut i = 0;
    while i + BLOB_HEX_LEN + 1 < bytes.len() {
        if bytes[i] == b'"'
            && bytes[i + BLOB_HEX_LEN + 1] == b'"'
            && bytes[i + 1..=i + BLOB_HEX_LEN]
                .iter()
                .all(|b| b.is_ascii_hexdigit())
        {
            names.insert(String::from_utf8_lossy(&bytes[i + 1..=i + BLOB_HEX_LEN]).into_owned());
            i += BLOB_HEX_LEN + 2;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_strings_finds_quoted_digests_only() {
        let a = "a".repeat(64);
        let text = format!(
            "{{\"blob\":\"{a}\",\"x\":\"{}\",\"y\":\"{}z\"}}",
            "b".repeat(63),
            "c".repeat(64)
        );
        let mut names = BTreeSet::new();
        hex_strings(text.as_bytes(), &mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec![a]);
    }
}
