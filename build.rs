//! Build identity: sets `JAROS_GIT_COMMIT` and `JAROS_BUILD_PROFILE` for `env!`,
//! so `jaros --version` and every `plan` record name the executor that wrote a log.
//!
//! The commit comes from `$JAROS_GIT_COMMIT` when set (builds from a source tree
//! without `.git`, such as the Nix flake, pass it in), else from
//! `git rev-parse --short=12 HEAD`, else it is `unknown`. Nothing here reads the
//! clock, so two builds of one commit embed the same identity.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Length of the abbreviated commit, as `git rev-parse --short=12` prints it.
const COMMIT_CHARS: usize = 12;

fn main() {
    println!("cargo:rerun-if-env-changed=JAROS_GIT_COMMIT");
    // Without any rerun-if-changed line cargo reruns this script whenever any
    // file of the package changes; naming build.rs narrows it to what matters.
    println!("cargo:rerun-if-changed=build.rs");

    let commit = commit_from_env()
        .or_else(commit_from_git)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=JAROS_GIT_COMMIT={commit}");

    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=JAROS_BUILD_PROFILE={profile}");

    link_position_dependent();
}

/// Links the `jaros` executable at a fixed address (`-no-pie`) on glibc
/// Linux, unless `JAROS_LINK_PIE=1` or the build is static (`crt-static`,
/// the OCI image's binary, stays a static PIE).
///
/// Why: a PIE carries a relocation table (`.rela.dyn`, ~1.5 MB here) that the
/// loader reads in full at start, and the pages it patches (`.data.rel.ro`,
/// another ~1.5 MB) become private copies. Linked at a fixed address the
/// linker applies them once, so an idle node is ~3 MB smaller in resident
/// memory. The cost: the executable's own code and data are not placed at a
/// random address (the heap, stacks, mmaps and shared libraries still are).
/// docs/deploy.md says so and how to choose the other way.
fn link_position_dependent() {
    println!("cargo:rerun-if-env-changed=JAROS_LINK_PIE");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    let glibc_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if glibc_linux && !static_crt && var("JAROS_LINK_PIE") != "1" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

fn commit_from_env() -> Option<String> {
    let value = env::var("JAROS_GIT_COMMIT").ok()?;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(value.chars().take(COMMIT_CHARS).collect())
}

fn commit_from_git() -> Option<String> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    watch_git_state(&manifest_dir);
    let out = git(
        &manifest_dir,
        &["rev-parse", &format!("--short={COMMIT_CHARS}"), "HEAD"],
    )?;
    (!out.is_empty()).then_some(out)
}

/// Asks cargo to rerun this script when HEAD moves: HEAD itself (a checkout or a
/// detached HEAD), the branch ref it points to, and packed-refs (where `git gc`
/// moves refs). Only paths that exist are named, since cargo treats a missing
/// path as always changed. Works for worktrees, where `.git` is a file.
fn watch_git_state(dir: &Path) {
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) else {
        return;
    };
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                dir.join(p)
            }
        })
        .unwrap_or_else(|| git_dir.clone());

    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&branch);
        // An unborn branch has no ref file yet: watch the folder it will appear in.
        match (loose.exists(), loose.parent()) {
            (false, Some(parent)) => watched.push(parent.to_path_buf()),
            _ => watched.push(loose),
        }
    }
    for path in watched {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}
