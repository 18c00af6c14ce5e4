//! COPY and ADD sources: resolving them in the context (or a stage's files),
//! wildcards with Go's `filepath.Match`, the content checksum that goes into the
//! history line and so the cache key (`file:<sha256>`, `dir:<sha256>`,
//! `multi:<sha256>`: contents, modes, types and link targets, never mtimes), and the
//! tars the manager writes into the step's layer.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache::hex;
use super::context;

/// One tar to write, and where.
#[derive(Debug)]
pub struct Item {
    pub tar: PathBuf,
    pub dest: String,
    pub dest_is_file: bool,
}

/// What a source resolves to before packing.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A file or directory on disk (in the context or a stage's files).
    Path { path: PathBuf, name: String },
    /// Bytes with a name (a heredoc).
    Data {
        name: String,
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    /// A downloaded file (ADD URL): packed with the given name, mode and time,
    /// whatever the file on disk has.
    Downloaded {
        path: PathBuf,
        name: String,
        mode: u32,
        mtime: i64,
    },
    /// A local archive for ADD to unpack.
    Archive { path: PathBuf },
}

/// Options of a copy.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`.
    pub mode: Option<u32>,
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(rd) = fs::read_dir(&dir) else { return };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let r = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let is_dir = fs::symlink_metadata(root.join(&r)).is_ok_and(|m| m.is_dir());
        out.push(r.clone());
        if is_dir {
            walk(root, &r, out);
        }
    }
}

/// Resolves a source path in `root`: wildcards expanded, the top-level symlink
/// followed inside the root. `what` names the root in messages.
pub fn resolve(root: &Path, src: &str, what: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let cleaned = src.trim_start_matches('/');
    let cleaned = cleaned.trim_start_matches("./");
    if cleaned.split('/').any(|c| c == "..") {
        return Err(format!(
            "Forbidden path outside the build context: {src} ()"
        ));
    }
    let cleaned = cleaned.trim_end_matches('/');
    if has_wildcard(cleaned) {
        let mut all = vec![];
        walk(root, "", &mut all);
        let hits: Vec<(PathBuf, String)> = all
            .into_iter()
            .filter(|p| berth_context::path_match(cleaned, p))
            .map(|p| {
                let name = p.rsplit('/').next().unwrap_or(&p).to_string();
                (root.join(&p), name)
            })
            .collect();
        return Ok(hits);
    }
    if context::inside(root, cleaned).is_none() {
        return Err(format!(
            "Forbidden path outside the build context: {src} ()"
        ));
    }
    // Every link on the way resolves inside the root: `a/passwd` with `a` a
    // link to /etc is the root's etc/passwd, never the host's.
    let path = context::resolve_in_scope(root, cleaned)
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .ok_or_else(|| {
            format!("file not found in {what} or excluded by .dockerignore: stat {cleaned}: file does not exist")
        })?;
    let name = cleaned.rsplit('/').next().unwrap_or(cleaned).to_string();
    Ok(vec![(path, name)])
}

fn hash_tree(path: &Path, h: &mut Sha256) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    h.update(format!("{:o}\0", md.mode() & 0o177777).as_bytes());
    if md.file_type().is_symlink() {
        h.update(fs::read_link(path)?.to_string_lossy().as_bytes());
    } else if md.is_file() {
        h.update(md.len().to_string().as_bytes());
        h.update([0]);
        let mut f = fs::File::open(path)?;
        let mut w = HashWriter(h);
        io::copy(&mut f, &mut w)?;
    } else if md.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            h.update(n.as_encoded_bytes());
            h.update([0]);
            hash_tree(&path.join(&n), h)?;
        }
    }
    h.update([0xff]);
    Ok(())
}

