//! The mounts of a container: Docker's default set, and the user's `Binds`
//! (`/host:/ctr[:opts]` or `volume:/ctr[:opts]`), `Mounts` (`--mount`) and `Tmpfs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{Mount as DockerMount, MountTypeEnum};
use oci_spec::runtime::Mount;

use super::SpecError;

/// Finds (creating when needed) the host directory behind a named volume.
pub trait VolumeResolver {
    fn resolve(&self, name: &str) -> Result<PathBuf, SpecError>;
}

/// One OCI mount.
pub fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// Makes the container's /dev/shm a bind of `source` (the host's, a shareable
/// container's), or drops it (`None`: `IpcMode: none`).
pub fn set_shm(mounts: &mut Vec<Mount>, source: Option<&Path>) {
    mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
    if let Some(source) = source {
        mounts.push(mount(
            "/dev/shm",
            "bind",
            &source.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
}

/// Docker's default mounts: /proc, /dev, /dev/pts, /sys, the cgroup tree, /dev/mqueue
/// and /dev/shm (`shm_size` bytes). Privileged containers get /sys and cgroups writable.
pub fn default_mounts(shm_size: i64, privileged: bool) -> Vec<Mount> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    let shm = format!("size={shm_size}");
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ]
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn check_dest(dest: &str, spec: &str) -> Result<(), SpecError> {
    if !dest.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "invalid mount config for type \"bind\": invalid mount path: '{dest}' mount path must be absolute ({spec})"
        )));
    }
    if Path::new(dest) == Path::new("/") {
        return Err(SpecError::Invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"bind\": destination can't be '/'"
        )));
    }
    Ok(())
}

/// A user's mount, before it becomes an OCI mount; also what inspect's `Mounts` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMount {
    /// "bind", "volume" or "tmpfs".
    pub kind: &'static str,
    /// The volume name for volumes.
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    pub propagation: String,
    pub options: Vec<String>,
}

impl UserMount {
    /// The OCI mount.
    pub fn to_oci(&self) -> Mount {
        if self.kind == "tmpfs" {
            let opts: Vec<&str> = self.options.iter().map(String::as_str).collect();
            return mount(&self.destination, "tmpfs", "tmpfs", &opts);
        }
        let mut opts = vec!["rbind", self.propagation.as_str()];
        opts.push(if self.read_only { "ro" } else { "rw" });
        mount(
            &self.destination,
            "bind",
            &self.source.to_string_lossy(),
            &opts,
        )
    }
}

/// Parses one `Binds` entry: `src:dst[:opts]`, opts a comma list of ro, rw, z, Z,
/// nocopy and a propagation mode.
pub fn parse_bind(spec: &str, volumes: &dyn VolumeResolver) -> Result<UserMount, SpecError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(SpecError::Invalid(format!(
                "invalid volume specification: '{spec}'"
            )))
        }
    };
    if src.is_empty() || dst.is_empty() {
        return Err(SpecError::Invalid(format!(
            "invalid volume specification: '{spec}'"
        )));
    }
    check_dest(dst, spec)?;
    let mut read_only = false;
    let mut propagation = "rprivate".to_string();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // SELinux relabelling and the volume copy-up have no effect here.
            "z" | "Z" | "nocopy" => {}
            p if PROPAGATIONS.contains(&p) => propagation = p.to_string(),
            other => {
                return Err(SpecError::Invalid(format!(
                    "invalid mode: {other} in volume specification '{spec}'"
                )))
            }
        }
    }
    let (kind, name, source) = if src.starts_with('/') {
        ("bind", None, PathBuf::from(src))
    } else {
        ("volume", Some(src.to_string()), volumes.resolve(src)?)
    };
    Ok(UserMount {
        kind,
        name,
        source,
        destination: dst.trim_end_matches('/').to_string(),
        read_only,
        propagation,
        options: vec![],
    })
}

/// Parses one `--mount` entry (HostConfig.Mounts).
pub fn parse_mount(m: &DockerMount, volumes: &dyn VolumeResolver) -> Result<UserMount, SpecError> {
    let dst = m.target.clone().unwrap_or_default();
    check_dest(&dst, &dst)?;
    let read_only = m.read_only.unwrap_or(false);
    match m.typ {
        Some(MountTypeEnum::BIND) | None => {
            let src = m.source.clone().unwrap_or_default();
            if !src.starts_with('/') {
                return Err(SpecError::Invalid(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute"
                )));
            }
            let propagation = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation)
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".to_string());
            Ok(UserMount {
                kind: "bind",
                name: None,
                source: PathBuf::from(src),
                destination: dst,
                read_only,
                propagation,
                options: vec![],
            })
        }
        Some(MountTypeEnum::VOLUME) => {
            let name = m.source.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(SpecError::Unsupported(
                    "anonymous volumes are not supported yet".to_string(),
                ));
            }
            let mut source = volumes.resolve(&name)?;
            if let Some(sub) = m
                .volume_options
                .as_ref()
                .and_then(|o| o.subpath.as_deref())
                .filter(|s| !s.is_empty())
            {
                source = volume_subpath(&source, sub)?;
            }
            Ok(UserMount {
                kind: "volume",
                source,
                name: Some(name),
                destination: dst,
                read_only,
                propagation: "rprivate".to_string(),
                options: vec![],
            })
        }
        Some(MountTypeEnum::TMPFS) => {
            let mut opts = vec![
                "nosuid".to_string(),
                "nodev".to_string(),
                "noexec".to_string(),
            ];
            if let Some(t) = &m.tmpfs_options {
                if let Some(size) = t.size_bytes.filter(|s| *s > 0) {
                    opts.push(format!("size={size}"));
                }
                if let Some(mode) = t.mode.filter(|m| *m > 0) {
                    opts.push(format!("mode={mode:o}"));
                }
            }
            if read_only {
                opts.push("ro".to_string());
            }
            Ok(UserMount {
                kind: "tmpfs",
                name: None,
                source: PathBuf::from("tmpfs"),
                destination: dst,
                read_only,
                propagation: String::new(),
                options: opts,
            })
        }
        Some(other) => Err(SpecError::Unsupported(format!(
            "mount type {other} is not supported"
        ))),
    }
}

