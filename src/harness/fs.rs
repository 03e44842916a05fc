//! The file tools (`fs.read`, `fs.write`, `fs.stat`, `fs.disk_usage`,
//! `text.count`) and the capability [`Handle`] they reach the disk through.
//!
//! The gate has already checked the path lexically against the grant. The
//! handle checks it again (the hive's machinery, the data dir, the globs) and
//! then lets the kernel resolve it: `openat2` beneath an opened descriptor of
//! the hive with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so what is opened
//! is what was checked, whatever is renamed or swapped meanwhile. A symlink
//! anywhere on the path is refused, never followed; where the kernel has no
//! `openat2` (before Linux 5.6) the path is walked one component at a time
//! with `O_NOFOLLOW`, which refuses the same. Handlers act only on the
//! descriptor the handle opened: reads read it, `fs.stat` and
//! `fs.disk_usage` ask it, and a write lands in the directory it opened
//! (through `/proc/self/fd`, so the durable-write helper names that very
//! directory).
//!
//! A regular file with more than one hard link is refused in a read grant
//! unless the role sets `allow_hard_links`: its other name may lie outside
//! the grant (or the hive), and reading one reads both. Writes replace a
//! file by renaming over it, so they never write through a link.

use super::{audit_action, read_back, refuse};
use crate::canon::Digest;
use crate::decision::Decision;
use crate::exec::{Cx, Handler, LiveIo, Outcome, Verdict};
use crate::fsx;
use crate::gate::{glob_match, normalize_path};
use crate::plan::Plan;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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
/// How often an `openat2` the kernel asks to retry (EAGAIN, a rename racing
/// the lookup) is tried again before the open fails.
const MAX_OPENAT2_RETRIES: usize = 16;
/// Mode of a directory `fs.write` creates (before the umask).
const NEW_DIR_MODE: u32 = 0o755;

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

/// A path as an error message shows it: control characters (a newline, a
/// NUL, an escape sequence) escaped.
pub fn shown(path: &str) -> String {
    path.escape_debug().to_string()
}

/// What the handle opened for a path inside its grant.
#[derive(Debug)]
pub struct Opened {
    /// As the decision named it, normalized.
    pub path: String,
    pub fd: OwnedFd,
    pub stat: Stat,
}

/// Where a write will land: the deepest directory of the path that exists
/// (opened), the directories still to create beneath it, and the file name.
#[derive(Debug)]
pub struct WriteTarget {
    pub path: String,
    dir: OwnedFd,
    missing: Vec<String>,
    name: String,
}

