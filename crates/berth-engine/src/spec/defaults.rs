//! Docker's defaults for a container that asks for nothing special: the capability set,
//! the masked and read-only paths, the mounts every container gets, the device cgroup
//! rules, and the PATH a container starts with.

use std::collections::HashSet;

use std::path::PathBuf;

use oci_spec::runtime::{Capability, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

/// The capabilities a container gets by default (Docker's set of 14).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name berth knows (as of Linux 5.9); [`all_caps`] is what
/// `--privileged` and `--cap-add ALL` grant.
pub const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETGID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
];

/// Capabilities by their number in the kernel (their bit in /proc's `CapBnd`).
const CAP_NUMBERS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Keeps the capabilities this daemon may hand out (its bounding set, read once):
/// a daemon in a container or a sandbox may lack some, and a runtime cannot grant
/// what its caller lacks (its capset fails with EPERM).
pub fn held_caps(caps: Vec<String>) -> Vec<String> {
    static BOUNDING: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let bounding = BOUNDING.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mask = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
        u64::from_str_radix(mask.trim(), 16).ok()
    });
    let Some(mask) = *bounding else {
        return caps;
    };
    caps.into_iter()
        .filter(|c| match CAP_NUMBERS.iter().position(|n| n == c) {
            Some(bit) => mask & (1u64 << bit) != 0,
            None => false,
        })
        .collect()
}

/// What `--privileged` and `--cap-add ALL` grant: every capability the kernel knows
/// that this daemon holds. dockerd asks for every one the kernel knows, so on a
/// host that withholds one (CAP_SYS_RESOURCE in some sandboxes) every privileged
/// container fails to start; podman and containerd grant what they hold, as here.
/// A capability named on its own is never dropped this way: asking for one the
/// daemon lacks fails at the start, with the runtime's error.
pub fn all_caps() -> Vec<String> {
    held_caps(ALL_CAPS.iter().map(|s| s.to_string()).collect())
}

