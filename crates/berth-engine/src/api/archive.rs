//! `docker cp`: `HEAD`/`GET`/`PUT /containers/{id}/archive?path=`.
//!
//! While the container runs, berthd reaches its files through its init's root,
//! `/proc/<pid>/root`, which shows the container's own mount namespace (volumes and
//! bind mounts included); otherwise through its snapshot and volumes mounted for the
//! copy in a namespace of their own ([`super::archive_root`]). Every path is
//! resolved with `openat2(RESOLVE_IN_ROOT)` against that root, so `..` and absolute
//! symlinks inside the container cannot lead out of it; below the resolved path,
//! the walk and the extraction go one name at a time with `O_NOFOLLOW`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{channel_body, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;

/// Chunks of a tar in flight to the client.
const QUEUE: usize = 8;
/// Size of the chunks sent.
const CHUNK: usize = 64 * 1024;

/// Docker's `X-Docker-Container-Path-Stat` object.
#[derive(Debug, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode`: permission bits and Go's own type bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` from a `st_mode`.
pub fn go_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = st_mode & 0o777;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= STICKY;
    }
    m
}

/// Standard base64 with padding (the header's encoding).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn io_err(context: impl Into<String>, e: Errno) -> EngineError {
    EngineError::io(context, std::io::Error::from(e))
}

/// A container's root directory (an `O_PATH` fd): its init's root while it runs,
/// otherwise its files mounted for the copy ([`super::archive_root`]), kept mounted
/// while this is held.
enum Root {
    Running(OwnedFd),
    Stopped(super::archive_root::DetachedRoot),
}

impl Root {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Root::Running(fd) => fd.as_fd(),
            Root::Stopped(d) => d.root.as_fd(),
        }
    }
}

async fn container_root(engine: &Engine, reference: &str) -> Result<(String, Root), EngineError> {
    let rec = engine.store.get(reference)?;
    let pid = rec.state.pid.unwrap_or(0);
    if rec.state.running != Some(true) || pid <= 0 {
        let root = super::archive_root::mount_stopped(engine, &rec).await?;
        return Ok((rec.id, Root::Stopped(root)));
    }
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("opening the root of container {}", rec.id), e))?;
    Ok((rec.id, Root::Running(root)))
}

/// Opens `path` inside `root` (symlinks on the way resolved inside it); the last
/// component is not followed. ENOENT becomes Docker's 404.
fn resolve(root: BorrowedFd<'_>, path: &str, id: &str) -> Result<OwnedFd, EngineError> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if path.trim_start_matches('/').is_empty() {
        "."
    } else {
        path
    };
    openat2(root, rel, how).map_err(|e| match e {
        Errno::ENOENT | Errno::ENOTDIR => {
            EngineError::NotFound(format!("Could not find the file {path} in container {id}"))
        }
        other => io_err(format!("resolving {path} in container {id}"), other),
    })
}

