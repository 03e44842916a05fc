//! The file tools (`fs.read`, `fs.write`, `fs.stat`, `fs.disk_usage`,
//! `text.count`) and the capability [`Handle`] they reach the disk through.
//!
//! The gate has already checked the path lexically against the grant. The
//! handle checks it again and then against the disk: it resolves symlinks and
//! refuses a real path that leaves the hive, lands in the hive's machinery or
//! the data dir, or no longer matches the grant's globs. Handlers never touch
//! a path the handle did not hand them.
//!
//! Residual risk, by design: the check and the use are separate system calls,
//! so a symlink swapped in between could redirect one operation. Built-in
//! tools create no symlinks, and confined executable tools are denied
//! `MakeSym` by the kernel, so where Landlock is active only the operator
//! can place one (where it is not, an executable tool could).

use super::{audit_action, read_back, refuse};
use crate::canon::Digest;
use crate::decision::Decision;
use crate::exec::{Cx, Handler, LiveIo, Outcome, Verdict};
use crate::fsx;
use crate::gate::{glob_match, normalize_path};
use crate::plan::Plan;
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Largest file `fs.read` returns. Its content lands in the effect record
/// and in the job's result, so it stays well below the log's record limit.
pub const MAX_READ_BYTES: u64 = 256 * 1024;
/// Largest content `fs.write` writes (the gate's payload limit refuses
/// larger proposals first).
pub const MAX_WRITE_BYTES: usize = crate::canon::MAX_PAYLOAD_BYTES;
/// Most entries `fs.stat` lists for a directory (sorted by name; the rest
/// are counted, not listed).
pub const MAX_LIST_ENTRIES: usize = 256;
/// Largest file `text.count` counts.
pub const MAX_COUNT_BYTES: u64 = 16 * 1024 * 1024;

/// Which of a role's grants a handle exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A path the handle resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// As the decision named it, normalized.
    pub path: String,
    /// Where it really is, symlinks resolved.
    pub real: PathBuf,
    /// `real` relative to the hive.
    pub real_rel: String,
}

/// Access to the hive's files limited to one grant (an agent's `read` or
/// `write` globs), minus the hive's machinery and the data dir.
#[derive(Debug, Clone)]
pub struct Handle {
    access: Access,
    /// Canonical.
    hive: PathBuf,
    /// Canonical, when it exists.
    data_dir: Option<PathBuf>,
    protected: Vec<String>,
    globs: Vec<String>,
    role: String,
}

impl Handle {
    /// The handle of `agent`'s grant under `plan`.
    pub fn new(
        hive: &Path,
        data_dir: Option<&Path>,
        plan: &Plan,
        agent: &str,
        access: Access,
    ) -> Result<Handle, String> {
        let hive = std::fs::canonicalize(hive)
            .map_err(|e| format!("cannot resolve the hive {}: {e}", hive.display()))?;
        let grant = plan
            .grant_of(agent)
            .ok_or_else(|| format!("agent '{agent}' has no role in the plan"))?;
        let globs = match access {
            Access::Read => grant.read.clone(),
            Access::Write => grant.write.clone(),
        };
        Ok(Handle {
            access,
            hive,
            data_dir: data_dir.and_then(|d| std::fs::canonicalize(d).ok()),
            protected: plan.protected.clone(),
            globs,
            role: plan
                .agents
                .get(agent)
                .map(|a| a.role.clone())
                .unwrap_or_default(),
        })
    }

