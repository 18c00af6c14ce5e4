//! Applying a layer tar to a directory, in overlay's form.
//!
//! The tar may be plain, gzip or zstd (recognised by its first bytes). Entries keep
//! their ownership, modes, mtimes, xattrs, hard links and device nodes; OCI whiteouts
//! become overlay whiteouts (`.wh.<name>` → a 0/0 character device `<name>`,
//! `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory).
//!
//! Nothing may land outside the layer directory. Names with `..` components or a
//! leading `/` are refused outright, and every parent directory is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the layer root, so a
//! path through a symlink that points outside (absolute, or `..` past the root) fails
//! with EXDEV instead of being followed; the entry itself is then created with
//! `*at` calls relative to that directory and never follows a final symlink. Hard
//! links are resolved the same way, so a link to `/etc/passwd` is refused. GNU sparse
//! entries are refused (no image builder writes them, and they let a small tar claim
//! any size on disk).
//!
//! Layers come from strangers, so the tar stream goes through [`berth_tar::Guard`]:
//! GNU long names and PAX records over 64 KiB are refused before they are read,
//! and the uncompressed stream stops at [`UnpackOptions::max_tar_size`] (the
//! store sets it from the layer's compressed size: see [`LayerLimits`]).
//!
//! This module is synchronous on purpose: the daemon calls it with `spawn_blocking`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::content::Digest;

/// Errors of applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry name with a `..` component.
    #[error("refused layer entry {0:?}: path has a '..' component")]
    DotDot(String),
    /// An entry name (or hard link target) that is absolute.
    #[error("refused layer entry {0:?}: absolute path")]
    Absolute(String),
    /// A parent directory of the entry resolves outside the layer (through a symlink).
    #[error("refused layer entry {0:?}: its path leaves the layer through a symlink")]
    Escape(String),
    /// A hard link whose target is outside the layer or missing.
    #[error("refused hard link {name:?} -> {target:?}: {why}")]
    BadLink {
        name: String,
        target: String,
        why: &'static str,
    },
    /// A device node when the caller does not allow them.
    #[error("refused layer entry {0:?}: device nodes are not allowed here")]
    Device(String),
    /// A GNU sparse entry.
    #[error("refused layer entry {0:?}: sparse files are not supported")]
    Sparse(String),
    /// A whiteout that names no file (`.wh.`, `.wh..`, `.wh...`): applied, it
    /// would delete the layer's own directories.
    #[error("refused layer entry {0:?}: invalid whiteout")]
    BadWhiteout(String),
    /// An xattr only the overlay filesystem itself may set.
    #[error("refused layer entry {name:?}: extended attribute {xattr} is reserved for overlayfs")]
    OverlayXattr { name: String, xattr: String },
    /// The layer went past a limit of [`berth_tar::Limits`] (a name or PAX record
    /// over 64 KiB, or more than it may expand to).
    #[error("refused layer: {0}")]
    Limit(berth_tar::LimitError),
    /// The tar stream is corrupt or truncated.
    #[error("reading layer tar: {0}")]
    Read(#[source] io::Error),
    /// A filesystem operation failed while applying an entry.
    #[error("{what} {path:?} in layer {layer}: {source}")]
    Apply {
        what: &'static str,
        path: String,
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create character and block device nodes (Docker does; rootless setups cannot).
    pub allow_devices: bool,
    /// Stop (and refuse the layer) past this many bytes of uncompressed tar.
    pub max_tar_size: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            allow_devices: true,
            max_tar_size: None,
        }
    }
}

/// How far a layer may expand when unpacked: at most `ratio` times its stored
/// size (but always `floor`, so that small layers of zero-filled files still
/// unpack), and never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    pub ratio: u64,
    pub floor: u64,
    pub max: u64,
}

/// 50×, at least 64 MiB, at most 100 GiB.
impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            ratio: 50,
            floor: 64 << 20,
            max: 100 << 30,
        }
    }
}

impl LayerLimits {
    /// The largest uncompressed tar accepted for a layer stored in `compressed`
    /// bytes.
    pub fn for_size(&self, compressed: u64) -> u64 {
        compressed
            .saturating_mul(self.ratio)
            .max(self.floor)
            .min(self.max)
    }
}