/// Access to the hive's files limited to one grant (an agent's `read` or
/// `write` globs), minus the hive's machinery and the data dir.
#[derive(Debug, Clone)]
pub struct Handle {
    access: Access,
    /// Canonical.
    hive: PathBuf,
    /// The data dir relative to the hive, when inside it.
    data_rel: Option<String>,
    protected: Vec<String>,
    globs: Vec<String>,
    role: String,
    allow_hard_links: bool,
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
        let hive =
            std::fs::canonicalize(hive).map_err(|e| format!("cannot resolve the hive: {e}"))?;
        let grant = plan
            .grant_of(agent)
            .ok_or_else(|| format!("agent '{agent}' has no role in the plan"))?;
        let globs = match access {
            Access::Read => grant.read.clone(),
            Access::Write => grant.write.clone(),
        };
        let data_rel = data_dir
            .and_then(|d| std::fs::canonicalize(d).ok())
            .and_then(|d| Some(d.strip_prefix(&hive).ok()?.to_str()?.to_string()));
        Ok(Handle {
            access,
            hive,
            data_rel,
            protected: plan.protected.clone(),
            globs,
            role: plan
                .agents
                .get(agent)
                .map(|a| a.role.clone())
                .unwrap_or_default(),
            allow_hard_links: grant.allow_hard_links,
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

    /// Normalizes `text` and checks it against the protected paths, the data
    /// dir and the grant's globs: no disk access.
    pub fn check(&self, text: &str) -> Result<String, String> {
        let path =
            normalize_path(text).map_err(|why| format!("path '{}' refused: {why}", shown(text)))?;
        let at = shown(&path);
        if path == HIVE_ROOT && self.access == Access::Write {
            return Err("path '.' names the hive itself; a write names a file inside it".into());
        }
        let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
        if let Some(p) = self.protected.iter().find(|p| under(p)) {
            return Err(format!(
                "path '{at}' is inside '{p}/', which no grant reaches"
            ));
        }
        if self
            .data_rel
            .as_deref()
            .is_some_and(|d| !d.is_empty() && under(d))
        {
            return Err(format!(
                "path '{at}' is inside the data dir, which no grant reaches"
            ));
        }
        if !self.globs.iter().any(|g| glob_match(g, &path)) {
            return Err(format!(
                "path '{at}' is outside what role '{}' grants to {}",
                self.role,
                self.access.verb()
            ));
        }
        Ok(path)
    }

    fn hive_fd(&self) -> Result<OwnedFd, String> {
        rustix::fs::open(
            &self.hive,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open the hive: {e}"))
    }

    /// Checks `text` and opens it with `flags`, beneath the hive and through
    /// no symlink; in a read grant, refuses a regular file with another
    /// hard link unless the role allows them.
    pub fn open(&self, text: &str, flags: OFlags) -> Result<Opened, String> {
        let path = self.check(text)?;
        let hive = self.hive_fd()?;
        let fd = open_beneath(hive.as_fd(), &path, flags, Mode::empty())
            .map_err(|e| open_error(&path, e))?;
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat '{}': {e}", shown(&path)))?;
        if self.access == Access::Read
            && !self.allow_hard_links
            && FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && stat.st_nlink > 1
        {
            return Err(format!(
                "path '{}' has {} hard links: another name, maybe outside what role '{}' grants, reads the same file; the role must set allow_hard_links for it to be read",
                shown(&path),
                stat.st_nlink,
                self.role
            ));
        }
        Ok(Opened { path, fd, stat })
    }

    /// Checks `text` for a write and opens the deepest directory of it that
    /// exists; creates nothing.
    pub fn target(&self, text: &str) -> Result<WriteTarget, String> {
        let path = self.check(text)?;
        let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
        let name = parts.pop().unwrap_or_default();
        let mut dir = self.hive_fd()?;
        let mut missing = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match open_beneath(dir.as_fd(), part, dir_flags(), Mode::empty()) {
                Ok(next) => dir = next,
                Err(Errno::NOENT) => {
                    missing = parts[i..].to_vec();
                    break;
                }
                Err(e) => return Err(open_error(&path, e)),
            }
        }
        if missing.is_empty() {
            if let Ok(st) = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(format!("'{}' is a directory", shown(&path)));
                }
            }
        }
        Ok(WriteTarget {
            path,
            dir,
            missing,
            name,
        })
    }

    /// Creates the target's missing directories (each opened beneath the
    /// last, through no symlink) and writes `bytes` durably into the last.
    pub fn write(&self, target: WriteTarget, bytes: &[u8]) -> Result<(), String> {
        let WriteTarget {
            path,
            mut dir,
            missing,
            name,
        } = target;
        for part in &missing {
            match rustix::fs::mkdirat(&dir, part.as_str(), Mode::from_raw_mode(NEW_DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(format!(
                        "cannot create a directory of '{}': {e}",
                        shown(&path)
                    ))
                }
            }
            dir = open_beneath(dir.as_fd(), part, dir_flags(), Mode::empty())
                .map_err(|e| open_error(&path, e))?;
        }
        // The opened directory itself, whatever its path names by now.
        let dest = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
        fsx::write_durable(&dest, bytes)
            .map_err(|e| format!("cannot write '{}': {}", shown(&path), e.source))
    }

    /// Reads a regular file of at most `limit` bytes (`tool` names the
    /// limit's owner in errors).
    pub fn read(&self, text: &str, tool: &str, limit: u64) -> Result<(String, Vec<u8>), String> {
        let opened = self.open(text, read_flags())?;
        let bytes = read_capped(opened.fd, &opened.path, &opened.stat, tool, limit)?;
        Ok((opened.path, bytes))
    }

    /// Whether a directory listing leaves out `name` inside the directory
    /// `dir_rel`: the hive's machinery and the data dir are not even named.
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
        protected || self.data_rel.as_deref() == Some(rel.as_str())
    }
}

/// How the gate and the handles name the hive itself: something a read may
/// list or measure, a write never names.
const HIVE_ROOT: &str = ".";

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY
}

/// A file opened to be read: never blocking on a FIFO, never becoming the
/// controlling terminal.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Set once the kernel said it has no `openat2`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` (normalized: no `..`, no `.`) beneath `dir`, through no
/// symlink: `openat2` where the kernel has it, else [`open_walking`].
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        for _ in 0..MAX_OPENAT2_RETRIES {
            match rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, mode, resolve) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                done => return done,
            }
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            return Err(Errno::AGAIN);
        }
    }
    open_walking(dir, rel, flags, mode)
}

