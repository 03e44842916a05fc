//! Durable appends with group commit.
//!
//! An appender encodes its record and hashes most of it outside the lock,
//! then seals it under one mutex: gives it the next `seq` and queues it, not
//! into the file. Whoever finds room for a batch (a deferred appender: and
//! at least WRITE_BATCH_BYTES queued) takes the whole queue and, outside
//! the lock, writes its lines out into one buffer with their `prev` and
//! `hash` left as holes; then, after the batch taken before it, finishes
//! the chain (each record's hash needs the one before it) and fills the
//! holes; then, after that batch is in the file, writes its own with one
//! `write`. Concurrent appends share one write; sealing neither hashes
//! nor copies the line nor waits for the kernel, and a second batch's lines
//! are written out while the first is hashed or written.
//!
//! A durable append then waits until a sync covers it. Whoever finds no sync
//! in flight becomes the leader: it lets appenders on their way join its
//! group, makes sure the buffer is written, syncs outside the lock, and wakes
//! everyone its sync covered: concurrent appends share one `fdatasync`.
//!
//! A failed write or sync poisons the writer; it is never retried, because
//! after a failed fsync the kernel may have dropped the dirty pages and a
//! retry can lie.
//!
//! A job's record carries the lease epoch its node held on the job: the
//! epoch the appending thread last set with [`set_thread_epoch`]. A node's
//! fence sets it on the thread that is about to record, just after it found
//! the lease held, so the record and its check cannot disagree; a thread
//! that never sets one (a job run in the foreground, with no lease) writes
//! records without an epoch.

use super::read::read_log;
use super::record::{prepare_in_epoch, Body, Holes, Unsealed};
use super::segment::{self, SealHook, SegmentOptions};
use super::LogError;
use crate::canon::Digest;
use crate::fsx::{self, IoError};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a sync leader waits for appenders already on their way to join
/// its group. Bounded, so a lone appender pays at most this.
const GROUP_WAIT_MAX_US: u64 = 200;

/// Longest encoded record, in bytes; a larger one is a bug upstream (payloads
/// are capped well below this).
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of sealed records queued while no batch can be taken, past which
/// an appender waits for a batch to end instead of adding more (memory
/// stays bounded when the file system is slow). 1 MiB measured as fast as 4 MiB
/// (given a text pool as large as either needs) and faster than 256 KiB or
/// 64 MiB; the smaller cap keeps the pool of recycled texts small.
const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// What opening the log found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub records: u64,
    /// Bytes of a torn last line that were cut away.
    pub truncated_bytes: usize,
    /// The digest of the last `plan` record, if any.
    pub last_plan: Option<Digest>,
}

/// Bytes of sealed records past which a deferred append writes the queue;
/// below, it leaves them queued for the next durable append, sync or flush,
/// which write any amount, or for a later deferred append. Writing whatever
/// was queued meant a `write` for every 20–40 records under load; batching
/// took 6–9% less CPU a record and gave 7–10% more records a second in the
/// pipelined bench (A/B, 64 KiB against 0 and 16 KiB; 256 KiB no better).
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Batches taken from the queue and not yet in the file, at most: one
/// being written into the file and one having its lines written out,
/// waiting for its turn. With a single batch at a time, the thread writing
/// had to keep up with all the appenders on its share of the cores, and
/// they slept on a full queue while a core idled; a second batch lets one
/// of them write lines out meanwhile.
const MAX_BATCHES_IN_FLIGHT: u64 = 2;

/// Texts of written records kept for appenders to encode the next ones
/// into, at most: an appender takes one as it seals, a write gives its
/// batch's back. Without them the writing thread would free every text the
/// others allocated, and freeing across threads cost more than encoding.
/// The pool grows to the most records ever in flight at once (a queue that
/// fills while a write is slow); this bounds it, with
/// MAX_RECYCLED_CAPACITY, to 16 MiB (8 MiB at the usual 512 bytes a text).
const MAX_RECYCLED: usize = 16384;

/// A text's capacity past which it is freed, not recycled.
const MAX_RECYCLED_CAPACITY: usize = 1024;

