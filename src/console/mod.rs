//! The console: a web UI over a hive and its data dir (`jaros console`, or
//! `jaros serve --console` on a thread of the node).
//!
//! It owns the only listening socket of the product. It reads the data dir
//! and the manifests; the only things it changes are the ones a person may
//! change from it: a job submitted into the inbox (through the same write as
//! `jaros submit`), a replay and an eval run (both in memory or in a
//! temporary dir). It never writes manifests, agents or tools.
//!
//! Safety: every route but the login page needs the data dir's token
//! ([`auth`]), exchanged once for an HttpOnly, SameSite=Strict cookie; state
//! changes are JSON POSTs whose Origin is the console's own; every response
//! carries a strict CSP, frame denial and no-sniff ([`http`]).
//!
//! The console knows nothing of the CLI: the few CLI functions it reuses
//! (the executor, the schedule rows, the submit path) come in as [`Hooks`].

pub mod auth;
pub mod http;
pub mod live;
mod pages;
mod routes;

use crate::datadir::DataDir;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The address `jaros console` binds when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5500";
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Event streams open at once (each holds a connection and a thread).
pub const MAX_EVENT_STREAMS: usize = 16;
/// How long a client may take to send its request.
pub const READ_TIMEOUT_MS: u64 = 10_000;
/// How long the manifests are trusted before they are loaded again.
pub const HIVE_CACHE_MS: u64 = 2000;
/// How often the listener looks for a connection, and for `stop`.
const ACCEPT_POLL_MS: u64 = 50;
/// How long a stopped console waits for requests in flight.
pub const STOP_GRACE_MS: u64 = 2000;

/// What the console reuses from the command line, so it never imports it.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// The executor with every handler this binary has (replay, blame).
    pub executor: fn() -> crate::exec::Executor,
    /// The schedule rows of `jaros schedules --json`.
    pub schedules: fn(
        &crate::manifest::Loaded,
        &Path,
        chrono::DateTime<chrono::Utc>,
    ) -> Vec<serde_json::Value>,
    /// `jaros submit`'s path: check the agent against the plan, write the job
    /// into the inbox atomically and durably; the job's id or why not.
    pub submit:
        fn(&DataDir, Option<&crate::plan::Plan>, &str, serde_json::Value) -> Result<String, String>,
}

pub struct Config {
    pub addr: SocketAddr,
    /// Bind an address other than loopback (the caller has warned).
    pub allow_remote: bool,
    pub hive: PathBuf,
    pub data: DataDir,
    /// The `jaros` binary, run as `jaros eval --json` for the eval suite.
    pub exe: Option<PathBuf>,
    pub hooks: Hooks,
}

/// The hive's manifests as last loaded: the plan, or every error.
pub type HiveLoad = Result<Arc<crate::manifest::Loaded>, Vec<String>>;

/// What every request handler sees.
pub struct Shared {
    pub hive: PathBuf,
    pub data: DataDir,
    pub exe: Option<PathBuf>,
    pub hooks: Hooks,
    token: String,
    cookie_name: String,
    /// The origins whose POSTs are accepted, and the Host values served.
    origins: Vec<String>,
    hosts: Vec<String>,
    pub live: Arc<live::Live>,
    hive_cache: Mutex<Option<(Instant, HiveLoad)>>,
    streams: AtomicUsize,
    /// One replay or eval run at a time: each may take a while.
    pub busy: Mutex<()>,
}

impl Shared {
    /// The manifests, loaded at most every [`HIVE_CACHE_MS`].
    pub fn hive_load(&self) -> HiveLoad {
        let mut cache = self.hive_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, load)) = cache.as_ref() {
            if at.elapsed() < Duration::from_millis(HIVE_CACHE_MS) {
                return load.clone();
            }
        }
        let load = crate::manifest::load_hive(&self.hive)
            .map(Arc::new)
            .map_err(|errors| errors.iter().map(|d| d.to_string()).collect());
        *cache = Some((Instant::now(), load.clone()));
        load
    }
}

