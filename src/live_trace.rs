//! Live export of traces: a node whose manifest names an OTLP/HTTP
//! collector (`otlp:`) sends each job's spans there once the job ends.
//!
//! Owns the exporter thread, its bounded queue and its counters. The spans
//! are [`crate::trace`]'s, derived from the job's records with the same ids
//! and times, so a later `jaros trace --otlp` sends the very same spans. It
//! never writes to the data dir and never makes a job wait:
//!
//! - The node hands an ended job's id over with [`job_ended`], a `try_send`
//!   into a queue of [`MAX_QUEUED_JOBS`]: when it is full the job's spans
//!   are dropped and the job counted (`dropped_jobs`).
//! - The exporter thread reads the node's own log as it grows (each line
//!   once) and keeps the records of jobs not yet exported. A job whose
//!   records are not all in this log since the exporter started (resumed,
//!   taken over) is read from every log instead, as `jaros trace` reads it.
//! - Spans are batched (up to [`crate::trace::MAX_SPANS_PER_REQUEST`], or
//!   what came within [`BATCH_WAIT_MS`]) and sent with a short time-out
//!   ([`SEND_TIMEOUT_MS`]); a request that fails drops its spans, counted
//!   (`dropped_spans`). Nothing is retried: a later `jaros trace` exports
//!   anything missed.
//!
//! The counters show in the node's status file (`export`) and in
//! `jaros metrics`.

use crate::datadir::DataDir;
use crate::decision::JobId;
use crate::log::{Body, Record};
use crate::trace::{self, Span};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Ended jobs waiting for the exporter; past it, a job's spans are dropped.
pub const MAX_QUEUED_JOBS: usize = 4096;

/// Longest a span waits for more to fill its batch.
pub const BATCH_WAIT_MS: u64 = 200;

/// How long one live request may take: short, so a slow collector costs
/// drops, not a backlog.
pub const SEND_TIMEOUT_MS: u64 = 2_000;

/// Jobs whose records are kept while they run: past it the oldest are
/// forgotten (and read from the logs when they end).
const MAX_PENDING_JOBS: usize = 10_000;

/// Parent links remembered for finding a trace's root.
const MAX_KNOWN_PARENTS: usize = 100_000;

/// What the exporter has done since the node started.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ExportCounts {
    /// The collector's traces endpoint.
    pub endpoint: String,
    /// Spans the collector accepted.
    pub exported_spans: u64,
    /// Spans of requests that failed or timed out.
    pub dropped_spans: u64,
    /// Ended jobs not exported because the queue was full.
    pub dropped_jobs: u64,
}

#[derive(Default)]
struct Counters {
    exported_spans: AtomicU64,
    dropped_spans: AtomicU64,
    dropped_jobs: AtomicU64,
}

enum Msg {
    Ended(JobId),
    /// Send what is batched now; answered when done.
    Flush(SyncSender<()>),
}

struct Live {
    tx: SyncSender<Msg>,
    endpoint: String,
    counters: Arc<Counters>,
}

/// The process's exporter, once a node has started one.
static LIVE: OnceLock<Live> = OnceLock::new();

/// Starts exporting node `node`'s jobs to the collector at `url` (a base
/// URL; `/v1/traces` is appended as for `jaros trace`). Once a process.
pub fn start(data: &DataDir, node: &str, url: &str) -> Result<(), String> {
    let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_JOBS);
    let counters = Arc::new(Counters::default());
    let endpoint = trace::endpoint(url);
    let live = Live {
        tx,
        endpoint: endpoint.clone(),
        counters: counters.clone(),
    };
    if LIVE.set(live).is_err() {
        return Err("live trace export is already running in this process".into());
    }
    let log = data.log_path(node);
    // From the log's end now: earlier jobs are `jaros trace`'s to export.
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut exporter = Exporter {
        data: data.clone(),
        tail: Tail {
            path: log,
            offset,
            pending: HashMap::new(),
            order: VecDeque::new(),
        },
        parents: HashMap::new(),
        endpoint,
        counters,
    };
    std::thread::Builder::new()
        .name("jaros-otlp".into())
        .spawn(move || exporter.run(&rx))
        .map(|_| ())
        .map_err(|e| format!("cannot start the trace exporter thread: {e}"))
}

