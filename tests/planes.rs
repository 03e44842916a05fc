//! The planes stay apart: the deterministic plane never reaches for the model
//! or console code, nothing but the console opens a listening socket, and no
//! database, broker or async server enters the dependency tree.

use std::path::{Path, PathBuf};

const DETERMINISTIC_PLANE: &[&str] = &[
    "canon.rs",
    "decision.rs",
    "exec.rs",
    "fold.rs",
    "gate.rs",
    "job.rs",
    "jobstate.rs",
    "log",
    "plan.rs",
    "replay",
    "state.rs",
    "takeover.rs",
    "verdict.rs",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            // file_type() does not follow symbolic links out of src/.
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() && p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_deterministic_plane_does_not_import_model_or_console_code() {
    let mut offenders = Vec::new();
    let mut checked = 0;
    for entry in DETERMINISTIC_PLANE {
        let path = src().join(entry);
        assert!(
            path.exists(),
            "{} is gone: the plane's files moved, update DETERMINISTIC_PLANE",
            path.display()
        );
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        for file in files {
            checked += 1;
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for forbidden in [
                    "crate::model",
                    "crate::console",
                    "super::model",
                    "super::console",
                    "ureq::",
                    "TcpStream",
                ] {
                    if code.contains(forbidden) {
                        offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        checked >= DETERMINISTIC_PLANE.len(),
        "the plane's files moved: update this test"
    );
    assert!(
        offenders.is_empty(),
        "the deterministic plane reaches outside:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_node_and_the_console_know_each_other_only_through_the_cli() {
    // `jaros serve --console` starts both from the CLI; neither imports the
    // other, so the node runs the same with or without its console.
    let mut offenders = Vec::new();
    for (dir, forbidden) in [
        ("node", ["crate::console", "super::console"]),
        ("console", ["crate::cli", "super::cli"]),
    ] {
        for file in rust_files(&src().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if forbidden.iter().any(|f| code.contains(f)) {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        src().join("console").is_dir(),
        "the console moved: update this test"
    );
    assert!(
        offenders.is_empty(),
        "the node and the console import each other:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn nothing_but_the_console_opens_a_listening_socket() {
    let mut offenders = Vec::new();
    for file in rust_files(&src()) {
        // The console may listen; test code (a fake model server) may too.
        if file.starts_with(src().join("console"))
            || file.file_name().is_some_and(|n| n == "tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let shipped = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in shipped.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for forbidden in ["TcpListener", "UdpSocket", "UnixListener", "UnixDatagram"] {
                if code.contains(forbidden) {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a listening socket outside the console:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_database_broker_or_async_server_is_in_the_dependency_tree() {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let names: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(
        names.contains(&"serde"),
        "Cargo.lock could not be read as expected"
    );
    let forbidden = [
        "tokio",
        "async-std",
        "smol",
        "hyper",
        "axum",
        "actix-web",
        "rocket",
        "warp",
        "tide",
        "poem",
        "tonic",
        "rusqlite",
        "sqlx",
        "diesel",
        "sled",
        "rocksdb",
        "redb",
        "postgres",
        "mysql",
        "redis",
        "lapin",
        "rdkafka",
        "nats",
        "async-nats",
        "zmq",
        "reqwest",
    ];
    let found: Vec<&&str> = forbidden.iter().filter(|f| names.contains(f)).collect();
    assert!(
        found.is_empty(),
        "forbidden crates in Cargo.lock: {found:?}"
    );
}