    /// The handle a handler gets for its job's agent.
    pub fn for_job(cx: &Cx<'_>, live: &dyn LiveIo, access: Access) -> Result<Handle, String> {
        Handle::new(
            &live.hive(),
            live.data_dir().as_deref(),
            cx.plan,
            cx.job.agent.as_str(),
            access,
        )
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    /// Checks a hive-relative path against the protected paths and the
    /// grant's globs. `shown` is how the refusal names the path.
    fn check(&self, rel: &str, shown: &str) -> Result<(), String> {
        if let Some(p) = self
            .protected
            .iter()
            .find(|p| rel == p.as_str() || rel.starts_with(&format!("{p}/")))
        {
            return Err(format!("{shown} is inside '{p}/', which no grant reaches"));
        }
        if !self.globs.iter().any(|g| glob_match(g, rel)) {
            return Err(format!(
                "{shown} is outside what role '{}' grants to {}",
                self.role,
                self.access.verb()
            ));
        }
        Ok(())
    }

    /// Resolves `text`, a path relative to the hive, to the real path it
    /// names, refusing it unless that real path is inside this grant.
    pub fn resolve(&self, text: &str) -> Result<Resolved, String> {
        let path = normalize_path(text)
            .map_err(|why| format!("path '{}' refused: {why}", text.escape_debug()))?;
        if path == HIVE_ROOT && self.access == Access::Write {
            return Err("path '.' names the hive itself; a write names a file inside it".into());
        }
        self.check(&path, &format!("path '{path}'"))?;
        let joined = if path == HIVE_ROOT {
            self.hive.clone()
        } else {
            self.hive.join(&path)
        };
        let real = match self.access {
            Access::Read => std::fs::canonicalize(&joined).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("path '{path}' does not exist (or is a symlink to nothing)")
                }
                _ => format!("cannot resolve path '{path}': {e}"),
            })?,
            Access::Write => real_path_for_create(&joined)
                .map_err(|e| format!("cannot resolve path '{path}': {e}"))?,
        };
        let Ok(inside) = real.strip_prefix(&self.hive) else {
            return Err(format!(
                "path '{path}' resolves to '{}', outside the hive",
                real.display()
            ));
        };
        let Some(real_rel) = inside.to_str().map(str::to_string) else {
            return Err(format!(
                "path '{path}' resolves to a name that is not UTF-8"
            ));
        };
        let real_rel = if real_rel.is_empty() {
            HIVE_ROOT.to_string()
        } else {
            real_rel
        };
        if real_rel == HIVE_ROOT && self.access == Access::Write {
            return Err(format!("path '{path}' resolves to the hive itself"));
        }
        if let Some(data) = &self.data_dir {
            if real.starts_with(data) {
                return Err(format!("path '{path}' resolves to '{real_rel}', inside the data dir, which no grant reaches"));
            }
        }
        if real_rel != path {
            self.check(
                &real_rel,
                &format!("path '{path}' resolves to '{real_rel}', which"),
            )?;
        }
        Ok(Resolved {
            path,
            real,
            real_rel,
        })
    }

    /// Whether a directory listing leaves out `name` inside the real
    /// directory `dir_rel`: the hive's machinery and the data dir are not
    /// even named.
    pub fn hides(&self, dir_rel: &str, name: &str) -> bool {
        let rel = if dir_rel == HIVE_ROOT {
            name.to_string()
        } else {
            format!("{dir_rel}/{name}")
        };
        let protected = self
            .protected
            .iter()
            .any(|p| rel == *p || rel.starts_with(&format!("{p}/")));
        let data = self
            .data_dir
            .as_ref()
            .is_some_and(|d| self.hive.join(&rel) == *d);
        protected || data
    }
}

/// How the gate and the handles name the hive itself: something a read may
/// list or measure, a write never names.
const HIVE_ROOT: &str = ".";

/// The real path a file created at `path` would have: its deepest existing
/// ancestor resolved, the missing components appended. The last component
/// itself is not followed: a durable write renames over it, replacing a
/// symlink rather than writing through it.
fn real_path_for_create(path: &Path) -> std::io::Result<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("it names no file"));
    };
    let mut existing = parent;
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(up), Some(component)) => {
                missing.push(component);
                existing = up;
            }
            _ => break,
        }
    }
    let mut real = std::fs::canonicalize(existing)?;
    for component in missing.into_iter().rev() {
        real.push(component);
    }
    real.push(name);
    Ok(real)
}

/// The `path` field of a file tool's payload.
fn payload_path(decision: &Decision) -> Result<&str, String> {
    decision.payload["path"]
        .as_str()
        .ok_or_else(|| "payload/path must be a string".to_string())
}

