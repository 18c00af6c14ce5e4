//! The build context: the request body (a tar, plain or gzip, bzip2 or xz) unpacked
//! into a private directory, or a remote context (`remote=`: a git repository, a
//! tarball or a bare Dockerfile over HTTP). Unpacking never writes outside the
//! directory (the `tar` crate refuses `..` and absolute names and links out), its
//! names and PAX records are bounded as a layer's are ([`berth_tar::Guard`]), and
//! ownership is not kept: COPY gives root ownership unless told otherwise.
//!
//! A context (and an image's files) may come from a stranger: a symlink in it
//! means a path inside it, never one on the host ([`resolve_in_scope`]), and what
//! the builder reads whole (Dockerfile, .dockerignore, passwd) is a regular file
//! of at most [`MAX_READ`] bytes.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Failures of getting the context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading the build context: {0}")]
    Read(#[source] io::Error),
    #[error("unpacking the build context: {0}")]
    Unpack(#[source] io::Error),
    #[error("{0}")]
    Remote(String),
}

/// A blocking reader over the chunks of a request body.
pub struct BodyReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl BodyReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> BodyReader {
        BodyReader {
            rx,
            buf: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Compression of an archive, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
}

pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// Whether the bytes start like a tar (the `ustar` magic at offset 257).
pub fn looks_like_tar(head: &[u8]) -> bool {
    head.len() > 262 && &head[257..262] == b"ustar"
}

/// `reader` decompressed according to its first bytes. xz is decoded into a
/// temporary file first (the decoder is not a streaming reader).
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    tmp: &Path,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let c = sniff(buf.fill_buf()?);
    let r: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buf)),
        Compression::Xz => {
            let path = tmp.join(format!("xz-{}", std::process::id()));
            let mut f = fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            let _ = fs::remove_file(&path);
            lzma_rs::xz_decompress(&mut buf, &mut f)
                .map_err(|e| io::Error::other(format!("xz: {e}")))?;
            use std::io::Seek;
            f.seek(io::SeekFrom::Start(0))?;
            Box::new(f)
        }
    };
    Ok((c, r))
}

/// Unpacks a (possibly compressed) tar into `dest`, an existing empty directory.
pub fn unpack<R: Read>(reader: R, dest: &Path) -> Result<(), ContextError> {
    let (_, plain) = decompress(reader, dest).map_err(ContextError::Read)?;
    let guarded = berth_tar::Guard::new(plain, berth_tar::Limits::default());
    let mut a = tar::Archive::new(guarded);
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    for entry in a.entries().map_err(ContextError::Read)? {
        let mut entry = entry.map_err(ContextError::Read)?;
        // Device nodes have no place in a context.
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::Char | tar::EntryType::Block
        ) {
            continue;
        }
        entry.unpack_in(dest).map_err(ContextError::Unpack)?;
    }
    Ok(())
}

/// A fresh private directory under `root`, removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(root: &Path, prefix: &str) -> io::Result<TempDir> {
        fs::create_dir_all(root)?;
        let id = crate::fsutil::random_id()?;
        let path = root.join(format!("{prefix}-{}", &id[..16]));
        fs::create_dir(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "removing a build directory");
            }
        }
    }
}

/// A path inside the context, or an error when it leaves it.
pub fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// How many symlinks [`resolve_in_scope`] follows before it gives up (the
/// kernel's own limit).
const MAX_LINKS: usize = 40;

/// `rel` inside `root`, with every symlink on the way (the last component's
/// too) resolved as if `root` were `/`: an absolute target starts again at
/// `root`, and `..` stops there. None past [`MAX_LINKS`] links. The directory is
/// the builder's own and nothing changes it meanwhile, so resolving by path is
/// not racy here.
pub fn resolve_in_scope(root: &Path, rel: &str) -> Option<PathBuf> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStrExt;
    let mut pending: VecDeque<OsString> =
        rel.split('/').map(OsString::from).collect::<VecDeque<_>>();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        match c.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        resolved.push(c);
        let here: PathBuf = resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let Ok(md) = fs::symlink_metadata(&here) else {
            // Missing: nothing below it can be a link either.
            continue;
        };
        if !md.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return None;
        }
        let target = fs::read_link(&here).ok()?;
        resolved.pop();
        if target.is_absolute() {
            resolved.clear();
        }
        for (i, c) in target
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .enumerate()
        {
            pending.insert(i, OsString::from(std::ffi::OsStr::from_bytes(c)));
        }
    }
    Some(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The largest file the builder reads whole from a context or an image's
/// files (a Dockerfile, .dockerignore, /etc/passwd for `--chown`).
pub const MAX_READ: u64 = 16 << 20;

/// The text of `rel` inside `root` (see [`resolve_in_scope`]): NotFound when it
/// is not there, InvalidData when it is not a regular file or is larger than
/// [`MAX_READ`] (a link to /dev/zero must not fill the daemon's memory).
pub fn read_in_scope(root: &Path, rel: &str) -> io::Result<String> {
    let path = resolve_in_scope(root, rel).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{rel}: too many levels of symbolic links"),
        )
    })?;
    let md = fs::symlink_metadata(&path)?;
    if !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{rel}: not a regular file"),
        ));
    }
    let f = fs::File::open(&path)?;
    let mut text = String::new();
    f.take(MAX_READ + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{rel}: larger than {MAX_READ} bytes"),
        ));
    }
    Ok(text)
}

