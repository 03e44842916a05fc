//! Content-addressed blobs: `blobs/sha256/<hex>`, written once, durably.

use crate::canon::Digest;
use crate::fsx::{self, IoError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("blob {} does not match its name: it was altered", .0.display())]
    Corrupt(PathBuf),
}

impl Blobs {
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs {
            dir: data_dir.join("blobs").join("sha256"),
        }
    }

    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Stores `bytes` (durably, once) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, IoError> {
        let digest = Digest::of_bytes(bytes);
        let path = self.path_of(&digest);
        if !path.exists() {
            fsx::create_dir_all(&self.dir)?;
            fsx::create_durable_exclusive(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Reads a blob and checks it still hashes to its name.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(digest);
        let bytes = fsx::read(&path)?;
        if Digest::of_bytes(&bytes) != *digest {
            return Err(BlobError::Corrupt(path));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let d = blobs.put(b"prompt").unwrap();
        assert_eq!(blobs.put(b"prompt").unwrap(), d);
        assert_eq!(blobs.get(&d).unwrap(), b"prompt");
        std::fs::write(blobs.path_of(&d), b"edited").unwrap();
        assert!(matches!(blobs.get(&d), Err(BlobError::Corrupt(_))));
    }
}