/// [`open_beneath`] without `openat2`: each directory of `rel` opened with
/// `O_NOFOLLOW` beneath the last, then the last component likewise. A
/// symlink anywhere fails with ELOOP (or ENOTDIR, on the way).
pub fn open_walking(
    dir: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Errno::XDEV);
    }
    let Some((last, parents)) = parts.split_last() else {
        return rustix::fs::openat(dir, ".", flags | OFlags::CLOEXEC, mode);
    };
    let mut held: Option<OwnedFd> = None;
    for part in parents {
        let at = held.as_ref().map_or(dir, |f| f.as_fd());
        let next = rustix::fs::openat(
            at,
            *part,
            dir_flags() | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        held = Some(next);
    }
    let at = held.as_ref().map_or(dir, |f| f.as_fd());
    let fd = rustix::fs::openat(at, *last, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode)?;
    // With O_PATH, O_NOFOLLOW opens a symlink itself rather than failing.
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    Ok(fd)
}

/// What a failed open of `path` says.
fn open_error(path: &str, e: Errno) -> String {
    let at = shown(path);
    match e {
        Errno::LOOP | Errno::NOTDIR => format!(
            "path '{at}' is or passes through a symlink (or a file where a directory should be); file tools do not follow symlinks"
        ),
        Errno::XDEV => format!("path '{at}' leaves the hive"),
        Errno::NOENT => format!("path '{at}' does not exist"),
        e => format!("cannot open '{at}': {e}"),
    }
}

/// The `path` field of a file tool's payload.
fn payload_path(decision: &Decision) -> Result<&str, String> {
    decision.payload["path"]
        .as_str()
        .ok_or_else(|| "payload/path must be a string".to_string())
}