struct HashWriter<'a>(&'a mut Sha256);
impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The checksum of one resolved source, as docker prints it in history.
pub fn checksum(r: &Resolved) -> io::Result<String> {
    let mut h = Sha256::new();
    match r {
        Resolved::Path { path, .. } | Resolved::Archive { path } => {
            let is_dir = fs::metadata(path)?.is_dir();
            hash_tree(path, &mut h)?;
            let kind = if is_dir { "dir" } else { "file" };
            Ok(format!("{kind}:{}", hex(&h.finalize())))
        }
        Resolved::Data { data, mode, .. } => {
            h.update(format!("{mode:o}\0").as_bytes());
            h.update(data);
            Ok(format!("file:{}", hex(&h.finalize())))
        }
        // The same sum as the bytes would have as Data.
        Resolved::Downloaded { path, mode, .. } => {
            h.update(format!("{mode:o}\0").as_bytes());
            io::copy(&mut fs::File::open(path)?, &mut HashWriter(&mut h))?;
            Ok(format!("file:{}", hex(&h.finalize())))
        }
    }
}

/// The history text for several sources: one checksum, or `multi:` of them all.
pub fn combined(sums: &[String]) -> String {
    match sums {
        [one] => one.clone(),
        many => {
            let mut h = Sha256::new();
            for s in many {
                h.update(s.as_bytes());
                h.update([0]);
            }
            format!("multi:{}", hex(&h.finalize()))
        }
    }
}

fn header_for(md: &fs::Metadata, own: &Ownership) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let mode = match own.mode {
        Some(m) => m,
        None => md.mode() & 0o7777,
    };
    h.set_mode(mode);
    h.set_uid(u64::from(own.uid));
    h.set_gid(u64::from(own.gid));
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// The header of a file whose mode and time come with it, not from the disk.
fn named_file_header(mode: u32, mtime: i64, size: u64, own: &Ownership) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(own.mode.unwrap_or(mode));
    h.set_uid(u64::from(own.uid));
    h.set_gid(u64::from(own.gid));
    h.set_mtime(mtime.max(0) as u64);
    h.set_size(size);
    h
}

fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    own: &Ownership,
) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    let mut h = header_for(&md, own);
    if md.file_type().is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        b.append_link(&mut h, name, fs::read_link(path)?)?;
    } else if md.is_dir() {
        if !name.is_empty() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{name}/"), io::empty())?;
        }
        let mut names: Vec<_> = fs::read_dir(path)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let n = n.to_string_lossy().into_owned();
            let child = if name.is_empty() {
                n.clone()
            } else {
                format!("{name}/{n}")
            };
            append_tree(b, &path.join(&n), &child, own)?;
        }
    } else if md.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        b.append_data(&mut h, name, fs::File::open(path)?)?;
    }
    Ok(())
}

/// Packs one resolved source into a tar under `tmp`, with where it goes. `dest` is
/// absolute; `dest_dir` says the destination is a directory (a trailing slash, or
/// several sources).
pub fn pack(
    r: &Resolved,
    dest: &str,
    dest_dir: bool,
    own: &Ownership,
    tmp: &Path,
    n: usize,
) -> io::Result<Item> {
    let tar_path = tmp.join(format!("copy-{n}.tar"));
    let file = fs::File::create(&tar_path)?;
    let mut b = tar::Builder::new(io::BufWriter::new(file));
    let mut item = Item {
        tar: tar_path.clone(),
        dest: dest.to_string(),
        dest_is_file: false,
    };
    match r {
        Resolved::Path { path, name } => {
            if fs::metadata(path)?.is_dir() {
                append_tree(&mut b, path, "", own)?;
            } else {
                append_tree(&mut b, path, name, own)?;
                item.dest_is_file = !dest_dir;
            }
        }
        Resolved::Data {
            name,
            data,
            mode,
            mtime,
        } => {
            let mut h = named_file_header(*mode, *mtime, data.len() as u64, own);
            b.append_data(&mut h, name, &data[..])?;
            item.dest_is_file = !dest_dir;
        }
        Resolved::Downloaded {
            path,
            name,
            mode,
            mtime,
        } => {
            let f = fs::File::open(path)?;
            let mut h = named_file_header(*mode, *mtime, f.metadata()?.len(), own);
            b.append_data(&mut h, name, f)?;
            item.dest_is_file = !dest_dir;
        }
        Resolved::Archive { path } => {
            // The archive's own entries, decompressed, as they are.
            let f = fs::File::open(path)?;
            let (_, plain) = context::decompress(f, tmp)?;
            let mut a = tar::Archive::new(plain);
            for e in a.entries()? {
                let mut e = e?;
                let mut h = e.header().clone();
                let p = e.path()?.into_owned();
                match h.entry_type() {
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                        b.append_link(&mut h, &p, target)?;
                    }
                    tar::EntryType::Char | tar::EntryType::Block => {}
                    tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                    _ => b.append_data(&mut h, &p, &mut e)?,
                }
            }
        }
    }
    b.into_inner()?.flush()?;
    Ok(item)
}

