//! The `Store` façade: opens the content store, the metadata database and the
//! snapshotter under one root directory and offers what the daemon needs: image
//! lookups, tags, unpacking, container snapshots, changes, export and commit. Import,
//! load/save, pull/push and GC live in their own modules as further `impl Store`
//! blocks.
//!
//! Layout of the root: `lock` (held with flock while open: one process per root),
//! `blobs/sha256/<hex>`, `ingest/`, `metadata.redb`, `snapshots/overlay/<id>/{fs,work}`,
//! `tmp/` (mount points for export).
//!
//! Crash safety comes from ordering: blobs first (each verified and renamed into
//! place), then layer snapshots (unpacked under `extract-…` keys and renamed to their
//! chain id in one transaction), then the image record and its names in one
//! transaction, last. Everything made before that last step is held by a temporary
//! lease; on open, temporary leases and `extract-…` snapshots of a dead process are
//! dropped, and the GC removes what nothing references.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};

use crate::content::{ContentError, ContentStore, Digest};
use crate::diff::{self, Change, DiffError, HashingWriter, TarMode};
use crate::images::{self, ImageError};
use crate::metadata::{
    ImageRecord, LayerRecord, LeaseRecord, Metadata, MetadataError, SnapshotKind,
};
use crate::snapshots::{
    Mount, SnapshotError, SnapshotInfo, Snapshotter, TempMount, EXTRACT_PREFIX,
};
use crate::unpack::{self, UnpackError, UnpackOptions};

/// Errors of the store (each module's errors, plus lookups).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has this store open.
    #[error("store {0} is in use by another process")]
    Locked(PathBuf),
    /// No image matches the reference or id.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// An id prefix that matches several images.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// The image is used by a snapshot (a container) and force was not given.
    #[error("image {image} is in use by snapshot {snapshot:?}")]
    ImageInUse { image: String, snapshot: String },
    /// A layer's content does not match the diff id its config lists.
    #[error("layer {layer} unpacked to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// The manifest and config disagree on the layer count.
    #[error("image {0}: manifest and config list different numbers of layers")]
    LayerCount(Digest),
    /// The image is the parent of other images (a build's intermediate image).
    #[error("conflict: unable to delete {} (cannot be forced) - image has dependent child images", &.0.trim_start_matches("sha256:")[..12.min(.0.trim_start_matches("sha256:").len())])]
    HasChildren(String),
    /// A container snapshot was expected to be writable.
    #[error("snapshot {0:?} is not a writable container snapshot")]
    NotWritable(String),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A filesystem operation on the store failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(what: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// An image with the names that point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub record: ImageRecord,
    /// Normalized references (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
}

impl Image {
    /// The image id (config digest).
    pub fn id(&self) -> &Digest {
        &self.record.id
    }
}

/// Options of [`Store::open`].
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub unpack: UnpackOptions,
    /// How far a layer may expand when unpacked.
    pub layer_limits: unpack::LayerLimits,
}

/// Everything under one root directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    md: Arc<Metadata>,
    snaps: Snapshotter,
    opts: StoreOptions,
    pub(crate) pulls: crate::registry::PullLocks,
    _lock: Flock<fs::File>,
}

static LEASE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A lease that is deleted when dropped (the work it protected is recorded by then,
/// or is garbage).
#[derive(Debug)]
pub struct LeaseGuard {
    md: Arc<Metadata>,
    pub id: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = self.md.write(|t| t.delete_lease(&self.id));
    }
}

