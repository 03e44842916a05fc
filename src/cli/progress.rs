//! A progress line on stderr for long reads (`jaros replay`, `jaros
//! verify`): records read, how far through the bytes to read, the rate;
//! redrawn in place a few times a second and cleared at the end. Drawn only
//! when stderr is a terminal and the output is not JSON, so a script or a
//! test that captures the output never sees it.
//!
//! The reading itself (in the deterministic plane, which reads no clock)
//! only adds to the counters of a [`Progress`]; the clock and the drawing
//! stay here.

use crate::log::stream::Progress;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Time between two redraws: at most ten a second.
const REDRAW_MS: u64 = 100;

/// A read that ends before this is never drawn (no flicker for small logs).
const FIRST_DRAW_MS: u64 = 300;

/// Whether a progress line should be drawn: stderr is a terminal and the
/// output is for a person.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// Runs `work` with a [`Progress`] (when `draw`; otherwise with none) and,
/// meanwhile, draws it on stderr as `what`.
pub fn with<T>(what: &str, draw: bool, work: impl FnOnce(Option<&Progress>) -> T) -> T {
    if !draw {
        return work(None);
    }
    let progress = Progress::default();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let drawer = s.spawn(|| draw_until(what, &progress, &done));
        let out = work(Some(&progress));
        done.store(true, Ordering::Relaxed);
        // The drawer only writes to stderr; a panic there loses a line.
        let _ = drawer.join();
        out
    })
}

fn draw_until(what: &str, progress: &Progress, done: &AtomicBool) {
    let start = Instant::now();
    let mut drawn = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(REDRAW_MS));
        let elapsed = start.elapsed();
        if elapsed < Duration::from_millis(FIRST_DRAW_MS) || done.load(Ordering::Relaxed) {
            continue;
        }
        let text = line(
            what,
            progress.records.load(Ordering::Relaxed),
            progress.bytes.load(Ordering::Relaxed),
            progress.total_bytes.load(Ordering::Relaxed),
            elapsed.as_secs_f64(),
        );
        let mut err = std::io::stderr().lock();
        // Carriage return and erase-line: the line is redrawn in place.
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        drawn = true;
    }
    if drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// The progress line: `what`, the records read, the share of the bytes to
/// read (when known) and the rate.
pub fn line(what: &str, records: u64, bytes: u64, total: u64, secs: f64) -> String {
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let share = if total > 0 {
        format!(
            ", {:.1} of {:.1} MB ({}%)",
            mb(bytes),
            mb(total),
            (bytes.saturating_mul(100) / total).min(100)
        )
    } else {
        format!(", {:.1} MB", mb(bytes))
    };
    let rate = if secs > 0.0 {
        format!(", {} records/s", grouped((records as f64 / secs) as u64))
    } else {
        String::new()
    };
    format!("{what}: {} records read{share}{rate}", grouped(records))
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{grouped, line};

    #[test]
    fn the_progress_line_says_records_share_of_bytes_and_rate() {
        let mib = 1024 * 1024;
        assert_eq!(
            line("replay", 1_234_567, 512 * mib, 2048 * mib, 2.0),
            "replay: 1,234,567 records read, 512.0 of 2048.0 MB (25%), 617,283 records/s"
        );
        // Past the expected total (a third scan): never above 100%.
        assert_eq!(
            line("verify", 10, 3 * mib, 2 * mib, 0.0),
            "verify: 10 records read, 3.0 of 2.0 MB (100%)"
        );
        assert_eq!(
            line("verify", 0, mib / 2, 0, 1.0),
            "verify: 0 records read, 0.5 MB, 0 records/s"
        );
        assert_eq!(
            (grouped(0), grouped(999), grouped(1000), grouped(100_000)),
            ("0".into(), "999".into(), "1,000".into(), "100,000".into())
        );
    }
}