/// Runs a file tool through a handle: `resolve` checks and opens the path
/// (a failure is an audited refusal), the verdict is audited, and only then
/// `act` runs on what was opened.
fn mediated<T>(
    cx: &Cx<'_>,
    live: &dyn LiveIo,
    decision: &Decision,
    access: Access,
    resolve: impl FnOnce(&Handle, &str) -> Result<(String, T), String>,
    act: impl FnOnce(&Handle, &str, T) -> Result<Value, String>,
) -> Result<Outcome, String> {
    let path = payload_path(decision)?;
    let handle = Handle::for_job(cx, live, access)?;
    let (normalized, opened) = match resolve(&handle, path) {
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
    let reason = format!(
        "inside the {} grant of role '{}'",
        access.verb(),
        handle.role()
    );
    super::audit(
        live,
        cx,
        decision,
        &audit_action(&decision.kind, &normalized),
        Verdict::Allowed,
        reason,
    )?;
    act(&handle, &normalized, opened).map(Outcome::result)
}

/// Opens for reading, as a resolver for [`mediated`].
fn open_for_read(handle: &Handle, path: &str) -> Result<(String, Opened), String> {
    let opened = handle.open(path, read_flags())?;
    Ok((opened.path.clone(), opened))
}

/// Opens without reading (`O_PATH`: no device opened, no FIFO waited on),
/// as a resolver for [`mediated`].
fn open_to_inspect(handle: &Handle, path: &str) -> Result<(String, Opened), String> {
    let opened = handle.open(path, OFlags::PATH)?;
    Ok((opened.path.clone(), opened))
}

/// The content of an opened regular file of at most `limit` bytes.
fn read_capped(
    fd: OwnedFd,
    path: &str,
    stat: &Stat,
    tool: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let at = shown(path);
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => {
            return Err(format!("'{at}' is a directory; fs.stat lists directories"))
        }
        _ => return Err(format!("'{at}' is not a regular file")),
    }
    let len = stat.st_size.max(0) as u64;
    if len > limit {
        return Err(format!(
            "'{at}' is {len} bytes, over {tool}'s limit of {limit} bytes"
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow after the size check: never read past the limit.
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read '{at}': {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "'{at}' grew past {tool}'s limit of {limit} bytes while being read"
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
        mediated(
            cx,
            live,
            decision,
            Access::Read,
            open_for_read,
            |_, path, o| {
                let bytes = read_capped(o.fd, path, &o.stat, "fs.read", MAX_READ_BYTES)?;
                let sha256 = Digest::of_bytes(&bytes).to_hex();
                let content = String::from_utf8(bytes).map_err(|_| {
                    format!(
                        "'{}' is not UTF-8 text; fs.read reads text files",
                        shown(path)
                    )
                })?;
                Ok(
                    json!({"path": path, "bytes": content.len(), "sha256": sha256, "content": content}),
                )
            },
        )
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
        mediated(
            cx,
            live,
            decision,
            Access::Write,
            |handle, path| {
                let target = handle.target(path)?;
                Ok((target.path.clone(), target))
            },
            |handle, _, target| {
                handle.write(target, content.as_bytes())?;
                Ok(result)
            },
        )
    }
}

fn kind_of(stat: &Stat) -> &'static str {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => "symlink",
        FileType::Directory => "dir",
        FileType::RegularFile => "file",
        _ => "other",
    }
}

fn modified_secs(stat: &Stat) -> Value {
    if stat.st_mtime >= 0 {
        json!(stat.st_mtime)
    } else {
        Value::Null
    }
}

/// The entries of an opened directory, sorted, the smallest
/// [`MAX_LIST_ENTRIES`] listed (the machinery left out), and how many there
/// are in all.
fn list(handle: &Handle, o: &Opened) -> Result<(Vec<Value>, usize), String> {
    let at = shown(&o.path);
    let cannot = |e: Errno| format!("cannot list '{at}': {e}");
    let dir = rustix::fs::openat(
        &o.fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(cannot)?;
    let mut names: Vec<(String, Stat)> = Vec::new();
    let mut total = 0usize;
    for entry in rustix::fs::Dir::read_from(&dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let raw = entry.file_name();
        if raw == c"." || raw == c".." {
            continue;
        }
        let name = raw.to_string_lossy().into_owned();
        if handle.hides(&o.path, &name) {
            continue;
        }
        total += 1;
        // Keep the smallest names only: sorted and bounded in memory.
        if names.len() == MAX_LIST_ENTRIES && names.last().is_some_and(|(last, _)| *last <= name) {
            continue;
        }
        let Ok(st) = rustix::fs::statat(&dir, raw, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let at = names.partition_point(|(n, _)| *n < name);
        names.insert(at, (name, st));
        names.truncate(MAX_LIST_ENTRIES);
    }
    let listed = names
        .iter()
        .map(|(name, st)| json!({"name": name, "type": kind_of(st), "bytes": st.st_size.max(0)}))
        .collect();
    Ok((listed, total))
}

/// `fs.stat`: a file's metadata, or a directory's entries (sorted, capped).
pub struct FsStat;

impl Handler for FsStat {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(
            cx,
            live,
            decision,
            Access::Read,
            open_to_inspect,
            |handle, path, o| {
                let st = &o.stat;
                let mut out = json!({
                    "path": path,
                    "type": kind_of(st),
                    "bytes": st.st_size.max(0),
                    "modified": modified_secs(st),
                    "mode": format!("{:04o}", st.st_mode & 0o7777),
                    "links": st.st_nlink,
                });
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let (listed, total) = list(handle, &o)?;
                    out["truncated"] = json!(total > listed.len());
                    out["entries"] = json!(listed);
                    out["total"] = json!(total);
                }
                Ok(out)
            },
        )
    }
}

/// `fs.disk_usage`: the file system holding a path inside the read grant.
pub struct DiskUsage;

impl Handler for DiskUsage {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        mediated(
            cx,
            live,
            decision,
            Access::Read,
            open_to_inspect,
            |_, path, o| {
                let s = rustix::fs::fstatvfs(&o.fd)
                    .map_err(|e| format!("cannot statvfs '{}': {e}", shown(path)))?;
                let total = s.f_blocks.saturating_mul(s.f_frsize);
                let free = s.f_bfree.saturating_mul(s.f_frsize);
                let available = s.f_bavail.saturating_mul(s.f_frsize);
                Ok(json!({
                    "path": path,
                    "total_bytes": total,
                    "used_bytes": total.saturating_sub(free),
                    "free_bytes": free,
                    "available_bytes": available,
                }))
            },
        )
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
        mediated(
            cx,
            live,
            decision,
            Access::Read,
            open_for_read,
            |_, path, o| {
                let bytes = read_capped(o.fd, path, &o.stat, "text.count", MAX_COUNT_BYTES)?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| format!("'{}' is not UTF-8 text", shown(path)))?;
                let mut out = count_text(text);
                out["path"] = json!(path);
                Ok(out)
            },
        )
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
    fn the_handle_refuses_symlinks_hard_links_and_paths_outside_its_grant() {
        let dir = tempfile::tempdir().unwrap();
        let hive = dir.path();
        std::fs::create_dir_all(hive.join("notes")).unwrap();
        std::fs::create_dir_all(hive.join("manifests")).unwrap();
        std::fs::create_dir_all(hive.join("secret")).unwrap();
        std::fs::write(hive.join("notes/a.md"), "a").unwrap();
        std::fs::write(hive.join("secret/s"), "s").unwrap();
        std::fs::write(hive.join("manifests/m.yaml"), "m").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", hive.join("notes/passwd")).unwrap();
        std::os::unix::fs::symlink("../secret", hive.join("notes/s")).unwrap();
        std::os::unix::fs::symlink("a.md", hive.join("notes/alias")).unwrap();
        std::fs::hard_link(hive.join("secret/s"), hive.join("notes/twin")).unwrap();
        let mut plan = plan_granting(&["notes/**"], &["notes/**"]);
        let read = Handle::new(hive, None, &plan, "advance", Access::Read).unwrap();
        let (path, bytes) = read.read("./notes//a.md", "fs.read", 10).unwrap();
        assert_eq!((path.as_str(), bytes.as_slice()), ("notes/a.md", &b"a"[..]));
        for link in ["notes/alias", "notes/passwd", "notes/s/s"] {
            let e = read.read(link, "fs.read", 10).unwrap_err();
            assert!(
                e.contains("file tools do not follow symlinks"),
                "{link}: {e}"
            );
            assert!(!e.contains(&hive.display().to_string()), "a host path: {e}");
        }
        let e = read.read("notes/twin", "fs.read", 10).unwrap_err();
        assert!(e.contains("'notes/twin' has 2 hard links"), "{e}");
        plan.roles.get_mut("advance").unwrap().allow_hard_links = true;
        let lenient = Handle::new(hive, None, &plan, "advance", Access::Read).unwrap();
        assert_eq!(lenient.read("notes/twin", "fs.read", 10).unwrap().1, b"s");
        let e = read
            .read("notes/\u{1b}[31mred\n", "fs.read", 10)
            .unwrap_err();
        assert!(
            e.contains(r"notes/\u{1b}[31mred\n"),
            "control characters escaped: {e}"
        );
        assert!(read
            .check("../x")
            .unwrap_err()
            .contains("'..' is not allowed"));
        assert!(read
            .check("/etc/passwd")
            .unwrap_err()
            .contains("absolute paths are not allowed"));
        assert!(read.check("notes/a\0b").unwrap_err().contains("NUL"));
        assert!(read
            .check("manifests/m.yaml")
            .unwrap_err()
            .contains("inside 'manifests/'"));

        let write = Handle::new(hive, None, &plan, "advance", Access::Write).unwrap();
        // A new file under a symlinked directory is refused, not written
        // where the link points.
        let e = write.target("notes/s/new.txt").unwrap_err();
        assert!(e.contains("do not follow symlinks"), "{e}");
        let target = write.target("notes/new/deeper/x.txt").unwrap();
        write.write(target, b"x").unwrap();
        assert_eq!(
            std::fs::read(hive.join("notes/new/deeper/x.txt")).unwrap(),
            b"x"
        );
        // Replacing a symlink replaces the link, never its target.
        let target = write.target("notes/passwd").unwrap();
        write.write(target, b"p").unwrap();
        assert!(!hive.join("notes/passwd").is_symlink());
        // A hard link is replaced too: its outside twin keeps its content.
        write
            .write(write.target("notes/twin").unwrap(), b"t")
            .unwrap();
        assert_eq!(std::fs::read(hive.join("secret/s")).unwrap(), b"s");
    }

    #[test]
    fn the_walking_fallback_refuses_what_openat2_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let hive = dir.path();
        std::fs::create_dir_all(hive.join("notes/sub")).unwrap();
        std::fs::write(hive.join("notes/sub/a"), "a").unwrap();
        std::os::unix::fs::symlink("sub", hive.join("notes/link")).unwrap();
        std::os::unix::fs::symlink("sub/a", hive.join("notes/file-link")).unwrap();
        let root = rustix::fs::open(hive, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for flags in [OFlags::RDONLY, OFlags::PATH] {
            assert!(open_walking(root.as_fd(), "notes/sub/a", flags, Mode::empty()).is_ok());
            for rel in ["notes/link/a", "notes/file-link", "notes/../../x"] {
                let walked = open_walking(root.as_fd(), rel, flags, Mode::empty());
                let kernel = open_beneath(root.as_fd(), rel, flags, Mode::empty());
                assert!(walked.is_err() && kernel.is_err(), "{rel} {flags:?}");
            }
        }
    }
}
