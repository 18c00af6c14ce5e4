//! What a container changed, and turning directories back into tars.
//!
//! `changes` reads a writable snapshot's upper directory against its lower layers and
//! lists `A`/`C`/`D` paths sorted by path, as `docker diff` does (overlay whiteouts are
//! `D`). `write_tree` tars a directory: in [`TarMode::Layer`] overlay whiteouts become
//! `.wh.` files and opaque directories get a `.wh..wh..opq` entry (what `commit`
//! stores); in [`TarMode::Export`] whiteouts are skipped (what `export` streams of a
//! merged view). Ownership, modes, mtimes, xattrs (except overlay's own), hard links,
//! symlinks and device nodes are kept.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::unpack::{is_opaque, is_whiteout};

/// Errors of diffing and tarring.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading the tree failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path, source: io::Error) -> DiffError {
    DiffError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Kind of a change, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    /// "A", "C" or "D".
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "A",
            ChangeKind::Modified => "C",
            ChangeKind::Deleted => "D",
        }
    }
}

/// One changed path (absolute, as seen in the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.path)
    }
}

/// The changes in `upper` relative to `lowers` (top first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, DiffError> {
    let mut out = Vec::new();
    walk_changes(upper, Path::new(""), lowers, &mut out)?;
    // Component-wise, which is the order a directory walk gives (`/etc/x` before
    // `/etc-old`), as `docker diff` prints.
    out.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    Ok(out)
}

fn walk_changes(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    out: &mut Vec<Change>,
) -> Result<(), DiffError> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| io_err("read directory", &dir, e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let rel_p = rel.join(&name);
        let path = upper.join(&rel_p);
        let md = fs::symlink_metadata(&path).map_err(|e| io_err("stat", &path, e))?;
        let shown = format!("/{}", rel_p.to_string_lossy());
        if is_whiteout(&md) {
            out.push(Change {
                kind: ChangeKind::Deleted,
                path: shown,
            });
            continue;
        }
        let lower = lower_lookup(lowers, &rel_p);
        if md.is_dir() {
            match &lower {
                Some(l) if l.is_dir() => {
                    // Overlay copies a directory up only when something in it (or
                    // its own metadata) changed; Docker lists such a directory as C.
                    out.push(Change {
                        kind: ChangeKind::Modified,
                        path: shown.clone(),
                    });
                    if is_opaque(&path) {
                        // Everything the lower layers had here is gone.
                        let present: BTreeSet<_> = fs::read_dir(&path)
                            .map_err(|e| io_err("read directory", &path, e))?
                            .flatten()
                            .map(|e| e.file_name())
                            .collect();
                        for child in lower_children(lowers, &rel_p) {
                            if !present.contains(&child) {
                                out.push(Change {
                                    kind: ChangeKind::Deleted,
                                    path: format!("/{}", rel_p.join(&child).to_string_lossy()),
                                });
                            }
                        }
                    }
                }
                Some(_) => out.push(Change {
                    kind: ChangeKind::Modified,
                    path: shown,
                }),
                None => out.push(Change {
                    kind: ChangeKind::Added,
                    path: shown,
                }),
            }
            walk_changes(upper, &rel_p, lowers, out)?;
        } else {
            out.push(Change {
                kind: if lower.is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                },
                path: shown,
            });
        }
    }
    Ok(())
}

/// What the lower layers show at `rel` (None if absent or whited out), walking each
/// layer component by component so a symlink in a layer is never followed.
pub fn lower_lookup(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    let comps: Vec<_> = rel.components().collect();
    for layer in lowers {
        let mut cur = layer.clone();
        let mut found = None;
        let mut stop_below = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let Ok(md) = fs::symlink_metadata(&cur) else {
                break;
            };
            if is_whiteout(&md) {
                return None;
            }
            let last = i + 1 == comps.len();
            if last {
                found = Some(md);
            } else if !md.is_dir() {
                // A file here hides anything below it in lower layers.
                return None;
            } else if is_opaque(&cur) {
                stop_below = true;
            }
        }
        if found.is_some() {
            return found;
        }
        if stop_below {
            return None;
        }
    }
    None
}

/// Names the lower layers show in directory `rel`.
fn lower_children(lowers: &[PathBuf], rel: &Path) -> BTreeSet<std::ffi::OsString> {
    let mut names = BTreeSet::new();
    let mut hidden = BTreeSet::new();
    for layer in lowers {
        let dir = layer.join(rel);
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let n = e.file_name();
                if hidden.contains(&n) {
                    continue;
                }
                match e.metadata() {
                    Ok(md) if is_whiteout(&md) => {
                        hidden.insert(n);
                    }
                    _ => {
                        names.insert(n);
                    }
                }
            }
        }
        if is_opaque(&dir) {
            break;
        }
    }
    names
}

/// How [`write_tree`] treats overlay's markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarMode {
    /// A layer: whiteouts become `.wh.` files, opaque dirs get `.wh..wh..opq`.
    Layer,
    /// A filesystem view: whiteouts are left out.
    Export,
}

/// Write `root`'s tree as a tar to `out` (returned, unfinished tars are not).
pub fn write_tree<W: Write>(root: &Path, mode: TarMode, out: W) -> Result<W, DiffError> {
    write_tree_skipping(root, mode, out, &HashSet::new())
}