/// Runs a file tool through a handle: resolves and checks its path, audits
/// the verdict, and only then calls `act`.
fn mediated(
    cx: &Cx<'_>,
    live: &dyn LiveIo,
    decision: &Decision,
    access: Access,
    act: impl FnOnce(&Handle, &Resolved) -> Result<Value, String>,
) -> Result<Outcome, String> {
    let path = payload_path(decision)?;
    let handle = Handle::for_job(cx, live, access)?;
    let resolved = match handle.resolve(path) {
        Ok(r) => r,
        Err(reason) => {
            return Err(refuse(
                live,
                cx,
                decision,
                &audit_action(&decision.kind, path),
                reason,
            ))
        }
    };
    let mut reason = format!(
        "inside the {} grant of role '{}'",
        access.verb(),
        handle.role()
    );
    if resolved.real_rel != resolved.path {
        reason += &format!(" (resolves to '{}')", resolved.real_rel);
    }
    super::audit(
        live,
        cx,
        decision,
        &audit_action(&decision.kind, &resolved.path),
        Verdict::Allowed,
        reason,
    )?;
    act(&handle, &resolved).map(Outcome::result)
}

/// Opens a regular file for reading without blocking on a FIFO or device,
/// refusing anything that is not a regular file or is larger than `limit`.
fn open_regular(
    resolved: &Resolved,
    tool: &str,
    limit: u64,
) -> Result<(std::fs::File, u64), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&resolved.real)
        .map_err(|e| format!("cannot open '{}': {e}", resolved.path))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat '{}': {e}", resolved.path))?;
    if meta.is_dir() {
        return Err(format!(
            "'{}' is a directory; fs.stat lists directories",
            resolved.path
        ));
    }
    if !meta.is_file() {
        return Err(format!("'{}' is not a regular file", resolved.path));
    }
    if meta.len() > limit {
        return Err(format!(
            "'{}' is {} bytes, over {tool}'s limit of {limit} bytes",
            resolved.path,
            meta.len()
        ));
    }
    Ok((file, meta.len()))
}

fn read_capped(resolved: &Resolved, tool: &str, limit: u64) -> Result<Vec<u8>, String> {
    let (file, len) = open_regular(resolved, tool, limit)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow after the size check: never read past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read '{}': {e}", resolved.path))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "'{}' grew past {tool}'s limit of {limit} bytes while being read",
            resolved.path
        ));
    }
    Ok(bytes)
}

/// `fs.read`: a text file inside the read grant.
pub struct FsRead;

impl Handler for FsRead {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(cx, live, decision, Access::Read, |_, r| {
            let bytes = read_capped(r, "fs.read", MAX_READ_BYTES)?;
            let sha256 = Digest::of_bytes(&bytes).to_hex();
            let content = String::from_utf8(bytes)
                .map_err(|_| format!("'{}' is not UTF-8 text; fs.read reads text files", r.path))?;
            Ok(
                json!({"path": r.path, "bytes": content.len(), "sha256": sha256, "content": content}),
            )
        })
    }
}

/// What `fs.write` reports: a function of the payload alone, so replay
/// computes it again without writing anything and compares.
pub fn write_result(payload: &Value) -> Result<(String, Value), String> {
    let path = payload["path"]
        .as_str()
        .ok_or("payload/path must be a string")?;
    let path = normalize_path(path)
        .map_err(|why| format!("path '{}' refused: {why}", path.escape_debug()))?;
    let content = payload["content"]
        .as_str()
        .ok_or("fs.write needs payload/content, the text to write")?;
    if content.len() > MAX_WRITE_BYTES {
        return Err(format!(
            "content is {} bytes, over fs.write's limit of {MAX_WRITE_BYTES} bytes",
            content.len()
        ));
    }
    let result = json!({"path": path, "bytes": content.len(), "sha256": Digest::of_bytes(content.as_bytes()).to_hex()});
    Ok((content.to_string(), result))
}

/// `fs.write`: a text file inside the write grant, written durably.
/// Deterministic: replay re-derives the result from the payload (never
/// writing) and compares; a live failure the disk caused is read back.
pub struct FsWrite;