thread_local! {
    /// The buffer this thread's next append encodes into.
    static TEXT_BUFFER: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
    /// The lease epoch this thread's job records are written under (0: none).
    static THREAD_EPOCH: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Sets the lease epoch the calling thread's next job records carry (0:
/// none). A node's fence calls it each time it finds the lease held.
pub fn set_thread_epoch(epoch: u64) {
    THREAD_EPOCH.set(epoch);
}

/// Held by a thread writing a batch while it is outside the lock: should
/// that thread panic, the writer is poisoned (the batch's records are lost
/// to the file) and no one waits for the batch any longer.
struct WriteInFlight<'a> {
    writer: &'a LogWriter,
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut inner = self.writer.lock();
            self.writer
                .poison(&mut inner, "a write panicked".to_string());
        }
    }
}

/// The memory a batch is written with, kept to reuse.
#[derive(Default)]
struct Buffers {
    /// An empty queue to swap with `Inner::pending`.
    queue: Vec<Queued>,
    /// The batch's lines, written out for the file.
    lines: Vec<u8>,
    /// The batch's texts, on their way back to `Inner::recycled`.
    returned: Vec<String>,
    /// Where the batch's lines lack their chain fields' values.
    holes: Vec<Holes>,
}

/// A record sealed and queued for a write. A cache line's multiple: the
/// records two cores seal one after the other share no line.
#[repr(C, align(64))]
struct Queued {
    record: Unsealed,
    seq: u64,
}

/// In declaration order (`repr(C)`), what every seal touches first: the
/// cache lines it takes from another core's appender are the fewer.
#[repr(C)]
struct Inner {
    /// The seq of the next record sealed.
    next_seq: u64,
    /// Bytes of `pending`'s texts.
    pending_bytes: usize,
    /// Sealed records not yet handed to a write, in seq order.
    pending: Vec<Queued>,
    /// Texts of written records, to encode the next ones into.
    recycled: Vec<String>,
    poisoned: Option<String>,
    /// The record a sync leader waits to see sealed before it syncs.
    group_end: u64,
    /// A sync leader is waiting on `joined` for its group (a notify costs a
    /// system call, so appenders notify only then).
    gathering: bool,
    /// Batches taken from `pending`, of those the ones hashed, and of
    /// those the ones ended: hashed, and written into the file, in the
    /// order taken, each after the ones before it.
    batches_taken: u64,
    batches_hashed: u64,
    batches_ended: u64,
    /// The hash, as hex, of the last record of the last batch hashed: the
    /// next batch's first `prev`.
    last_hex: [u8; 64],
    syncing: bool,
    /// The buffers of ended batches.
    buffers: Vec<Buffers>,
    /// Highest seq written to the file.
    written: u64,
    /// Highest seq known durable.
    durable: u64,
    /// Records the last sync covered.
    last_group: u64,
    /// The open segment, written only by the thread whose batch's turn it
    /// is; replaced when that thread seals it. A sync takes a handle
    /// under the lock: one on a segment sealed meanwhile syncs a file the
    /// seal already synced.
    file: Arc<File>,
    /// The seq the open segment starts at, and its length in bytes.
    open_first_seq: u64,
    open_bytes: u64,
    segment_bytes: u64,
    on_seal: Option<SealHook>,
}

