//! `sys.info`: the host's OS, architecture, CPU count, memory and uptime,
//! read from `/proc` where Linux has it.

use super::read_back;
use crate::decision::Decision;
use crate::exec::{Cx, Handler, Outcome, Verdict};
use serde_json::{json, Value};

/// `sys.info`. Reads no file of the hive, so it needs no path grant; the
/// read is still audited.
pub struct SysInfo;

impl Handler for SysInfo {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        super::audit(
            live,
            cx,
            decision,
            "sys.info",
            Verdict::Allowed,
            "reads only host facts (no hive path)".into(),
        )?;
        Ok(Outcome::result(info()))
    }
}

/// The facts `sys.info` reports.
pub fn info() -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "os": std::env::consts::OS,
        "family": std::env::consts::FAMILY,
        "arch": std::env::consts::ARCH,
        "kernel": non_empty(kernel.trim()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_total_bytes": meminfo_bytes(&meminfo, "MemTotal"),
        "memory_available_bytes": meminfo_bytes(&meminfo, "MemAvailable"),
        "uptime_seconds": uptime_seconds(&uptime),
    })
}

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        json!(text)
    }
}

/// A `/proc/meminfo` field (given in kB) in bytes.
pub fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// The first field of `/proc/uptime`, whole seconds.
pub fn uptime_seconds(uptime: &str) -> Option<u64> {
    let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let meminfo =
            "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(8_192_000_000));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(4_096_000_000));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
        assert_eq!(uptime_seconds("12345.67 2345.00\n"), Some(12345));
        assert_eq!(uptime_seconds(""), None);
    }

    #[test]
    fn info_names_this_host() {
        let i = info();
        assert_eq!(i["os"], std::env::consts::OS);
        assert!(i["cpus"].as_u64().unwrap() >= 1);
    }
}
