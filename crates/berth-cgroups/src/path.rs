//! Turning the spec's `linux.cgroupsPath` into a path below a hierarchy's root.
//!
//! Absolute and relative paths both hang off the root of every hierarchy (berth
//! does not nest containers inside the caller's own cgroup). systemd's
//! `slice:prefix:name` form is mapped onto cgroupfs the way systemd itself would
//! lay it out, `/<expanded slice>/<prefix>-<name>.scope`, without talking to
//! systemd: no unit is created, and systemd does not know about the cgroup.

use std::path::{Component, Path, PathBuf};

/// A cgroups path that berth refuses to use.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("invalid cgroups path {path:?}: {reason}")]
    Invalid { path: String, reason: &'static str },
    #[error(
        "invalid cgroups path {path:?}: with systemd cgroups it must be slice:prefix:name \
         (e.g. system.slice:docker:abc)"
    )]
    NotSystemdForm { path: String },
    #[error("invalid systemd slice {slice:?}: {reason}")]
    Slice { slice: String, reason: &'static str },
    #[error("invalid container id {id:?} for a cgroup name")]
    Id { id: String },
}

/// The prefix of the scope berth uses when it picks a systemd-style name itself.
const SCOPE_PREFIX: &str = "berth";

/// The cgroup's path relative to each hierarchy root (no leading `/`).
///
/// `None` becomes `berth/<id>` (`system.slice/berth-<id>.scope` with `systemd`).
pub fn resolve(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<PathBuf, PathError> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(PathError::Id { id: id.to_string() });
    }
    match (cgroups_path, systemd) {
        (None, false) => Ok(PathBuf::from("berth").join(id)),
        (None, true) => systemd_path("system.slice", SCOPE_PREFIX, id),
        (Some(p), true) => {
            let s = p.to_string_lossy();
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [slice, prefix, name] => systemd_path(slice, prefix, name),
                _ => Err(PathError::NotSystemdForm {
                    path: s.into_owned(),
                }),
            }
        }
        (Some(p), false) => normalize(p),
    }
}

/// Strip the root, refuse `..`, drop `.`; the result must name a cgroup below the
/// root (the root cgroup itself is never a container's).
pub fn normalize(p: &Path) -> Result<PathBuf, PathError> {
    let invalid = |reason| PathError::Invalid {
        path: p.to_string_lossy().into_owned(),
        reason,
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(invalid("\"..\" components are not allowed")),
            Component::Prefix(_) => return Err(invalid("not a unix path")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(invalid("it names the root cgroup"));
    }
    Ok(out)
}

/// `slice:prefix:name` → `<expanded slice>/<prefix>-<name>.scope`; a name that is
/// itself a slice is used as is, below the parent slice.
fn systemd_path(slice: &str, prefix: &str, name: &str) -> Result<PathBuf, PathError> {
    let whole = format!("{slice}:{prefix}:{name}");
    let bad_part = |s: &str| s.contains('/') || s == "." || s == "..";
    if name.is_empty() || bad_part(name) || bad_part(prefix) {
        return Err(PathError::NotSystemdForm { path: whole });
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(slice)?;
    if name.ends_with(".slice") {
        // A slice name already carries its parents: "a-b.slice" lives in "a.slice".
        let own = expand_slice(name)?;
        if let Some(leaf) = own.file_name() {
            path.push(leaf);
        }
    } else if prefix.is_empty() {
        path.push(format!("{name}.scope"));
    } else {
        path.push(format!("{prefix}-{name}.scope"));
    }
    Ok(path)
}

/// systemd's slice naming: `a-b-c.slice` is `a.slice/a-b.slice/a-b-c.slice`, and
/// `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf, PathError> {
    let bad = |reason| PathError::Slice {
        slice: slice.to_string(),
        reason,
    };
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(bad("a slice name ends in .slice"));
    };
    if slice.contains('/') {
        return Err(bad("a slice name has no \"/\""));
    }
    if base == "-" {
        return Ok(PathBuf::new());
    }
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(bad("dashes separate non-empty parts"));
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: Option<&str>, systemd: bool) -> Result<PathBuf, PathError> {
        resolve(p.map(Path::new), "abc", systemd)
    }

    #[test]
    fn default_path() {
        assert_eq!(r(None, false).unwrap(), Path::new("berth/abc"));
        assert_eq!(
            r(None, true).unwrap(),
            Path::new("system.slice/berth-abc.scope")
        );
    }

    #[test]
    fn absolute_and_relative_paths_hang_off_the_root() {
        assert_eq!(r(Some("/berth/x"), false).unwrap(), Path::new("berth/x"));
        assert_eq!(r(Some("berth/x"), false).unwrap(), Path::new("berth/x"));
        assert_eq!(r(Some("/a/./b/"), false).unwrap(), Path::new("a/b"));
    }

    #[test]
    fn refuses_dotdot_and_root() {
        assert!(r(Some("/berth/../etc"), false).is_err());
        assert!(r(Some("../x"), false).is_err());
        assert!(r(Some("/"), false).is_err());
        assert!(r(Some("."), false).is_err());
        assert!(resolve(None, "../x", false).is_err());
        assert!(resolve(None, "", false).is_err());
    }

    #[test]
    fn systemd_form() {
        assert_eq!(
            r(Some("system.slice:docker:abc"), true).unwrap(),
            Path::new("system.slice/docker-abc.scope")
        );
        assert_eq!(
            r(Some("machine-foo.slice:libpod:x1"), true).unwrap(),
            Path::new("machine.slice/machine-foo.slice/libpod-x1.scope")
        );
        assert_eq!(
            r(Some(":docker:abc"), true).unwrap(),
            Path::new("system.slice/docker-abc.scope")
        );
        assert_eq!(
            r(Some("-.slice:p:n"), true).unwrap(),
            Path::new("p-n.scope")
        );
        assert_eq!(
            r(Some("system.slice::n"), true).unwrap(),
            Path::new("system.slice/n.scope")
        );
        assert_eq!(
            r(Some("user.slice::user-1000.slice"), true).unwrap(),
            Path::new("user.slice/user-1000.slice")
        );
        assert!(r(Some("/berth/x"), true).is_err());
        assert!(r(Some("system.slice:docker:../x"), true).is_err());
        assert!(r(Some("system.slice:..:x"), true).is_err());
        assert!(r(Some("system:docker:x"), true).is_err());
        assert!(r(Some("a--b.slice:docker:x"), true).is_err());
        assert!(r(Some("../a.slice:docker:x"), true).is_err());
    }

    #[test]
    fn slice_expansion() {
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            Path::new("a.slice/a-b.slice/a-b-c.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new(""));
        assert!(expand_slice("-a.slice").is_err());
        assert!(expand_slice("a-.slice").is_err());
        assert!(expand_slice("a").is_err());
    }
}
