//! The stdio transport: a server process the caller built (confined or
//! not), newline-delimited JSON-RPC messages on its stdin and stdout, its
//! stderr kept as a short tail for errors. The process runs in its own
//! process group, killed as a whole when the transport is dropped.

use super::{Failure, Incoming, Transport, MAX_MESSAGE_BYTES};
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of a server's stderr an error shows (its last bytes).
pub const STDERR_TAIL_BYTES: usize = 2000;
/// How often a wait for a message checks whether the server's process is
/// still there (a child it left behind may hold its output open).
pub const EXIT_POLL_MS: u64 = 50;
/// How long lines the server wrote before it exited are still taken, once
/// its exit is seen.
pub const EXIT_DRAIN_MS: u64 = 100;
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A running server and its pipes.
pub struct StdioTransport {
    child: Child,
    pid: Pid,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Incoming>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl StdioTransport {
    /// Starts `cmd` in its own process group with piped stdin, stdout and
    /// stderr.
    pub fn spawn(mut cmd: Command) -> Result<StdioTransport, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not be started: {e}"))?;
        let pid = Pid::from_child(&child);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = kill_process_group(pid, Signal::KILL);
            let _ = child.wait();
            return Err("could not be given its pipes".into());
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || read_lines(stdout, tx));
        let tail = Arc::new(Mutex::new(Vec::new()));
        let keep = tail.clone();
        std::thread::spawn(move || read_tail(stderr, keep));
        Ok(StdioTransport {
            child,
            pid,
            stdin: Some(stdin),
            lines,
            stderr: tail,
        })
    }

    /// The server's process id (its process group's too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Failure {
        // The output closed: the process is gone or going; give it a moment
        // to be reaped so the status can be named.
        let status = (0..50).find_map(|_| match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            }
            Err(_) => Some("unknown status".into()),
        });
        Failure::broken(match status {
            Some(status) => format!("the server exited ({status}) before answering"),
            None => "the server closed its output before answering".to_string(),
        })
    }
}

/// Splits stdout into lines, each at most [`MAX_MESSAGE_BYTES`]; blank
/// lines are skipped.
fn read_lines(mut out: impl Read, tx: mpsc::Sender<Incoming>) {
    let mut line: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let emit = |line: &[u8], dropped: usize| -> bool {
        let item = if dropped > 0 {
            Incoming::Oversize(dropped + line.len())
        } else {
            let text = String::from_utf8_lossy(line);
            let text = text.trim();
            if text.is_empty() {
                return true;
            }
            match serde_json::from_str::<Value>(text) {
                Ok(v) => Incoming::Message(v),
                Err(_) => Incoming::Garbage(text.to_string()),
            }
        };
        tx.send(item).is_ok()
    };
    loop {
        let n = match out.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            if dropped == 0 {
                line.extend_from_slice(head);
            } else {
                dropped += head.len();
            }
            if !emit(&line, dropped) {
                return;
            }
            line.clear();
            dropped = 0;
            rest = &tail[1..];
        }
        if dropped > 0 {
            dropped += rest.len();
        } else {
            line.extend_from_slice(rest);
            if line.len() > MAX_MESSAGE_BYTES {
                dropped = line.len();
                line.clear();
            }
        }
    }
    if !line.is_empty() || dropped > 0 {
        let _ = emit(&line, dropped);
    }
}

fn read_tail(mut err: impl Read, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match err.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                let Ok(mut t) = tail.lock() else { return };
                t.extend_from_slice(&chunk[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                t.drain(..excess);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Transport for StdioTransport {
    fn send(&mut self, message: &Value, _deadline: Instant) -> Result<(), Failure> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Failure::broken("the server's input is closed"));
        };
        // serde_json never writes a raw newline inside a value.
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            self.stdin = None;
            return Err(self.exited());
        }
        Ok(())
    }

    fn next(&mut self, deadline: Instant) -> Result<Option<Incoming>, Failure> {
        // Waits in slices, looking at the process between them: a server
        // that exited while something it started holds its output open
        // would otherwise be waited for until the deadline.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let slice = left.min(Duration::from_millis(EXIT_POLL_MS));
            match self.lines.recv_timeout(slice) {
                Ok(item) => return Ok(Some(item)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.exited()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                // What it wrote before exiting still counts.
                return match self
                    .lines
                    .recv_timeout(Duration::from_millis(EXIT_DRAIN_MS))
                {
                    Ok(item) => Ok(Some(item)),
                    Err(_) => Err(self.exited()),
                };
            }
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&t).trim().to_string()
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        // Closing stdin first is the polite MCP shutdown; the group kill
        // makes sure nothing it started outlives it.
        self.stdin = None;
        let _ = kill_process_group(self.pid, Signal::KILL);
        let _ = self.child.wait();
    }
}
