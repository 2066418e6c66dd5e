//! The backup store (Puppet's filebucket): the old content of every file a
//! run replaces or removes, kept under its sha256 in the state dir, with an
//! index of which path had which content when.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::ResourceError;

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One saved version of a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupEntry {
    pub path: PathBuf,
    pub sha256: String,
    /// Seconds since the epoch.
    pub time: u64,
    pub size: u64,
}

/// Content-addressed store under `<state>/backup`.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    pub fn new(state_dir: &Path) -> Self {
        BackupStore {
            dir: state_dir.join("backup"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(sha)
    }

    /// Saves `content` as the old version of `path`; returns its sha256.
    pub fn save(&self, path: &Path, content: &[u8]) -> Result<String, ResourceError> {
        let sha = sha256_hex(content);
        let blob = self.blob_path(&sha);
        let io = |p: &Path, e| ResourceError::io(p, e);
        if !blob.exists() {
            let parent = blob.parent().expect("blob has a parent");
            create_private_dir(parent)?;
            crate::fsutil::write_atomic(&blob, content, Some(0o600))?;
        }
        let entry = BackupEntry {
            path: path.to_path_buf(),
            sha256: sha.clone(),
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            size: content.len() as u64,
        };
        let index = self.dir.join("index.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&index)
            .map_err(|e| io(&index, e))?;
        let line = serde_json::to_string(&entry).expect("entry serializes") + "\n";
        f.write_all(line.as_bytes()).map_err(|e| io(&index, e))?;
        Ok(sha)
    }

    /// Every saved version, oldest first, optionally only those of `path`.
    pub fn list(&self, path: Option<&Path>) -> Result<Vec<BackupEntry>, ResourceError> {
        let index = self.dir.join("index.jsonl");
        let text = match fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(ResourceError::io(&index, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<BackupEntry>(l).ok())
            .filter(|e| path.is_none_or(|p| e.path == p))
            .collect())
    }

    /// The content saved under `sha`.
    pub fn get(&self, sha: &str) -> Result<Vec<u8>, ResourceError> {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResourceError::Invalid(format!("not a sha256: {sha}")));
        }
        let blob = self.blob_path(sha);
        fs::read(&blob).map_err(|e| ResourceError::io(&blob, e))
    }
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<(), ResourceError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ResourceError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_list_get() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let sha = store.save(Path::new("/etc/hosts"), b"old\n").unwrap();
        assert_eq!(store.get(&sha).unwrap(), b"old\n");
        let all = store.list(Some(Path::new("/etc/hosts"))).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].sha256, sha);
        assert!(store.list(Some(Path::new("/other"))).unwrap().is_empty());
    }
}
