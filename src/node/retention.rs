//! Retention on a running node: what `jaros gc` does, applied every
//! `retention.every` of the node manifest, on a thread of its own so the
//! node's loop never waits for it. One run at a time; a run cut short by
//! the node stopping leaves nothing half done (a tombstone is durable before
//! its result is removed).

use crate::datadir::DataDir;
use crate::manifest::types::RetentionSpec;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a node's retention applies, and when it last started.
pub(super) struct Retention {
    spec: RetentionSpec,
    archive: Option<PathBuf>,
    every: Duration,
    last: Option<Instant>,
    running: Arc<AtomicBool>,
}

impl Retention {
    /// `None` unless the manifest sets `retention.every`.
    pub(super) fn new(spec: Option<&RetentionSpec>, archive: Option<PathBuf>) -> Option<Retention> {
        let spec = spec?;
        let every = Duration::from_millis(spec.every.as_ref()?.ms().max(1));
        Some(Retention {
            spec: spec.clone(),
            archive,
            every,
            last: None,
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts a run when one is due and none is running.
    pub(super) fn tick(&mut self, data: &DataDir, node: &str) {
        if self.last.is_some_and(|t| t.elapsed() < self.every)
            || self.running.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.last = Some(Instant::now());
        let (data, who, spec, archive) = (
            data.clone(),
            node.to_string(),
            self.spec.clone(),
            self.archive.clone(),
        );
        let running = self.running.clone();
        let spawned = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || {
                let now = super::lease::now_ms();
                match crate::gc::run(&data, &spec, archive.as_deref(), now, false) {
                    Ok(report) if report.actions.is_empty() => {}
                    Ok(report) => tracing::info!(
                        "node {who}: retention removed or archived {} file(s), {} bytes freed",
                        report.actions.len(),
                        report.bytes_freed
                    ),
                    Err(e) => tracing::error!("node {who}: retention (`jaros gc`) failed: {e}"),
                }
                running.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.running.store(false, Ordering::SeqCst);
            tracing::error!("node {node}: cannot start retention: {e}");
        }
    }
}
