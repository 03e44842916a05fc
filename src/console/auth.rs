//! The console's token: created once per data dir from the kernel's random
//! source, kept in `<data dir>/console-token` (mode 0600, readable by the
//! owner only), compared in constant time.

use crate::datadir::DataDir;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Random bytes in a token (256 bits; at least 128 are required).
pub const TOKEN_BYTES: usize = 32;
/// Where the kernel's random bytes come from.
pub const RANDOM_SOURCE: &str = "/dev/urandom";

/// The token file of a data dir.
pub fn token_path(data: &DataDir) -> PathBuf {
    data.root().join("console-token")
}

/// The data dir's token: read when it exists, else created.
pub fn load_or_create(data: &DataDir) -> Result<String, String> {
    let path = token_path(data);
    if let Some(token) = read_token(&path)? {
        return Ok(token);
    }
    crate::fsx::create_dir_all(data.root()).map_err(|e| e.to_string())?;
    let token = fresh_token(Path::new(RANDOM_SOURCE))?;
    // Complete the moment it appears and owner-only from its first byte (its
    // temp file is made with mode 0600): of two consoles starting at once,
    // the one that loses reads the other's token, never a half-written file.
    let created =
        crate::fsx::create_durable_exclusive_private(&path, format!("{token}\n").as_bytes())
            .map_err(|e| e.to_string())?;
    if created {
        return Ok(token);
    }
    read_token(&path)?.ok_or_else(|| {
        format!(
            "{} went as it was made: start the console again",
            path.display()
        )
    })
}

/// Reads a token file; refuses one that others may read.
fn read_token(path: &Path) -> Result<Option<String>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file: remove it and start the console again",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} may be read by others (mode {:o}): run `chmod 600 {}`, or remove it to get a new token",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        ));
    }
    let text = crate::fsx::read_to_string(path).map_err(|e| e.to_string())?;
    let token = text.trim().to_string();
    if token.len() < TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} does not hold a token: remove it to get a new one",
            path.display()
        ));
    }
    Ok(Some(token))
}

/// [`TOKEN_BYTES`] random bytes from `source`, as hex.
pub fn fresh_token(source: &Path) -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open(source)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            format!(
                "cannot read {} for the console's token: {e}; the console needs the kernel's random source (in a container, make /dev/urandom available)",
                source.display()
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` equals `expected`, in time that depends only on their
/// lengths (the length of a token is no secret).
pub fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_created_once_owner_only_and_then_reused() {
        let (_dir, data) = crate::datadir::temp();
        let first = load_or_create(&data).unwrap();
        assert_eq!(first.len(), TOKEN_BYTES * 2);
        let mode = std::fs::metadata(token_path(&data))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&data).unwrap(), first);
    }

    #[test]
    fn consoles_starting_at_once_agree_on_one_token() {
        for _ in 0..50 {
            let (_dir, data) = crate::datadir::temp();
            let barrier = std::sync::Barrier::new(8);
            let tokens: Vec<Result<String, String>> = std::thread::scope(|s| {
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create(&data)
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let first = tokens[0].as_ref().unwrap();
            assert!(tokens.iter().all(|t| t.as_ref() == Ok(first)), "{tokens:?}");
        }
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let (_dir, data) = crate::datadir::temp();
        load_or_create(&data).unwrap();
        std::fs::set_permissions(token_path(&data), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(load_or_create(&data).unwrap_err().contains("chmod 600"));
    }

    #[test]
    fn a_missing_random_source_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = fresh_token(&dir.path().join("no-urandom")).unwrap_err();
        assert!(err.contains("random source"), "{err}");
    }

    #[test]
    fn tokens_compare_by_every_byte() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abce", "abcd"));
        assert!(!same("abc", "abcd"));
    }
}