/// What an unpack produced.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar: the layer's diff id.
    pub diff_id: Digest,
    /// Bytes of regular file data written.
    pub size: u64,
    pub entries: u64,
}

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Recognise a layer's compression from its first bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wrap `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let c = sniff(buf.fill_buf()?);
    let r: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    };
    Ok((c, r))
}

/// A reader that hashes what passes through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Read to the end, then return the digest and byte count of everything read.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Apply a (possibly compressed) layer tar to `dest`, which must be an existing
/// directory (normally an empty snapshot directory).
pub fn apply_layer<R: Read>(
    reader: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let (_, plain) = decompress(reader).map_err(UnpackError::Read)?;
    apply_tar(plain, dest, opts)
}

/// Apply an uncompressed layer tar to `dest`.
pub fn apply_tar<R: Read>(
    reader: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root: OwnedFd = open_dir(dest).map_err(|e| UnpackError::Apply {
        what: "open layer directory",
        path: String::new(),
        layer: dest.to_path_buf(),
        source: e,
    })?;
    let mut hashing = HashingReader::new(berth_tar::Guard::new(
        reader,
        berth_tar::Limits {
            max_total: opts.max_tar_size,
            ..Default::default()
        },
    ));
    let mut ap = Applier {
        root,
        layer: dest.to_path_buf(),
        opts: opts.clone(),
        copy: None,
        cache: None,
        dirs: Vec::new(),
        size: 0,
        entries: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(read_err)?;
        for entry in entries {
            let mut entry = entry.map_err(read_err)?;
            ap.entry(&mut entry)?;
            ap.entries += 1;
        }
    }
    ap.finish_dirs()?;
    let (diff_id, _) = hashing.finish().map_err(read_err)?;
    Ok(UnpackStats {
        diff_id,
        size: ap.size,
        entries: ap.entries,
    })
}

/// A read error, or the limit the guard stopped at.
fn read_err(e: io::Error) -> UnpackError {
    match berth_tar::limit_error(&e) {
        Some(l) => UnpackError::Limit(l.clone()),
        None => UnpackError::Read(e),
    }
}

/// Where and how [`copy_into_root`] writes.
#[derive(Debug, Clone, Default)]
pub struct CopyTarget {
    /// The directory the entries go under, as components below the root.
    pub dest: Vec<Vec<u8>>,
    /// The name the tar's one file takes instead of its own (COPY to a file path).
    pub rename: Option<Vec<u8>>,
    /// Owner of the directories made on the way.
    pub dir_uid: u32,
    pub dir_gid: u32,
}

/// Write an uncompressed tar into a container's root directory `root` as Dockerfile
/// COPY does: entries land under `target.dest`, and symlinks on the way resolve
/// inside the root (`RESOLVE_IN_ROOT`: an absolute link means the container's `/`,
/// `..` stops at it), where a layer unpack refuses them. `.wh.` names are ordinary
/// files here, and device nodes are refused.
pub fn copy_into_root<R: Read>(
    reader: R,
    root: &Path,
    target: CopyTarget,
) -> Result<UnpackStats, UnpackError> {
    let root_fd: OwnedFd = open_dir(root).map_err(|e| UnpackError::Apply {
        what: "open root directory",
        path: String::new(),
        layer: root.to_path_buf(),
        source: e,
    })?;
    let mut ap = Applier {
        root: root_fd,
        layer: root.to_path_buf(),
        opts: UnpackOptions {
            allow_devices: false,
            max_tar_size: None,
        },
        copy: Some(target),
        cache: None,
        dirs: Vec::new(),
        size: 0,
        entries: 0,
    };
    // The destination exists even when the tar is empty (WORKDIR, an empty directory).
    let dest: Vec<Vec<u8>> = ap.copy.as_ref().map(|c| c.dest.clone()).unwrap_or_default();
    let refs: Vec<&[u8]> = dest.iter().map(Vec::as_slice).collect();
    ap.open_beneath(&refs, true, "destination")?;
    // The build context is the client's: names and headers are bounded as a
    // layer's are (its total size is the client's disk to spend).
    let mut hashing =
        HashingReader::new(berth_tar::Guard::new(reader, berth_tar::Limits::default()));
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(read_err)?;
        for entry in entries {
            let mut entry = entry.map_err(read_err)?;
            ap.entry(&mut entry)?;
            ap.entries += 1;
        }
    }
    ap.finish_dirs()?;
    let (diff_id, _) = hashing.finish().map_err(read_err)?;
    Ok(UnpackStats {
        diff_id,
        size: ap.size,
        entries: ap.entries,
    })
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

