//! What the console knows of the data dir between requests, kept current by
//! changes rather than rescans: the ids in each job area (inbox, claimed,
//! done, failed) ordered by arrival, a short history of finished jobs per
//! second for the throughput chart, and a bounded feed of change events for
//! the server-sent event streams; and how many approval requests wait for a
//! person, counted again when `approvals/requests/` or `approvals/verdicts/`
//! changes (it costs what waits, not what ran).
//!
//! The areas are listed once at start; afterwards each OS notification costs
//! one `stat` of the file it names, so an update costs the same with 100 or
//! 100,000 finished jobs. Without notifications (or after the kernel dropped
//! some), an area is listed again only when its directory's mtime changed,
//! and the small areas (inbox, claimed) are reconciled every few seconds
//! because nodes on other hosts send no notifications.

use crate::datadir::DataDir;
use crate::node::inbox;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Change events kept for clients that fell behind; older ones are dropped
/// and such a client is told to reload.
pub const MAX_EVENTS: usize = 1024;
/// How often the watcher thread looks at counts and heartbeats.
pub const TICK_MS: u64 = 1000;
/// How often the small areas are listed again (nodes on other hosts).
pub const RECONCILE_MS: u64 = 5000;
/// Seconds of throughput history kept for the chart.
pub const THROUGHPUT_SECONDS: usize = 300;

/// The four job areas, in pipeline order.
pub const AREAS: [&str; 4] = ["inbox", "claimed", "done", "failed"];

/// The ids of one area, newest arrival last.
#[derive(Default)]
pub struct Area {
    by_time: BTreeSet<(u64, String)>,
    time_of: HashMap<String, u64>,
}

impl Area {
    pub fn len(&self) -> usize {
        self.time_of.len()
    }
    pub fn is_empty(&self) -> bool {
        self.time_of.is_empty()
    }
    pub fn contains(&self, id: &str) -> bool {
        self.time_of.contains_key(id)
    }
    fn insert(&mut self, id: String, ms: u64) -> bool {
        if self.time_of.contains_key(&id) {
            return false;
        }
        self.by_time.insert((ms, id.clone()));
        self.time_of.insert(id, ms);
        true
    }
    fn remove(&mut self, id: &str) -> bool {
        match self.time_of.remove(id) {
            Some(ms) => {
                self.by_time.remove(&(ms, id.to_string()));
                true
            }
            None => false,
        }
    }
    /// Page `page` (from 0) of `size` ids, newest first, with their times.
    pub fn page(&self, page: usize, size: usize) -> Vec<(String, u64)> {
        self.by_time
            .iter()
            .rev()
            .skip(page.saturating_mul(size))
            .take(size)
            .map(|(ms, id)| (id.clone(), *ms))
            .collect()
    }
}

#[derive(Default)]
pub struct State {
    pub areas: [Area; 4],
    /// Sequence number of the last event.
    pub seq: u64,
    events: VecDeque<(u64, String)>,
    /// (unix second, done, failed) for the last [`THROUGHPUT_SECONDS`].
    pub throughput: VecDeque<(u64, u32, u32)>,
    /// Whether OS notifications are watching the areas.
    pub notified: bool,
    /// Approval requests without a verdict that counts (see
    /// [`crate::approval::store::Store::waiting_count`]).
    pub approvals: usize,
}

impl State {
    pub fn counts(&self) -> Value {
        json!({
            "inbox": self.areas[0].len(),
            "claimed": self.areas[1].len(),
            "done": self.areas[2].len(),
            "failed": self.areas[3].len(),
        })
    }
    /// The area a job is in, if any.
    pub fn area_of(&self, id: &str) -> Option<&'static str> {
        // Later areas first: a result exists while its claim is removed.
        (0..4)
            .rev()
            .find(|&i| self.areas[i].contains(id))
            .map(|i| AREAS[i])
    }
    fn push(&mut self, event: Value) {
        self.seq += 1;
        self.events.push_back((self.seq, event.to_string()));
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }
    /// Events after `seq`, or `None` when some were already dropped.
    pub fn events_after(&self, seq: u64) -> Option<Vec<(u64, String)>> {
        match self.events.front() {
            Some((first, _)) if *first > seq + 1 => None,
            _ => Some(
                self.events
                    .iter()
                    .filter(|(s, _)| *s > seq)
                    .cloned()
                    .collect(),
            ),
        }
    }
}

