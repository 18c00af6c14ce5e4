//! Packing a build context: the directory as a tar, without what `.dockerignore`
//! excludes, entries sorted for a stable stream, ownership as root (the daemon gives
//! copied files root ownership anyway) and symlinks kept as links.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Patterns;

/// Why a context could not be packed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct PackError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PackError + 'a {
    move |source| PackError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir` as a tar to `out`, leaving out what `ignore` excludes except the
/// paths in `keep` (the Dockerfile and `.dockerignore`, which the daemon needs and
/// removes itself). Returns `out`.
pub fn pack<W: Write>(
    dir: &Path,
    ignore: &Patterns,
    keep: &[&str],
    out: W,
) -> Result<W, PackError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    walk(&mut b, dir, "", ignore, keep)?;
    b.into_inner().map_err(err("finishing the tar of", dir))
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &str,
    ignore: &Patterns,
    keep: &[&str],
) -> Result<(), PackError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(err("reading", &dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let rel_p = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = root.join(&rel_p);
        let md = fs::symlink_metadata(&path).map_err(err("reading", &path))?;
        let excluded = ignore.excludes(&rel_p) && !keep.contains(&rel_p.as_str());
        if md.is_dir() {
            if excluded && !ignore.may_reinclude_below(&rel_p) {
                continue;
            }
            if !excluded {
                let mut h = header(&md);
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, format!("{rel_p}/"), io::empty())
                    .map_err(err("packing", &path))?;
            }
            walk(b, root, &rel_p, ignore, keep)?;
            continue;
        }
        if excluded {
            continue;
        }
        let mut h = header(&md);
        if md.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(err("reading", &path))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &rel_p, target)
                .map_err(err("packing", &path))?;
        } else if md.is_file() {
            let f = fs::File::open(&path).map_err(err("opening", &path))?;
            h.set_size(md.len());
            b.append_data(&mut h, &rel_p, f)
                .map_err(err("packing", &path))?;
        }
        // Sockets, fifos and devices are not build context.
    }
    Ok(())
}

fn header(md: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_without_the_ignored() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("ignored/subdir")).unwrap();
        fs::write(d.path().join("ignored/subdir/file"), "x").unwrap();
        fs::write(d.path().join("ignored/subdir/excepted"), "x").unwrap();
        fs::write(d.path().join("keep"), "x").unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let p = Patterns::parse("ignored\n!ignored/subdir/excepted\nDockerfile\n").unwrap();
        let tar = pack(d.path(), &p, &["Dockerfile"], Vec::new()).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["Dockerfile", "ignored/subdir/excepted", "keep", "link"]
        );
    }
}