fn stat_fd(fd: BorrowedFd<'_>) -> Result<FileStat, Errno> {
    fstatat(
        fd,
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn readlink_fd(fd: BorrowedFd<'_>) -> String {
    nix::fcntl::readlinkat(fd, "")
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn path_stat(fd: BorrowedFd<'_>, path: &str) -> Result<PathStat, EngineError> {
    let st = stat_fd(fd).map_err(|e| io_err(format!("stat {path}"), e))?;
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string());
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    let mtime =
        chrono::DateTime::from_timestamp(st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    Ok(PathStat {
        name,
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime,
        link_target: if is_link {
            absolute_target(path, &readlink_fd(fd))
        } else {
            String::new()
        },
    })
}

/// A symlink's target as a path from the container's root (`cp -L` asks for it
/// next): a relative target is taken from the link's directory.
fn absolute_target(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let dir = Path::new(link).parent().unwrap_or(Path::new("/"));
    Path::new("/")
        .join(dir)
        .join(target)
        .to_string_lossy()
        .into_owned()
}

fn stat_header(stat: &PathStat) -> Result<HeaderValue, EngineError> {
    let json = serde_json::to_vec(stat)
        .map_err(|e| EngineError::io("encoding the path stat", std::io::Error::other(e)))?;
    HeaderValue::from_str(&base64(&json))
        .map_err(|e| EngineError::io("encoding the path stat", std::io::Error::other(e)))
}

fn path_param(ctx: &Ctx) -> Result<String, EngineError> {
    match ctx.query.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(EngineError::BadParameter(
            "path parameter is required".into(),
        )),
    }
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat in the header.
pub async fn head(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let path = path_param(ctx)?;
    let (id, root) = container_root(engine, ctx.param()).await?;
    let fd = resolve(root.fd(), &path, &id)?;
    let stat = path_stat(fd.as_fd(), &path)?;
    let mut r = status_only(StatusCode::OK);
    r.headers_mut()
        .insert("X-Docker-Container-Path-Stat", stat_header(&stat)?);
    Ok(r)
}

/// A `Write` that sends what it is given down a channel in chunks (from a blocking
/// thread).
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

fn header_for(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// A reader of exactly `size` bytes from `inner`: what is past `size` is never
/// read, and a file that ends early is padded with zeros.
struct Exactly<R> {
    inner: std::io::Take<R>,
    left: u64,
}

impl<R: Read> Exactly<R> {
    fn new(inner: R, size: u64) -> Self {
        Exactly {
            inner: inner.take(size),
            left: size,
        }
    }
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(out.len());
        let n = match self.inner.read(&mut out[..want])? {
            // Shrunk since the stat: zeros for the rest.
            0 => {
                out[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Appends the object `fd` (not followed) as `name`, and a directory's contents
/// below it, one name at a time.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    fd: BorrowedFd<'_>,
    name: &Path,
) -> std::io::Result<()> {
    let st = stat_fd(fd)?;
    let mut h = header_for(&st);
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, name, std::io::empty())?;
            let dir = openat(
                fd,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut d = nix::dir::Dir::from_fd(dir)?;
            let mut names = vec![];
            for e in d.iter() {
                let e = e?;
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_owned());
                }
            }
            names.sort();
            let dirfd = openat(
                fd,
                ".",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            for n in names {
                let child = openat(
                    &dirfd,
                    n.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
                match child {
                    Ok(c) => append(b, c.as_fd(), &name.join(&n))?,
                    // Gone since the listing: nothing to copy.
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        libc::S_IFREG => {
            let f = File::from(
                openat(fd, "", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).or_else(
                    |_| {
                        // An O_PATH fd reopens through /proc/self/fd.
                        nix::fcntl::open(
                            format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
                            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                    },
                )?,
            );
            h.set_entry_type(tar::EntryType::Regular);
            let size = u64::try_from(st.st_size).unwrap_or(0);
            h.set_size(size);
            // The container can grow or shrink the file while we read it: the
            // entry carries exactly the size in its header, whatever happens,
            // or its extra bytes would be read as archive entries of our
            // making by the client (a file written anywhere on its host).
            b.append_data(&mut h, name, Exactly::new(f, size))?;
        }
        libc::S_IFLNK => {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = nix::fcntl::readlinkat(fd, "")?;
            b.append_link(&mut h, name, target)?;
        }
        fmt @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
            h.set_entry_type(match fmt {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            if fmt != libc::S_IFIFO {
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
            }
            b.append_data(&mut h, name, std::io::empty())?;
        }
        // Sockets cannot be archived; dockerd skips them too.
        _ => {}
    }
    Ok(())
}

/// `GET /containers/{id}/archive?path=`: the path as a tar, its stat in the header.
pub async fn get(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let path = path_param(ctx)?;
    let (id, root) = container_root(engine, ctx.param()).await?;
    let fd = resolve(root.fd(), &path, &id)?;
    let stat = path_stat(fd.as_fd(), &path)?;
    engine.publish_container("archive-path", &id, &[]);
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let name = PathBuf::from(if stat.name == "/" { "." } else { &stat.name });
    tokio::task::spawn_blocking(move || {
        // The mounts below `fd` stay up until the walk is done.
        let _root = root;
        let mut b = tar::Builder::new(ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        });
        let done = append(&mut b, fd.as_fd(), &name).and_then(|_| b.into_inner()?.flush());
        if let Err(e) = done {
            // The status line is gone already: cutting the stream short is the only
            // way left to tell the client.
            tracing::warn!(container = %id, error = %e, "archive failed part-way");
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    r.headers_mut()
        .insert("X-Docker-Container-Path-Stat", stat_header(&stat)?);
    Ok(r)
}

/// A `Read` over the request body's chunks (for a blocking thread).
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Why an extraction stopped: the client's archive (400) or our side (500).
enum ExtractError {
    Bad(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ExtractError {
    fn from(e: std::io::Error) -> Self {
        match berth_tar::limit_error(&e) {
            Some(l) => ExtractError::Bad(format!("refusing the archive: {l}")),
            None => ExtractError::Io(e),
        }
    }
}

impl From<Errno> for ExtractError {
    fn from(e: Errno) -> Self {
        ExtractError::Io(e.into())
    }
}

/// The names of an entry's path, refusing anything that could climb out.
fn entry_names(path: &Path) -> Result<Vec<&OsStr>, ExtractError> {
    let mut out = vec![];
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(ExtractError::Bad(format!(
                    "refusing the archive entry {}: it climbs out of the destination",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Opens (creating as needed) the directory `names` below `dir`, never following
/// a symlink.
fn open_dirs(dir: BorrowedFd<'_>, names: &[&OsStr]) -> Result<OwnedFd, ExtractError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur = openat(dir, ".", flags, Mode::empty())?;
    for n in names {
        let next = match openat(&cur, *n, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(&cur, *n, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                match openat(&cur, *n, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => {
                        return Err(ExtractError::Bad(format!(
                            "{} was replaced while it was being extracted (berth does not follow symlinks there)",
                            n.to_string_lossy()
                        )))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(ExtractError::Bad(format!(
                "cannot extract below {}: not a directory (berth does not follow symlinks there)",
                n.to_string_lossy()
            )))
            }
            Err(e) => return Err(e.into()),
        };
        cur = next;
    }
    Ok(cur)
}

/// An entry's name changed under us (the container raced the upload): a
/// conflict for the client, not a failure of ours.
fn swapped(e: Errno, path: &Path) -> ExtractError {
    match e {
        Errno::ELOOP | Errno::ENOTDIR | Errno::EEXIST | Errno::ENOENT => {
            ExtractError::Bad(format!(
            "{} was replaced while it was being extracted (berth does not follow symlinks there)",
            path.display()
        ))
        }
        other => other.into(),
    }
}

fn extract<R: Read>(
    reader: R,
    dest: BorrowedFd<'_>,
    no_overwrite_dir_non_dir: bool,
    copy_ids: bool,
) -> Result<(), ExtractError> {
    // Names and PAX records are bounded before the tar crate reads them whole.
    let mut archive =
        tar::Archive::new(berth_tar::Guard::new(reader, berth_tar::Limits::default()));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let names = entry_names(&path)?;
        let Some((last, parents)) = names.split_last() else {
            continue;
        };
        let parent = open_dirs(dest, parents)?;
        let kind = entry.header().entry_type();
        let mode = Mode::from_bits_truncate(entry.header().mode().unwrap_or(0o644) & 0o7777);
        let existing = fstatat(&parent, *last, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if let Some(_st) = existing {
            if no_overwrite_dir_non_dir && existing_is_dir != kind.is_dir() {
                return Err(ExtractError::Bad(format!(
                    "cannot overwrite {} with {}",
                    if existing_is_dir {
                        "a directory"
                    } else {
                        "a non-directory"
                    },
                    path.display()
                )));
            }
            if !(existing_is_dir && kind.is_dir()) {
                let flag = if existing_is_dir {
                    nix::unistd::UnlinkatFlags::RemoveDir
                } else {
                    nix::unistd::UnlinkatFlags::NoRemoveDir
                };
                match nix::unistd::unlinkat(&parent, *last, flag) {
                    // Gone already (the container removed it meanwhile).
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(Errno::ENOTEMPTY) => {
                        return Err(ExtractError::Bad(format!(
                            "cannot replace the non-empty directory {} with a file",
                            path.display()
                        )))
                    }
                    Err(Errno::ENOTDIR | Errno::EISDIR) => {
                        return Err(swapped(Errno::ENOTDIR, &path))
                    }
                    Err(other) => return Err(other.into()),
                }
            }
        }
        let uid = entry
            .header()
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .map(nix::unistd::Uid::from_raw);
        let gid = entry
            .header()
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .map(nix::unistd::Gid::from_raw);
        // Every change of mode or owner goes through an fd of what was just
        // created or checked, opened without following a symlink: a container
        // process that swaps the name for a symlink in between makes the open
        // fail, never the change land on the link's target (which berthd would
        // resolve on the host).
        match kind {
            tar::EntryType::Directory => {
                if !existing_is_dir {
                    match nix::sys::stat::mkdirat(&parent, *last, mode) {
                        // Made meanwhile: the open below checks what it is.
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(swapped(e, &path)),
                    }
                }
                let dir = openat(
                    &parent,
                    *last,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| swapped(e, &path))?;
                nix::sys::stat::fchmod(&dir, mode)?;
                if copy_ids {
                    nix::unistd::fchown(&dir, uid, gid)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = openat(
                    &parent,
                    *last,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    mode,
                )
                .map_err(|e| swapped(e, &path))?;
                let mut f = File::from(fd);
                std::io::copy(&mut entry, &mut f)?;
                if copy_ids {
                    nix::unistd::fchown(&f, uid, gid)?;
                }
                // After the chown, which clears set-id bits.
                nix::sys::stat::fchmod(&f, mode)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.ok_or_else(|| {
                    ExtractError::Bad(format!("symlink {} has no target", path.display()))
                })?;
                nix::unistd::symlinkat(target.as_ref(), &parent, *last)
                    .map_err(|e| swapped(e, &path))?;
                if copy_ids {
                    // The link itself, never what it points to.
                    nix::unistd::fchownat(&parent, *last, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                }
            }
            other => {
                return Err(ExtractError::Bad(format!(
                    "{}: {other:?} entries are not supported by berth's archive upload yet",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: extracts
/// the tar body into the directory `path`.
pub async fn put(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let path = path_param(ctx)?;
    let (id, root) = container_root(engine, ctx.param()).await?;
    let dir = resolve(root.fd(), &path, &id)?;
    let st = stat_fd(dir.as_fd()).map_err(|e| io_err(format!("stat {path}"), e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(EngineError::BadParameter(format!(
            "extraction point is not a directory: {path}"
        )));
    }
    let no_overwrite = ctx.query.bool("noOverwriteDirNonDir");
    let copy_ids = ctx.query.bool("copyUIDGID");
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut body = req.into_body();
    let feed = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let item = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(e.to_string()),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let result = tokio::task::spawn_blocking(move || {
        let _root = root;
        let mut reader = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        extract(&mut reader, dir.as_fd(), no_overwrite, copy_ids)?;
        // Tar writers pad past the end-of-archive blocks: read the body to its end,
        // or the client is still writing when the answer closes the connection.
        std::io::copy(&mut reader, &mut std::io::sink())?;
        Ok(())
    })
    .await
    .map_err(|e| EngineError::io("extracting the archive", std::io::Error::other(e)))?;
    feed.abort();
    match result {
        Ok(()) => {
            engine.publish_container("extract-to-dir", &id, &[]);
            Ok(status_only(StatusCode::OK))
        }
        Err(ExtractError::Bad(m)) => Err(EngineError::BadParameter(m)),
        Err(ExtractError::Io(e)) => Err(EngineError::io(
            format!("extracting into {path} in container {id}"),
            e,
        )),
    }
}

/// Dispatches by method.
pub async fn archive(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    match ctx.method {
        http::Method::HEAD => head(engine, ctx).await,
        http::Method::PUT => put(engine, ctx, req).await,
        _ => get(engine, ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn link_targets_are_from_the_root() {
        assert_eq!(absolute_target("/bin/sh", "busybox"), "/bin/busybox");
        assert_eq!(absolute_target("/bin/sh", "/bin/busybox"), "/bin/busybox");
        assert_eq!(absolute_target("link", "../x"), "/../x");
    }

    #[test]
    fn go_file_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
    }

    #[test]
    fn entries_carry_exactly_their_header_size() {
        let mut out = vec![];
        Exactly::new(&b"hello world"[..], 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        let mut out = vec![];
        Exactly::new(&b"hi"[..], 5).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hi\0\0\0");
    }

    #[test]
    fn archive_entries_cannot_climb_out() {
        assert!(entry_names(Path::new("../x")).is_err());
        assert!(entry_names(Path::new("/etc/passwd")).is_err());
        assert!(entry_names(Path::new("a/../../x")).is_err());
        let ok = entry_names(Path::new("./a/b")).ok().unwrap_or_default();
        assert_eq!(ok, [OsStr::new("a"), OsStr::new("b")]);
    }

    #[test]
    fn extraction_round_trip_in_a_directory() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("d/l")).unwrap();
        let root = nix::fcntl::open(
            src.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let fd = resolve(root.as_fd(), "/d", "x").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, fd.as_fd(), Path::new("d")).unwrap();
        let data = b.into_inner().unwrap();

        let dst = tempfile::tempdir().unwrap();
        let d = nix::fcntl::open(
            dst.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert!(extract(&data[..], d.as_fd(), false, false).is_ok());
        assert_eq!(std::fs::read(dst.path().join("d/f")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dst.path().join("d/l")).unwrap(),
            Path::new("/etc/passwd")
        );
        // An absolute symlink in the root resolves inside it, not on the host.
        std::os::unix::fs::symlink("/d", src.path().join("up")).unwrap();
        let fd = resolve(root.as_fd(), "/up/f", "x").unwrap();
        assert_eq!(stat_fd(fd.as_fd()).unwrap().st_size, 5);
        assert!(matches!(
            resolve(root.as_fd(), "/nope", "x"),
            Err(EngineError::NotFound(_))
        ));
        // Writing below a symlink is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "d/l/x", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(matches!(
            extract(&data[..], d.as_fd(), false, false),
            Err(ExtractError::Bad(_))
        ));
    }
}
