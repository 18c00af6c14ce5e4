//! The build cache, as the classic builder keys it: a step is a hit when its parent
//! image, its instruction (as recorded in history, after substitution, with the
//! build args it uses) and the resulting config match, and for COPY/ADD the content
//! checksums of the sources (part of the instruction text). One small JSON file per
//! key under `<data-root>/builder/cache/`, written atomically, so the cache survives
//! engine and manager restarts; an entry whose image is gone is a miss.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One cached step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The image the step made.
    pub image: String,
    /// The image it was made on ("" = scratch).
    pub parent: String,
    /// The history line, for `GET /build` style listings.
    pub created_by: String,
    /// RFC 3339.
    pub created: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The key of a step.
pub fn key(parent: &str, created_by: &str, config: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update([0]);
    h.update(created_by.as_bytes());
    h.update([0]);
    // serde_json's maps are ordered, so equal configs serialize equally.
    h.update(config.to_string().as_bytes());
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    pub fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        key.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| self.dir.join(key))
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        let data = fs::read(self.path(key)?).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub fn put(&self, key: &str, entry: &Entry) -> io::Result<()> {
        let path = self
            .path(key)
            .ok_or_else(|| io::Error::other("invalid cache key"))?;
        fs::create_dir_all(&self.dir)?;
        let data = serde_json::to_vec(entry).map_err(io::Error::other)?;
        crate::fsutil::atomic_write(&path, &data, 0o600)
    }

    pub fn remove(&self, key: &str) {
        if let Some(p) = self.path(key) {
            let _ = fs::remove_file(p);
        }
    }

    /// Every entry with its key.
    pub fn entries(&self) -> Vec<(String, Entry)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out = vec![];
        for e in rd.flatten() {
            let k = e.file_name().to_string_lossy().into_owned();
            if let Some(entry) = self.get(&k) {
                out.push((k, entry));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening() {
        let d = tempfile::tempdir().unwrap();
        let k = key(
            "sha256:a",
            "/bin/sh -c true",
            &serde_json::json!({"Env": ["A=1"]}),
        );
        assert_ne!(
            k,
            key(
                "sha256:a",
                "/bin/sh -c true",
                &serde_json::json!({"Env": ["A=2"]})
            )
        );
        let e = Entry {
            image: "sha256:b".into(),
            parent: "sha256:a".into(),
            created_by: "x".into(),
            created: "now".into(),
        };
        Cache::new(d.path()).put(&k, &e).unwrap();
        assert_eq!(Cache::new(d.path()).get(&k), Some(e));
        assert_eq!(Cache::new(d.path()).entries().len(), 1);
        assert_eq!(Cache::new(d.path()).get("../x"), None);
    }
}
