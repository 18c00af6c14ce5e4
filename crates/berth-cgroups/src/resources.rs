//! Checking the spec's resources and converting them into the values the kernel's
//! files take. Pure functions, shared by the v1 and v2 backends and unit-tested
//! without a kernel.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxRdma};

/// A resource value berth cannot write.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("invalid memory+swap limit {swap}: it must be at least the memory limit {memory}")]
    SwapBelowMemory { memory: i64, swap: i64 },
    #[error("invalid memory+swap limit {swap}: a swap limit needs a memory limit")]
    SwapWithoutMemory { swap: i64 },
    #[error("invalid {what} {value}")]
    InvalidValue { what: &'static str, value: i64 },
    #[error("cpu shares {requested} are out of the kernel's range: it applied {applied}")]
    SharesOutOfRange { requested: u64, applied: u64 },
    #[error("invalid memory swappiness {0}: it must be between 0 and 100")]
    Swappiness(u64),
    #[error("invalid device rule type {0:?}: the devices cgroup knows a, b and c")]
    DeviceType(String),
    #[error("invalid device rule access {0:?}: it is made of r, w and m")]
    DeviceAccess(String),
    #[error("invalid hugepage size {0:?} (expected e.g. 2MB or 1GB)")]
    PageSize(String),
    #[error("invalid unified resource {0:?}: it must be a file name CONTROLLER.PARAMETER")]
    UnifiedKey(String),
    #[error("unified resources ({0}) need cgroup v2; this host uses cgroup v1")]
    UnifiedOnV1(String),
    #[error("invalid RDMA device name {0:?}")]
    RdmaDevice(String),
    #[error("{what} is not supported on cgroup {version}")]
    Unsupported {
        what: &'static str,
        version: &'static str,
    },
}

/// cgroup v1 `cpu.shares` → cgroup v2 `cpu.weight`, the conversion runc, crun and
/// the kernel documentation use: [2, 262144] maps linearly onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio weight [10, 1000] → `io.weight` [1, 10000].
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// A v2 limit: None or 0 means "leave as is", -1 means "max".
pub fn v2_limit(what: &'static str, value: Option<i64>) -> Result<Option<String>, ResourceError> {
    match value {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some("max".into())),
        Some(v) if v > 0 => Ok(Some(v.to_string())),
        Some(v) => Err(ResourceError::InvalidValue { what, value: v }),
    }
}

