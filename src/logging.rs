//! Diagnostics: what the node and every command say on stderr about what
//! they are doing, through `tracing`. This module owns the one subscriber
//! (set up once by the CLI), its filter, its two formats and the writer
//! behind them. It does not own a command's answer: results go to stdout,
//! and the error a command ends with is printed by the CLI as before.
//!
//! - Filter: `JAROS_LOG`, else `RUST_LOG`, in `tracing`'s directive syntax
//!   (`warn`, `jaros::node=debug`); `info` when neither is set.
//! - Format: `--log-format text|json` (or `JAROS_LOG_FORMAT`); by default
//!   `text` when stderr is a terminal and `json` otherwise. `text` is the
//!   lines Jaros has always printed (`jaros: node n1: r1 failed: …`), for
//!   people. `json` is one object a line for a log shipper, with
//!   `timestamp`, `level`, `target`, `fields` (the message and the event's
//!   own fields) and, inside a job, `span` and `spans` (job id, agent, node).
//!   In `text`, a message's further lines are indented and control
//!   characters escaped, so every line that starts with `jaros: ` is an
//!   event of its own.
//! - Writer: lines go through a bounded queue to one writer thread, so a
//!   job never waits for stderr. When stderr is read too slowly and the
//!   queue is full, a line is dropped and counted ([`dropped_lines`]); the
//!   writer says how many once it catches up. [`flush`] waits for the queue
//!   to drain (the CLI calls it before exit, a fault point before it stops
//!   the process).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SendError, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Most lines waiting for stderr; past it, lines are dropped and counted.
pub const MAX_QUEUED_LINES: usize = 4096;

/// Longest [`flush`] waits for the writer to drain the queue.
const FLUSH_WAIT_MS: u64 = 2_000;

/// The filter when neither `JAROS_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The plain lines Jaros has always printed, one event a line.
    Text,
    /// One JSON object a line: timestamp, level, target, fields, span.
    Json,
}

impl LogFormat {
    /// The format when none is asked for: text for a person at a terminal,
    /// JSON for whatever else reads stderr (a file, a pipe, a journal, a
    /// log shipper).
    pub fn for_stderr() -> LogFormat {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// Lines dropped because stderr was read too slowly.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The writer thread's queue, once logging is set up.
static QUEUE: OnceLock<Lines> = OnceLock::new();

/// Lines dropped so far because the queue to stderr was full.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Line {
    Text(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// Sets up the process's subscriber: the filter from `JAROS_LOG` or
/// `RUST_LOG`, lines in `format`, written by a thread of their own. Called
/// once, by the CLI; a second call changes nothing.
pub fn init(format: LogFormat) {
    let (filter, bad) = filter();
    let Some(lines) = queue() else {
        return;
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(lines);
    let set = match format {
        LogFormat::Text => builder.event_format(Plain).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    if set.is_ok() {
        if let Some(why) = bad {
            tracing::warn!("{why}");
        }
    }
}

/// The filter from `JAROS_LOG`, else `RUST_LOG`, else [`DEFAULT_FILTER`];
/// with what was wrong with a variable that did not parse.
fn filter() -> (EnvFilter, Option<String>) {
    for var in ["JAROS_LOG", "RUST_LOG"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        return match EnvFilter::try_new(&value) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "{var}={value:?} is not a log filter ({e}); logging at {DEFAULT_FILTER}. \
                     Give a level (warn) or target=level pairs (jaros::node=debug)"
                )),
            ),
        };
    }
    (EnvFilter::new(DEFAULT_FILTER), None)
}

/// Starts the writer thread; `None` when no thread can start (then there
/// is no subscriber and events go nowhere, as before `init`).
fn queue() -> Option<Lines> {
    if let Some(lines) = QUEUE.get() {
        return Some(lines.clone());
    }
    let (lines, rx) = Lines::new(MAX_QUEUED_LINES);
    let queued = Arc::clone(&lines.queued);
    std::thread::Builder::new()
        .name("jaros-log".into())
        .spawn(move || write_lines(&rx, &queued))
        .ok()?;
    Some(QUEUE.get_or_init(|| lines).clone())
}

/// The writer thread: each line to stderr as it comes, and a note of the
/// lines dropped since the last one written.
fn write_lines(rx: &Receiver<Line>, queued: &AtomicUsize) {
    let mut told = 0;
    for line in rx {
        if matches!(line, Line::Text(_)) {
            queued.fetch_sub(1, Ordering::Relaxed);
        }
        let mut err = std::io::stderr().lock();
        let dropped = dropped_lines();
        if dropped > told {
            let _ = writeln!(
                err,
                "jaros: {} log lines dropped: stderr was not read fast enough",
                dropped - told
            );
            told = dropped;
        }
        match line {
            // A closed stderr loses the line; nothing else can be done.
            Line::Text(bytes) => drop(err.write_all(&bytes)),
            Line::Flush(done) => drop(done.send(())),
        }
    }
}

/// Waits (a bounded time) until every line logged so far is written.
pub fn flush() {
    let Some(lines) = QUEUE.get() else {
        return;
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let wait = Duration::from_millis(FLUSH_WAIT_MS);
    // Blocking here is the point: the caller is about to exit or stop.
    if lines.tx.send(Line::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(wait);
    }
}

/// The subscriber's writer: each event becomes one queued line. The
/// channel grows as lines come (a bounded one would keep all its slots
/// from the start, 160 kB for an idle node); `queued` bounds it.
#[derive(Clone)]
struct Lines {
    tx: Sender<Line>,
    /// Text lines sent and not yet written.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Lines {
    fn new(capacity: usize) -> (Lines, Receiver<Line>) {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Lines {
                tx,
                queued,
                capacity,
            },
            rx,
        )
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            lines: self,
            buf: Vec::new(),
        }
    }
}