/// Fetches a remote context into `dest`: a git repository (`git://`, `*.git`,
/// `github.com/...`) is cloned; an HTTP URL is downloaded and unpacked when it is an
/// archive, or taken as the Dockerfile otherwise. Returns the Dockerfile name to use
/// when the download was a bare Dockerfile.
pub async fn fetch_remote(url: &str, dest: &Path) -> Result<Option<String>, ContextError> {
    let is_git = url.starts_with("git://")
        || url.starts_with("git@")
        || url.starts_with("github.com/")
        || url.split('#').next().is_some_and(|u| u.ends_with(".git"));
    if is_git {
        let (repo, frag) = url.split_once('#').unwrap_or((url, ""));
        let (reference, subdir) = frag.split_once(':').unwrap_or((frag, ""));
        // Either would reach git as an option (the class of CVE-2019-13139).
        if repo.starts_with('-') || reference.starts_with('-') {
            return Err(ContextError::Remote(format!(
                "invalid git URL or reference: {url}"
            )));
        }
        let repo = if repo.starts_with("github.com/") {
            format!("https://{repo}")
        } else {
            repo.to_string()
        };
        let clone = dest.join("repo");
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("clone")
            .arg("--depth")
            .arg("1")
            .arg("--recurse-submodules");
        if !reference.is_empty() {
            cmd.arg("--branch").arg(reference);
        }
        cmd.arg("--").arg(&repo).arg(&clone);
        let out = cmd
            .output()
            .await
            .map_err(|e| ContextError::Remote(format!("running git: {e}")))?;
        if !out.status.success() {
            return Err(ContextError::Remote(format!(
                "error fetching {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let _ = fs::remove_dir_all(clone.join(".git"));
        // A link in the repository names a path in it, never the host's.
        let src = resolve_in_scope(&clone, subdir)
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .ok_or_else(|| ContextError::Remote(format!("invalid subdirectory in {url}")))?;
        for e in fs::read_dir(&src).map_err(ContextError::Read)?.flatten() {
            fs::rename(e.path(), dest.join(e.file_name())).map_err(ContextError::Read)?;
        }
        let _ = fs::remove_dir_all(&clone);
        return Ok(None);
    }
    // Beside the context, not in it: the download is not one of its files.
    let file = dest.with_extension("download");
    let body = super::http::get(url, &file)
        .await
        .map_err(|e| ContextError::Remote(format!("downloading {url}: {e}")))?;
    let dest = dest.to_path_buf();
    let r = tokio::task::spawn_blocking(move || -> Result<Option<String>, ContextError> {
        let mut f = fs::File::open(&body.path).map_err(ContextError::Read)?;
        let mut head = Vec::with_capacity(512);
        (&mut f)
            .take(512)
            .read_to_end(&mut head)
            .map_err(ContextError::Read)?;
        if sniff(&head) != Compression::None || looks_like_tar(&head) {
            let f = fs::File::open(&body.path).map_err(ContextError::Read)?;
            unpack(io::BufReader::new(f), &dest)?;
            Ok(None)
        } else {
            fs::rename(&body.path, dest.join("Dockerfile")).map_err(ContextError::Read)?;
            Ok(Some("Dockerfile".to_string()))
        }
    })
    .await
    .map_err(|e| ContextError::Remote(e.to_string()));
    let _ = fs::remove_file(&file);
    r?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_every_compression() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "d/f", &b"hi"[..]).unwrap();
        let plain = b.into_inner().unwrap();
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let bz = {
            use std::io::Write;
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut &plain[..], &mut out).unwrap();
            out
        };
        for data in [plain.clone(), gz, bz, xz] {
            let d = tempfile::tempdir().unwrap();
            unpack(&data[..], d.path()).unwrap();
            assert_eq!(fs::read(d.path().join("d/f")).unwrap(), b"hi");
        }
    }

    #[test]
    fn nothing_lands_outside() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../evil";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("in");
        fs::create_dir(&inner).unwrap();
        let _ = unpack(&data[..], &inner);
        assert!(!d.path().join("evil").exists());
        assert_eq!(inside(Path::new("/c"), "a/../b"), None);
        assert_eq!(
            inside(Path::new("/c"), "./a/b"),
            Some(PathBuf::from("/c/a/b"))
        );
    }

    #[test]
    fn long_names_in_a_context_are_refused_before_they_are_read() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // A GNU long name of 600 KiB: the tar crate would hold it whole.
        let name = format!("{}f", "a/".repeat(300 * 1024));
        b.append_data(&mut h, &name, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = unpack(&data[..], d.path()).unwrap_err().to_string();
        assert!(e.contains("at most 65536"), "{e}");
        assert!(!d.path().join("a").exists());
    }

    #[test]
    fn links_in_a_context_stay_inside_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ctx");
        let host = d.path().join("host");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), "host's").unwrap();
        fs::write(root.join("etc/secret"), "context's").unwrap();
        let link =
            |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        // Absolute, relative past the root, and through the host's real path.
        link("/etc", "abs");
        link("../../../../etc", "up");
        link(host.to_str().unwrap(), "hostdir");
        link("loop", "loop");
        link("/dev/zero", "zero");
        link("etc/secret", "Dockerfile");
        assert_eq!(
            resolve_in_scope(&root, "abs/secret"),
            Some(root.join("etc/secret"))
        );
        assert_eq!(
            resolve_in_scope(&root, "up/secret"),
            Some(root.join("etc/secret"))
        );
        assert_eq!(read_in_scope(&root, "abs/secret").unwrap(), "context's");
        assert_eq!(read_in_scope(&root, "Dockerfile").unwrap(), "context's");
        let hostdir = resolve_in_scope(&root, "hostdir/secret").unwrap();
        assert!(hostdir.starts_with(&root), "{}", hostdir.display());
        let e = read_in_scope(&root, "hostdir/secret").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(resolve_in_scope(&root, "loop"), None);
        // /dev/zero inside the root does not exist; the host's is never read.
        let e = read_in_scope(&root, "zero").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        fs::create_dir_all(root.join("dev")).unwrap();
        nix::unistd::mkfifo(
            &root.join("dev/zero"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = read_in_scope(&root, "zero").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let big = fs::File::create(root.join("big")).unwrap();
        big.set_len(MAX_READ + 1).unwrap();
        let e = read_in_scope(&root, "big").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[tokio::test]
    async fn git_urls_and_subdirectories_cannot_reach_the_host() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("pwned");
        let dest = d.path().join("dest");
        fs::create_dir(&dest).unwrap();
        for url in [
            format!("--upload-pack=touch {};.git", marker.display()),
            "http://h/r.git#--upload-pack=x".to_string(),
        ] {
            let e = fetch_remote(&url, &dest).await.unwrap_err().to_string();
            assert!(e.contains("invalid git URL"), "{e}");
        }
        assert!(!marker.exists());

        // A repository whose subdirectory is a link to a host directory: the
        // host's files are not moved into the context (and so not deleted with it).
        let git = |dir: &Path, args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(dir)
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .output();
            match out {
                Ok(o) if o.status.success() => true,
                Ok(o) => panic!("git {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
                Err(_) => false,
            }
        };
        let repo = d.path().join("repo.git");
        let host = d.path().join("host");
        fs::create_dir_all(&repo).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("precious"), "keep").unwrap();
        if !git(&repo, &["init", "-q"]) {
            eprintln!("skipped: git is not installed");
            return;
        }
        std::os::unix::fs::symlink(&host, repo.join("sub")).unwrap();
        fs::write(repo.join("Dockerfile"), "FROM scratch\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "x"]);
        let url = format!("file://{}#:sub", repo.display());
        let e = fetch_remote(&url, &dest).await.unwrap_err().to_string();
        assert!(e.contains("invalid subdirectory"), "{e}");
        assert_eq!(fs::read_to_string(host.join("precious")).unwrap(), "keep");
        assert!(!dest.join("precious").exists());
    }
}