/// `memory.swap.max` from the spec's `swap`, which (as in v1) is memory+swap:
/// swap.max = swap - memory. -1 means no limit, and an unlimited memory with no
/// swap given makes swap unlimited too. None: leave it as is.
pub fn v2_swap_max(
    memory: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<String>, ResourceError> {
    let memory = memory.unwrap_or(0);
    match swap.unwrap_or(0) {
        0 if memory == -1 => Ok(Some("max".into())),
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        swap if swap < -1 => Err(ResourceError::InvalidValue {
            what: "memory+swap limit",
            value: swap,
        }),
        swap if memory == 0 => Err(ResourceError::SwapWithoutMemory { swap }),
        _ if memory < 0 => Err(ResourceError::InvalidValue {
            what: "memory limit",
            value: memory,
        }),
        swap if swap < memory => Err(ResourceError::SwapBelowMemory { memory, swap }),
        swap => Ok(Some((swap - memory).to_string())),
    }
}

/// The v1 memory values to write: (memory.limit_in_bytes, memory.memsw.limit_in_bytes).
/// An unlimited memory with no swap given makes memory+swap unlimited too, or the
/// kernel would refuse a memory limit above the old memory+swap limit.
pub fn v1_memory_and_swap(
    memory: Option<i64>,
    swap: Option<i64>,
) -> Result<(Option<i64>, Option<i64>), ResourceError> {
    let memory = memory.filter(|m| *m != 0);
    let swap = swap.filter(|s| *s != 0);
    for (what, v) in [("memory limit", memory), ("memory+swap limit", swap)] {
        if let Some(v) = v.filter(|v| *v < -1) {
            return Err(ResourceError::InvalidValue { what, value: v });
        }
    }
    if let (Some(m), Some(s)) = (memory, swap) {
        if m > 0 && s > 0 && s < m {
            return Err(ResourceError::SwapBelowMemory { memory: m, swap: s });
        }
        if m == -1 && s > 0 {
            return Err(ResourceError::InvalidValue {
                what: "memory+swap limit for an unlimited memory",
                value: s,
            });
        }
    }
    let swap = match (memory, swap) {
        (Some(-1), None) => Some(-1),
        _ => swap,
    };
    Ok((memory, swap))
}

/// `pids.max`: a positive limit, or "max" for 0 and negatives.
pub fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// A v1 device rule: whether it allows, and the line for devices.allow/deny
/// (`c 1:3 rwm`, `a *:* rwm`).
pub fn device_rule(d: &LinuxDeviceCgroup) -> Result<(bool, String), ResourceError> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        // An unbuffered character device is a character device to the kernel.
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => return Err(ResourceError::DeviceType("p".into())),
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = match d.access().as_deref() {
        None | Some("") => "rwm".to_string(),
        Some(a) => {
            // As runc: letters other than r, w and m are ignored (profiles in
            // the wild carry an "a"), but a rule must grant or deny something.
            let seen: String = ['r', 'w', 'm']
                .into_iter()
                .filter(|c| a.contains(*c))
                .collect();
            if seen.is_empty() {
                return Err(ResourceError::DeviceAccess(a.to_string()));
            }
            if seen.len() != a.chars().count() {
                log::debug!("device rule access {a:?}: only {seen:?} is used");
            }
            seen
        }
    };
    Ok((
        d.allow(),
        format!("{typ} {}:{} {access}", num(d.major()), num(d.minor())),
    ))
}

/// A hugepage size as the hugetlb files spell it (`2MB`, `1GB`, `64KB`), checked
/// because it becomes part of a file name.
pub fn hugepage_size(size: &str) -> Result<&str, ResourceError> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(unit, "B" | "KB" | "MB" | "GB" | "TB" | "PB");
    if ok {
        Ok(size)
    } else {
        Err(ResourceError::PageSize(size.to_string()))
    }
}

/// A key of the spec's `unified` map: a file name in the cgroup directory.
pub fn unified_key(key: &str) -> Result<(&str, &str), ResourceError> {
    let bad = || ResourceError::UnifiedKey(key.to_string());
    if key.contains('/') || key.contains('\0') {
        return Err(bad());
    }
    match key.split_once('.') {
        Some((ctrl, param)) if !ctrl.is_empty() && !param.is_empty() => Ok((ctrl, param)),
        _ => Err(bad()),
    }
}

