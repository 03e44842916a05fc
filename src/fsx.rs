//! File-system helpers that keep their promises: every error names its path,
//! and [`write_durable`] is the one way Jaros writes a file that matters
//! (temp file in the same directory, fsync, rename, fsync the directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O error with the path it happened on and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> IoError {
        IoError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

pub type Result<T> = std::result::Result<T, IoError>;

pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| IoError::new("cannot read", path, e))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| IoError::new("cannot read", path, e))
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| IoError::new("cannot create directory", path, e))
}

/// Lists a directory's entries sorted by name; a missing directory is empty.
pub fn list_dir(path: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("cannot list", path, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new("cannot list", path, e))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
///
/// Concurrent calls for one directory share syncs, like appenders share a
/// log's: a call returns once a sync that started after the call did has
/// finished, and that sync covers every call made before it began. So the
/// workers of a node that rename files into one directory at once pay for
/// one or two syncs, not one each.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let group = dir_group(dir);
    let mut state = group.lock();
    state.calls += 1;
    let mine = state.calls;
    loop {
        if state.synced >= mine {
            return Ok(());
        }
        if state.running {
            state = group.done.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        state.running = true;
        let target = state.calls;
        drop(state);
        let result = sync_dir_now(dir);
        state = group.lock();
        state.running = false;
        if result.is_ok() {
            state.synced = state.synced.max(target);
        }
        group.done.notify_all();
        result?;
    }
}

/// The syncs of one directory: calls made, calls covered by a finished sync.
#[derive(Default)]
struct DirGroup {
    state: std::sync::Mutex<DirSyncState>,
    done: std::sync::Condvar,
}

impl DirGroup {
    fn lock(&self) -> std::sync::MutexGuard<'_, DirSyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct DirSyncState {
    calls: u64,
    synced: u64,
    running: bool,
}

/// Directories synced lately; unused entries go once there are many.
static DIR_GROUPS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, std::sync::Arc<DirGroup>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn dir_group(dir: &Path) -> std::sync::Arc<DirGroup> {
    let mut groups = DIR_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(group) = groups.get(dir) {
        return group.clone();
    }
    if groups.len() >= 64 {
        groups.retain(|_, g| std::sync::Arc::strong_count(g) > 1);
    }
    groups.entry(dir.to_path_buf()).or_default().clone()
}

fn sync_dir_now(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| IoError::new("cannot open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| IoError::new("cannot fsync directory", dir, e))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Hex digits of [`process_nonce`] in a temp file's name.
pub const NONCE_HEX: usize = 12;

/// Tells this process's temp files from those of a process with the same
/// id on another host sharing the data dir (a node in a container is often
/// pid 1): two such processes writing one file would otherwise open one
/// temp file, and one could truncate the other's after it was linked into
/// place. Random once per process (std's hasher keys come from the OS).
fn process_nonce() -> &'static str {
    use std::hash::BuildHasher;
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        format!("{random:016x}")[..NONCE_HEX].to_string()
    })
}

/// `.<name>.<pid>.<nonce>.<n>.tmp` beside `path`: unique across this
/// process's writes and across hosts.
fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{}.{}.{n}.tmp",
        std::process::id(),
        process_nonce()
    ))
}

/// Writes `bytes` to `path` so that after a crash the file holds either its old
/// content or all of `bytes`, never a mix, and the new content survives power
/// loss once this returns: temp file in the same directory, fsync, rename,
/// fsync the directory.
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    publish(vec![stage(path, bytes, None)?])
}

/// A file written next to its destination but neither durable nor in
/// place yet: [`publish`] makes it both.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    file: File,
    dest: PathBuf,
}

impl Staged {
    /// Where the file goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| IoError::new("cannot fsync", &self.temp, e))
    }
}