/// [`write_tree`] without the paths (relative to `root`) in `skip`.
pub fn write_tree_skipping<W: Write>(
    root: &Path,
    mode: TarMode,
    out: W,
    skip: &HashSet<PathBuf>,
) -> Result<W, DiffError> {
    let mut b = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk_tar(&mut b, root, Path::new(""), mode, &mut links, skip)?;
    b.into_inner().map_err(|e| io_err("finish tar of", root, e))
}

/// The paths of a writable layer `upper` that are only the runtime's mount points:
/// each of `exclude` (absolute paths) that the layer holds as an empty file or an
/// empty directory, and the directories that were copied up only to hold them.
pub fn mount_point_filter(upper: &Path, exclude: &[String]) -> HashSet<PathBuf> {
    let mut skip = HashSet::new();
    for p in exclude {
        let rel = PathBuf::from(p.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(upper.join(&rel)) else {
            continue;
        };
        let empty = if md.is_dir() {
            fs::read_dir(upper.join(&rel)).is_ok_and(|mut d| d.next().is_none())
        } else {
            md.is_file() && md.len() == 0
        };
        if empty {
            skip.insert(rel);
        }
    }
    // Parents whose every entry is skipped, deepest first.
    let mut parents: Vec<PathBuf> = skip
        .iter()
        .flat_map(|p| {
            p.ancestors()
                .skip(1)
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    parents.dedup();
    for dir in parents {
        let Ok(entries) = fs::read_dir(upper.join(&dir)) else {
            continue;
        };
        if entries
            .flatten()
            .all(|e| skip.contains(&dir.join(e.file_name())))
        {
            skip.insert(dir);
        }
    }
    skip
}

/// Whether `upper` holds anything outside `skip`.
pub fn has_entries(upper: &Path, skip: &HashSet<PathBuf>) -> Result<bool, DiffError> {
    let entries = fs::read_dir(upper).map_err(|e| io_err("read directory", upper, e))?;
    Ok(entries
        .flatten()
        .any(|e| !skip.contains(Path::new(&e.file_name()))))
}

fn walk_tar<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    mode: TarMode,
    links: &mut HashMap<(u64, u64), PathBuf>,
    skip: &HashSet<PathBuf>,
) -> Result<(), DiffError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| io_err("read directory", &dir, e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let rel_p = rel.join(&name);
        if skip.contains(&rel_p) {
            continue;
        }
        let path = root.join(&rel_p);
        let md = fs::symlink_metadata(&path).map_err(|e| io_err("stat", &path, e))?;
        let werr = |e: io::Error| io_err("write tar entry for", &path, e);
        if is_whiteout(&md) {
            if mode == TarMode::Layer {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                h.set_mtime(md.mtime().max(0) as u64);
                let wh = rel.join(format!(".wh.{}", name.to_string_lossy()));
                b.append_data(&mut h, wh, io::empty()).map_err(werr)?;
            }
            continue;
        }
        let xattrs = tar_xattrs(&path);
        if !xattrs.is_empty() {
            let exts: Vec<(String, Vec<u8>)> = xattrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
                .collect();
            b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        let ft = md.file_type();
        if ft.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, &rel_p, io::empty()).map_err(werr)?;
            if mode == TarMode::Layer && is_opaque(&path) {
                let mut o = tar::Header::new_gnu();
                o.set_entry_type(tar::EntryType::Regular);
                o.set_size(0);
                o.set_mode(0o644);
                o.set_mtime(md.mtime().max(0) as u64);
                b.append_data(&mut o, rel_p.join(".wh..wh..opq"), io::empty())
                    .map_err(werr)?;
            }
            walk_tar(b, root, &rel_p, mode, links, skip)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| io_err("read link", &path, e))?;
            h.set_size(0);
            b.append_link(&mut h, &rel_p, &target).map_err(werr)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    let mut l = tar::Header::new_gnu();
                    l.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                    l.set_entry_type(tar::EntryType::Link);
                    l.set_size(0);
                    b.append_link(&mut l, &rel_p, first).map_err(werr)?;
                    continue;
                }
                links.insert(key, rel_p.clone());
            }
            let f = fs::File::open(&path).map_err(|e| io_err("open", &path, e))?;
            b.append_data(&mut h, &rel_p, f).map_err(werr)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_size(0);
            let rdev = md.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(werr)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(werr)?;
            b.append_data(&mut h, &rel_p, io::empty()).map_err(werr)?;
        }
        // Sockets are not part of a filesystem image.
    }
    Ok(())
}

/// xattrs worth keeping in a tar: everything but overlay's own bookkeeping.
fn tar_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in names {
        let Some(k) = n.to_str() else { continue };
        if k.starts_with("trusted.overlay.") || k == "security.selinux" {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(path, k) {
            out.push((k.to_string(), v));
        }
    }
    out.sort();
    out
}

/// A writer that hashes what passes through it (the diff id of a tar being written).
#[derive(Debug)]
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: sha2::Sha256,
    pub count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest as _;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (crate::content::Digest, u64, W) {
        (
            crate::content::Digest::from_hasher(self.hasher),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
