//! The example hive, embedded in the binary so `jaros init DIR` needs no
//! network. The list is written by hand; a test fails when a file under
//! `manifests/`, `agents/`, `tools/` or `evals/` is missing from it or
//! differs from it, so it cannot go stale.

/// The directories of the repository root that make up the example hive.
pub const HIVE_DIRS: [&str; 4] = ["manifests", "agents", "tools", "evals"];

/// Every file of the example hive: path relative to the hive, and content.
pub const FILES: &[(&str, &[u8])] = &[
    (
        "agents/disk-monitor.j2",
        include_bytes!("../../agents/disk-monitor.j2"),
    ),
    ("agents/echo.j2", include_bytes!("../../agents/echo.j2")),
    (
        "agents/greeter.j2",
        include_bytes!("../../agents/greeter.j2"),
    ),
    (
        "agents/inventory.j2",
        include_bytes!("../../agents/inventory.j2"),
    ),
    (
        "agents/planner.j2",
        include_bytes!("../../agents/planner.j2"),
    ),
    (
        "agents/reviewer.j2",
        include_bytes!("../../agents/reviewer.j2"),
    ),
    (
        "agents/system-health.j2",
        include_bytes!("../../agents/system-health.j2"),
    ),
    (
        "agents/text-metrics.j2",
        include_bytes!("../../agents/text-metrics.j2"),
    ),
    ("agents/worker.j2", include_bytes!("../../agents/worker.j2")),
    (
        "evals/echo-responses.json",
        include_bytes!("../../evals/echo-responses.json"),
    ),
    (
        "evals/scripted-responses.json",
        include_bytes!("../../evals/scripted-responses.json"),
    ),
    (
        "evals/swarm-responses.json",
        include_bytes!("../../evals/swarm-responses.json"),
    ),
    (
        "evals/triage.yaml",
        include_bytes!("../../evals/triage.yaml"),
    ),
    (
        "manifests/agents/disk-monitor.yaml",
        include_bytes!("../../manifests/agents/disk-monitor.yaml"),
    ),
    (
        "manifests/agents/echo.yaml",
        include_bytes!("../../manifests/agents/echo.yaml"),
    ),
    (
        "manifests/agents/greeter.yaml",
        include_bytes!("../../manifests/agents/greeter.yaml"),
    ),
    (
        "manifests/agents/inventory.yaml",
        include_bytes!("../../manifests/agents/inventory.yaml"),
    ),
    (
        "manifests/agents/planner.yaml",
        include_bytes!("../../manifests/agents/planner.yaml"),
    ),
    (
        "manifests/agents/reviewer.yaml",
        include_bytes!("../../manifests/agents/reviewer.yaml"),
    ),
    (
        "manifests/agents/system-health.yaml",
        include_bytes!("../../manifests/agents/system-health.yaml"),
    ),
    (
        "manifests/agents/text-metrics.yaml",
        include_bytes!("../../manifests/agents/text-metrics.yaml"),
    ),
    (
        "manifests/agents/worker.yaml",
        include_bytes!("../../manifests/agents/worker.yaml"),
    ),
    (
        "manifests/evals/example.yaml",
        include_bytes!("../../manifests/evals/example.yaml"),
    ),
    (
        "manifests/node.yaml",
        include_bytes!("../../manifests/node.yaml"),
    ),
    (
        "manifests/roles/echo.yaml",
        include_bytes!("../../manifests/roles/echo.yaml"),
    ),
    (
        "manifests/roles/greeter.yaml",
        include_bytes!("../../manifests/roles/greeter.yaml"),
    ),
    (
        "manifests/roles/observer.yaml",
        include_bytes!("../../manifests/roles/observer.yaml"),
    ),
    (
        "manifests/roles/planner.yaml",
        include_bytes!("../../manifests/roles/planner.yaml"),
    ),
    (
        "manifests/roles/reviewer.yaml",
        include_bytes!("../../manifests/roles/reviewer.yaml"),
    ),
    (
        "manifests/roles/worker.yaml",
        include_bytes!("../../manifests/roles/worker.yaml"),
    ),
    (
        "manifests/schedules/disk-monitor.yaml",
        include_bytes!("../../manifests/schedules/disk-monitor.yaml"),
    ),
    (
        "manifests/schedules/system-health.yaml",
        include_bytes!("../../manifests/schedules/system-health.yaml"),
    ),
    (
        "manifests/tools/greet.yaml",
        include_bytes!("../../manifests/tools/greet.yaml"),
    ),
    (
        "manifests/tools/refund.yaml",
        include_bytes!("../../manifests/tools/refund.yaml"),
    ),
    ("tools/greet.sh", include_bytes!("../../tools/greet.sh")),
    ("tools/refund.sh", include_bytes!("../../tools/refund.sh")),
];

/// Whether a hive file is an executable (its mode gets the executable bits).
pub fn is_executable(path: &str) -> bool {
    path.starts_with("tools/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(root.join(rel)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            if entry.file_type().unwrap().is_dir() {
                walk(root, &child, out);
            } else {
                out.push(child);
            }
        }
    }

    #[test]
    fn the_embedded_hive_lists_every_file_of_the_example_hive() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        for dir in HIVE_DIRS {
            walk(root, dir, &mut on_disk);
        }
        on_disk.sort();
        let listed: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        let missing: Vec<&String> = on_disk.iter().filter(|p| !listed.contains(p)).collect();
        assert!(
            missing.is_empty(),
            "add these to src/manifest/embedded.rs FILES: {missing:?}"
        );
        let gone: Vec<&String> = listed.iter().filter(|p| !on_disk.contains(p)).collect();
        assert!(
            gone.is_empty(),
            "remove these from src/manifest/embedded.rs FILES: {gone:?}"
        );
        for (path, bytes) in FILES {
            assert_eq!(std::fs::read(root.join(path)).unwrap(), *bytes, "{path}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn every_tool_of_the_example_hive_is_executable_in_the_repository() {
        use std::os::unix::fs::PermissionsExt;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (path, _) in FILES.iter().filter(|(p, _)| is_executable(p)) {
            let mode = std::fs::metadata(root.join(path))
                .unwrap()
                .permissions()
                .mode();
            assert!(
                mode & 0o111 != 0,
                "{path} must be executable: chmod +x {path}"
            );
        }
    }
}