/// `VolumeOptions.Subpath`: a relative path inside the volume that must exist and,
/// once its links are resolved, stay inside the volume.
fn volume_subpath(base: &Path, sub: &str) -> Result<PathBuf, SpecError> {
    let rel = Path::new(sub);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(SpecError::Invalid(format!(
            "invalid mount config: subpath must be a relative path within the volume: {sub}"
        )));
    }
    let joined = base.join(rel);
    // At create time the volume may not exist yet; the check is made again at start.
    let Ok(real_base) = base.canonicalize() else {
        return Ok(joined);
    };
    match joined.canonicalize() {
        Ok(real) if real.starts_with(&real_base) => Ok(real),
        Ok(_) => Err(SpecError::Invalid(format!(
            "invalid mount config: subpath {sub} leaves the volume"
        ))),
        Err(e) => Err(SpecError::Invalid(format!(
            "cannot access path {}: {e}",
            joined.display()
        ))),
    }
}

/// `Tmpfs` entries: destination → "opt,opt". Docker's defaults are noexec, nosuid and
/// nodev unless the options say otherwise.
pub fn tmpfs_mounts(tmpfs: &HashMap<String, String>) -> Result<Vec<UserMount>, SpecError> {
    let mut dests: Vec<&String> = tmpfs.keys().collect();
    dests.sort();
    let mut out = vec![];
    for dst in dests {
        check_dest(dst, dst)?;
        let given: Vec<String> = tmpfs[dst]
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        let mut opts = vec![];
        for (d, opposite) in [("noexec", "exec"), ("nosuid", "suid"), ("nodev", "dev")] {
            if !given.iter().any(|g| g == opposite) {
                opts.push(d.to_string());
            }
        }
        opts.extend(given.iter().cloned());
        out.push(UserMount {
            kind: "tmpfs",
            name: None,
            source: PathBuf::from("tmpfs"),
            destination: dst.clone(),
            read_only: given.iter().any(|g| g == "ro"),
            propagation: String::new(),
            options: opts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vols;
    impl VolumeResolver for Vols {
        fn resolve(&self, name: &str) -> Result<PathBuf, SpecError> {
            Ok(PathBuf::from(format!("/data/volumes/{name}/_data")))
        }
    }

    #[test]
    fn binds() {
        let m = parse_bind("/srv:/data:ro", &Vols).unwrap();
        assert_eq!(m.kind, "bind");
        assert!(m.read_only);
        let oci = m.to_oci();
        assert_eq!(oci.typ().as_deref(), Some("bind"));
        assert_eq!(
            oci.options().clone().unwrap(),
            vec!["rbind", "rprivate", "ro"]
        );
        let m = parse_bind("/srv:/data:rw,Z,rshared", &Vols).unwrap();
        assert!(!m.read_only);
        assert_eq!(m.propagation, "rshared");
        let v = parse_bind("cache:/cache", &Vols).unwrap();
        assert_eq!(v.kind, "volume");
        assert_eq!(v.name.as_deref(), Some("cache"));
        assert_eq!(v.source, PathBuf::from("/data/volumes/cache/_data"));
    }

    #[test]
    fn bad_binds() {
        for bad in ["/a", "/a:b", "/a:/", "/a:/b:xx", "a:b:c:d", ":/x"] {
            assert!(parse_bind(bad, &Vols).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_defaults_and_overrides() {
        let mut t = HashMap::new();
        t.insert("/run".to_string(), "size=64m,exec".to_string());
        let m = tmpfs_mounts(&t).unwrap();
        assert_eq!(m[0].options, ["nosuid", "nodev", "size=64m", "exec"]);
        assert_eq!(m[0].to_oci().typ().as_deref(), Some("tmpfs"));
    }

    #[test]
    fn default_mounts_have_shm_size() {
        let m = default_mounts(1 << 20, false);
        let shm = m
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert!(shm
            .options()
            .clone()
            .unwrap()
            .contains(&"size=1048576".to_string()));
        let sys = m
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().clone().unwrap().contains(&"ro".to_string()));
    }
}
