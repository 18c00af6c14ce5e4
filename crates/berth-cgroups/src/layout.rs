//! Which cgroup layout the host has, and where each hierarchy is mounted.
//!
//! `/sys/fs/cgroup` being a cgroup2 filesystem means the unified (v2) layout.
//! Otherwise the v1 hierarchies are looked for where systemd and cgroupfs-mount put
//! them (`/sys/fs/cgroup/<controllers>`, checked with statfs), and only when one is
//! not there are they found in `/proc/self/mountinfo`, co-mounted controllers
//! (`cpu,cpuacct`) and named ones (`name=systemd`) included; a cgroup2 mount beside
//! them (usually `/sys/fs/cgroup/unified`) makes the host "hybrid".
//! Reading mountinfo is avoided because the kernel writes out every mount of the
//! namespace for it: with a thousand container mounts on the host that is 200 KB and
//! some 6 ms of CPU, paid by every `create`.
//! Nothing here mounts or unmounts anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where cgroupfs lives on every current distribution.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers berth knows; other mount options of a v1 mount (`rw`,
/// `xattr`, `release_agent=...`) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "debug",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The host could not tell us its cgroup layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("reading {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: crate::files::OsError,
    },
    #[error("no cgroup hierarchy is mounted (neither cgroup2 at {DEFAULT_ROOT} nor any v1 controller in /proc/self/mountinfo)")]
    NothingMounted,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// v1 hierarchies: controller (or `name=X`) → mount point; `unified` is the
    /// cgroup2 mount of a hybrid host.
    V1 {
        hierarchies: BTreeMap<String, PathBuf>,
        unified: Option<PathBuf>,
    },
    /// One unified hierarchy rooted at `root`.
    V2 { root: PathBuf },
}

impl Layout {
    /// Detect the layout of this host.
    pub fn detect() -> Result<Layout, LayoutError> {
        if is_cgroup2(Path::new(DEFAULT_ROOT)) {
            return Ok(Layout::V2 {
                root: PathBuf::from(DEFAULT_ROOT),
            });
        }
        if let Some(layout) = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|own| conventional_v1(Path::new(DEFAULT_ROOT), &own))
        {
            return Ok(layout);
        }
        let path = PathBuf::from("/proc/self/mountinfo");
        let info = std::fs::read_to_string(&path).map_err(|e| LayoutError::Read {
            path,
            error: crate::files::OsError(e),
        })?;
        Layout::from_mountinfo(&info).ok_or(LayoutError::NothingMounted)
    }

    /// The layout described by a mountinfo text; None when it has no cgroup mount.
    pub fn from_mountinfo(info: &str) -> Option<Layout> {
        let mounts = parse_mountinfo(info);
        let mut hierarchies: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut unified: Option<PathBuf> = None;
        for m in &mounts {
            match m.fstype.as_str() {
                "cgroup" => {
                    for ctrl in m.super_options.split(',').filter(|o| is_v1_controller(o)) {
                        // The same hierarchy can be mounted (or bind-mounted) twice:
                        // prefer the conventional place, else the first one seen.
                        let conventional = m.mount_point.starts_with(DEFAULT_ROOT);
                        let keep = hierarchies
                            .get(ctrl)
                            .is_some_and(|p| p.starts_with(DEFAULT_ROOT) || !conventional);
                        if !keep {
                            hierarchies.insert(ctrl.to_string(), m.mount_point.clone());
                        }
                    }
                }
                "cgroup2" => {
                    let better = match &unified {
                        None => true,
                        Some(p) => {
                            !p.starts_with(DEFAULT_ROOT) && m.mount_point.starts_with(DEFAULT_ROOT)
                        }
                    };
                    if better {
                        unified = Some(m.mount_point.clone());
                    }
                }
                _ => {}
            }
        }
        if !hierarchies.is_empty() {
            return Some(Layout::V1 {
                hierarchies,
                unified,
            });
        }
        unified.map(|root| Layout::V2 { root })
    }
}