use std::os::unix::fs::OpenOptionsExt;

/// Split a tar name into its components, refusing `..` and absolute names. `/`
/// alone (as `umoci insert … /` writes the root) is the root, as `./` is.
pub fn clean_components(raw: &[u8]) -> Result<Vec<String>, UnpackError> {
    let name = String::from_utf8_lossy(raw).into_owned();
    let names_the_root = raw.split(|b| *b == b'/').all(|c| c.is_empty() || c == b".");
    if raw.first() == Some(&b'/') && !names_the_root {
        return Err(UnpackError::Absolute(name));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(UnpackError::DotDot(name)),
            c => out.push(String::from_utf8_lossy(c).into_owned()),
        }
    }
    // Names that are not UTF-8 are kept byte-exact below through OsStr; lossy
    // strings are only for messages. Re-split byte-exact here.
    Ok(out)
}

/// `name` below the directory `dest` (components).
fn prefixed(dest: &[Vec<u8>], name: &[u8]) -> Vec<u8> {
    let mut out = dest.join(&b'/');
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn raw_components(raw: &[u8]) -> Vec<&[u8]> {
    raw.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

struct Applier {
    root: OwnedFd,
    layer: PathBuf,
    opts: UnpackOptions,
    /// Set when copying into a container root rather than unpacking a layer.
    copy: Option<CopyTarget>,
    /// The last parent directory opened, by its components.
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// Directories whose times are set last (entries inside them change their mtime).
    dirs: Vec<(Vec<Vec<u8>>, i64)>,
    size: u64,
    entries: u64,
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Applier {
    fn err(&self, what: &'static str, path: &str, e: impl Into<io::Error>) -> UnpackError {
        let source = e.into();
        // Reading an entry's data can stop at a limit of the stream: the
        // input's fault, not a failure to apply.
        if let Some(l) = berth_tar::limit_error(&source) {
            return UnpackError::Limit(l.clone());
        }
        UnpackError::Apply {
            what,
            path: path.to_string(),
            layer: self.layer.clone(),
            source,
        }
    }

    /// Open (creating missing directories, 0755 root-owned as Docker does) the
    /// directory `comps` below the root without ever leaving it.
    fn parent(&mut self, comps: &[&[u8]], name: &str) -> Result<BorrowedFd<'_>, UnpackError> {
        let owned: Vec<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        let hit = matches!(&self.cache, Some((k, _)) if *k == owned);
        if !hit {
            let fd = self.open_beneath(comps, true, name)?;
            self.cache = Some((owned, fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(self.err("open parent of", name, io::Error::other("no directory"))),
        }
    }

    fn open_beneath(
        &self,
        comps: &[&[u8]],
        create: bool,
        name: &str,
    ) -> Result<OwnedFd, UnpackError> {
        let scope = if self.copy.is_some() {
            ResolveFlag::RESOLVE_IN_ROOT
        } else {
            ResolveFlag::RESOLVE_BENEATH
        };
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(scope | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let joined: Vec<u8> = comps.join(&b'/');
        let path = if joined.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(OsStr::from_bytes(&joined))
        };
        match openat2(self.root.as_fd(), &path, how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                return Err(UnpackError::Escape(name.to_string()))
            }
            Err(Errno::ENOENT) if create => {}
            Err(e) => return Err(self.err("open parent of", name, errno_io(e))),
        }
        // Walk down, creating what is missing.
        let mut cur = openat2(self.root.as_fd(), ".", how)
            .map_err(|e| self.err("open layer root for", name, errno_io(e)))?;
        for c in comps {
            let c = OsStr::from_bytes(c);
            match openat2(cur.as_fd(), c, how) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(cur.as_fd(), c, Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {
                            if let Some(t) = &self.copy {
                                fchownat(
                                    cur.as_fd(),
                                    c,
                                    Some(Uid::from_raw(t.dir_uid)),
                                    Some(Gid::from_raw(t.dir_gid)),
                                    AtFlags::AT_SYMLINK_NOFOLLOW,
                                )
                                .map_err(|e| self.err("chown parent of", name, errno_io(e)))?;
                            }
                        }
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.err("create parent of", name, errno_io(e))),
                    }
                    cur = openat2(cur.as_fd(), c, how).map_err(|e| match e {
                        Errno::EXDEV | Errno::ELOOP => UnpackError::Escape(name.to_string()),
                        e => self.err("open parent of", name, errno_io(e)),
                    })?;
                }
                Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                    return Err(UnpackError::Escape(name.to_string()))
                }
                Err(e) => return Err(self.err("open parent of", name, errno_io(e))),
            }
        }
        Ok(cur)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let mut raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        clean_components(&raw)?;
        if let Some(t) = &self.copy {
            if let Some(r) = &t.rename {
                raw = r.clone();
            }
            raw = prefixed(&t.dest, &raw);
        }
        let comps = raw_components(&raw);
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let Some((last, parents)) = comps.split_last() else {
            // The layer root itself ("./"): its attributes belong to the snapshot.
            return Ok(());
        };
        let last = last.to_vec();
        let parents: Vec<Vec<u8>> = parents.iter().map(|c| c.to_vec()).collect();
        let parent_refs: Vec<&[u8]> = parents.iter().map(|c| c.as_slice()).collect();

        if kind == EntryType::GNUSparse {
            return Err(UnpackError::Sparse(name));
        }

        if let Some(hidden) = last.strip_prefix(b".wh.").filter(|_| self.copy.is_none()) {
            let pfd = self.parent(&parent_refs, &name)?.try_clone_to_owned();
            let pfd = pfd.map_err(|e| self.err("open parent of", &name, e))?;
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(UnpackError::BadWhiteout(name));
            }
            if hidden == b".wh..opq" {
                set_xattr_at(pfd.as_fd(), None, "trusted.overlay.opaque", b"y")
                    .map_err(|e| self.err("mark opaque", &name, e))?;
            } else if hidden.starts_with(b".wh.") {
                // Other aufs metadata (.wh..wh.plnk, ...): nothing to apply.
            } else {
                let h = OsStr::from_bytes(hidden);
                self.remove_existing(pfd.as_fd(), h, &name)?;
                mknodat(pfd.as_fd(), h, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| self.err("create whiteout", &name, errno_io(e)))?;
            }
            return Ok(());
        }

        let header = entry.header().clone();
        let mode = Mode::from_bits_truncate(header.mode().map_err(UnpackError::Read)? & 0o7777);
        // Some tar writers leave these fields blank; blank means 0 as in GNU tar.
        let (mut uid, mut gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mtime = header.mtime().unwrap_or(0) as i64;
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
            for ext in exts {
                let ext = ext.map_err(UnpackError::Read)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    // overlayfs reads these as its own metadata (opaque
                    // directories, redirects, metacopy): a layer may not forge them.
                    if x.starts_with("trusted.overlay.") || x.starts_with("user.overlay.") {
                        return Err(UnpackError::OverlayXattr {
                            name,
                            xattr: x.to_string(),
                        });
                    }
                    xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                } else if key == "uid" {
                    uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
                } else if key == "gid" {
                    gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
                }
            }
        }
        let link_target = entry.link_name_bytes().map(|l| l.into_owned());

        let pfd = self
            .parent(&parent_refs, &name)?
            .try_clone_to_owned()
            .map_err(|e| self.err("open parent of", &name, e))?;
        let pfd = pfd.as_fd();
        let fname = OsStr::from_bytes(&last);
        let owner = (
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
        );

        match kind {
            EntryType::Directory => {
                let existing = fstatat(pfd, fname, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
                let is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                if !is_dir {
                    if existing.is_some() {
                        self.remove_existing(pfd, fname, &name)?;
                    }
                    mkdirat(pfd, fname, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.err("create directory", &name, errno_io(e)))?;
                }
                let dfd = openat(
                    pfd,
                    fname,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.err("open directory", &name, errno_io(e)))?;
                nix::unistd::fchown(&dfd, owner.0, owner.1)
                    .map_err(|e| self.err("chown", &name, errno_io(e)))?;
                fchmod(&dfd, mode).map_err(|e| self.err("chmod", &name, errno_io(e)))?;
                for (k, v) in &xattrs {
                    set_xattr_at(dfd.as_fd(), None, k, v)
                        .map_err(|e| self.err("set xattr on", &name, e))?;
                }
                let mut all = parents.clone();
                all.push(last.clone());
                self.dirs.push((all, mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                self.remove_existing(pfd, fname, &name)?;
                let fd = openat(
                    pfd,
                    fname,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.err("create file", &name, errno_io(e)))?;
                let mut file = File::from(fd);
                let n = io::copy(entry, &mut file).map_err(|e| self.err("write file", &name, e))?;
                self.size += n;
                nix::unistd::fchown(&file, owner.0, owner.1)
                    .map_err(|e| self.err("chown", &name, errno_io(e)))?;
                // After chown, which clears set-id bits.
                fchmod(&file, mode).map_err(|e| self.err("chmod", &name, errno_io(e)))?;
                for (k, v) in &xattrs {
                    set_xattr_at(file.as_fd(), None, k, v)
                        .map_err(|e| self.err("set xattr on", &name, e))?;
                }
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::futimens(&file, &t, &t)
                    .map_err(|e| self.err("set times of", &name, errno_io(e)))?;
            }
            EntryType::Symlink => {
                let Some(target) = link_target else {
                    return Err(self.err("symlink", &name, io::Error::other("no target")));
                };
                self.remove_existing(pfd, fname, &name)?;
                symlinkat(OsStr::from_bytes(&target), pfd, fname)
                    .map_err(|e| self.err("create symlink", &name, errno_io(e)))?;
                fchownat(pfd, fname, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err("chown", &name, errno_io(e)))?;
                for (k, v) in &xattrs {
                    set_xattr_at(pfd, Some(fname), k, v)
                        .map_err(|e| self.err("set xattr on", &name, e))?;
                }
                self.set_times_at(pfd, fname, mtime, &name)?;
            }
            EntryType::Link => {
                let Some(target) = link_target else {
                    return Err(self.err("hard link", &name, io::Error::other("no target")));
                };
                let tname = String::from_utf8_lossy(&target).into_owned();
                let bad = |why| UnpackError::BadLink {
                    name: name.clone(),
                    target: tname.clone(),
                    why,
                };
                if target.first() == Some(&b'/') {
                    return Err(bad("the target is an absolute path"));
                }
                if raw_components(&target).contains(&&b".."[..]) {
                    return Err(bad("the target has a '..' component"));
                }
                let target = match &self.copy {
                    Some(t) => prefixed(&t.dest, &target),
                    None => target,
                };
                let tcomps = raw_components(&target);
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(bad("the target is the layer root"));
                };
                let tpfd = match self.open_beneath(tparents, false, &name) {
                    Ok(fd) => fd,
                    Err(UnpackError::Escape(_)) => {
                        return Err(bad("the target leaves the layer through a symlink"))
                    }
                    Err(_) => return Err(bad("the target does not exist in this layer")),
                };
                let tlast = OsStr::from_bytes(tlast);
                if fstatat(tpfd.as_fd(), tlast, AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
                    return Err(bad("the target does not exist in this layer"));
                }
                if tcomps == raw_components(&raw) {
                    return Ok(());
                }
                self.remove_existing(pfd, fname, &name)?;
                linkat(tpfd.as_fd(), tlast, pfd, fname, AtFlags::empty())
                    .map_err(|e| self.err("create hard link", &name, errno_io(e)))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                if sflag != SFlag::S_IFIFO && !self.opts.allow_devices {
                    return Err(UnpackError::Device(name));
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.remove_existing(pfd, fname, &name)?;
                mknodat(
                    pfd,
                    fname,
                    sflag,
                    mode,
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| self.err("create device node", &name, errno_io(e)))?;
                fchownat(pfd, fname, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err("chown", &name, errno_io(e)))?;
                fchmodat(pfd, fname, mode, FchmodatFlags::FollowSymlink)
                    .map_err(|e| self.err("chmod", &name, errno_io(e)))?;
                for (k, v) in &xattrs {
                    set_xattr_at(pfd, Some(fname), k, v)
                        .map_err(|e| self.err("set xattr on", &name, e))?;
                }
                self.set_times_at(pfd, fname, mtime, &name)?;
            }
            _ => {
                tracing::debug!(entry = %name, ?kind, "skipping tar entry of unsupported type");
            }
        }
        Ok(())
    }

    fn set_times_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mtime: i64,
        display: &str,
    ) -> Result<(), UnpackError> {
        let t = TimeSpec::new(mtime, 0);
        nix::sys::stat::utimensat(
            dir,
            name,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.err("set times of", display, errno_io(e)))
    }

    /// Remove whatever is at `name` in `dir` (a later entry replaces an earlier one).
    fn remove_existing(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        display: &str,
    ) -> Result<(), UnpackError> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.err("stat", display, errno_io(e))),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // The cached parent may be below what goes away.
            self.cache = None;
            let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&path).map_err(|e| self.err("remove directory", display, e))
        } else {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.err("remove", display, errno_io(e)))
        }
    }

    /// Directory times last, deepest first, so creating their entries does not undo them.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        for (comps, mtime) in dirs {
            let Some((last, parents)) = comps.split_last() else {
                continue;
            };
            let prefs: Vec<&[u8]> = parents.iter().map(|c| c.as_slice()).collect();
            let display = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            // The directory may have been replaced by a later entry; skip it then.
            let Ok(pfd) = self.open_beneath(&prefs, false, &display) else {
                continue;
            };
            let st = fstatat(
                pfd.as_fd(),
                OsStr::from_bytes(last),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            if st.is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
                self.set_times_at(pfd.as_fd(), OsStr::from_bytes(last), mtime, &display)?;
            }
        }
        Ok(())
    }
}