/// Whether a local file is an archive ADD unpacks: compressed (gzip, bzip2, xz)
/// or a plain tar.
pub fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let n = io::Read::read(&mut f, &mut head).unwrap_or(0);
    head.truncate(n);
    if context::sniff(&head) != context::Compression::None {
        // A compressed file is an archive only if it holds a tar.
        let Ok(f) = fs::File::open(path) else {
            return false;
        };
        let Ok(tmp) = tempdir_for(path) else {
            return false;
        };
        let Ok((_, mut plain)) = context::decompress(f, &tmp) else {
            return false;
        };
        let mut inner = vec![0u8; 512];
        let mut got = 0;
        while got < 512 {
            match io::Read::read(&mut plain, &mut inner[got..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
        return context::looks_like_tar(&inner[..got]);
    }
    context::looks_like_tar(&head)
}

fn tempdir_for(path: &Path) -> io::Result<PathBuf> {
    Ok(path.parent().unwrap_or(Path::new("/tmp")).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_checksums() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs::write(d.path().join("dir/sub/f"), "x").unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        fs::write(d.path().join("b.txt"), "b").unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("link")).unwrap();
        let r = resolve(d.path(), "*.txt", "build context").unwrap();
        assert_eq!(r.len(), 2);
        let r = resolve(d.path(), "link", "build context").unwrap();
        assert_eq!(r[0].0, d.path().join("a.txt"));
        assert_eq!(r[0].1, "link");
        assert!(resolve(d.path(), "../x", "build context").is_err());
        assert!(resolve(d.path(), "nope", "build context").is_err());
        // A link on the way to a source resolves inside the context: `etc/hostname`
        // through a link to /etc is the context's (missing), not the host's.
        std::os::unix::fs::symlink("/etc", d.path().join("hostetc")).unwrap();
        assert!(resolve(d.path(), "hostetc/hostname", "build context").is_err());
        std::os::unix::fs::symlink("/dir", d.path().join("abs")).unwrap();
        let r = resolve(d.path(), "abs/sub/f", "build context").unwrap();
        assert_eq!(r[0].0, d.path().join("dir/sub/f"));
        let sum = |p: &str| {
            checksum(&Resolved::Path {
                path: d.path().join(p),
                name: p.into(),
            })
            .unwrap()
        };
        let before = sum("dir");
        assert!(before.starts_with("dir:"));
        // mtimes do not count, contents do
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("dir/sub/f"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(sum("dir"), before);
        fs::write(d.path().join("dir/sub/f"), "y").unwrap();
        assert_ne!(sum("dir"), before);
        assert!(sum("a.txt").starts_with("file:"));
    }

    #[test]
    fn packs_with_ownership() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/x")).unwrap();
        fs::write(d.path().join("src/x/f"), "hi").unwrap();
        let own = Ownership {
            uid: 5,
            gid: 6,
            mode: None,
        };
        let r = Resolved::Path {
            path: d.path().join("src"),
            name: "src".into(),
        };
        let item = pack(&r, "/app", false, &own, d.path(), 0).unwrap();
        assert!(!item.dest_is_file);
        let data = fs::read(&item.tar).unwrap();
        let mut a = tar::Archive::new(&data[..]);
        let entries: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, vec![("x/".to_string(), 5), ("x/f".to_string(), 5)]);
    }
}