/// A line of `rdma.max`: `mlx4_0 hca_handle=2 hca_object=2000`; None when the
/// entry sets nothing.
pub fn rdma_line(device: &str, limits: &LinuxRdma) -> Result<Option<String>, ResourceError> {
    if device.is_empty() || device.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(ResourceError::RdmaDevice(device.to_string()));
    }
    let mut line = device.to_string();
    if let Some(h) = limits.hca_handles() {
        line.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = limits.hca_objects() {
        line.push_str(&format!(" hca_object={o}"));
    }
    Ok((line != device).then_some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_is_the_standard_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of range shares are clamped as the kernel clamps them on v1.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn v2_swap_arithmetic() {
        let mib = 1 << 20;
        // swap in the spec is memory+swap.
        assert_eq!(
            v2_swap_max(Some(100 * mib), Some(300 * mib))
                .unwrap()
                .as_deref(),
            Some((200 * mib).to_string().as_str())
        );
        assert_eq!(
            v2_swap_max(Some(100 * mib), Some(100 * mib))
                .unwrap()
                .as_deref(),
            Some("0")
        );
        assert_eq!(
            v2_swap_max(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(v2_swap_max(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(v2_swap_max(Some(100), None).unwrap(), None);
        assert_eq!(v2_swap_max(None, None).unwrap(), None);
        assert!(matches!(
            v2_swap_max(Some(200), Some(100)),
            Err(ResourceError::SwapBelowMemory { .. })
        ));
        assert!(matches!(
            v2_swap_max(None, Some(100)),
            Err(ResourceError::SwapWithoutMemory { .. })
        ));
        assert!(v2_swap_max(Some(-1), Some(100)).is_err());
        assert!(v2_swap_max(Some(100), Some(-2)).is_err());
    }

    #[test]
    fn v2_limits() {
        assert_eq!(v2_limit("x", Some(-1)).unwrap().as_deref(), Some("max"));
        assert_eq!(v2_limit("x", Some(5)).unwrap().as_deref(), Some("5"));
        assert_eq!(v2_limit("x", Some(0)).unwrap(), None);
        assert!(v2_limit("x", Some(-3)).is_err());
    }

    #[test]
    fn v1_memory_and_swap_rules() {
        assert_eq!(
            v1_memory_and_swap(Some(100), Some(200)).unwrap(),
            (Some(100), Some(200))
        );
        assert_eq!(
            v1_memory_and_swap(Some(-1), None).unwrap(),
            (Some(-1), Some(-1))
        );
        assert_eq!(
            v1_memory_and_swap(Some(100), Some(0)).unwrap(),
            (Some(100), None)
        );
        assert!(v1_memory_and_swap(Some(200), Some(100)).is_err());
        assert!(v1_memory_and_swap(Some(-1), Some(100)).is_err());
        assert!(v1_memory_and_swap(Some(-7), None).is_err());
    }

    #[test]
    fn pids() {
        assert_eq!(pids_max(20), "20");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
    }

    #[test]
    fn device_rules() {
        let rule = |json: &str| {
            let d: LinuxDeviceCgroup = serde_json::from_str(json).unwrap();
            device_rule(&d)
        };
        assert_eq!(
            rule(r#"{"allow":false,"access":"rwm"}"#).unwrap(),
            (false, "a *:* rwm".into())
        );
        assert_eq!(
            rule(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}"#).unwrap(),
            (true, "c 1:3 rw".into())
        );
        assert_eq!(
            rule(r#"{"allow":true,"type":"c","major":136,"access":"rwm"}"#).unwrap(),
            (true, "c 136:* rwm".into())
        );
        assert_eq!(
            rule(r#"{"allow":true,"type":"b","major":-1,"minor":-1}"#).unwrap(),
            (true, "b *:* rwm".into())
        );
        // Unknown letters are ignored as runc ignores them; nothing left is an error.
        assert_eq!(
            rule(r#"{"allow":false,"type":"c","major":1,"minor":11,"access":"rwa"}"#).unwrap(),
            (false, "c 1:11 rw".into())
        );
        assert!(rule(r#"{"allow":true,"type":"c","access":"xyz"}"#).is_err());
        assert!(rule(r#"{"allow":true,"type":"p"}"#).is_err());
    }

    #[test]
    fn page_sizes_and_unified_keys() {
        assert!(hugepage_size("2MB").is_ok());
        assert!(hugepage_size("1GB").is_ok());
        assert!(hugepage_size("../x").is_err());
        assert!(hugepage_size("MB").is_err());
        assert_eq!(unified_key("memory.high").unwrap(), ("memory", "high"));
        assert!(unified_key("../memory.high").is_err());
        assert!(unified_key("memory").is_err());
        assert!(unified_key(".x").is_err());
    }

    #[test]
    fn rdma_lines() {
        let r: LinuxRdma = serde_json::from_str(r#"{"hcaHandles":2,"hcaObjects":2000}"#).unwrap();
        assert_eq!(
            rdma_line("mlx4_0", &r).unwrap().as_deref(),
            Some("mlx4_0 hca_handle=2 hca_object=2000")
        );
        assert_eq!(rdma_line("mlx4_0", &LinuxRdma::default()).unwrap(), None);
        assert!(rdma_line("a b", &r).is_err());
    }
}
