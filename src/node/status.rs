//! What `jaros status` shows: each node's heartbeat file (`nodes/<id>.json`),
//! and counts taken from the files themselves, so they stay right across
//! restarts and nodes.

use crate::datadir::DataDir;
use crate::fsx;
use serde::{Deserialize, Serialize};

/// A node is live while its heartbeat is younger than this many heartbeats.
pub const LIVE_AFTER_BEATS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentJob {
    pub job: String,
    pub agent: String,
    pub state: String,
    pub took_ms: u64,
}

/// A job a node holds for retry after its environment failed (see
/// [`super::retry`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldJob {
    pub job: String,
    /// The failure of the last attempt: its cause (`ENOSPC …`) and error.
    pub reason: String,
    pub attempts: u32,
    /// When the first held attempt ended, in wall-clock ms.
    pub since_ms: u64,
    /// When the job is tried again, in wall-clock ms.
    pub retry_at_ms: u64,
}

/// A node's own account of itself, rewritten every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub pid: u32,
    pub executor: String,
    pub started_ms: u64,
    pub beat_ms: u64,
    pub heartbeat_ms: u64,
    pub stopped: bool,
    pub pool_size: usize,
    pub running: Vec<String>,
    pub plan: String,
    pub done: u64,
    pub failed: u64,
    pub resumed: u64,
    pub bad_files: u64,
    /// The last few finished jobs (bounded).
    pub recent: Vec<RecentJob>,
    /// Jobs held for retry after a failure of the node's environment.
    #[serde(default)]
    pub held: Vec<HeldJob>,
}

/// Rewrites node `node`'s status file with the live exporter's counters as
/// they stand now: after its last batch, once the node has stopped.
pub fn write_export_counts(data: &DataDir, node: &str) {
    let path = nodes_dir(data).join(format!("{node}.json"));
    let Some(export) = crate::live_trace::counts() else {
        return;
    };
    let Ok(mut value) = fsx::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()))
    else {
        return;
    };
    value["export"] = serde_json::to_value(export).expect("serializes");
    let text = serde_json::to_string_pretty(&value).expect("serializes");
    let _ = fsx::write_atomic_unsynced(&path, text.as_bytes());
}

pub fn nodes_dir(data: &DataDir) -> std::path::PathBuf {
    data.root().join("nodes")
}

/// Heartbeats are rewritten every second: atomically, but without fsync (a
/// stale heartbeat after a crash is exactly what it should say).
pub fn write_node_status(status: NodeStatus, data: &DataDir) {
    let dir = nodes_dir(data);
    if fsx::create_dir_all(&dir).is_ok() {
        let path = dir.join(format!("{}.json", status.node));
        let mut value = serde_json::to_value(&status).expect("serializes");
        // The live trace exporter's counters, when it runs (not a field of
        // the status itself: the exporter is the CLI's, beside the node).
        if let Some(export) = crate::live_trace::counts() {
            value["export"] = serde_json::to_value(export).expect("serializes");
        }
        let _ = fsx::write_atomic_unsynced(
            &path,
            serde_json::to_string_pretty(&value)
                .expect("serializes")
                .as_bytes(),
        );
    }
}

/// Counts of job files per stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub inbox: usize,
    pub claimed: usize,
    pub done: usize,
    pub failed: usize,
}

fn count(dir: &std::path::Path) -> usize {
    fsx::list_dir(dir)
        .map(|l| {
            l.iter()
                .filter(|p| super::inbox::id_of(p).is_some())
                .count()
        })
        .unwrap_or(0)
}

/// A node as `jaros status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub status: NodeStatus,
    pub live: bool,
    pub age_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub data_dir: String,
    pub jobs: Counts,
    pub nodes: Vec<NodeView>,
    pub logs: Vec<LogHead>,
    pub live_nodes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogHead {
    pub node: String,
    pub bytes: u64,
}

/// Every node that wrote a heartbeat file, live or not.
pub fn nodes(data: &DataDir) -> Vec<NodeView> {
    let now = super::lease::now_ms();
    let mut nodes = Vec::new();
    for path in fsx::list_dir(&nodes_dir(data)).unwrap_or_default() {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(status) = serde_json::from_slice::<NodeStatus>(&bytes) else {
            continue;
        };
        let age_ms = now.saturating_sub(status.beat_ms);
        let live = !status.stopped
            && age_ms <= LIVE_AFTER_BEATS * status.heartbeat_ms.clamp(10, 1000) + 1000;
        nodes.push(NodeView {
            status,
            live,
            age_ms,
        });
    }
    nodes
}

/// Gathers the overview from the data dir's files.
pub fn overview(data: &DataDir) -> Overview {
    let nodes = nodes(data);
    let logs = data
        .log_files()
        .unwrap_or_default()
        .into_iter()
        .map(|p| LogHead {
            node: p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0),
        })
        .collect();
    Overview {
        data_dir: data.root().display().to_string(),
        jobs: Counts {
            inbox: count(&data.inbox()),
            claimed: count(&data.claimed()),
            done: count(&data.done()),
            failed: count(&data.failed()),
        },
        live_nodes: nodes.iter().filter(|n| n.live).count(),
        nodes,
        logs,
    }
}