/// Set an xattr on `dir` itself (name None) or on `name` inside it, never following a
/// final symlink. Filesystems without xattr support are tolerated for non-overlay
/// attributes, as Docker does.
fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    key: &str,
    value: &[u8],
) -> io::Result<()> {
    let res = match name {
        // Through our own fd's /proc entry: the kernel resolves the magic link to the
        // directory we already hold, and lsetxattr does not follow the final component.
        Some(n) => xattr::set(
            PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(n),
            key,
            value,
        ),
        None => {
            use xattr::FileExt;
            File::from(dir.try_clone_to_owned()?).set_xattr(key, value)
        }
    };
    match res {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::ENOTSUP) && !key.starts_with("trusted.overlay.") =>
        {
            tracing::warn!(key, "filesystem does not support this xattr; skipped");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Whether `path`'s metadata marks an overlay whiteout (a 0/0 character device).
pub fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether a directory carries overlay's opaque marker.
pub fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_root_may_be_named_absolute_nothing_else() {
        for root in [&b"/"[..], b"//", b"/.", b"./", b"."] {
            assert!(clean_components(root).unwrap().is_empty(), "{root:?}");
        }
        assert_eq!(clean_components(b"./a//b/").unwrap(), vec!["a", "b"]);
        assert!(matches!(
            clean_components(b"/etc/passwd"),
            Err(UnpackError::Absolute(_))
        ));
        assert!(matches!(
            clean_components(b"/./x"),
            Err(UnpackError::Absolute(_))
        ));
        assert!(matches!(
            clean_components(b"a/../../x"),
            Err(UnpackError::DotDot(_))
        ));
    }
}