impl Inner {
    /// The last record sealed.
    fn sealed(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether another batch may be taken: fewer than
    /// MAX_BATCHES_IN_FLIGHT are taken and not yet ended.
    fn room_for_a_batch(&self) -> bool {
        self.batches_taken - self.batches_ended < MAX_BATCHES_IN_FLIGHT
    }
}

/// The single appender of one node's log file.
pub struct LogWriter {
    path: PathBuf,
    inner: Mutex<Inner>,
    synced: Condvar,
    /// Wakes a sync leader waiting for its group: its last appender sealed.
    joined: Condvar,
    /// Wakes threads waiting for a batch write to end.
    wrote: Condvar,
    /// Wakes a batch waiting for the one before it to be hashed.
    hashed: Condvar,
    /// Durable appenders between entering `append` and sealing their line
    /// (deferred ones are not counted: they do not wait for a sync, and a
    /// shared counter costs every append a contended cache line).
    arriving: AtomicUsize,
}

impl LogWriter {
    /// Opens (or creates) the log at `path` (its open segment), takes an
    /// exclusive lock on it, cuts a torn last line, and verifies the whole
    /// chain across every segment: a bad record anywhere else refuses the
    /// open. Segments are sealed at [`segment::DEFAULT_SEGMENT_BYTES`]
    /// until [`set_segment_options`](Self::set_segment_options) says
    /// otherwise.
    pub fn open(path: &Path) -> Result<(LogWriter, OpenReport), LogError> {
        if let Some(dir) = path.parent() {
            fsx::create_dir_all(dir)?;
        }
        let file = open_locked(path)?;
        let log = read_log(path)?;
        let mut report = OpenReport {
            records: log.records.len() as u64,
            truncated_bytes: 0,
            last_plan: log.records.iter().rev().find_map(|r| match &r.body {
                Body::Plan { digest, .. } => Some(*digest),
                _ => None,
            }),
        };
        if log.torn_tail > 0 {
            file.set_len(log.valid_len)
                .and_then(|_| file.sync_all())
                .map_err(|e| IoError::new("cannot truncate torn tail of", path, e))?;
            report.truncated_bytes = log.torn_tail;
        }
        let (head_seq, head_hash) = log.head();
        let writer = LogWriter {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                next_seq: head_seq + 1,
                last_hex: head_hash.hex_bytes(),
                pending: Vec::new(),
                pending_bytes: 0,
                buffers: Vec::new(),
                recycled: Vec::new(),
                batches_taken: 0,
                batches_hashed: 0,
                batches_ended: 0,
                written: head_seq,
                durable: head_seq,
                last_group: 1,
                syncing: false,
                gathering: false,
                group_end: 0,
                poisoned: None,
                file: Arc::new(file),
                open_first_seq: log.open_first_seq,
                open_bytes: log.valid_len,
                segment_bytes: segment::DEFAULT_SEGMENT_BYTES,
                on_seal: None,
            }),
            synced: Condvar::new(),
            joined: Condvar::new(),
            wrote: Condvar::new(),
            hashed: Condvar::new(),
            arriving: AtomicUsize::new(0),
        };
        Ok((writer, report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the size at which the open segment is sealed (at least
    /// [`segment::MIN_SEGMENT_BYTES`]) and the hook called with each
    /// segment sealed (a node sets its manifest's `log.segment_bytes` and
    /// its checkpoint here). A log already past the size is sealed after
    /// its next write.
    pub fn set_segment_options(&self, options: SegmentOptions) {
        let mut inner = self.lock();
        inner.segment_bytes = options.segment_bytes.max(segment::MIN_SEGMENT_BYTES);
        inner.on_seal = options.on_seal;
    }

    /// The seq of the last record appended (its hash is known once it is
    /// written: read it from the file).
    pub fn last_seq(&self) -> u64 {
        self.lock().sealed()
    }

    /// The seq of the last record known durable (for tests that check a
    /// record is durable before its effect starts).
    pub fn durable_seq(&self) -> u64 {
        self.lock().durable
    }

    /// `parking_lot`'s mutex: with 16 appenders on 2 cores it left fewer
    /// idle moments than std's (5–9% more records a second, A/B). It has no
    /// poisoning, which is right here: a panic while holding it happens
    /// only between complete seals, and the state stays consistent.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    fn poisoned(&self, reason: &str) -> LogError {
        LogError::Poisoned {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Poisons the writer (the first reason stays) and wakes every waiter
    /// to see it.
    fn poison(&self, inner: &mut Inner, reason: String) {
        inner.poisoned.get_or_insert(reason);
        self.wrote.notify_all();
        self.synced.notify_all();
        self.hashed.notify_all();
    }

    /// Appends one record WITHOUT waiting for it to be durable: it becomes
    /// durable with the next [`append`](Self::append) or
    /// [`sync_through`](Self::sync_through) that returns. It may not be in
    /// the file yet when this returns: it is written once WRITE_BATCH_BYTES
    /// of records are queued, or by the next durable append, sync or
    /// [`flush`](Self::flush) (a node flushes at every heartbeat, and
    /// dropping the writer flushes). For records whose loss in a crash only
    /// means redoing work that has no effect yet: a job's acceptance, a
    /// model call, a rejection. A write that fails poisons the writer, and
    /// the next durable append or sync reports it. Returns the record's seq.
    pub fn append_deferred(&self, body: &Body) -> Result<u64, LogError> {
        let (inner, seq) = self.seal(body, false)?;
        drop(self.write_pending(inner, WRITE_BATCH_BYTES));
        Ok(seq)
    }

    /// Appends one record and returns its seq once it is durable.
    pub fn append(&self, body: &Body) -> Result<u64, LogError> {
        let (inner, seq) = self.seal(body, true)?;
        self.durable_through(inner, seq)?;
        Ok(seq)
    }

    /// Returns once every record up to `seq` is durable: records appended
    /// with [`append_deferred`](Self::append_deferred) become durable in one
    /// group sync with whatever else is waiting.
    pub fn sync_through(&self, seq: u64) -> Result<(), LogError> {
        self.durable_through(self.lock(), seq)
    }

    /// Returns once every record appended so far is in the file (not
    /// necessarily durable): for a reader of the file in this process.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        let target = inner.sealed();
        inner = self.written_through(inner, target);
        match &inner.poisoned {
            Some(reason) if inner.written < target => Err(self.poisoned(reason)),
            _ => Ok(()),
        }
    }

    fn durable_through(&self, inner: MutexGuard<'_, Inner>, seq: u64) -> Result<(), LogError> {
        let mut inner = inner;
        loop {
            if inner.durable >= seq.min(inner.sealed()) {
                return Ok(());
            }
            if let Some(reason) = &inner.poisoned {
                return Err(self.poisoned(reason));
            }
            if inner.syncing {
                self.synced.wait(&mut inner);
                continue;
            }
            // Lead a sync. Appenders already on their way join the group
            // first, and when the last group had company, so do as many as
            // it had (bounded by GROUP_WAIT_MAX_US): one sync covers them all,
            // while a lone appender never waits.
            inner.syncing = true;
            inner.group_end = inner.durable + inner.last_group.max(1);
            inner = self.wait_for_group(inner);
            let sealed = inner.sealed();
            inner = self.written_through(inner, sealed);
            if inner.written < sealed {
                // Poisoned while writing: nothing more becomes durable.
                inner.syncing = false;
                self.synced.notify_all();
                continue;
            }
            // Covers what was written meanwhile too.
            let target = inner.written;
            let file = inner.file.clone();
            drop(inner);
            let result = file.sync_data();
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) => {
                    inner.last_group = target - inner.durable;
                    inner.durable = inner.durable.max(target);
                }
                Err(e) => self.poison(&mut inner, format!("fdatasync failed: {e}")),
            }
            self.synced.notify_all();
        }
    }

    /// Lets appenders join a sync about to start, for at most
    /// GROUP_WAIT_MAX_US: until none is encoding and the record `group_end` is
    /// sealed.
    #[expect(
        clippy::disallowed_methods,
        reason = "timing of a sync only; no record's content depends on it"
    )]
    fn wait_for_group<'a>(&'a self, inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        // Sleeping, not spinning: on a machine with fewer cores than
        // appenders, a spinning leader takes the CPU they need to join.
        let deadline = Instant::now() + Duration::from_micros(GROUP_WAIT_MAX_US);
        let mut inner = inner;
        loop {
            let now = Instant::now();
            if now >= deadline
                || (self.arriving.load(Ordering::SeqCst) == 0 && inner.sealed() >= inner.group_end)
            {
                inner.gathering = false;
                return inner;
            }
            inner.gathering = true;
            self.joined.wait_for(&mut inner, deadline - now);
        }
    }

    /// Returns once the file holds every record up to `target`, or the
    /// writer is poisoned: writes the queue itself when there is room for
    /// another batch, else waits for one to end.
    fn written_through<'a>(
        &'a self,
        inner: MutexGuard<'a, Inner>,
        target: u64,
    ) -> MutexGuard<'a, Inner> {
        let mut inner = inner;
        while inner.written < target && inner.poisoned.is_none() {
            if !inner.pending.is_empty() && inner.room_for_a_batch() {
                inner = self.write_batch(inner);
            } else {
                self.wrote.wait(&mut inner);
            }
        }
        inner
    }

    /// Writes the sealed records as batches while they are `min_bytes` or
    /// more and there is room for another batch in flight; without room,
    /// leaves them to a batch to come (when they are past
    /// MAX_PENDING_BYTES, waits for room first).
    fn write_pending<'a>(
        &'a self,
        inner: MutexGuard<'a, Inner>,
        min_bytes: usize,
    ) -> MutexGuard<'a, Inner> {
        let mut inner = inner;
        while !inner.pending.is_empty()
            && inner.pending_bytes >= min_bytes
            && inner.poisoned.is_none()
        {
            if inner.room_for_a_batch() {
                inner = self.write_batch(inner);
            } else if inner.pending_bytes > MAX_PENDING_BYTES {
                self.wrote.wait(&mut inner);
            } else {
                break;
            }
        }
        inner
    }

    /// Takes the queue as a batch and, outside the lock, writes its lines
    /// out with holes for their chain fields; fills them in once the
    /// batches taken before it are hashed, and writes the lines into the
    /// file once those have ended (so the file stays in seq order).
    fn write_batch<'a>(&'a self, inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let mut inner = inner;
        let ticket = inner.batches_taken;
        inner.batches_taken += 1;
        let Buffers {
            queue,
            mut lines,
            mut returned,
            mut holes,
        } = inner.buffers.pop().unwrap_or_default();
        let mut batch = std::mem::replace(&mut inner.pending, queue);
        inner.pending_bytes = 0;
        let through = inner.sealed();
        drop(inner);
        let unlocked = WriteInFlight { writer: self };
        // What the last batch returned past the pool's room.
        returned.clear();
        for Queued { record, seq } in batch.drain(..) {
            let (at, buffer) = record.write_with_holes(seq, &mut lines);
            lines.push(b'\n');
            holes.push(at);
            if buffer.capacity() <= MAX_RECYCLED_CAPACITY {
                returned.push(buffer);
            }
        }
        drop(unlocked);
        inner = self.lock();
        while inner.batches_hashed < ticket && inner.poisoned.is_none() {
            self.hashed.wait(&mut inner);
        }
        // Poisoned meanwhile: the lines stay out of the file.
        let mut batch_head = inner.last_hex;
        if inner.poisoned.is_none() {
            let mut prev = inner.last_hex;
            drop(inner);
            let unlocked = WriteInFlight { writer: self };
            for at in holes.drain(..) {
                prev = at.fill(&prev, &mut lines);
            }
            drop(unlocked);
            batch_head = prev;
            inner = self.lock();
            inner.last_hex = prev;
            inner.batches_hashed += 1;
            self.hashed.notify_all();
            while inner.batches_ended < ticket && inner.poisoned.is_none() {
                self.wrote.wait(&mut inner);
            }
        }
        if inner.poisoned.is_none() {
            let file = inner.file.clone();
            drop(inner);
            let unlocked = WriteInFlight { writer: self };
            let result = (&*file).write_all(&lines);
            drop(unlocked);
            drop(file);
            inner = self.lock();
            match result {
                Ok(()) => {
                    inner.written = through;
                    inner.open_bytes += lines.len() as u64;
                }
                // A partial line may be on disk: a torn tail for the next open.
                Err(e) => self.poison(&mut inner, format!("write failed: {e}")),
            }
            // Still this batch's turn: no other writes the file while it
            // is sealed and replaced.
            if inner.poisoned.is_none() && inner.open_bytes >= inner.segment_bytes {
                inner = self.seal_segment(inner, through, batch_head);
            }
        }
        inner.batches_ended += 1;
        lines.clear();
        holes.clear();
        let room = MAX_RECYCLED.saturating_sub(inner.recycled.len());
        inner
            .recycled
            .extend(returned.drain(..room.min(returned.len())));
        inner.buffers.push(Buffers {
            queue: batch,
            lines,
            returned,
            holes,
        });
        self.wrote.notify_all();
        inner
    }

    /// Seals the open segment, which ends with record `last_seq` (hash
    /// `head_hex`), and opens the next; calls the seal hook. Called by
    /// the thread whose batch's turn it is, so nothing else writes the
    /// file meanwhile; a failure poisons the writer.
    fn seal_segment<'a>(
        &'a self,
        inner: MutexGuard<'a, Inner>,
        last_seq: u64,
        head_hex: [u8; 64],
    ) -> MutexGuard<'a, Inner> {
        let mut inner = inner;
        let file = inner.file.clone();
        let first_seq = inner.open_first_seq;
        let hook = inner.on_seal.clone();
        drop(inner);
        let unlocked = WriteInFlight { writer: self };
        let head = std::str::from_utf8(&head_hex)
            .ok()
            .and_then(Digest::from_hex)
            .unwrap_or(Digest::ZERO);
        let sealed = segment::seal(&self.path, &file, first_seq, last_seq, head)
            .map_err(LogError::from)
            .and_then(|sealed| Ok((sealed, open_locked(&self.path)?)));
        drop(unlocked);
        inner = self.lock();
        match sealed {
            Ok((sealed, next)) => {
                inner.file = Arc::new(next);
                inner.open_first_seq = last_seq + 1;
                inner.open_bytes = 0;
                // The seal synced every record of the segment.
                inner.durable = inner.durable.max(last_seq);
                self.synced.notify_all();
                if let Some(hook) = hook {
                    drop(inner);
                    hook(&sealed);
                    inner = self.lock();
                }
            }
            Err(e) => self.poison(&mut inner, format!("sealing a segment failed: {e}")),
        }
        inner
    }

    /// Seals one record into the queue, in file order, under the lock.
    /// Inlined: returning the guard and the result through memory stalled
    /// every append while it held the lock (profiled).
    #[inline(always)]
    fn seal(&self, body: &Body, durable: bool) -> Result<(MutexGuard<'_, Inner>, u64), LogError> {
        // Encode and hash outside the lock; inside, only take the next seq
        // and queue. A durable append is counted from before encoding: a
        // sync leader waits for appenders that are encoding too, so they
        // join its group.
        if durable {
            self.arriving.fetch_add(1, Ordering::SeqCst);
        }
        let unsealed = match prepare_in_epoch(body, THREAD_EPOCH.get(), TEXT_BUFFER.take()) {
            Ok(u) => u,
            Err(e) => {
                if durable {
                    self.arriving.fetch_sub(1, Ordering::SeqCst);
                }
                return Err(e.into());
            }
        };
        assert!(
            unsealed.encoded_len() < MAX_RECORD_BYTES,
            "record of {} bytes",
            unsealed.encoded_len()
        );
        let mut inner = self.lock();
        let still_arriving = if durable {
            self.arriving.fetch_sub(1, Ordering::SeqCst) - 1
        } else {
            self.arriving.load(Ordering::SeqCst)
        };
        if let Some(reason) = &inner.poisoned {
            return Err(self.poisoned(reason));
        }
        let seq = inner.next_seq;
        inner.pending_bytes += unsealed.encoded_len();
        inner.pending.push(Queued {
            record: unsealed,
            seq,
        });
        if let Some(buffer) = inner.recycled.pop() {
            TEXT_BUFFER.set(buffer);
        }
        // Seq advances by one, in queue order: the order of the file and
        // of the chain, which its batch finishes.
        inner.next_seq = seq + 1;
        // Wake a waiting leader only when its group is complete: woken per
        // record, it would take a context switch from every appender.
        if inner.gathering && still_arriving == 0 && seq >= inner.group_end {
            self.joined.notify_one();
        }
        Ok((inner, seq))
    }
}

