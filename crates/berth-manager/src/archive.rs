//! Load and save: `docker save` archives (manifest.json with layer tars, in the old
//! `<id>/layer.tar` form and the Docker 25+ `blobs/sha256/…` form) and OCI image
//! layout archives (oci-layout, index.json, blobs), both ways, several images per
//! archive, tags kept.
//!
//! Load streams the archive once: every file goes straight into the content store
//! (files under `blobs/sha256/` verified against their name), then the images are
//! assembled from manifest.json (preferred: it carries the tags) or index.json,
//! unpacked and recorded, each image's record last.
//!
//! An archive comes from a stranger: what load keeps in memory (the small JSON
//! files, every path and link it has seen) is charged to one budget,
//! [`LOAD_MEMORY_BUDGET`], whatever the archive's shape (a thousand symlinks to
//! one large file cost a thousand names, not a thousand copies), and the tar
//! stream goes through [`berth_tar::Guard`] (names and PAX records ≤ 64 KiB).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::content::Digest;
use crate::images::{self, LayerProgress, ProgressFn, ProgressStatus};
use crate::store::{io_err, Image, LeaseGuard, Store, StoreError};
use crate::unpack::{sniff, Compression, HashingReader};

/// Errors of load and save.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive has neither manifest.json nor index.json.
    #[error("archive has neither manifest.json nor index.json")]
    NoManifest,
    /// manifest.json or index.json names a file the archive does not have.
    #[error("archive does not contain {0:?}")]
    Missing(String),
    /// manifest.json or index.json does not parse.
    #[error("archive {file}: {why}")]
    Invalid { file: String, why: String },
    /// Reading the archive stream failed.
    #[error("reading archive: {0}")]
    Read(#[source] io::Error),
    /// Writing the archive stream failed.
    #[error("writing archive: {0}")]
    Write(#[source] io::Error),
    /// A save format other than "docker" or "oci".
    #[error("unknown archive format {0:?}: expected docker or oci")]
    Format(String),
    /// The archive needs more memory than load gives it.
    #[error("archive refused: its metadata (small files, names and links) needs more than {} MiB", LOAD_MEMORY_BUDGET >> 20)]
    TooLarge,
}

/// What load may hold in memory for one archive: 64 MiB.
pub const LOAD_MEMORY_BUDGET: u64 = 64 << 20;

/// Bytes of load's memory budget spent so far.
struct Budget(u64);

impl Budget {
    fn charge(&mut self, bytes: usize) -> Result<(), ArchiveError> {
        // A map entry costs more than its bytes: count its bookkeeping too.
        self.0 = self.0.saturating_add(bytes as u64 + 64);
        if self.0 > LOAD_MEMORY_BUDGET {
            Err(ArchiveError::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// Archive flavour for `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveFormat {
    /// `docker save`: manifest.json, uncompressed layer tars.
    #[default]
    Docker,
    /// OCI image layout.
    Oci,
}

impl std::str::FromStr for SaveFormat {
    type Err = ArchiveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "docker" => Ok(SaveFormat::Docker),
            "oci" => Ok(SaveFormat::Oci),
            other => Err(ArchiveError::Format(other.to_string())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

const SMALL: u64 = 16 << 20;

/// Clean a path from the archive ("./a/../b" → "b"); None if it leaves the archive.
fn clean(p: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out.join("/"))
}

struct Loaded {
    files: HashMap<String, Digest>,
    /// Shared, so that links to a file do not copy it.
    small: HashMap<String, std::rc::Rc<[u8]>>,
}

impl Loaded {
    fn digest(&self, path: &str) -> Result<Digest, StoreError> {
        let p = clean(path).ok_or_else(|| ArchiveError::Missing(path.to_string()))?;
        if let Some(d) = self.files.get(&p) {
            return Ok(d.clone());
        }
        // An OCI descriptor's digest points at blobs/<alg>/<hex>.
        Err(ArchiveError::Missing(path.to_string()).into())
    }
}

fn invalid(file: &str, why: impl std::fmt::Display) -> StoreError {
    ArchiveError::Invalid {
        file: file.to_string(),
        why: why.to_string(),
    }
    .into()
}

/// One image of a loaded archive, with the names the archive gave it (normalized):
/// `docker load` reports these, not every name the image has in the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub image: Image,
    pub archive_names: Vec<String>,
}

impl Store {
    /// Load every image of a `docker save` or OCI layout archive.
    pub fn load(
        &self,
        reader: impl Read,
        progress: Option<ProgressFn>,
    ) -> Result<Vec<Image>, StoreError> {
        Ok(self
            .load_named(reader, progress)?
            .into_iter()
            .map(|l| l.image)
            .collect())
    }

    /// [`Store::load`], saying which names the archive carried for each image.
    pub fn load_named(
        &self,
        reader: impl Read,
        progress: Option<ProgressFn>,
    ) -> Result<Vec<LoadedImage>, StoreError> {
        let lease = self.lease()?;
        let loaded = self.read_archive(reader, &lease, progress.as_ref())?;
        if let Some(m) = loaded.small.get("manifest.json") {
            let entries: Vec<DockerManifestEntry> =
                serde_json::from_slice(m).map_err(|e| invalid("manifest.json", e))?;
            let mut out: Vec<LoadedImage> = Vec::new();
            for e in entries {
                let l = self.load_docker_entry(&lease, &loaded, &e)?;
                // One image named by two entries is reported once, with both names.
                match out
                    .iter_mut()
                    .find(|p| p.image.record.id == l.image.record.id)
                {
                    Some(prev) => {
                        prev.image = l.image;
                        for n in l.archive_names {
                            if !prev.archive_names.contains(&n) {
                                prev.archive_names.push(n);
                            }
                        }
                    }
                    None => out.push(l),
                }
            }
            return Ok(out);
        }
        if let Some(i) = loaded.small.get("index.json") {
            return self.load_oci_index(&lease, &loaded, i);
        }
        Err(ArchiveError::NoManifest.into())
    }

    fn read_archive(
        &self,
        reader: impl Read,
        lease: &LeaseGuard,
        progress: Option<&ProgressFn>,
    ) -> Result<Loaded, StoreError> {
        let mut files = HashMap::new();
        let mut small: HashMap<String, std::rc::Rc<[u8]>> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let mut budget = Budget(0);
        let mut archive =
            tar::Archive::new(berth_tar::Guard::new(reader, berth_tar::Limits::default()));
        for entry in archive.entries().map_err(ArchiveError::Read)? {
            let mut entry = entry.map_err(ArchiveError::Read)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = clean(&raw) else { continue };
            budget.charge(path.len())?;
            match entry.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = entry.link_name_bytes() {
                        let t = String::from_utf8_lossy(&t).into_owned();
                        // Symlinks are relative to the entry's directory, hard links to
                        // the archive root.
                        let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                            let dir = Path::new(&path).parent().unwrap_or(Path::new(""));
                            clean(&dir.join(&t).to_string_lossy())
                        } else {
                            clean(&t)
                        };
                        if let Some(target) = target {
                            budget.charge(target.len())?;
                            links.push((path, target));
                        }
                    }
                    continue;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                _ => continue,
            }
            let size = entry.size();
            // Files under blobs/sha256 are verified against their name.
            let expected = path
                .strip_prefix("blobs/sha256/")
                .and_then(|h| Digest::from_hex(h).ok());
            if let Some(p) = progress {
                p(LayerProgress {
                    digest: expected
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| path.clone()),
                    status: ProgressStatus::Loading,
                    current: 0,
                    total: size,
                });
            }
            let wanted_small = size <= SMALL
                && (path.ends_with(".json")
                    || path == "oci-layout"
                    || path == "repositories"
                    || expected.is_some() && size <= 1 << 20);
            let digest = if wanted_small {
                budget.charge(usize::try_from(size).unwrap_or(usize::MAX))?;
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(ArchiveError::Read)?;
                let d = Digest::of(&data);
                if let Some(e) = &expected {
                    if *e != d {
                        return Err(crate::content::ContentError::DigestMismatch {
                            expected: e.clone(),
                            actual: d,
                        }
                        .into());
                    }
                }
                self.write_blob(lease, &data)?;
                small.insert(path.clone(), data.into());
                d
            } else {
                if let Some(e) = &expected {
                    self.lease_blob(lease, e)?;
                    if self.content().exists(e) {
                        files.insert(path, e.clone());
                        continue;
                    }
                }
                let (d, _) = self.content().ingest(&mut entry, expected, Some(size))?;
                self.lease_blob(lease, &d)?;
                d
            };
            files.insert(path, digest);
        }
        for (from, to) in links {
            if let Some(d) = files.get(&to).cloned() {
                if let Some(data) = small.get(&to).cloned() {
                    small.insert(from.clone(), data);
                }
                files.insert(from, d);
            }
        }
        Ok(Loaded { files, small })
    }

    fn load_docker_entry(
        &self,
        lease: &LeaseGuard,
        loaded: &Loaded,
        e: &DockerManifestEntry,
    ) -> Result<LoadedImage, StoreError> {
        let config_digest = loaded.digest(&e.config)?;
        let config_bytes = self.content().read(&config_digest)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let d = loaded.digest(l)?;
            let mut head = [0u8; 4];
            let n = self
                .content()
                .open_blob(&d)?
                .read(&mut head)
                .map_err(|err| io_err("read", &self.content().path(&d), err))?;
            let mt = match sniff(&head[..n]) {
                Compression::None => images::MT_OCI_LAYER,
                Compression::Gzip => images::MT_OCI_LAYER_GZIP,
                Compression::Zstd => images::MT_OCI_LAYER_ZSTD,
            };
            let size = self.content().info(&d)?.size;
            layers.push(json!({"mediaType": mt, "digest": d.as_str(), "size": size}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": images::MT_OCI_MANIFEST,
            "config": {"mediaType": images::MT_OCI_CONFIG, "digest": config_digest.as_str(), "size": config_bytes.len()},
            "layers": layers,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| invalid("manifest.json", e))?;
        let manifest_digest = self.write_blob(lease, &manifest_bytes)?;
        let names = e
            .repo_tags
            .iter()
            .flatten()
            .map(|t| images::normalize(t))
            .collect::<Result<Vec<_>, _>>()?;
        let image = self.load_manifest(
            lease,
            &manifest_bytes,
            &manifest_digest,
            &config_bytes,
            &names,
        )?;
        Ok(LoadedImage {
            image,
            archive_names: names,
        })
    }

    fn load_oci_index(
        &self,
        lease: &LeaseGuard,
        loaded: &Loaded,
        index_bytes: &[u8],
    ) -> Result<Vec<LoadedImage>, StoreError> {
        let index: Value =
            serde_json::from_slice(index_bytes).map_err(|e| invalid("index.json", e))?;
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index.json", "no manifests"))?;
        let mut out: Vec<LoadedImage> = Vec::new();
        for desc in manifests {
            let digest: Digest = desc
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| invalid("index.json", "a manifest without a sha256 digest"))?;
            if !loaded.files.values().any(|d| *d == digest) && !self.content().exists(&digest) {
                return Err(ArchiveError::Missing(format!("blobs/sha256/{}", digest.hex())).into());
            }
            let ann = desc.get("annotations");
            let name = ann
                .and_then(|a| a.get("io.containerd.image.name"))
                .and_then(Value::as_str)
                .or_else(|| {
                    ann.and_then(|a| a.get("org.opencontainers.image.ref.name"))
                        .and_then(Value::as_str)
                        // A bare tag ("latest") names no repository.
                        .filter(|n| n.contains('/') || n.contains(':'))
                });
            let names = match name.map(images::normalize) {
                Some(Ok(n)) => vec![n],
                _ => Vec::new(),
            };
            let mut bytes = self.content().read(&digest)?;
            let mut manifest_digest = digest.clone();
            let mut index_digest = None;
            if let images::Manifest::Index(idx) = images::parse_manifest(digest.as_str(), &bytes)? {
                let platform = images::PlatformSpec::default();
                let d = images::select_manifest(&idx, &platform)
                    .ok_or_else(|| no_platform(&platform, &digest))?;
                index_digest = Some(digest.clone());
                manifest_digest = images::digest_of(d.digest())?;
                bytes = self.content().read(&manifest_digest)?;
            }
            let images::Manifest::Image(m) =
                images::parse_manifest(manifest_digest.as_str(), &bytes)?
            else {
                return Err(invalid("index.json", "nested index"));
            };
            let config_digest = images::digest_of(m.config().digest())?;
            let config_bytes = self.content().read(&config_digest)?;
            let mut img =
                self.load_manifest(lease, &bytes, &manifest_digest, &config_bytes, &names)?;
            if let Some(i) = index_digest {
                img.record.index_digest = Some(i);
            }
            if let Some(prev) = out.iter_mut().find(|p| p.image.record.id == img.record.id) {
                prev.image = img;
                for n in names {
                    if !prev.archive_names.contains(&n) {
                        prev.archive_names.push(n);
                    }
                }
            } else {
                out.push(LoadedImage {
                    image: img,
                    archive_names: names,
                });
            }
        }
        Ok(out)
    }

    fn load_manifest(
        &self,
        lease: &LeaseGuard,
        manifest_bytes: &[u8],
        manifest_digest: &Digest,
        config_bytes: &[u8],
        names: &[String],
    ) -> Result<Image, StoreError> {
        let (mut rec, _) = self.record_for(manifest_bytes, manifest_digest, config_bytes, None)?;
        for l in &rec.layers {
            if !self.content().exists(&l.digest) {
                return Err(
                    ArchiveError::Missing(format!("blobs/sha256/{}", l.digest.hex())).into(),
                );
            }
        }
        let (top, size) = self.unpack_image(lease, &rec.layers)?;
        rec.top_snapshot = top;
        rec.size = size;
        self.commit_image(&rec, names)
    }

    /// Write the images `references` name (names or ids) as one archive.
    pub fn save<W: Write>(
        &self,
        references: &[String],
        format: SaveFormat,
        out: W,
    ) -> Result<W, StoreError> {
        // image id -> (image, names to write)
        let mut wanted: Vec<(Image, Vec<String>)> = Vec::new();
        let mut want = |img: Image, name: Option<String>| match wanted
            .iter_mut()
            .find(|(i, _)| i.record.id == img.record.id)
        {
            Some((_, names)) => {
                if let Some(n) = name.filter(|n| !names.contains(n)) {
                    names.push(n);
                }
            }
            None => wanted.push((img, name.into_iter().collect())),
        };
        for r in references {
            // A bare repository name (`busybox`) means every tag of it, as docker
            // saves them; only when it has none is it looked up as `:latest` or an id.
            let tagged = self.repository_tags(r)?;
            if !tagged.is_empty() {
                for (img, name) in tagged {
                    want(img, Some(name));
                }
                continue;
            }
            let img = self.image(r)?;
            let name = images::normalize(r).ok().filter(|n| img.names.contains(n));
            want(img, name);
        }
        let mut b = tar::Builder::new(out);
        let mut written: HashSet<String> = HashSet::new();
        match format {
            SaveFormat::Docker => self.save_docker(&mut b, &wanted, &mut written)?,
            SaveFormat::Oci => self.save_oci(&mut b, &wanted, &mut written)?,
        }
        b.into_inner().map_err(|e| ArchiveError::Write(e).into())
    }

    /// Every `(image, name)` of the repository a name-only reference names, by
    /// name; empty for anything else (a tag, a digest, an id).
    fn repository_tags(&self, reference: &str) -> Result<Vec<(Image, String)>, StoreError> {
        // The parser fills in `latest`, so "name only" is read from the text.
        let last = reference.rsplit('/').next().unwrap_or(reference);
        if last.contains(':') || reference.contains('@') {
            return Ok(Vec::new());
        }
        let Ok(parsed) = images::parse_reference(reference) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}:", images::repository_of(&parsed));
        let mut out: Vec<(Image, String)> = Vec::new();
        for img in self.images()? {
            for n in img.names.iter().filter(|n| n.starts_with(&prefix)) {
                out.push((img.clone(), n.clone()));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    fn append_bytes<W: Write>(
        b: &mut tar::Builder<W>,
        path: &str,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data)
            .map_err(ArchiveError::Write)?;
        Ok(())
    }

    fn append_blob<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        d: &Digest,
        written: &mut HashSet<String>,
    ) -> Result<(), StoreError> {
        let path = format!("blobs/sha256/{}", d.hex());
        if !written.insert(path.clone()) {
            return Ok(());
        }
        let f = self.content().open_blob(d)?;
        let size = self.content().info(d)?.size;
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &path, f)
            .map_err(ArchiveError::Write)?;
        Ok(())
    }

    fn save_docker<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        wanted: &[(Image, Vec<String>)],
        written: &mut HashSet<String>,
    ) -> Result<(), StoreError> {
        let mut manifest = Vec::new();
        let mut index = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        // Uncompressed size of every layer written, for the OCI manifests.
        let mut layer_sizes: HashMap<String, u64> = HashMap::new();
        for (img, names) in wanted {
            self.append_blob(b, &img.record.id, written)?;
            let mut layer_paths = Vec::new();
            for l in &img.record.layers {
                let path = format!("blobs/sha256/{}", l.diff_id.hex());
                layer_paths.push(path.clone());
                if !written.insert(path.clone()) {
                    continue;
                }
                if l.digest == l.diff_id {
                    written.remove(&path);
                    self.append_blob(b, &l.digest, written)?;
                    layer_sizes.insert(path, self.content().info(&l.digest)?.size);
                    continue;
                }
                // `docker save` layers are uncompressed: decompress to a temporary
                // file first (the tar header needs the size), checking the diff id.
                let tmp = self.root().join("tmp").join(format!(
                    "save-{}-{}",
                    std::process::id(),
                    l.diff_id.hex()
                ));
                let res = (|| {
                    let blob = self.content().open_blob(&l.digest)?;
                    let (_, plain) = crate::unpack::decompress(blob).map_err(ArchiveError::Read)?;
                    let mut hr = HashingReader::new(plain);
                    let mut f =
                        std::fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
                    io::copy(&mut hr, &mut f).map_err(|e| io_err("write", &tmp, e))?;
                    let (diff, size) = hr.finish().map_err(ArchiveError::Read)?;
                    if diff != l.diff_id {
                        return Err(StoreError::DiffIdMismatch {
                            layer: l.digest.clone(),
                            expected: l.diff_id.clone(),
                            actual: diff,
                        });
                    }
                    let mut h = tar::Header::new_gnu();
                    h.set_size(size);
                    h.set_mode(0o644);
                    h.set_mtime(0);
                    h.set_entry_type(tar::EntryType::Regular);
                    let f = std::fs::File::open(&tmp).map_err(|e| io_err("open", &tmp, e))?;
                    b.append_data(&mut h, &path, f)
                        .map_err(ArchiveError::Write)?;
                    Ok(size)
                })();
                let _ = std::fs::remove_file(&tmp);
                layer_sizes.insert(path, res?);
            }
            // Docker 25+ writes the same images as an OCI layout beside
            // manifest.json: a manifest over the uncompressed layers, per image.
            let config_size = self.content().info(&img.record.id)?.size;
            let mut layers = Vec::new();
            for (l, path) in img.record.layers.iter().zip(&layer_paths) {
                let size = layer_sizes.get(path).copied().unwrap_or_default();
                layers.push(json!({
                    "mediaType": images::MT_OCI_LAYER,
                    "digest": l.diff_id.as_str(),
                    "size": size,
                }));
            }
            let oci_manifest = json!({
                "schemaVersion": 2,
                "mediaType": images::MT_OCI_MANIFEST,
                "config": {
                    "mediaType": images::MT_OCI_CONFIG,
                    "digest": img.record.id.as_str(),
                    "size": config_size,
                },
                "layers": layers,
            });
            let data = serde_json::to_vec(&oci_manifest).map_err(|e| invalid("manifest", e))?;
            let digest = Digest::of(&data);
            let path = format!("blobs/sha256/{}", digest.hex());
            if written.insert(path.clone()) {
                Self::append_bytes(b, &path, &data)?;
            }
            let base = json!({
                "mediaType": images::MT_OCI_MANIFEST,
                "digest": digest.as_str(),
                "size": data.len(),
            });
            if names.is_empty() {
                index.push(base.clone());
            }
            let top = img
                .record
                .layers
                .last()
                .map(|l| l.diff_id.hex().to_string())
                .unwrap_or_default();
            for n in names {
                let parsed = images::parse_reference(n)?;
                let tag = parsed.tag().unwrap_or("latest").to_string();
                let mut d = base.clone();
                d["annotations"] = json!({
                    "io.containerd.image.name": n,
                    "org.opencontainers.image.ref.name": tag,
                });
                index.push(d);
                let familiar = images::familiar(n);
                let repo = familiar
                    .rsplit_once(':')
                    .map(|(r, _)| r.to_string())
                    .unwrap_or(familiar.clone());
                repositories
                    .entry(repo)
                    .or_default()
                    .insert(tag, top.clone());
            }
            manifest.push(DockerManifestEntry {
                config: format!("blobs/sha256/{}", img.record.id.hex()),
                // Saved by id, docker writes no names (null), and a load of it
                // reports "Loaded image ID".
                repo_tags: (!names.is_empty())
                    .then(|| names.iter().map(|n| images::familiar(n)).collect()),
                layers: layer_paths,
            });
        }
        let data = serde_json::to_vec(&manifest).map_err(|e| invalid("manifest.json", e))?;
        Self::append_bytes(b, "manifest.json", &data)?;
        let index =
            json!({"schemaVersion": 2, "mediaType": images::MT_OCI_INDEX, "manifests": index});
        let data = serde_json::to_vec(&index).map_err(|e| invalid("index.json", e))?;
        Self::append_bytes(b, "index.json", &data)?;
        Self::append_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if !repositories.is_empty() {
            let data = serde_json::to_vec(&repositories).map_err(|e| invalid("repositories", e))?;
            Self::append_bytes(b, "repositories", &data)?;
        }
        Ok(())
    }

    fn save_oci<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        wanted: &[(Image, Vec<String>)],
        written: &mut HashSet<String>,
    ) -> Result<(), StoreError> {
        Self::append_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut descs = Vec::new();
        for (img, names) in wanted {
            self.append_blob(b, &img.record.id, written)?;
            for l in &img.record.layers {
                self.append_blob(b, &l.digest, written)?;
            }
            self.append_blob(b, &img.record.manifest_digest, written)?;
            let size = self.content().info(&img.record.manifest_digest)?.size;
            let base = json!({
                "mediaType": img.record.manifest_media_type,
                "digest": img.record.manifest_digest.as_str(),
                "size": size,
            });
            if names.is_empty() {
                descs.push(base.clone());
            }
            for n in names {
                let mut d = base.clone();
                let tag = images::parse_reference(n)?
                    .tag()
                    .unwrap_or("latest")
                    .to_string();
                let ann: BTreeMap<&str, String> = BTreeMap::from([
                    ("io.containerd.image.name", n.clone()),
                    ("org.opencontainers.image.ref.name", tag),
                ]);
                d["annotations"] = json!(ann);
                descs.push(d);
            }
        }
        let index =
            json!({"schemaVersion": 2, "mediaType": images::MT_OCI_INDEX, "manifests": descs});
        let data = serde_json::to_vec(&index).map_err(|e| invalid("index.json", e))?;
        Self::append_bytes(b, "index.json", &data)
    }
}

fn no_platform(p: &images::PlatformSpec, d: &Digest) -> StoreError {
    images::ImageError::NoPlatform {
        platform: p.to_string(),
        digest: d.to_string(),
    }
    .into()
}
