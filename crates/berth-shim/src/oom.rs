//! Whether the kernel OOM-killed something in the container's memory cgroup: the
//! `oom_kill` counter of `memory.events` (cgroup v2) or `memory.oom_control` (v1).
//!
//! The cgroup is found from `/proc/<init pid>/cgroup` while the init is alive (any
//! runtime puts it there), and read when the init exits, before `runtime delete`
//! removes the cgroup.

use std::path::{Path, PathBuf};

/// The file holding a container's OOM-kill counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    file: PathBuf,
}

impl OomCounter {
    /// The counter of the memory cgroup `pid` is in, if memory is accounted.
    pub fn for_pid(pid: i32) -> Option<OomCounter> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        if let Some(c) = locate(&cgroups, CONVENTIONAL).filter(|c| c.file.exists()) {
            return Some(c);
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        locate(&cgroups, &mountinfo).filter(|c| c.file.exists())
    }

    /// How many processes the OOM killer killed in the cgroup (0 if unreadable).
    pub fn count(&self) -> u64 {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|s| parse_oom_kill(&s))
            .unwrap_or(0)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Where systemd (and cgroupfs-mount) put the hierarchies, as mountinfo would say:
/// tried first, because the kernel writes out every mount of the namespace for a
/// read of mountinfo, and with many containers on the host that is milliseconds.
/// A counter file found through it is taken only if it exists: `memory.oom_control`
/// is only in a v1 memory hierarchy, `memory.events` only in a cgroup2 one.
const CONVENTIONAL: &str = "\
1 1 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
2 1 0:2 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";

/// The counter file from the content of /proc/<pid>/cgroup and of mountinfo.
fn locate(cgroups: &str, mountinfo: &str) -> Option<OomCounter> {
    let mut v2_path = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let mount = mount_point(mountinfo, |fstype, opts| {
                fstype == "cgroup" && opts.split(',').any(|o| o == "memory")
            })?;
            return Some(OomCounter {
                file: join(&mount, path).join("memory.oom_control"),
            });
        }
        if controllers.is_empty() {
            v2_path = Some(path);
        }
    }
    let path = v2_path?;
    let mount = mount_point(mountinfo, |fstype, _| fstype == "cgroup2")?;
    Some(OomCounter {
        file: join(&mount, path).join("memory.events"),
    })
}

fn join(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// The mount point of the first mount whose fstype and super options match.
fn mount_point(mountinfo: &str, want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // mountinfo: id parent maj:min root point opts [optional...] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let mut r = right.split(' ');
        let fstype = r.next()?;
        let _source = r.next()?;
        let super_opts = r.next().unwrap_or("");
        want(fstype, super_opts).then(|| PathBuf::from(point.replace("\\040", " ")))
    })
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 25 0:29 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
";

    #[test]
    fn v1_memory_controller_is_preferred() {
        let cg = "12:cpu:/x\n5:memory:/berth-test/c1\n0::/berth-test/c1\n";
        assert_eq!(
            locate(cg, MOUNTINFO).unwrap().file,
            PathBuf::from("/sys/fs/cgroup/memory/berth-test/c1/memory.oom_control")
        );
    }

    #[test]
    fn v2_uses_memory_events() {
        let mi = "31 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            locate("0::/berth/c2\n", mi).unwrap().file,
            PathBuf::from("/sys/fs/cgroup/berth/c2/memory.events")
        );
    }

    #[test]
    fn oom_kill_counters_parse() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\noom_group_kill 0\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom 1\n"), None);
    }
}