/// Opens the open segment at `path` for appending (creating it) and takes
/// the exclusive lock that keeps a second writer out.
fn open_locked(path: &Path) -> Result<File, LogError> {
    let file = fsx::open_append(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Busy {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(IoError::new("cannot lock", path, e).into()),
    }
}

impl Drop for LogWriter {
    /// Writes what deferred appends left queued (not a sync: they were
    /// never promised durable).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{AgentName, JobId};
    use crate::log::read_log;
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::Arc;

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

    /// A new log in a new directory: the directory (kept alive), the log's
    /// path and its writer.
    fn new_log() -> (tempfile::TempDir, std::path::PathBuf, LogWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (writer, _) = LogWriter::open(&path).unwrap();
        (dir, path, writer)
    }

    /// Runs `each(writer, thread number)` on 16 threads at once; their results.
    fn on_16_threads<T: Send + 'static>(
        writer: &Arc<LogWriter>,
        each: fn(&LogWriter, u32) -> T,
    ) -> Vec<T> {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || each(&w, t))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn appends_from_many_threads_keep_one_intact_chain() {
        let (_dir, path, writer) = new_log();
        let writer = Arc::new(writer);
        let seqs: Vec<u64> = on_16_threads(&writer, |w, t| {
            (0..50)
                .map(|i| w.append(&body(t * 100 + i)).unwrap())
                .collect::<Vec<_>>()
        })
        .concat();
        let unique: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), 800, "duplicate seq handed out");
        let log = read_log(&path).unwrap();
        assert_eq!(log.records.len(), 800);
        assert_eq!(log.head().0, 800);
    }

    #[test]
    fn deferred_appends_from_many_threads_land_in_seq_order_and_flush_waits_for_them() {
        let (_dir, path, writer) = new_log();
        let writer = Arc::new(writer);
        on_16_threads(&writer, |w, t| {
            for i in 0..500 {
                w.append_deferred(&body(t * 1000 + i)).unwrap();
            }
        });
        writer.flush().unwrap();
        assert_eq!(writer.lock().durable, 0, "flush is not a sync");
        let log = read_log(&path).unwrap();
        assert_eq!(log.records.len(), 8000);
        let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=8000).collect::<Vec<_>>());
        assert!(crate::log::verify_chain(&path, None).error.is_none());
    }

    #[test]
    fn recycled_texts_carry_nothing_over_and_the_pool_stays_bounded() {
        // Texts small, too large to recycle, and tiny, from many threads:
        // each record in the file is exactly the body appended with its seq.
        fn sized(n: u32) -> Body {
            let mut body = body(n);
            if let Body::Job { input, .. } = &mut body {
                let pad = ["".to_string(), "x".repeat(3000), "y".into()][n as usize % 3].clone();
                *input = json!({"n": n, "pad": pad});
            }
            body
        }
        let (_dir, path, writer) = new_log();
        let writer = Arc::new(writer);
        let appended: Vec<(u64, u32)> = on_16_threads(&writer, |w, t| {
            (0..300)
                .map(|i| {
                    (
                        w.append_deferred(&sized(t * 1000 + i)).unwrap(),
                        t * 1000 + i,
                    )
                })
                .collect::<Vec<_>>()
        })
        .concat();
        writer.flush().unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.records.len(), appended.len());
        for (seq, n) in appended {
            assert_eq!(log.records[seq as usize - 1].body, sized(n), "record {seq}");
        }
        let inner = writer.lock();
        assert!(!inner.recycled.is_empty(), "written texts come back");
        assert!(inner.recycled.len() <= MAX_RECYCLED);
        assert!(inner
            .recycled
            .iter()
            .all(|t| t.capacity() <= MAX_RECYCLED_CAPACITY));
    }

    #[test]
    fn a_panic_while_writing_poisons_the_writer_instead_of_leaving_it_hung() {
        let (_dir, path, w) = new_log();
        w.append(&body(1)).unwrap();
        // A record queued while the batches in flight leave no room: a
        // flush waits for one of them to end.
        w.lock().batches_taken = MAX_BATCHES_IN_FLIGHT;
        w.append_deferred(&body(2)).unwrap();
        let flushed = std::thread::scope(|s| {
            let flushing = s.spawn(|| w.flush());
            // One of them panics: the flush is woken, with an error.
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _unlocked = WriteInFlight { writer: &w };
                panic!("a bug while writing lines out");
            }));
            assert!(panicked.is_err());
            flushing.join().unwrap()
        });
        let err = flushed.unwrap_err().to_string();
        assert!(err.contains("a write panicked"), "{err}");
        assert!(w.append_deferred(&body(3)).is_err());
        assert!(w.append(&body(4)).is_err());
        assert_eq!(read_log(&path).unwrap().records.len(), 1);
    }

    /// Deferred appends of `body(from..)` until the queue holds at least
    /// WRITE_BATCH_BYTES; the last one's seq.
    fn defer_a_batch(w: &LogWriter, from: u32) -> u64 {
        let mut n = from;
        loop {
            let seq = w.append_deferred(&body(n)).unwrap();
            let inner = w.lock();
            if inner.pending.is_empty() || inner.pending_bytes >= WRITE_BATCH_BYTES {
                return seq;
            }
            n += 1;
        }
    }

    #[test]
    fn deferred_records_are_written_in_batches_and_flush_sync_or_drop_write_the_rest() {
        let (_dir, path, w) = new_log();
        w.append_deferred(&body(1)).unwrap();
        let records = || read_log(&path).unwrap().records.len();
        assert_eq!(records(), 0, "one small record waits for company");
        w.flush().unwrap();
        assert_eq!(records(), 1);
        // Enough records for a batch: the append that fills it writes them.
        let last = defer_a_batch(&w, 2);
        assert_eq!(records() as u64, last, "a full batch is written");
        assert!(w.lock().pending.is_empty());
        // A durable append writes whatever is queued before it.
        w.append_deferred(&body(100_000)).unwrap();
        let durable = w.append(&body(100_001)).unwrap();
        assert_eq!(records() as u64, durable);
        // Dropping the writer writes what is still queued.
        let queued = w.append_deferred(&body(100_002)).unwrap();
        drop(w);
        let log = read_log(&path).unwrap();
        assert_eq!(log.head().0, queued);
        assert_eq!(log.records.last().unwrap().body, body(100_002));
    }

    #[test]
    fn a_batch_is_hashed_and_goes_into_the_file_only_after_the_batches_taken_before_it() {
        let (_dir, path, w) = new_log();
        w.append(&body(0)).unwrap();
        // As if another thread's batch were in flight, its last record the
        // one in the file.
        w.lock().batches_taken += 1;
        // What is seen is asserted only once the batch is let go: a failed
        // assertion must not leave its thread waiting forever.
        let (hashed_early, hashed, in_file, finished, last) = std::thread::scope(|s| {
            let second = s.spawn(|| defer_a_batch(&w, 1));
            eventually(|| w.lock().batches_taken == 3);
            // Time to write its lines out and, were it not waiting, to
            // hash them and write the file.
            std::thread::sleep(Duration::from_millis(50));
            let hashed_early = w.lock().batches_hashed;
            w.lock().batches_hashed = 2; // the first batch is hashed
            w.hashed.notify_all();
            let hashed = eventually(|| w.lock().batches_hashed == 3);
            std::thread::sleep(Duration::from_millis(50));
            let in_file = read_log(&path).unwrap().records.len();
            let finished = second.is_finished();
            w.lock().batches_ended = 2; // the first batch ends
            w.wrote.notify_all();
            (
                hashed_early,
                hashed,
                in_file,
                finished,
                second.join().unwrap(),
            )
        });
        assert_eq!(hashed_early, 1, "it waits to hash");
        assert!(hashed, "then it hashes");
        assert_eq!(in_file, 1, "and waits to write");
        assert!(!finished);
        // One chain through the record before the batch and all of it.
        assert_eq!(read_log(&path).unwrap().head().0, last);
    }

    /// Whether `done` holds within some ten seconds (no clock read here:
    /// ten thousand naps of a millisecond or more).
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        (0..10_000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            done()
        })
    }

    #[test]
    fn with_no_room_for_another_batch_a_full_queue_is_left_to_a_batch_to_come() {
        let (_dir, path, w) = new_log();
        w.lock().batches_taken = MAX_BATCHES_IN_FLIGHT; // as if in flight
        let last = defer_a_batch(&w, 1);
        assert_eq!(
            read_log(&path).unwrap().records.len(),
            0,
            "a full batch, left to the batches in flight"
        );
        assert!(w.lock().pending_bytes >= WRITE_BATCH_BYTES);
        // They end without taking it: flush does.
        {
            let mut inner = w.lock();
            inner.batches_hashed = MAX_BATCHES_IN_FLIGHT;
            inner.batches_ended = MAX_BATCHES_IN_FLIGHT;
        }
        w.flush().unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.head().0, last);
        w.sync_through(last).unwrap();
        assert_eq!(w.lock().durable, last);
    }

    #[test]
    fn sync_through_makes_deferred_records_durable_and_never_waits_for_unwritten_ones() {
        let (_dir, _, w) = new_log();
        w.append_deferred(&body(1)).unwrap();
        let last = w.append_deferred(&body(2)).unwrap();
        assert_eq!(w.lock().durable, 0);
        w.sync_through(last).unwrap();
        assert_eq!(w.lock().durable, last);
        w.append_deferred(&body(3)).unwrap();
        w.sync_through(last + 10).unwrap(); // past the head: covers what there is
        assert_eq!(w.lock().durable, last + 1);
    }

    #[test]
    fn a_second_writer_on_the_same_log_is_refused() {
        let (_dir, path, _w) = new_log();
        assert!(matches!(LogWriter::open(&path), Err(LogError::Busy { .. })));
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.jsonl");
        {
            let (w, _) = LogWriter::open(&path).unwrap();
            w.append(&body(1)).unwrap();
        }
        let (w, report) = LogWriter::open(&path).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(w.append(&body(2)).unwrap(), 2);
        assert_eq!(read_log(&path).unwrap().records.len(), 2);
    }
}