impl Store {
    /// Open (creating) the store under `root`, after recovering from a crash of the
    /// process that had it before.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(|e| io_err("create", root, e))?;
        let lock_path = root.join("lock");
        let lock_file = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::Locked(root.to_path_buf()))?;
        let content = ContentStore::open(root)?;
        let md = Arc::new(Metadata::open(&root.join("metadata.redb"))?);
        let snaps = Snapshotter::open(&root.join("snapshots").join("overlay"), Arc::clone(&md))?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        let store = Store {
            root: root.to_path_buf(),
            content,
            md,
            snaps,
            opts,
            pulls: Default::default(),
            _lock: lock,
        };
        store.recover()?;
        Ok(store)
    }

    /// Drop what a dead process left: its temporary leases and half-unpacked layers.
    fn recover(&self) -> Result<(), StoreError> {
        let dropped = self.md.write(|t| {
            let mut n = 0;
            for l in t.leases()? {
                if l.temporary {
                    t.delete_lease(&l.id)?;
                    n += 1;
                }
            }
            Ok::<_, MetadataError>(n)
        })?;
        let extracts = self.snaps.remove_stale_extracts()?;
        if dropped + extracts > 0 {
            tracing::info!(
                leases = dropped,
                extracts,
                "recovered from an interrupted run"
            );
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn metadata(&self) -> &Arc<Metadata> {
        &self.md
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snaps
    }

    /// A temporary lease: GC keeps what is added to it until it is dropped.
    pub fn lease(&self) -> Result<LeaseGuard, StoreError> {
        let id = format!(
            "tmp-{}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            LEASE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let rec = LeaseRecord {
            id: id.clone(),
            created: chrono::Utc::now().timestamp(),
            temporary: true,
            ..Default::default()
        };
        self.md.write(|t| t.put_lease(&rec))?;
        Ok(LeaseGuard {
            md: Arc::clone(&self.md),
            id,
        })
    }

    /// Store a blob under a lease (the lease is extended before the blob exists, so
    /// a GC running meanwhile keeps it).
    pub fn write_blob(&self, lease: &LeaseGuard, data: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        self.lease_blob(lease, &d)?;
        Ok(self.content.write_blob(data)?)
    }

    /// Add a blob to a lease.
    pub fn lease_blob(&self, lease: &LeaseGuard, d: &Digest) -> Result<(), StoreError> {
        self.md
            .write(|t| t.lease_add(&lease.id, std::slice::from_ref(d), &[]))?;
        Ok(())
    }

    // ---- unpacking -------------------------------------------------------------

    /// Unpack one layer blob on top of `parent` (a chain id snapshot, or None for the
    /// first layer). Returns the layer's diff id and its chain id. When `expected` is
    /// known and its snapshot already exists, nothing is unpacked.
    pub fn unpack_layer(
        &self,
        lease: &LeaseGuard,
        blob: &Digest,
        parent: Option<&Digest>,
        expected: Option<&Digest>,
    ) -> Result<(Digest, Digest, u64), StoreError> {
        let chain_for = |diff: &Digest| crate::images::chain_id(parent, diff);
        let _guard = expected.map(|e| self.snaps.lock(chain_for(e).as_str()));
        if let Some(e) = expected {
            let chain = chain_for(e);
            // Lease first, then look: a GC between the two cannot take it.
            self.md
                .write(|t| t.lease_add(&lease.id, &[], &[chain.to_string()]))?;
            if let Some(rec) = self.md.snapshot(chain.as_str())? {
                return Ok((e.clone(), chain, rec.size));
            }
        }
        let (key, diff_id) = self.extract(lease, blob, expected)?;
        let layer = UnpackedLayer {
            chain: chain_for(&diff_id),
            diff_id,
            key: Some(key),
        };
        self.commit_unpacked(lease, layer, parent)
    }

    /// Unpack one layer blob into a snapshot of its own, not yet stacked on the
    /// layers below it, so that the layers of an image can be unpacked at the same
    /// time (an overlay layer's files do not depend on what lies under it);
    /// [`Self::commit_unpacked`] then stacks them in order. `chain` is the chain id
    /// the layer will have: when its snapshot exists already, nothing is unpacked.
    pub fn unpack_detached(
        &self,
        lease: &LeaseGuard,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<UnpackedLayer, StoreError> {
        // Lease first, then look: a GC between the two cannot take it.
        self.md
            .write(|t| t.lease_add(&lease.id, &[], &[chain.to_string()]))?;
        let key = if self.md.snapshot(chain.as_str())?.is_some() {
            None
        } else {
            Some(self.extract(lease, blob, Some(diff_id))?.0)
        };
        Ok(UnpackedLayer {
            diff_id: diff_id.clone(),
            chain: chain.clone(),
            key,
        })
    }

    /// Unpack a layer blob into a new active snapshot without a parent (under the
    /// lease); returns its key and the layer's diff id, which must be `expected` when
    /// that is given. Nothing is left of it when it fails.
    fn extract(
        &self,
        lease: &LeaseGuard,
        blob: &Digest,
        expected: Option<&Digest>,
    ) -> Result<(String, Digest), StoreError> {
        let key = format!(
            "{EXTRACT_PREFIX}{}-{}",
            lease.id,
            LEASE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let rec = self.snaps.create(
            SnapshotKind::Active,
            &key,
            None,
            BTreeMap::new(),
            Some(&lease.id),
        )?;
        let result = (|| {
            let file = self.content.open_blob(blob)?;
            let stored = file
                .metadata()
                .map_err(|e| io_err("stat", &self.content.path(blob), e))?
                .len();
            let opts = UnpackOptions {
                max_tar_size: Some(self.opts.layer_limits.for_size(stored)),
                ..self.opts.unpack.clone()
            };
            let stats = unpack::apply_layer(file, &self.snaps.fs_dir(rec.id), &opts)?;
            match expected {
                Some(e) if *e != stats.diff_id => Err(StoreError::DiffIdMismatch {
                    layer: blob.clone(),
                    expected: e.clone(),
                    actual: stats.diff_id,
                }),
                _ => Ok(stats.diff_id),
            }
        })();
        match result {
            Ok(diff_id) => Ok((key, diff_id)),
            Err(e) => {
                let _ = self.snaps.remove(&key);
                Err(e)
            }
        }
    }

    /// Stack a layer from [`Self::unpack_detached`] on `parent` (the chain id of the
    /// layer below, committed already; None for the first layer). Returns its diff
    /// id, chain id and size, as [`Self::unpack_layer`].
    pub fn commit_unpacked(
        &self,
        lease: &LeaseGuard,
        layer: UnpackedLayer,
        parent: Option<&Digest>,
    ) -> Result<(Digest, Digest, u64), StoreError> {
        let UnpackedLayer {
            diff_id,
            chain,
            key,
        } = layer;
        if let Some(key) = key {
            match self.snaps.commit_onto(
                chain.as_str(),
                &key,
                parent.map(Digest::as_str),
                Some(&lease.id),
            ) {
                Ok(()) => {}
                // Someone else unpacked the same chain meanwhile: theirs is as good.
                Err(SnapshotError::AlreadyExists(_)) => {
                    self.snaps.remove(&key)?;
                    self.md
                        .write(|t| t.lease_add(&lease.id, &[], &[chain.to_string()]))?;
                }
                Err(e) => {
                    let _ = self.snaps.remove(&key);
                    return Err(e.into());
                }
            }
        }
        let size = self
            .md
            .snapshot(chain.as_str())?
            .map(|r| r.size)
            .unwrap_or(0);
        Ok((diff_id, chain, size))
    }

    /// A layer from [`Self::unpack_detached`] that will not be committed (another
    /// layer of its image failed): its snapshot removed.
    pub fn discard_unpacked(&self, layer: UnpackedLayer) {
        if let Some(key) = layer.key {
            if let Err(e) = self.snaps.remove(&key) {
                tracing::warn!(snapshot = %key, error = %e, "removing an unpacked layer");
            }
        }
    }

    /// Unpack every layer of an image whose blobs are stored; returns the top chain id
    /// and the summed unpacked size.
    pub fn unpack_image(
        &self,
        lease: &LeaseGuard,
        layers: &[LayerRecord],
    ) -> Result<(String, u64), StoreError> {
        let mut parent: Option<Digest> = None;
        let mut size = 0;
        for l in layers {
            let (_, chain, s) =
                self.unpack_layer(lease, &l.digest, parent.as_ref(), Some(&l.diff_id))?;
            size += s;
            parent = Some(chain);
        }
        Ok((parent.map(String::from).unwrap_or_default(), size))
    }

    // ---- images ----------------------------------------------------------------

    /// Record an image and point `names` at it, in one transaction: the step that
    /// makes an image visible, always the last one.
    pub fn commit_image(&self, rec: &ImageRecord, names: &[String]) -> Result<Image, StoreError> {
        let mut rec = rec.clone();
        rec.stored_at = chrono::Utc::now().timestamp();
        self.md.write(|t| {
            if let Some(old) = t.image(&rec.id)? {
                for rd in old.repo_digests {
                    if !rec.repo_digests.contains(&rd) {
                        rec.repo_digests.push(rd);
                    }
                }
            }
            t.put_image(&rec)?;
            for n in names {
                t.set_name(n, &rec.id)?;
            }
            Ok::<_, MetadataError>(())
        })?;
        self.image_by_id(&rec.id)
    }

    /// Build an image record from stored manifest and config bytes.
    pub fn record_for(
        &self,
        manifest_bytes: &[u8],
        manifest_digest: &Digest,
        config_bytes: &[u8],
        index_digest: Option<Digest>,
    ) -> Result<(ImageRecord, Vec<Digest>), StoreError> {
        let images::Manifest::Image(m) =
            images::parse_manifest(manifest_digest.as_str(), manifest_bytes)?
        else {
            return Err(ImageError::MediaType(images::MT_OCI_INDEX.to_string()).into());
        };
        let config_digest = images::digest_of(m.config().digest())?;
        let config = images::parse_config(&config_digest, config_bytes)?;
        let diff_ids = images::config_diff_ids(&config_digest, &config)?;
        if diff_ids.len() != m.layers().len() {
            return Err(StoreError::LayerCount(manifest_digest.clone()));
        }
        let mut layers = Vec::new();
        for (l, diff) in m.layers().iter().zip(&diff_ids) {
            let mt = l.media_type().to_string();
            if !images::is_layer_type(&mt) {
                return Err(ImageError::MediaType(mt).into());
            }
            layers.push(LayerRecord {
                digest: images::digest_of(l.digest())?,
                diff_id: diff.clone(),
                size: l.size(),
                media_type: mt,
            });
        }
        let rec = ImageRecord {
            id: config_digest,
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: images::manifest_media_type(manifest_bytes),
            index_digest,
            layers,
            top_snapshot: String::new(),
            repo_digests: Vec::new(),
            created: config
                .get("created")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            labels: images::config_labels(&config),
            size: 0,
            stored_at: 0,
            parent: None,
        };
        Ok((rec, diff_ids))
    }

    fn names_of(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        Ok(self
            .md
            .names()?
            .into_iter()
            .filter(|(_, d)| d == id)
            .map(|(n, _)| n)
            .collect())
    }

    fn image_by_id(&self, id: &Digest) -> Result<Image, StoreError> {
        let record = self
            .md
            .image(id)?
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))?;
        Ok(Image {
            names: self.names_of(id)?,
            record,
        })
    }

    /// Every image with its names.
    pub fn images(&self) -> Result<Vec<Image>, StoreError> {
        let txn = self.md.read()?;
        let names = txn.names()?;
        let mut out: Vec<Image> = txn
            .images()?
            .into_iter()
            .map(|record| Image {
                names: names
                    .iter()
                    .filter(|(_, d)| **d == record.id)
                    .map(|(n, _)| n.clone())
                    .collect(),
                record,
            })
            .collect();
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Find an image by reference (`busybox`, `name:tag`, `name@digest`), by id
    /// (`sha256:…`) or by an unambiguous id prefix.
    pub fn image(&self, reference: &str) -> Result<Image, StoreError> {
        let txn = self.md.read()?;
        if let Ok(d) = reference.parse::<Digest>() {
            if txn.image(&d)?.is_some() {
                return self.image_by_id(&d);
            }
        }
        if let Ok(name) = images::normalize(reference) {
            if let Some(id) = txn.name(&name)? {
                return self.image_by_id(&id);
            }
            if name.contains('@') {
                // name@digest: match a recorded repo digest or manifest digest.
                for rec in txn.images()? {
                    if rec.repo_digests.contains(&name)
                        || name.ends_with(&format!("@{}", rec.manifest_digest))
                    {
                        return self.image_by_id(&rec.id);
                    }
                }
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageRecord> = txn
                .images()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(prefix))
                .collect();
            match hits.len() {
                1 => return self.image_by_id(&hits[0].id),
                0 => {}
                _ => return Err(StoreError::Ambiguous(reference.to_string())),
            }
        }
        Err(StoreError::ImageNotFound(reference.to_string()))
    }

    /// The stored config bytes of an image.
    pub fn image_config(&self, image: &Image) -> Result<Vec<u8>, StoreError> {
        Ok(self.content.read(&image.record.id)?)
    }

    /// Point `target` at the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image, StoreError> {
        let img = self.image(source)?;
        let name = images::normalize(target)?;
        self.md.write(|t| t.set_name(&name, &img.record.id))?;
        self.image_by_id(&img.record.id)
    }

    /// `docker rmi`: untag `reference`; when it was the last name (or an id was
    /// given), delete the image record. Blobs and snapshots go at the next GC.
    /// Returns (untagged names, deleted ids).
    pub fn delete_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let img = self.image(reference)?;
        let by_name = images::normalize(reference)
            .ok()
            .filter(|n| img.names.contains(n));
        let mut untagged = Vec::new();
        let mut deleted = Vec::new();
        let remove_names: Vec<String> = match &by_name {
            Some(n) if img.names.len() > 1 => vec![n.clone()],
            _ => img.names.clone(),
        };
        let delete_record = !(by_name.is_some() && img.names.len() > 1);
        if delete_record
            && self
                .child_counts()?
                .get(&img.record.id)
                .copied()
                .unwrap_or(0)
                > 0
        {
            if by_name.is_none() {
                return Err(StoreError::HasChildren(img.record.id.to_string()));
            }
            // By its last name: the name goes, the image stays for its children.
            self.md.write(|t| {
                for n in &remove_names {
                    t.remove_name(n)?;
                    untagged.push(n.clone());
                }
                Ok::<_, MetadataError>(())
            })?;
            return Ok((untagged, deleted));
        }
        if delete_record && !force {
            if let Some(user) = self
                .snapshot_users(&img.record.top_snapshot)?
                .into_iter()
                .next()
            {
                return Err(StoreError::ImageInUse {
                    image: reference.to_string(),
                    snapshot: user,
                });
            }
        }
        self.md.write(|t| {
            for n in &remove_names {
                t.remove_name(n)?;
                untagged.push(n.clone());
            }
            if delete_record {
                t.delete_image(&img.record.id)?;
                deleted.push(img.record.id.to_string());
            }
            Ok::<_, MetadataError>(())
        })?;
        Ok((untagged, deleted))
    }

    /// How many images name each image as their parent.
    pub fn child_counts(&self) -> Result<HashMap<Digest, usize>, StoreError> {
        let mut n = HashMap::new();
        for rec in self.md.images()? {
            if let Some(p) = rec.parent {
                *n.entry(p).or_insert(0) += 1;
            }
        }
        Ok(n)
    }

    /// After an image was deleted: delete its parent too when it is untagged, has no
    /// other child and no container uses it, and so on up the chain, as `docker rmi`
    /// removes a build's intermediate images. Returns the ids deleted.
    pub fn prune_parents(&self, mut parent: Option<Digest>) -> Result<Vec<String>, StoreError> {
        let mut deleted = Vec::new();
        while let Some(id) = parent.take() {
            let Ok(img) = self.image_by_id(&id) else {
                break;
            };
            if !img.names.is_empty()
                || self.child_counts()?.get(&id).copied().unwrap_or(0) > 0
                || !self.snapshot_users(&img.record.top_snapshot)?.is_empty()
            {
                break;
            }
            self.md.write(|t| t.delete_image(&id))?;
            deleted.push(id.to_string());
            parent = img.record.parent.clone();
        }
        Ok(deleted)
    }

    /// Active or view snapshots whose parent is `top` (containers using an image).
    fn snapshot_users(&self, top: &str) -> Result<Vec<String>, StoreError> {
        if top.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .md
            .snapshots()?
            .into_iter()
            .filter(|s| s.kind != SnapshotKind::Committed && s.parent.as_deref() == Some(top))
            .map(|s| s.key)
            .collect())
    }

    // ---- containers' snapshots ---------------------------------------------------

    /// A writable snapshot `key` on top of an image (what a container's rootfs is).
    pub fn prepare_container(
        &self,
        key: &str,
        image: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, StoreError> {
        let img = self.image(image)?;
        let parent =
            (!img.record.top_snapshot.is_empty()).then_some(img.record.top_snapshot.as_str());
        Ok(self.snaps.prepare(key, parent, labels)?)
    }

    /// The snapshot's Docker-style directory data.
    pub fn snapshot_info(&self, key: &str) -> Result<SnapshotInfo, StoreError> {
        Ok(self.snaps.info(key)?)
    }

    /// What a writable snapshot changed, sorted like `docker diff`.
    pub fn changes(&self, key: &str) -> Result<Vec<Change>, StoreError> {
        let rec = self.snaps.record(key)?;
        if rec.kind != SnapshotKind::Active {
            return Err(StoreError::NotWritable(key.to_string()));
        }
        let lowers = self.snaps.lower_dirs(&rec)?;
        Ok(diff::changes(&self.snaps.fs_dir(rec.id), &lowers)?)
    }

    /// Stream the merged view of snapshot `key` as a tar into `out`.
    pub fn export<W: Write>(&self, key: &str, out: W) -> Result<W, StoreError> {
        let rec = self.snaps.record(key)?;
        let mut layers = vec![self.snaps.fs_dir(rec.id)];
        layers.extend(self.snaps.lower_dirs(&rec)?);
        if layers.len() == 1 {
            return Ok(diff::write_tree(&layers[0], TarMode::Export, out)?);
        }
        // A read-only overlay of every layer, the writable one included: it never
        // conflicts with the container's own mount of the same upper dir.
        let lowerdir = layers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let mut options = vec![format!("lowerdir={lowerdir}")];
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            options.insert(0, "index=off".to_string());
        }
        let m = Mount {
            kind: "overlay".to_string(),
            source: "overlay".to_string(),
            target: String::new(),
            options,
        };
        let point = self.root.join("tmp").join(format!(
            "export-{}-{}",
            std::process::id(),
            LEASE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mounted = TempMount::new(&[m], point)?;
        Ok(diff::write_tree(&mounted.path, TarMode::Export, out)?)
    }

    /// Turn a container's writable snapshot into a new image: its upper dir becomes a
    /// gzip layer (whiteouts as `.wh.` files), on top of `image`'s layers, with a new
    /// config (from `config` or the image's, with `changes`) and a history entry.
    pub fn commit_container(
        &self,
        key: &str,
        image: &str,
        opts: &CommitOptions,
    ) -> Result<Image, StoreError> {
        let base = (!image.is_empty()).then_some(image);
        self.commit_step(Some(key), base, opts)
    }

    /// A new image on `base` (None: on nothing, FROM scratch): the changes in the
    /// writable snapshot `key` as one more layer (none when it changed nothing, and
    /// no snapshot at all for a step that only changes the config), the config from
    /// `opts`, a history entry, and `base` recorded as its parent.
    pub fn commit_step(
        &self,
        key: Option<&str>,
        base: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<Image, StoreError> {
        let base = base.map(|b| self.image(b)).transpose()?;
        let lease = self.lease()?;
        let mut layer = None;
        if let Some(key) = key {
            let rec = self.snaps.record(key)?;
            if rec.kind != SnapshotKind::Active {
                return Err(StoreError::NotWritable(key.to_string()));
            }
            let upper = self.snaps.fs_dir(rec.id);
            let skip = diff::mount_point_filter(&upper, &opts.exclude);
            if diff::has_entries(&upper, &skip)? {
                // Layer: tar → hash (diff id) → gzip → blob.
                let w = self.content.writer(None, None)?;
                let gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
                let hw = HashingWriter::new(gz);
                let hw = diff::write_tree_skipping(&upper, TarMode::Layer, hw, &skip)?;
                let (diff_id, _, gz) = hw.finish();
                let w = gz
                    .finish()
                    .map_err(|e| io_err("compress layer of", &upper, e))?;
                let layer_size = w.written();
                let layer_digest = w.commit()?;
                self.lease_blob(&lease, &layer_digest)?;
                layer = Some(LayerRecord {
                    digest: layer_digest,
                    diff_id,
                    size: layer_size,
                    media_type: images::MT_OCI_LAYER_GZIP.to_string(),
                });
            }
        }

        // Config.
        let mut config = match &base {
            Some(b) => images::parse_config(&b.record.id, &self.content.read(&b.record.id)?)?,
            None => {
                let p = images::PlatformSpec::default();
                json!({
                    "architecture": p.arch,
                    "os": p.os,
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []},
                })
            }
        };
        if let Some(c) = &opts.config {
            config["config"] = c.clone();
        }
        images::apply_changes(&mut config, &opts.changes)?;
        let created = images::now_rfc3339();
        config["created"] = json!(created);
        if !opts.author.is_empty() {
            config["author"] = json!(opts.author);
        }
        let mut layers = base
            .as_ref()
            .map(|b| b.record.layers.clone())
            .unwrap_or_default();
        if let Some(l) = &layer {
            layers.push(l.clone());
        }
        let diff_ids: Vec<Value> = layers.iter().map(|l| json!(l.diff_id.as_str())).collect();
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let mut h = json!({"created": created, "created_by": opts.created_by});
        if !opts.author.is_empty() {
            h["author"] = json!(opts.author);
        }
        if !opts.comment.is_empty() {
            h["comment"] = json!(opts.comment);
        }
        if layer.is_none() {
            h["empty_layer"] = json!(true);
        }
        match config.get_mut("history").and_then(Value::as_array_mut) {
            Some(a) => a.push(h),
            None => config["history"] = json!([h]),
        }
        for k in ["container", "container_config"] {
            if let Some(o) = config.as_object_mut() {
                o.remove(k);
            }
        }
        let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::Config {
            digest: String::new(),
            why: e.to_string(),
        })?;
        let names = match &opts.reference {
            Some(r) => vec![images::normalize(r)?],
            None => Vec::new(),
        };
        let parent = base.as_ref().map(|b| b.record.id.clone());
        self.finish_new_image_with_parent(&lease, &config_bytes, &layers, &names, parent)
    }

    /// Write config and an OCI manifest for `layers` (blobs stored), unpack them and
    /// record the image. Used by import and commit.
    pub(crate) fn finish_new_image(
        &self,
        lease: &LeaseGuard,
        config_bytes: &[u8],
        layers: &[LayerRecord],
        names: &[String],
    ) -> Result<Image, StoreError> {
        self.finish_new_image_with_parent(lease, config_bytes, layers, names, None)
    }

    fn finish_new_image_with_parent(
        &self,
        lease: &LeaseGuard,
        config_bytes: &[u8],
        layers: &[LayerRecord],
        names: &[String],
        parent: Option<Digest>,
    ) -> Result<Image, StoreError> {
        let config_digest = self.write_blob(lease, config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": images::MT_OCI_MANIFEST,
            "config": {
                "mediaType": images::MT_OCI_CONFIG,
                "digest": config_digest.as_str(),
                "size": config_bytes.len(),
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type,
                "digest": l.digest.as_str(),
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Manifest {
            digest: String::new(),
            why: e.to_string(),
        })?;
        let manifest_digest = self.write_blob(lease, &manifest_bytes)?;
        let (mut rec, _) =
            self.record_for(&manifest_bytes, &manifest_digest, config_bytes, None)?;
        let (top, size) = self.unpack_image(lease, &rec.layers)?;
        rec.top_snapshot = top;
        rec.size = size;
        rec.parent = parent;
        self.commit_image(&rec, names)
    }
}

/// What `commit_container` records.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Name for the new image (None = untagged).
    pub reference: Option<String>,
    pub author: String,
    pub comment: String,
    /// `created_by` of the history entry (Docker puts the container's command here).
    pub created_by: String,
    /// Dockerfile-style changes applied to the config.
    pub changes: Vec<String>,
    /// Paths the engine mounts over: left out of the layer where the container only
    /// added them as mount points.
    pub exclude: Vec<String>,
    /// The `config` object to start from (the container's effective config); None =
    /// the image's.
    pub config: Option<Value>,
}