impl Handler for FsWrite {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let planned = write_result(&decision.payload);
        let Some(live) = cx.live else {
            let (_, result) = planned?;
            return match cx.recorded {
                Some((_, Some(error))) => Err(error.to_string()),
                _ => Ok(Outcome::result(result)),
            };
        };
        let (content, result) = match planned {
            Ok(p) => p,
            Err(reason) => {
                let path = decision.payload["path"].as_str().unwrap_or_default();
                return Err(refuse(
                    live,
                    cx,
                    decision,
                    &audit_action(&decision.kind, path),
                    reason,
                ));
            }
        };
        mediated(cx, live, decision, Access::Write, |_, r| {
            if r.real.is_dir() {
                return Err(format!("'{}' is a directory", r.path));
            }
            if let Some(parent) = r.real.parent() {
                fsx::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            fsx::write_durable(&r.real, content.as_bytes()).map_err(|e| e.to_string())?;
            Ok(result)
        })
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

fn modified_secs(meta: &std::fs::Metadata) -> Value {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs()))
}

/// `fs.stat`: a file's metadata, or a directory's entries (sorted, capped).
pub struct FsStat;

impl Handler for FsStat {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(cx, live, decision, Access::Read, |handle, r| {
            let meta =
                std::fs::metadata(&r.real).map_err(|e| format!("cannot stat '{}': {e}", r.path))?;
            let mut out = json!({
                "path": r.path,
                "type": kind_of(&meta),
                "bytes": meta.len(),
                "modified": modified_secs(&meta),
                "mode": format!("{:04o}", meta.permissions().mode() & 0o7777),
                "links": meta.nlink(),
            });
            if meta.is_dir() {
                let mut names: Vec<(String, std::fs::Metadata)> = Vec::new();
                let mut total = 0usize;
                let entries = std::fs::read_dir(&r.real)
                    .map_err(|e| format!("cannot list '{}': {e}", r.path))?;
                for entry in entries {
                    let entry = entry.map_err(|e| format!("cannot list '{}': {e}", r.path))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if handle.hides(&r.real_rel, &name) {
                        continue;
                    }
                    total += 1;
                    // Keep the smallest names only: sorted and bounded in memory.
                    if names.len() == MAX_LIST_ENTRIES
                        && names.last().is_some_and(|(last, _)| *last <= name)
                    {
                        continue;
                    }
                    let Ok(m) = entry.metadata() else { continue };
                    let at = names.partition_point(|(n, _)| *n < name);
                    names.insert(at, (name, m));
                    names.truncate(MAX_LIST_ENTRIES);
                }
                let listed: Vec<Value> = names
                    .iter()
                    .map(|(name, m)| json!({"name": name, "type": kind_of(m), "bytes": m.len()}))
                    .collect();
                out["entries"] = json!(listed);
                out["total"] = json!(total);
                out["truncated"] = json!(total > listed.len());
            }
            Ok(out)
        })
    }
}

/// `fs.disk_usage`: the file system holding a path inside the read grant.
pub struct DiskUsage;

impl Handler for DiskUsage {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(cx, live, decision, Access::Read, |_, r| {
            let s = rustix::fs::statvfs(&r.real)
                .map_err(|e| format!("cannot statvfs '{}': {e}", r.path))?;
            let total = s.f_blocks.saturating_mul(s.f_frsize);
            let free = s.f_bfree.saturating_mul(s.f_frsize);
            let available = s.f_bavail.saturating_mul(s.f_frsize);
            Ok(json!({
                "path": r.path,
                "total_bytes": total,
                "used_bytes": total.saturating_sub(free),
                "free_bytes": free,
                "available_bytes": available,
            }))
        })
    }
}

/// Lines, words, chars and bytes of a text, as `wc` counts them except that
/// a last line without a newline still counts.
pub fn count_text(text: &str) -> Value {
    json!({
        "lines": text.lines().count(),
        "words": text.split_whitespace().count(),
        "chars": text.chars().count(),
        "bytes": text.len(),
    })
}

/// `text.count`: lines, words, chars and bytes of a text file (size capped).
pub struct TextCount;