/// The live state and the condition SSE clients wait on.
pub struct Live {
    data: DataDir,
    state: Mutex<State>,
    changed: Condvar,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mtime_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

impl Live {
    /// Lists the areas and starts the watcher thread (it stops with `stop`).
    pub fn start(data: DataDir, stop: Arc<AtomicBool>) -> Arc<Live> {
        Live::start_watching(data, stop, true)
    }

    /// [`Live::start`], with or without OS notifications.
    fn start_watching(data: DataDir, stop: Arc<AtomicBool>, notify: bool) -> Arc<Live> {
        let live = Arc::new(Live {
            data,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        // Watch first, then list: nothing that arrives in between is missed.
        let watcher = if notify { watch(&live.data, tx) } else { None };
        {
            let mut st = live.lock();
            st.notified = watcher.is_some();
            for i in 0..4 {
                live.rescan(&mut st, i);
            }
        }
        live.recount_approvals();
        let me = live.clone();
        let spawned = std::thread::Builder::new()
            .name("console-live".into())
            .spawn(move || me.run(watcher, rx, stop));
        if let Err(e) = spawned {
            tracing::warn!("console: warning: no live updates: cannot start a thread: {e}");
        }
        live
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until an event after `seq` exists or `timeout` passes.
    pub fn wait_after(&self, seq: u64, timeout: Duration) -> MutexGuard<'_, State> {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |st| st.seq <= seq)
            .unwrap_or_else(|p| p.into_inner());
        guard
    }

    fn dir(&self, area: usize) -> PathBuf {
        self.data.root().join(AREAS[area])
    }

    /// The directories whose changes change the count of approvals.
    fn approval_dirs(&self) -> [PathBuf; 2] {
        let store = crate::approval::store::Store::new(&self.data);
        [store.requests(), store.verdicts()]
    }

    /// Counts the approvals that wait again, and tells the streams when the
    /// count changed. Reads the request files outside the lock.
    fn recount_approvals(&self) -> bool {
        let store = crate::approval::store::Store::new(&self.data);
        let Ok(count) = store.waiting_count() else {
            return false;
        };
        let mut st = self.lock();
        if st.approvals == count {
            return false;
        }
        st.approvals = count;
        st.push(json!({"type": "approvals", "count": count}));
        true
    }

    /// Lists one area again (at start, after dropped notifications, or when
    /// its directory changed without them).
    fn rescan(&self, st: &mut State, area: usize) {
        let mut fresh = Area::default();
        for path in crate::fsx::list_dir(&self.dir(area)).unwrap_or_default() {
            if let Some(id) = inbox::id_of(&path) {
                let ms = mtime_ms(&path).unwrap_or(0);
                fresh.insert(id, ms);
            }
        }
        let old = std::mem::replace(&mut st.areas[area], fresh);
        let added: Vec<String> = st.areas[area]
            .time_of
            .keys()
            .filter(|id| !old.contains(id))
            .take(MAX_EVENTS / 4)
            .cloned()
            .collect();
        let removed = old
            .time_of
            .keys()
            .filter(|id| !st.areas[area].contains(id))
            .count();
        if !added.is_empty() || removed > 0 {
            for id in added {
                st.push(json!({"type": "job", "id": id, "area": AREAS[area]}));
            }
            st.push(json!({"type": "counts", "counts": st.counts()}));
        }
    }

    /// One file changed: one `stat`, whatever the number of jobs.
    fn apply(&self, st: &mut State, path: &Path) -> bool {
        let Some(area) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| AREAS.iter().position(|a| n == *a))
        else {
            return false;
        };
        if path.parent() != Some(self.dir(area).as_path()) {
            return false;
        }
        let Some(id) = inbox::id_of(path) else {
            return false;
        };
        match mtime_ms(path) {
            Some(ms) => {
                if st.areas[area].insert(id.clone(), ms) {
                    if area >= 2 {
                        record_throughput(st, area == 2);
                    }
                    st.push(json!({"type": "job", "id": id, "area": AREAS[area]}));
                    return true;
                }
                false
            }
            None => st.areas[area].remove(&id),
        }
    }

    fn run(
        self: Arc<Live>,
        watcher: Option<notify::RecommendedWatcher>,
        rx: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
        stop: Arc<AtomicBool>,
    ) {
        let _keep = watcher;
        let mut dir_mtimes = [None; 4];
        let mut approval_mtimes = [None; 2];
        let approval_dirs = self.approval_dirs();
        let mut last_reconcile = now_ms();
        let mut last_counts = Value::Null;
        while !stop.load(Ordering::SeqCst) {
            let mut events = Vec::new();
            match rx.recv_timeout(Duration::from_millis(TICK_MS)) {
                Ok(first) => {
                    events.push(first);
                    // Take what else is queued: one lock and one wake per batch.
                    events.extend(rx.try_iter().take(4096));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // No watcher (notifications unavailable): tick by the clock.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(TICK_MS))
                }
            }
            let mut st = self.lock();
            let mut changed = false;
            let mut rescan_all = false;
            let mut approvals_touched = false;
            for event in events {
                match event {
                    Ok(e) if e.need_rescan() => rescan_all = true,
                    Ok(e) => {
                        for p in &e.paths {
                            approvals_touched |= p
                                .parent()
                                .is_some_and(|d| approval_dirs.iter().any(|a| a == d));
                            changed |= self.apply(&mut st, p);
                        }
                    }
                    Err(_) => rescan_all = true,
                }
            }
            let now = now_ms();
            let reconcile = now.saturating_sub(last_reconcile) >= RECONCILE_MS;
            for (area, seen) in dir_mtimes.iter_mut().enumerate() {
                // Full resolution: two changes in one millisecond differ.
                let mtime = std::fs::metadata(self.dir(area))
                    .and_then(|m| m.modified())
                    .ok();
                let dir_changed = mtime != *seen;
                *seen = mtime;
                // With notifications, only a dropped batch or a small area's
                // periodic reconcile lists; without, a changed directory does.
                let small = area < 2;
                if rescan_all || (!st.notified && dir_changed) || (reconcile && small) {
                    self.rescan(&mut st, area);
                }
            }
            if reconcile {
                last_reconcile = now;
            }
            let counts = st.counts();
            if counts != last_counts {
                st.push(json!({"type": "counts", "counts": counts.clone()}));
                last_counts = counts;
                changed = true;
            }
            drop(st);
            // A notification, a directory that changed (two changes within
            // one tick of the file system's clock look alike: hence also the
            // reconcile), or nodes on other hosts: count again.
            for (dir, seen) in approval_dirs.iter().zip(approval_mtimes.iter_mut()) {
                let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
                approvals_touched |= mtime != *seen;
                *seen = mtime;
            }
            if approvals_touched || rescan_all || reconcile {
                changed |= self.recount_approvals();
            }
            if changed {
                self.changed.notify_all();
            }
        }
    }
}

fn record_throughput(st: &mut State, done: bool) {
    let second = now_ms() / 1000;
    match st.throughput.back_mut() {
        Some((s, d, f)) if *s == second => {
            if done {
                *d += 1
            } else {
                *f += 1
            }
        }
        _ => st
            .throughput
            .push_back((second, u32::from(done), u32::from(!done))),
    }
    while st.throughput.len() > THROUGHPUT_SECONDS {
        st.throughput.pop_front();
    }
}

/// Watches the four areas and the approval requests and verdicts; `None`
/// when notifications are not available.
fn watch(
    data: &DataDir,
    tx: std::sync::mpsc::Sender<notify::Result<notify::Event>>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .ok()?;
    let store = crate::approval::store::Store::new(data);
    let approvals = [store.requests(), store.verdicts()];
    for dir in AREAS
        .iter()
        .map(|area| data.root().join(area))
        .chain(approvals)
    {
        crate::fsx::create_dir_all(&dir).ok()?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .ok()?;
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_area_pages_newest_first() {
        let mut a = Area::default();
        for i in 0..10 {
            a.insert(format!("j{i}"), i);
        }
        let page: Vec<String> = a.page(1, 3).into_iter().map(|(id, _)| id).collect();
        assert_eq!(page, ["j6", "j5", "j4"]);
        assert!(a.remove("j5"));
        assert_eq!(a.len(), 9);
    }

    fn wait_for_done(live: &Live, want: usize) {
        for _ in 0..3000 {
            if live.lock().areas[2].len() == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("done never reached {want}");
    }

    #[test]
    fn results_are_seen_with_and_without_notifications() {
        for notify in [true, false] {
            let (_dir, data) = crate::datadir::temp();
            std::fs::write(data.done().join("old.json"), "{}").unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let live = Live::start_watching(data.clone(), stop.clone(), notify);
            assert_eq!(live.lock().areas[2].len(), 1);
            assert_eq!(live.lock().notified, notify);
            let seq = live.lock().seq;
            std::fs::write(data.done().join("new.json"), "{}").unwrap();
            wait_for_done(&live, 2);
            let st = live.lock();
            let events = st.events_after(seq).unwrap();
            assert!(
                events.iter().any(|(_, e)| e.contains("\"id\":\"new\"")),
                "notify {notify}: {events:?}"
            );
            assert_eq!(st.area_of("new"), Some("done"));
            drop(st);
            stop.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_count_of_approvals_follows_requests_and_verdicts_with_and_without_notifications() {
        use crate::approval::store::{Answer, Request, Store, Verdict};
        use crate::decision::{AgentName, Decision, DecisionId, JobId};
        for notify in [true, false] {
            let (_dir, data) = crate::datadir::temp();
            let store = Store::new(&data);
            let request = |job: &str| {
                let id = JobId::new(job).unwrap();
                Request {
                    job: id.clone(),
                    agent: "clerk".into(),
                    decision: Decision {
                        id: DecisionId::new(&id, 1, 0),
                        source: AgentName::new("clerk").unwrap(),
                        kind: "refund".into(),
                        payload: json!({"amount": 500}),
                    },
                    approvers: vec!["ops".into()],
                    requested_ms: 1,
                    expires_ms: u64::MAX / 2,
                    chain: vec![],
                    node: "n1".into(),
                }
            };
            store.write_request(&request("a")).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let live = Live::start_watching(data.clone(), stop.clone(), notify);
            assert_eq!(live.lock().approvals, 1, "counted at start");
            let wait_for = |want: usize| {
                for _ in 0..3000 {
                    if live.lock().approvals == want {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                panic!("notify {notify}: the count never reached {want}");
            };
            let seq = live.lock().seq;
            store.write_request(&request("b")).unwrap();
            wait_for(2);
            // A verdict given (not yet recorded by a node) takes the request
            // out of the count, at once.
            let a = request("a");
            let verdict = Verdict {
                job: a.job.clone(),
                decision: a.decision.id.clone(),
                verdict: Answer::Approve,
                by: "ops".into(),
                at_ms: 2,
                note: None,
                reason: None,
            };
            store.give(&verdict).unwrap();
            wait_for(1);
            store.close(&JobId::new("b").unwrap()).unwrap();
            wait_for(0);
            let st = live.lock();
            let events: Vec<String> = st
                .events_after(seq)
                .unwrap()
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.contains("\"approvals\""))
                .collect();
            assert_eq!(
                events,
                [2, 1, 0].map(|n| format!("{{\"count\":{n},\"type\":\"approvals\"}}")),
                "notify {notify}"
            );
            drop(st);
            stop.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_client_that_fell_behind_is_told_so() {
        let mut st = State::default();
        for i in 0..MAX_EVENTS + 10 {
            st.push(json!({ "n": i }));
        }
        assert!(st.events_after(0).is_none());
        assert_eq!(st.events_after(st.seq - 2).unwrap().len(), 2);
    }
}
