//! The hash-chained log: one chain per node under `log/` (an open JSONL
//! file and the sealed segments before it), plus the content-addressed
//! blobs its records point to.
//!
//! Owns record encoding ([`record`]), durable appends with group commit
//! ([`writer`]), segments and sealing ([`segment`]), and reading and
//! verifying chains across segments ([`read`], [`stream`], [`chain`]). It does not
//! interpret records; replay does.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

pub mod blobs;
mod body_de;
pub mod chain;
pub mod checkpoint;
pub mod index;
pub mod merkle;
pub mod note;
pub mod read;
pub mod record;
pub mod segment;
pub mod stream;
pub mod tree;
pub mod writer;

pub use blobs::Blobs;
pub use chain::{verify_chain, ChainReport, TornTail};
pub use read::{read_log, read_log_parts, LogFile};
pub use record::{Body, Record};
pub use segment::{SealHook, SealedSegment, SegmentOptions};
pub use writer::{set_thread_epoch, LogWriter, OpenReport};

use crate::fsx::IoError;
use std::path::PathBuf;

/// Everything that can go wrong with a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{}: record at line {line} (seq {seq}) is invalid: {reason}. The log was altered; run `jaros verify` and restore the file from a backup or investigate before appending again", path.display())]
    Tampered {
        path: PathBuf,
        line: u64,
        seq: u64,
        reason: String,
    },
    #[error("{}: another process holds this log (is a node running with this node id?); stop it or pass a different --node-id", path.display())]
    Busy { path: PathBuf },
    #[error("log {} is poisoned after a failed write or fsync ({reason}); the node must restart and reopen it", path.display())]
    Poisoned { path: PathBuf, reason: String },
    #[error("cannot encode record: {0}")]
    Encode(#[from] crate::canon::CanonError),
}