/// Hands an ended job to the exporter, without waiting: when its queue is
/// full the job is counted as dropped. Nothing when no exporter runs.
pub fn job_ended(job: &JobId) {
    let Some(live) = LIVE.get() else {
        return;
    };
    match live.tx.try_send(Msg::Ended(job.clone())) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            live.counters.dropped_jobs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends what the exporter holds, waiting at most `wait_ms`: for a node
/// that stops.
pub fn flush(wait_ms: u64) {
    let Some(live) = LIVE.get() else {
        return;
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let wait = Duration::from_millis(wait_ms);
    // Blocking is fine here: the node has stopped running jobs.
    if live.tx.send(Msg::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(wait);
    }
}

/// The exporter's counters, when one runs in this process.
pub fn counts() -> Option<ExportCounts> {
    let live = LIVE.get()?;
    let c = &live.counters;
    Some(ExportCounts {
        endpoint: live.endpoint.clone(),
        exported_spans: c.exported_spans.load(Ordering::Relaxed),
        dropped_spans: c.dropped_spans.load(Ordering::Relaxed),
        dropped_jobs: c.dropped_jobs.load(Ordering::Relaxed),
    })
}

/// The node's log as it grows: records by job, for jobs not yet exported.
struct Tail {
    path: PathBuf,
    offset: u64,
    pending: HashMap<JobId, Vec<Record>>,
    /// Jobs in `pending`, oldest first, for forgetting past the bound.
    order: VecDeque<JobId>,
}

impl Tail {
    /// Reads the whole lines appended since the last call; calls `parent`
    /// with each job record's (job, parent).
    fn read_new(&mut self, mut parent: impl FnMut(&JobId, Option<&JobId>)) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return;
        }
        // Only whole lines: a line being written is read next time.
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        self.offset += end as u64 + 1;
        for line in bytes[..end].split(|b| *b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Ok(record) = crate::log::record::parse_line(line) else {
                continue;
            };
            let Some((job, _)) = record.body.job_at() else {
                continue;
            };
            let job = job.clone();
            if let Body::Job { parent: p, .. } = &record.body {
                parent(&job, p.as_ref());
            }
            if !self.pending.contains_key(&job) {
                self.order.push_back(job.clone());
                if self.order.len() > MAX_PENDING_JOBS {
                    if let Some(old) = self.order.pop_front() {
                        self.pending.remove(&old);
                    }
                }
            }
            self.pending.entry(job).or_default().push(record);
        }
    }

    /// Job `job`'s history when this log holds all of it, read once: from
    /// its job record to its end, under one lease epoch.
    fn take(&mut self, job: &JobId) -> Option<Vec<Body>> {
        let records = self.pending.remove(job)?;
        self.order.retain(|j| j != job);
        let whole = matches!(records.first().map(|r| &r.body), Some(Body::Job { .. }))
            && matches!(records.last().map(|r| &r.body), Some(Body::End { .. }))
            && records.iter().all(|r| r.epoch == records[0].epoch);
        whole.then(|| records.into_iter().map(|r| r.body).collect())
    }
}

struct Exporter {
    data: DataDir,
    tail: Tail,
    /// Each job's parent (`None`: a root), as far as known.
    parents: HashMap<JobId, Option<JobId>>,
    endpoint: String,
    counters: Arc<Counters>,
}

impl Exporter {
    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut batch: Vec<Span> = Vec::new();
        let mut since: Option<Instant> = None;
        loop {
            let wait = since.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(BATCH_WAIT_MS).saturating_sub(t.elapsed())
            });
            match rx.recv_timeout(wait) {
                Ok(Msg::Ended(job)) => {
                    self.read_log();
                    self.spans_of(&job, &mut batch);
                    since.get_or_insert_with(Instant::now);
                }
                Ok(Msg::Flush(done)) => {
                    self.read_log();
                    self.send(&mut batch);
                    since = None;
                    let _ = done.send(());
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.send(&mut batch);
                    return;
                }
            }
            let due = since.is_some_and(|t| t.elapsed() >= Duration::from_millis(BATCH_WAIT_MS));
            if batch.len() >= trace::MAX_SPANS_PER_REQUEST || (due && !batch.is_empty()) {
                self.send(&mut batch);
                since = None;
            } else if batch.is_empty() {
                since = None;
            }
        }
    }

    fn read_log(&mut self) {
        let parents = &mut self.parents;
        self.tail.read_new(|job, parent| {
            if parents.len() >= MAX_KNOWN_PARENTS {
                parents.clear();
            }
            parents.insert(job.clone(), parent.cloned());
        });
    }

    /// Appends job `job`'s spans, derived as `jaros trace` derives them.
    fn spans_of(&mut self, job: &JobId, out: &mut Vec<Span>) {
        let history = match self.tail.take(job) {
            Some(h) => h,
            // Resumed or taken over: its records are in more than one log.
            None => crate::replay::job_history(&self.data, job).unwrap_or_default(),
        };
        let root = self.root_of(job, &history);
        trace::job_spans(job, &root, &history, out);
    }

    /// The first job of `job`'s hand-off tree, found by parent links as
    /// [`trace::spans`] finds it (a parent whose records are nowhere is the
    /// root).
    fn root_of(&mut self, job: &JobId, history: &[Body]) -> JobId {
        if let Some(Body::Job { parent, .. }) = history.first() {
            self.parents.insert(job.clone(), parent.clone());
        }
        let mut at = job.clone();
        for _ in 0..trace::MAX_ROOT_HOPS {
            let parent = match self.parents.get(&at) {
                Some(p) => p.clone(),
                None => {
                    let h = crate::replay::job_history(&self.data, &at).unwrap_or_default();
                    let p = match h.first() {
                        Some(Body::Job { parent, .. }) => parent.clone(),
                        _ => None,
                    };
                    self.parents.insert(at.clone(), p.clone());
                    p
                }
            };
            match parent {
                Some(p) => at = p,
                None => break,
            }
        }
        at
    }

    /// Sends the batch, in requests as [`trace::batches`] cuts it; counts
    /// what the collector took and what it did not.
    fn send(&mut self, batch: &mut Vec<Span>) {
        for (n, body) in trace::batches(batch) {
            let n = n as u64;
            match trace::send_within(&self.endpoint, &[body], SEND_TIMEOUT_MS) {
                Ok(()) => self.counters.exported_spans.fetch_add(n, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!("trace export: {n} spans dropped: {e}");
                    self.counters.dropped_spans.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
        batch.clear();
    }
}