/// Paths hidden from the container (a /dev/null bind, or an empty read-only tmpfs for
/// directories): kernel interfaces that leak host information or allow harm.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The PATH a container gets when neither the image nor the user sets one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `/dev/shm`'s size when `ShmSize` is not set: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// Normalises a capability name as Docker accepts it ("sys_admin", "CAP_SYS_ADMIN")
/// to the kernel's spelling, `CAP_SYS_ADMIN`.
pub fn normalize_cap(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Parses a normalised capability name into oci-spec's type.
pub fn parse_cap(name: &str) -> Option<Capability> {
    if !ALL_CAPS.contains(&name) {
        return None;
    }
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Docker's effective capability list from the defaults, `--cap-add` and `--cap-drop`
/// (either may hold "ALL"). Unknown names are returned as the error.
pub fn effective_caps(add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let add: Vec<String> = add.iter().map(|c| normalize_cap(c)).collect();
    let drop: Vec<String> = drop.iter().map(|c| normalize_cap(c)).collect();
    for c in add.iter().chain(drop.iter()) {
        if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
            return Err(c.clone());
        }
    }
    let has = |v: &[String], c: &str| v.iter().any(|x| x == c);
    let mut set: Vec<String> = if has(&add, "ALL") {
        all_caps()
    } else if has(&drop, "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if !has(&add, "ALL") {
        for c in &add {
            if !set.contains(c) {
                set.push(c.clone());
            }
        }
    }
    if !has(&drop, "ALL") {
        set.retain(|c| !drop.contains(c));
    }
    // An explicit add wins over "drop ALL", as in Docker.
    let mut seen = HashSet::new();
    set.retain(|c| seen.insert(c.clone()));
    Ok(set)
}

/// A device cgroup rule (`major`/`minor` None: any).
pub fn dev_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The device node `meta` describes (its kind, numbers, permission bits and
/// owner) as the OCI device at `path` in the container; None when `meta` is not
/// a device node's.
pub fn device_node(path: PathBuf, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let mut dev = LinuxDevice::default();
    dev.set_path(path);
    dev.set_typ(typ);
    dev.set_major(i64::from(libc::major(meta.rdev())));
    dev.set_minor(i64::from(libc::minor(meta.rdev())));
    dev.set_file_mode(Some(meta.mode() & 0o7777));
    dev.set_uid(Some(meta.uid()));
    dev.set_gid(Some(meta.gid()));
    Some(dev)
}

/// The device cgroup rules: deny everything, then allow the devices a container needs
/// (the null/zero/full/random/urandom/tty/console/ptmx/pts/tun nodes, and mknod of any).
pub fn device_rules(privileged: bool) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    if privileged {
        return vec![dev_rule(true, A, None, None, "rwm")];
    }
    vec![
        dev_rule(false, A, None, None, "rwm"),
        dev_rule(true, C, None, None, "m"),
        dev_rule(true, B, None, None, "m"),
        dev_rule(true, C, Some(1), Some(3), "rwm"),
        dev_rule(true, C, Some(1), Some(5), "rwm"),
        dev_rule(true, C, Some(1), Some(7), "rwm"),
        dev_rule(true, C, Some(1), Some(8), "rwm"),
        dev_rule(true, C, Some(1), Some(9), "rwm"),
        dev_rule(true, C, Some(5), Some(0), "rwm"),
        dev_rule(true, C, Some(5), Some(1), "rwm"),
        dev_rule(true, C, Some(5), Some(2), "rwm"),
        dev_rule(true, C, Some(136), None, "rwm"),
        dev_rule(true, C, Some(10), Some(200), "rwm"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn capability_numbers_are_the_kernels() {
        assert_eq!(CAP_NUMBERS[21], "CAP_SYS_ADMIN");
        assert_eq!(CAP_NUMBERS[40], "CAP_CHECKPOINT_RESTORE");
        for c in CAP_NUMBERS {
            assert!(ALL_CAPS.contains(&c), "{c}");
        }
        assert_eq!(CAP_NUMBERS.len(), ALL_CAPS.len());
    }

    #[test]
    fn all_caps_are_the_held_ones() {
        let all = all_caps();
        assert!(!all.is_empty());
        assert!(all.iter().all(|c| ALL_CAPS.contains(&c.as_str())));
        assert_eq!(held_caps(all.clone()), all);
    }

    #[test]
    fn every_cap_name_parses() {
        for c in ALL_CAPS {
            assert!(parse_cap(c).is_some(), "{c}");
        }
        assert!(parse_cap("CAP_NOPE").is_none());
        assert_eq!(DEFAULT_CAPS.len(), 14);
    }

    #[test]
    fn cap_add_and_drop() {
        let caps = effective_caps(&v(&["sys_admin"]), &v(&["CAP_NET_RAW", "chown"])).unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), 13);
    }

    #[test]
    fn all_in_add_or_drop() {
        let all = effective_caps(&v(&["ALL"]), &v(&["SYS_ADMIN"])).unwrap();
        assert_eq!(all.len(), all_caps().len() - 1);
        let only = effective_caps(&v(&["NET_BIND_SERVICE"]), &v(&["all"])).unwrap();
        assert_eq!(only, ["CAP_NET_BIND_SERVICE"]);
        assert!(effective_caps(&[], &v(&["ALL"])).unwrap().is_empty());
    }

    #[test]
    fn unknown_caps_are_refused() {
        assert_eq!(effective_caps(&v(&["FLY"]), &[]).unwrap_err(), "CAP_FLY");
    }

    #[test]
    fn device_rules_start_with_deny_all() {
        let r = device_rules(false);
        assert!(!r[0].allow());
        assert!(r.iter().skip(1).all(|d| d.allow()));
        let p = device_rules(true);
        assert_eq!(p.len(), 1);
        assert!(p[0].allow());
    }
}