/// Read everything from `r` into the content store (unverified: its digest is what it
/// hashes to). Helper for callers that hold a stream.
pub fn ingest_stream(
    store: &Store,
    lease: &LeaseGuard,
    r: &mut dyn Read,
) -> Result<(Digest, u64), StoreError> {
    let (d, n) = store.content.ingest(r, None, None)?;
    store.lease_blob(lease, &d)?;
    Ok((d, n))
}

/// What [`Store::copy_in`] writes where.
#[derive(Debug, Clone, Default)]
pub struct CopyInOptions {
    /// The directory the entries go under (absolute in the container's root).
    pub dest: String,
    /// The tar holds one file that becomes `dest` itself unless `dest` is a directory.
    pub dest_is_file: bool,
    /// Owner of the directories made on the way.
    pub uid: u32,
    pub gid: u32,
}

impl Store {
    /// Write a tar into the merged view of writable snapshot `key` (mounted for the
    /// call at a private point under `tmp/`), as Dockerfile COPY does.
    pub fn copy_in<R: Read>(
        &self,
        key: &str,
        opts: &CopyInOptions,
        data: R,
    ) -> Result<u64, StoreError> {
        let rec = self.snaps.record(key)?;
        if rec.kind != SnapshotKind::Active {
            return Err(StoreError::NotWritable(key.to_string()));
        }
        let mounts = self.snaps.mounts(key)?;
        let point = self.root.join("tmp").join(format!(
            "copy-{}-{}",
            std::process::id(),
            LEASE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mounted = TempMount::new(&mounts, point)?;
        let comps = |p: &str| -> Vec<Vec<u8>> {
            p.split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(|c| c.as_bytes().to_vec())
                .collect()
        };
        let mut dest = comps(&opts.dest);
        if dest.iter().any(|c| c == b"..") {
            return Err(StoreError::Unpack(UnpackError::DotDot(opts.dest.clone())));
        }
        let mut rename = None;
        if opts.dest_is_file {
            let is_dir = {
                let how = nix::fcntl::OpenHow::new()
                    .flags(nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY)
                    .resolve(
                        nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                            | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
                    );
                let root =
                    fs::File::open(&mounted.path).map_err(|e| io_err("open", &mounted.path, e))?;
                let rel = if dest.is_empty() {
                    ".".to_string()
                } else {
                    opts.dest.trim_start_matches('/').to_string()
                };
                nix::fcntl::openat2(&root, rel.as_str(), how).is_ok()
            };
            if !is_dir {
                rename = dest.pop();
            }
        }
        let target = unpack::CopyTarget {
            dest,
            rename,
            dir_uid: opts.uid,
            dir_gid: opts.gid,
        };
        let stats = unpack::copy_into_root(data, &mounted.path, target)?;
        drop(mounted);
        Ok(stats.size)
    }
}

/// A layer unpacked on its own by [`Store::unpack_detached`], waiting to be stacked
/// on the layers below it by [`Store::commit_unpacked`] (or thrown away by
/// [`Store::discard_unpacked`]).
#[derive(Debug)]
pub struct UnpackedLayer {
    diff_id: Digest,
    /// The chain id it is committed as.
    chain: Digest,
    /// Its extraction snapshot; None when the chain's snapshot existed already.
    key: Option<String>,
}