/// Writes `bytes` for `dest` into a temp file in the same file system:
/// `spare` when given and still there (a file no longer needed, overwritten
/// and cut to length), else a new one beside `dest`. Reusing a spare saves
/// an inode allocation and a free, which on ext4 without a journal cost more
/// than the write (each allocation scans past the recently freed inodes).
pub fn stage(dest: &Path, bytes: &[u8], spare: Option<&Path>) -> Result<Staged> {
    let reused = spare.and_then(|s| {
        let file = OpenOptions::new().write(true).open(s).ok()?;
        Some((s.to_path_buf(), file))
    });
    let (temp, mut file) = match reused {
        Some(found) => found,
        None => {
            let temp = temp_path(dest);
            let file = File::create(&temp).map_err(|e| IoError::new("cannot create", &temp, e))?;
            (temp, file)
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|_| file.set_len(bytes.len() as u64));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(IoError::new("cannot write", &temp, e));
    }
    Ok(Staged {
        temp,
        file,
        dest: dest.to_path_buf(),
    })
}

/// Makes staged files durable and moves each into place: their content is
/// synced before any is renamed, then each destination directory is synced
/// once. On an error, the files not yet in place are removed.
///
/// One file gets an fsync; several get one `syncfs` of their file system,
/// which costs one device flush instead of one each (a third of the time
/// per file on this project's machine, and it frees a node's finisher from
/// paying a flush per job). It also writes back whatever else is dirty on
/// that file system: on a data dir that shares its file system with heavy
/// writers a round takes longer, never less safely.
pub fn publish(staged: Vec<Staged>) -> Result<()> {
    let synced = match staged.as_slice() {
        [] => return Ok(()),
        [one] => one.sync(),
        [first, ..] => rustix::fs::syncfs(&first.file)
            .map_err(|e| IoError::new("cannot sync the file system of", &first.temp, e.into())),
    };
    if let Err(e) = synced {
        staged.iter().for_each(|s| {
            let _ = fs::remove_file(&s.temp);
        });
        return Err(e);
    }
    place(staged)
}

/// Moves staged files whose content is durable into place, then syncs each
/// destination directory once. On an error, the files not yet in place are
/// removed.
fn place(staged: Vec<Staged>) -> Result<()> {
    let mut pending = staged.into_iter().peekable();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let moved = (|| {
        while let Some(s) = pending.peek() {
            fs::rename(&s.temp, &s.dest)
                .map_err(|e| IoError::new("cannot rename into place", &s.dest, e))?;
            let dir = parent_of(&s.dest).to_path_buf();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            pending.next();
        }
        Ok(())
    })();
    for s in pending {
        let _ = fs::remove_file(&s.temp);
    }
    moved?;
    dirs.iter().try_for_each(|d| sync_dir(d))
}

/// Like [`write_durable`] but refuses to replace an existing file: exactly one
/// of several concurrent writers of the same path succeeds. Returns `false`
/// when the file already existed.
pub fn create_durable_exclusive(path: &Path, bytes: &[u8]) -> Result<bool> {
    create_exclusive(path, bytes, 0o666)
}

/// [`create_durable_exclusive`] for a file only its owner may read: its
/// temp file is created with mode 0600, so it is never readable by others,
/// not even for a moment.
pub fn create_durable_exclusive_private(path: &Path, bytes: &[u8]) -> Result<bool> {
    create_exclusive(path, bytes, 0o600)
}

fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent_of(path);
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(|e| IoError::new("cannot create", &temp, e))?;
    let written = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| IoError::new("cannot write", &temp, e));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // A link fails if the target exists: an atomic create-if-absent with
    // complete content, unlike open(O_EXCL) followed by writes.
    let linked = link_exclusive(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(true) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) => Err(IoError::new("cannot create", path, e)),
    }
}

/// Gives the file `src` the new name `dest` unless that name is taken:
/// `Ok(false)` then. Atomic and exclusive: of several racing linkers of one
/// name, exactly one gets `Ok(true)`.
///
/// A lost race may come back as another error than "already exists": SFTP
/// has no code for it, so sshfs reports it as "Operation not permitted"
/// whenever its kernel had not yet seen the name. Any error with `dest`
/// present afterwards is therefore read off the name: this link when it is
/// `src`'s file (a link that was made and then reported as failed, as a
/// retried request can be), else someone else's.
pub fn link_exclusive(src: &Path, dest: &Path) -> io::Result<bool> {
    settle_link(fs::hard_link(src, dest), src, dest)
}