/// The v1 layout when every hierarchy this process is in (`own`: the text of
/// /proc/self/cgroup) is mounted at its conventional place under `root`: the
/// directory named after its controllers (`cpu,cpuacct`; `systemd` for
/// `name=systemd`) or after one of them (the `cpu` symlink), a cgroup (v1)
/// filesystem by statfs; the cgroup2 hierarchy, if the kernel has one, at
/// `root/unified`. None as soon as one is not where expected, so that mountinfo
/// decides.
fn conventional_v1(root: &Path, own: &str) -> Option<Layout> {
    if !is_fs(root, nix::sys::statfs::TMPFS_MAGIC) {
        return None;
    }
    let mut hierarchies: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut unified = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list)) = (parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && list.is_empty() {
            let at = root.join("unified");
            if !is_cgroup2(&at) {
                return None;
            }
            unified = Some(at);
            continue;
        }
        let controllers: Vec<&str> = list.split(',').filter(|c| is_v1_controller(c)).collect();
        if controllers.is_empty() {
            continue;
        }
        let dir_name = |c: &str| c.strip_prefix("name=").unwrap_or(c).to_string();
        let joined = controllers
            .iter()
            .map(|c| dir_name(c))
            .collect::<Vec<_>>()
            .join(",");
        let at = std::iter::once(joined)
            .chain(controllers.iter().map(|c| dir_name(c)))
            .map(|d| root.join(d))
            .find(|p| is_fs(p, nix::sys::statfs::CGROUP_SUPER_MAGIC))?;
        for c in controllers {
            hierarchies.insert(c.to_string(), at.clone());
        }
    }
    if hierarchies.is_empty() {
        return None;
    }
    Some(Layout::V1 {
        hierarchies,
        unified,
    })
}

fn is_fs(path: &Path, magic: nix::sys::statfs::FsType) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == magic)
        .unwrap_or(false)
}

fn is_v1_controller(option: &str) -> bool {
    V1_CONTROLLERS.contains(&option) || (option.starts_with("name=") && option.len() > 5)
}

/// Whether `path` is the root of a cgroup2 filesystem.
pub fn is_cgroup2(path: &Path) -> bool {
    is_fs(path, nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// One line of mountinfo, the fields berth needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// The mounts of a mountinfo text (proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(info: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // id parent dev root mountpoint options [optional...] - fstype source superopts
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        out.push(MountInfo {
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fields[sep + 1].to_string(),
            super_options: fields[sep + 3].to_string(),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 41 0:32 / /mnt/my\\040mem rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_mountinfo() {
        let Some(Layout::V1 {
            hierarchies,
            unified,
        }) = Layout::from_mountinfo(HYBRID)
        else {
            panic!("not v1");
        };
        assert_eq!(
            unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(hierarchies["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(hierarchies["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            hierarchies["net_prio"],
            Path::new("/sys/fs/cgroup/net_cls,net_prio")
        );
        assert_eq!(
            hierarchies["name=systemd"],
            Path::new("/sys/fs/cgroup/systemd")
        );
        assert!(!hierarchies.contains_key("xattr"));
        assert!(!hierarchies.keys().any(|k| k.starts_with("release_agent")));
        assert_eq!(hierarchies.len(), 6);
    }

    #[test]
    fn v2_only_mountinfo() {
        let info = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            Layout::from_mountinfo(info),
            Some(Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            })
        );
        assert_eq!(
            Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn escaped_mount_points() {
        let m = parse_mountinfo(
            "50 41 0:32 / /mnt/my\\040mem\\134x rw - cgroup cgroup rw,memory\nbroken line\n",
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, Path::new("/mnt/my mem\\x"));
        assert_eq!(m[0].super_options, "rw,memory");
    }

    #[test]
    fn the_conventional_places_agree_with_mountinfo() {
        // Only reads. On a v1 or hybrid host the quick look must find what mountinfo
        // says (where it finds anything: otherwise mountinfo decides anyway).
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if let Some(quick) = conventional_v1(Path::new(DEFAULT_ROOT), &own) {
            assert_eq!(Some(quick), Layout::from_mountinfo(&info));
        }
        // Not a tmpfs of cgroup mounts: nothing is guessed.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(conventional_v1(dir.path(), &own), None);
        assert_eq!(
            conventional_v1(Path::new(DEFAULT_ROOT), "3:no-such:/\n"),
            None
        );
    }

    #[test]
    fn this_host_has_a_layout() {
        // Every machine berth runs on has cgroups; this only reads.
        assert!(Layout::detect().is_ok());
    }
}
