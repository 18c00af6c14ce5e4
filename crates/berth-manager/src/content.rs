//! Content store: blobs addressed by their sha256 digest under `<root>/blobs/sha256/<hex>`.
//!
//! A blob is written to a private file under `<root>/ingest/`, hashed as it is written,
//! verified against the digest the caller expected, fsynced and only then renamed into
//! place (and the directory fsynced), so a blob is never visible half-written. Ingest
//! files left by a crash are simply deleted when the store is opened again: an ingest is
//! restartable, never trusted.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A digest string that is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// The data did not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// More data came than announced: refused as it arrived.
    #[error("blob {expected} is larger than the {size} bytes it was announced with: refused")]
    TooLarge { expected: String, size: u64 },
    /// The data did not have the size it was announced with.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// No blob with this digest is stored.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// A filesystem operation on the store failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContentError {
    fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        ContentError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A validated `sha256:<hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A digest from a finished hasher.
    pub fn from_hasher(h: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// A digest from its bare hex form (as used in file names).
    pub fn from_hex(hex: &str) -> Result<Digest, ContentError> {
        format!("sha256:{hex}").parse()
    }
}

impl FromStr for Digest {
    type Err = ContentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ContentError::InvalidDigest(s.to_string()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ContentError::InvalidDigest(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }
}

impl TryFrom<String> for Digest {
    type Error = ContentError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size and creation time of a stored blob.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub created: SystemTime,
}

/// The blob store. Cheap to clone; all clones share the in-process ingest locks.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    locks: Arc<KeyedLocks>,
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Open (creating if needed) the store under `root`, removing ingest files left
    /// over by a process that died mid-write. The caller must hold the store's lock
    /// (no other process writes here).
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).map_err(|e| ContentError::io("create", &blobs, e))?;
        fs::create_dir_all(&ingest).map_err(|e| ContentError::io("create", &ingest, e))?;
        if let Ok(entries) = fs::read_dir(&ingest) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(ContentStore {
            blobs,
            ingest,
            locks: Arc::new(KeyedLocks::default()),
        })
    }

    /// Path of a blob (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is stored.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size and creation time of a blob.
    pub fn info(&self, digest: &Digest) -> Result<BlobInfo, ContentError> {
        let path = self.path(digest);
        let md = fs::metadata(&path).map_err(|e| self.not_found_or(digest, &path, e))?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: md.len(),
            created: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| self.not_found_or(digest, &path, e))
    }

    /// Read a whole (small) blob into memory.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| self.not_found_or(digest, &path, e))
    }

    fn not_found_or(&self, digest: &Digest, path: &Path, e: io::Error) -> ContentError {
        if e.kind() == io::ErrorKind::NotFound {
            ContentError::NotFound(digest.clone())
        } else {
            ContentError::io("open blob", path, e)
        }
    }

    /// Store `data`, returning its digest (a no-op if it is already stored).
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest, ContentError> {
        let digest = Digest::of(data);
        if self.exists(&digest) {
            return Ok(digest);
        }
        let mut w = self.writer(Some(digest.clone()), Some(data.len() as u64))?;
        w.write_all(data)
            .map_err(|e| ContentError::io("write", &w.tmp_path, e))?;
        w.commit()
    }

    /// Copy a stream into the store, verifying it against `expected` when given.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, u64), ContentError> {
        let mut w = self.writer(expected, size)?;
        let tmp = w.tmp_path.clone();
        if let Err(e) = io::copy(reader, &mut w) {
            return Err(w
                .too_large()
                .unwrap_or(ContentError::io("copy into", &tmp, e)));
        }
        let size = w.written;
        Ok((w.commit()?, size))
    }

    /// A writer for a new blob. When `expected` is given, commit fails unless the data
    /// hashes to it (and has `size` bytes, when given).
    pub fn writer(
        &self,
        expected: Option<Digest>,
        size: Option<u64>,
    ) -> Result<BlobWriter, ContentError> {
        let n = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.ingest.join(format!("{}-{n}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| ContentError::io("create", &tmp_path, e))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            tmp_path,
            hasher: Sha256::new(),
            written: 0,
            expected,
            size,
            exceeded: false,
        })
    }

    /// Hold the in-process lock for one digest, so two writers of the same blob take
    /// turns and the second finds it stored.
    pub fn lock(&self, digest: &Digest) -> KeyGuard {
        self.locks.lock(digest.as_str())
    }

    /// Delete a blob. Deleting a missing blob is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::io("remove", &path, e)),
        }
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<BlobInfo>, ContentError> {
        let entries =
            fs::read_dir(&self.blobs).map_err(|e| ContentError::io("list", &self.blobs, e))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(digest) = Digest::from_hex(name) else {
                continue;
            };
            if let Ok(md) = e.metadata() {
                out.push(BlobInfo {
                    digest,
                    size: md.len(),
                    created: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }
}

/// A blob being written. Dropping it without `commit` deletes the temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    store: ContentStore,
    file: Option<io::BufWriter<File>>,
    tmp_path: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
    size: Option<u64>,
    /// A write went past `size` (then the blob is refused, never committed).
    exceeded: bool,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        if let Some(size) = self.size {
            if self.written + buf.len() as u64 > size {
                self.exceeded = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than the {size} bytes announced"),
                ));
            }
        }
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The error to report when a write went past the announced size.
    pub fn too_large(&self) -> Option<ContentError> {
        self.exceeded.then(|| ContentError::TooLarge {
            expected: self
                .expected
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "being written".to_string()),
            size: self.size.unwrap_or(0),
        })
    }

    /// Verify, fsync and move the blob into place; returns its digest.
    pub fn commit(mut self) -> Result<Digest, ContentError> {
        let hasher = std::mem::take(&mut self.hasher);
        let actual = Digest::from_hasher(hasher);
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(ContentError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(size) = self.size {
            if size != self.written {
                return Err(ContentError::SizeMismatch {
                    digest: actual,
                    expected: size,
                    actual: self.written,
                });
            }
        }
        let Some(buf) = self.file.take() else {
            return Err(ContentError::io(
                "commit",
                &self.tmp_path,
                io::Error::other("blob writer already committed"),
            ));
        };
        let file = buf
            .into_inner()
            .map_err(|e| ContentError::io("flush", &self.tmp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ContentError::io("fsync", &self.tmp_path, e))?;
        drop(file);
        let dest = self.store.path(&actual);
        if dest.exists() {
            let _ = fs::remove_file(&self.tmp_path);
            return Ok(actual);
        }
        fs::rename(&self.tmp_path, &dest).map_err(|e| ContentError::io("rename into", &dest, e))?;
        sync_dir(&self.store.blobs)?;
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp_path.exists() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ContentError::io("fsync directory", dir, e))
}

/// In-process locks keyed by string: blob digests, snapshot names, references.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    held: Mutex<HashMap<String, usize>>,
    cond: Condvar,
}

/// Holds one key of a [`KeyedLocks`] until dropped.
#[derive(Debug)]
pub struct KeyGuard {
    locks: Arc<KeyedLocks>,
    key: String,
}

impl KeyedLocks {
    /// Block until `key` is free, then hold it.
    pub fn lock(self: &Arc<Self>, key: &str) -> KeyGuard {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains_key(key) {
            held = self.cond.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(key.to_string(), 1);
        KeyGuard {
            locks: Arc::clone(self),
            key: key.to_string(),
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
        self.locks.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_verify_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = cs.write_blob(b"hello").unwrap();
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let err = cs
            .ingest(&mut &b"hello"[..], Some(wrong.clone()), None)
            .unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        assert!(!cs.exists(&wrong));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!("sha256:xyz".parse::<Digest>().is_err());
    }
}