fn settle_link(linked: io::Result<()>, src: &Path, dest: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let error = match linked {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => e,
    };
    let Ok(there) = fs::symlink_metadata(dest) else {
        return Err(error);
    };
    let ours = fs::symlink_metadata(src)
        .is_ok_and(|mine| (mine.dev(), mine.ino()) == (there.dev(), there.ino()));
    Ok(ours)
}

/// Replaces `path` atomically but WITHOUT fsync: readers never see a torn
/// file, yet a crash may lose the update. Only for files that are rewritten
/// often and lose nothing when stale (node heartbeats).
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    fs::write(&temp, bytes).map_err(|e| IoError::new("cannot write", &temp, e))?;
    fs::rename(&temp, path).map_err(|e| {
        let _ = fs::remove_file(&temp);
        IoError::new("cannot rename into place", path, e)
    })
}

/// Renames `from` to `to` and makes the rename durable in both directories.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| IoError::new("cannot rename", from, e))?;
    sync_dir(parent_of(to))?;
    let from_dir = parent_of(from);
    if from_dir != parent_of(to) {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Why [`read_regular`] read nothing.
#[derive(Debug)]
pub enum Unregular {
    /// Nothing is there (or it went while being read).
    Gone,
    /// The name is not a regular file: "a FIFO (named pipe)", "a symbolic
    /// link", "a directory", ….
    NotRegular(&'static str),
    /// Larger than the limit given: its size, as far as it was read.
    TooLarge(u64),
    /// Another error; `action` is "cannot look at", "cannot open" or
    /// "cannot read", as [`IoError`] names it.
    Io {
        action: &'static str,
        source: io::Error,
    },
}

/// Reads at most `max_bytes` of a file someone else may have put there,
/// without trusting what its name points at: a link is not followed, nothing
/// but a regular file is opened (a FIFO would block the reader forever, a
/// device could be anything), and no more than `max_bytes` + 1 bytes are
/// read, whatever its size said.
pub fn read_regular(path: &Path, max_bytes: u64) -> std::result::Result<Vec<u8>, Unregular> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |action: &'static str| {
        move |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => Unregular::Gone,
            _ => Unregular::Io { action, source: e },
        }
    };
    // Looked at first, so a device or FIFO is never even opened; the open
    // below refuses links and does not block, and its fstat is what counts.
    let seen = fs::symlink_metadata(path).map_err(failed("cannot look at"))?;
    if let Some(what) = not_regular(&seen.file_type()) {
        return Err(Unregular::NotRegular(what));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Unregular::NotRegular("a symbolic link"),
            _ => failed("cannot open")(e),
        })?;
    let meta = file.metadata().map_err(failed("cannot look at"))?;
    if let Some(what) = not_regular(&meta.file_type()) {
        return Err(Unregular::NotRegular(what));
    }
    if meta.len() > max_bytes {
        return Err(Unregular::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(failed("cannot read"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Unregular::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a file of this type is, when it is not a regular file.
fn not_regular(kind: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        None
    } else if kind.is_symlink() {
        Some("a symbolic link")
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("of an unknown kind")
    }
}

/// Opens a file for appending, creating it (and making its directory entry
/// durable) when it does not exist yet.
pub fn open_append(path: &Path) -> Result<File> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| IoError::new("cannot open", path, e))?;
    if !existed {
        sync_dir(parent_of(path))?;
    }
    Ok(file)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_durable(&path, b"one").unwrap();
        write_durable(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(list_dir(dir.path()).unwrap(), vec![path]);
    }

    #[test]
    fn a_write_over_a_spare_reuses_its_inode_and_replaces_all_its_content() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let spare = dir.path().join(".spare");
        fs::write(&spare, vec![b'x'; 3000]).unwrap();
        let inode = fs::metadata(&spare).unwrap().ino();
        let path = dir.path().join("result.json");
        publish(vec![stage(&path, b"{\"ok\":true}", Some(&spare)).unwrap()]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"ok\":true}");
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert!(!spare.exists());
        // A spare that is gone: a new file, same content.
        publish(vec![
            stage(&dir.path().join("b.json"), b"b", Some(&spare)).unwrap()
        ])
        .unwrap();
        assert_eq!(fs::read(dir.path().join("b.json")).unwrap(), b"b");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn a_published_batch_lands_whole_and_a_failed_one_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let batch = vec![
            stage(&a.join("1.json"), b"one", None).unwrap(),
            stage(&a.join("2.json"), b"two", None).unwrap(),
            stage(&b.join("3.json"), b"three", None).unwrap(),
        ];
        publish(batch).unwrap();
        assert_eq!(fs::read(a.join("2.json")).unwrap(), b"two");
        assert_eq!(fs::read(b.join("3.json")).unwrap(), b"three");
        assert_eq!(fs::read_dir(&a).unwrap().count(), 2, "no temp file left");

        let batch = vec![
            stage(&a.join("4.json"), b"four", None).unwrap(),
            stage(&b.join("5.json"), b"five", None).unwrap(),
        ];
        fs::remove_dir_all(&b).unwrap();
        fs::create_dir_all(&b).unwrap(); // 5's temp file went with the old b
        let err = publish(batch).unwrap_err();
        assert!(err.to_string().contains("5.json"), "{err}");
        assert_eq!(fs::read(a.join("4.json")).unwrap(), b"four");
        assert_eq!(fs::read_dir(&b).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_syncs_of_a_directory_all_return_and_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let dir = dir.path();
                s.spawn(move || {
                    for j in 0..20 {
                        fs::write(dir.join(format!("f{i}-{j}")), b"x").unwrap();
                        sync_dir(dir).unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 160);
        let gone = dir.path().join("gone");
        let err = sync_dir(&gone).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn an_exclusive_create_has_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot.json");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = path.clone();
                    s.spawn(move || {
                        create_durable_exclusive(&path, format!("{i}").as_bytes()).unwrap()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
        assert_eq!(list_dir(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_link_refused_with_another_error_is_read_off_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (src, other, dest) = (
            dir.path().join("src"),
            dir.path().join("other"),
            dir.path().join("dest"),
        );
        fs::write(&src, b"mine").unwrap();
        fs::write(&other, b"theirs").unwrap();
        let refused = || Err(io::Error::from_raw_os_error(1)); // EPERM, as sshfs says it
                                                               // Nothing there: a real failure.
        let err = settle_link(refused(), &src, &dest).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(1));
        // Someone else's file there: lost.
        fs::hard_link(&other, &dest).unwrap();
        assert!(!settle_link(refused(), &src, &dest).unwrap());
        // This link there, though reported as failed: won.
        fs::remove_file(&dest).unwrap();
        fs::hard_link(&src, &dest).unwrap();
        assert!(settle_link(refused(), &src, &dest).unwrap());
        // And the plain answers.
        let exists = Err(io::Error::from(io::ErrorKind::AlreadyExists));
        assert!(!settle_link(exists, &src, &dest).unwrap());
        assert!(settle_link(Ok(()), &src, &dest).unwrap());
    }

    #[test]
    fn a_temp_name_carries_a_random_nonce_beside_the_pid() {
        // Another host's process may have this pid: the nonce still differs.
        let name = temp_path(Path::new("/d/done/j.json"));
        let name = name.file_name().unwrap().to_str().unwrap();
        let parts: Vec<&str> = name.split('.').collect();
        // "", "j", "json", pid, nonce, n, "tmp"
        assert_eq!(parts.len(), 7, "{name}");
        assert_eq!(parts[3], std::process::id().to_string());
        assert_eq!(parts[4].len(), NONCE_HEX);
        assert!(parts[4].bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        assert_ne!(parts[4], "0".repeat(NONCE_HEX));
    }

    #[test]
    fn errors_name_the_path() {
        let err = read(Path::new("/nonexistent/jaros/file")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read /nonexistent/jaros/file: "));
    }
}