/// One event's bytes, queued whole when the event is written.
struct LineWriter<'a> {
    lines: &'a Lines,
    buf: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let queued = &self.lines.queued;
        if queued.fetch_add(1, Ordering::Relaxed) >= self.lines.capacity {
            queued.fetch_sub(1, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let line = Line::Text(std::mem::take(&mut self.buf));
        // The writer thread is gone (it cannot be, short of a panic): write
        // in place rather than lose the line.
        if let Err(SendError(Line::Text(bytes))) = self.lines.tx.send(line) {
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = std::io::stderr().write_all(&bytes);
        }
    }
}

/// The text format: `jaros: ` and the event's message, nothing else, so
/// the lines read as they always have. Levels, targets, fields and spans
/// are in the JSON format.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut message = Message(String::new());
        event.record(&mut message);
        writer.write_str(&plain_line(&message.0))
    }
}

/// An event's message as the text format writes it: `jaros: ` before the
/// first line, two spaces before each further one, so only an event starts
/// a line with `jaros: ` (a file name or an error holding a newline cannot
/// forge one), and control characters but the tab shown escaped (a `\r`
/// cannot overwrite a line on a terminal).
fn plain_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    out.push_str("jaros: ");
    for c in message.chars() {
        match c {
            '\n' => out.push_str("\n  "),
            '\t' => out.push('\t'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// Collects an event's `message` field.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// The span every job's events are logged in: its id, its agent and the
/// node running it (empty outside a node).
pub fn job_span(job: &str, agent: &str, node: &str) -> tracing::Span {
    tracing::info_span!("job", job = job, agent = agent, node = node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_cannot_forge_a_line_of_the_text_format() {
        assert_eq!(plain_line("node n1: done"), "jaros: node n1: done\n");
        assert_eq!(
            plain_line("bad name 'a\njaros: node n1: FAKE'\r\u{1b}[2J\tend"),
            "jaros: bad name 'a\n  jaros: node n1: FAKE'\\r\\u{1b}[2J\tend\n"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (lines, _rx) = Lines::new(1);
        let before = dropped_lines();
        for _ in 0..3 {
            let mut w = lines.make_writer();
            w.write_all(b"line\n").expect("buffer");
        }
        // One fits, two are dropped; none of the writes waited.
        assert_eq!(dropped_lines() - before, 2);
    }
}