impl Handler for TextCount {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(cx, live, decision, Access::Read, |_, r| {
            let bytes = read_capped(r, "text.count", MAX_COUNT_BYTES)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| format!("'{}' is not UTF-8 text", r.path))?;
            let mut out = count_text(text);
            out["path"] = json!(r.path);
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_what_a_reader_expects() {
        assert_eq!(
            count_text("one two\nthree\n"),
            json!({"lines": 2, "words": 3, "chars": 14, "bytes": 14})
        );
        assert_eq!(
            count_text("no newline"),
            json!({"lines": 1, "words": 2, "chars": 10, "bytes": 10})
        );
        assert_eq!(count_text("é\n")["chars"], 2);
        assert_eq!(count_text("é\n")["bytes"], 3);
        assert_eq!(
            count_text(""),
            json!({"lines": 0, "words": 0, "chars": 0, "bytes": 0})
        );
    }

    #[test]
    fn the_write_result_is_a_function_of_the_payload() {
        let (content, result) =
            write_result(&json!({"path": "./notes//a.md", "content": "hi"})).unwrap();
        assert_eq!(content, "hi");
        assert_eq!(result["path"], "notes/a.md");
        assert_eq!(result["bytes"], 2);
        let big = "x".repeat(MAX_WRITE_BYTES + 1);
        let err = write_result(&json!({"path": "a", "content": big})).unwrap_err();
        assert!(err.contains("over fs.write's limit"), "{err}");
        assert!(write_result(&json!({"path": "a"}))
            .unwrap_err()
            .contains("payload/content"));
    }

    fn plan_granting(read: &[&str], write: &[&str]) -> Plan {
        let mut plan = Plan::builtin();
        let grant = plan.roles.get_mut("advance").unwrap();
        grant.read = read.iter().map(|s| s.to_string()).collect();
        grant.write = write.iter().map(|s| s.to_string()).collect();
        plan
    }

    #[test]
    fn the_handle_follows_symlinks_and_refuses_where_they_lead_out_of_scope() {
        let dir = tempfile::tempdir().unwrap();
        let hive = dir.path();
        std::fs::create_dir_all(hive.join("notes")).unwrap();
        std::fs::create_dir_all(hive.join("manifests")).unwrap();
        std::fs::create_dir_all(hive.join("secret")).unwrap();
        std::fs::write(hive.join("notes/a.md"), "a").unwrap();
        std::fs::write(hive.join("secret/s"), "s").unwrap();
        std::fs::write(hive.join("manifests/m.yaml"), "m").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", hive.join("notes/passwd")).unwrap();
        std::os::unix::fs::symlink("../manifests/m.yaml", hive.join("notes/m")).unwrap();
        std::os::unix::fs::symlink("../secret", hive.join("notes/s")).unwrap();
        std::os::unix::fs::symlink("a.md", hive.join("notes/alias")).unwrap();
        let plan = plan_granting(&["notes/**"], &["notes/**"]);
        let read = Handle::new(hive, None, &plan, "advance", Access::Read).unwrap();
        assert_eq!(read.resolve("notes/a.md").unwrap().real_rel, "notes/a.md");
        assert_eq!(read.resolve("notes/alias").unwrap().real_rel, "notes/a.md");
        let e = read.resolve("notes/passwd").unwrap_err();
        assert!(
            e.contains("resolves to '/etc/passwd', outside the hive"),
            "{e}"
        );
        let e = read.resolve("notes/m").unwrap_err();
        assert!(
            e.contains("resolves to 'manifests/m.yaml', which is inside 'manifests/'"),
            "{e}"
        );
        let e = read.resolve("notes/s/s").unwrap_err();
        assert!(
            e.contains(
                "resolves to 'secret/s', which is outside what role 'advance' grants to read"
            ),
            "{e}"
        );
        assert!(read
            .resolve("../x")
            .unwrap_err()
            .contains("'..' is not allowed"));
        assert!(read
            .resolve("/etc/passwd")
            .unwrap_err()
            .contains("absolute paths are not allowed"));
        assert!(read.resolve("notes/a\0b").unwrap_err().contains("NUL"));
        let write = Handle::new(hive, None, &plan, "advance", Access::Write).unwrap();
        // A new file under a symlinked directory lands where the link points.
        let e = write.resolve("notes/s/new.txt").unwrap_err();
        assert!(e.contains("resolves to 'secret/new.txt'"), "{e}");
        assert_eq!(
            write.resolve("notes/new/deeper/x.txt").unwrap().real_rel,
            "notes/new/deeper/x.txt"
        );
        // Replacing a symlink replaces the link, never its target.
        assert_eq!(
            write.resolve("notes/passwd").unwrap().real_rel,
            "notes/passwd"
        );
    }
}