/// A bound console, ready to serve.
pub struct Console {
    listener: TcpListener,
    shared: Arc<Shared>,
    url: String,
    stop: Arc<AtomicBool>,
}

/// Whether an address is loopback (the default; anything else needs a flag).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Creates (or reads) the token, binds the address and starts watching the
/// data dir. The console stops accepting when `stop` is set.
pub fn bind(cfg: Config, stop: Arc<AtomicBool>) -> Result<Console, String> {
    if !is_loopback(&cfg.addr) && !cfg.allow_remote {
        return Err(format!(
            "{} is not a loopback address: the console would be reachable from other machines; pass --allow-remote to mean it",
            cfg.addr
        ));
    }
    cfg.data
        .create()
        .map_err(|e| format!("cannot create the data dir: {e}"))?;
    let token = auth::load_or_create(&cfg.data)?;
    let listener = TcpListener::bind(cfg.addr).map_err(|e| {
        format!(
            "cannot listen on {}: {e} (pick another with --addr)",
            cfg.addr
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let mut hosts = vec![bound.to_string()];
    if bound.ip().is_loopback() {
        hosts.push(format!("localhost:{}", bound.port()));
    }
    let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
    let url = format!("http://{bound}/login?token={token}");
    let live = live::Live::start(cfg.data.clone(), stop.clone());
    // Accepts are polled so that `stop` is seen between connections.
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot poll the listening socket: {e}"))?;
    let shared = Arc::new(Shared {
        hive: cfg.hive,
        data: cfg.data,
        exe: cfg.exe,
        hooks: cfg.hooks,
        cookie_name: format!("jaros_console_{}", bound.port()),
        token,
        origins,
        hosts,
        live,
        hive_cache: Mutex::new(None),
        streams: AtomicUsize::new(0),
        busy: Mutex::new(()),
    });
    Ok(Console {
        listener,
        shared,
        url,
        stop,
    })
}

impl Console {
    /// The URL to open, token included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Accepts connections until `stop` is set; each is served on a thread
    /// of its own, at most [`MAX_CONNECTIONS`] at once. Once stopped, waits
    /// up to [`STOP_GRACE_MS`] for requests in flight to be answered.
    pub fn serve(self) {
        let active = Arc::new(AtomicUsize::new(0));
        while !self.stop.load(Ordering::SeqCst) {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
                    continue;
                }
                // A connection reset before accept, or out of descriptors:
                // pause rather than spin.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // The listener polls; a connection blocks, with its time-outs.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                let _ = http::Response::error(503, "too many connections; try again")
                    .write_to(&mut stream);
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let shared = self.shared.clone();
            let done = active.clone();
            let spawned = std::thread::Builder::new()
                .name("console-conn".into())
                .spawn(move || {
                    handle(&shared, stream);
                    done.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
        }
    }
}

/// Serves one connection: one request, one response (or an event stream).
fn handle(shared: &Arc<Shared>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)));
    let request = match http::read_request(&mut stream) {
        Ok(r) => r,
        Err(http::ReadError::Gone) => return,
        Err(http::ReadError::Bad(why)) => {
            let _ = http::Response::error(400, why).write_to(&mut stream);
            return;
        }
        Err(http::ReadError::TooLarge) => {
            let _ = http::Response::error(413, "request too large").write_to(&mut stream);
            return;
        }
    };
    let response = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        routes::route(shared, &request, &mut stream)
    })) {
        Ok(Some(r)) => r,
        // The route wrote its own answer (an event stream).
        Ok(None) => return,
        Err(_) => http::Response::error(500, "the console failed on this request; see its stderr"),
    };
    let _ = response.write_to(&mut stream);
}

/// Starts a console on a thread of its own; its failure is printed and never
/// reaches the caller (a node keeps running without its console).
pub fn spawn(cfg: Config, stop: Arc<AtomicBool>) -> Result<String, String> {
    let console = bind(cfg, stop)?;
    let url = console.url().to_string();
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| console.serve())).is_err() {
                tracing::error!("the console stopped after a failure; the node keeps running");
            }
        })
        .map_err(|e| format!("cannot start the console's thread: {e}"))?;
    Ok(url)
}
