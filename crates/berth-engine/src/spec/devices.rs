//! `--device` and `--device-cgroup-rule`: host device nodes made in the container
//! and the cgroup rules that let it use them, as dockerd applies them; and the
//! block I/O limits (`--blkio-weight*`, `--device-read-bps` and friends), which
//! name host block devices too. Every one is checked when the spec is built
//! (create's dry run, start, update), so a bad one is a clear 400 that leaves
//! nothing behind.

use std::path::Path;

use bollard_stubs::models::{HostConfig, ThrottleDevice};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};

use super::{defaults, host_devices, invalid, SpecError};

/// The nodes `--device` asks for (a directory gives every node below it), and a
/// rule for each with its permissions. A privileged container is allowed every
/// device and has the host's /dev already: it gets only the nodes mapped to
/// another path.
pub fn mapped(
    hc: &HostConfig,
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let (mut nodes, mut rules) = (vec![], vec![]);
    for m in hc.devices.as_deref().unwrap_or(&[]) {
        let host = m
            .path_on_host
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("a device mapping has no PathOnHost"))?;
        let inside = m
            .path_in_container
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(host);
        if !inside.starts_with('/') {
            return Err(invalid(format!(
                "device path {inside:?} in the container is not absolute"
            )));
        }
        let access = m
            .cgroup_permissions
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("rwm");
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(format!(
                "invalid device mode {access:?} for {host:?}: it takes r, w and m"
            )));
        }
        if privileged && host == inside {
            continue;
        }
        let found = gather(Path::new(host), Path::new(inside)).map_err(|e| {
            invalid(format!(
                "error gathering device information while adding custom device {host:?}: {e}"
            ))
        })?;
        for dev in found {
            if !privileged {
                rules.push(defaults::dev_rule(
                    true,
                    dev.typ(),
                    Some(dev.major()),
                    Some(dev.minor()),
                    access,
                ));
            }
            nodes.push(dev);
        }
    }
    Ok((nodes, rules))
}

/// The node at `host` (links followed: `/dev/disk/by-id/…` names the node behind
/// it) as `inside`, or every node below a directory at the same place below `inside`.
fn gather(host: &Path, inside: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let meta = std::fs::metadata(host)?;
    if meta.is_dir() {
        let resolved = std::fs::canonicalize(host)?;
        let mut found = host_devices(&resolved);
        for d in &mut found {
            if let Ok(rel) = d.path().strip_prefix(&resolved) {
                let at = inside.join(rel);
                d.set_path(at);
            }
        }
        return Ok(found);
    }
    defaults::device_node(inside.to_path_buf(), &meta)
        .map(|d| vec![d])
        .ok_or_else(|| std::io::Error::other("not a device node"))
}

/// `--device-cgroup-rule`s (`c 1:3 mr`, `b 8:* rw`, `a *:* m`): allow rules that
/// follow the defaults.
pub fn cgroup_rules(hc: &HostConfig) -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    hc.device_cgroup_rules
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            parse_rule(r)
                .ok_or_else(|| invalid(format!("invalid device cgroup rule format: {r:?}")))
        })
        .collect()
}

fn parse_rule(rule: &str) -> Option<LinuxDeviceCgroup> {
    let mut parts = rule.split(' ');
    let typ = match parts.next()? {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return None,
    };
    let (major, minor) = parts.next()?.split_once(':')?;
    let access = parts.next()?;
    if parts.next().is_some()
        || !(1..=3).contains(&access.len())
        || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
    {
        return None;
    }
    let number = |s: &str| -> Option<Option<i64>> {
        if s == "*" {
            Some(None)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u32>().ok().map(|n| Some(i64::from(n)))
        } else {
            None
        }
    };
    Some(defaults::dev_rule(
        true,
        typ,
        number(major)?,
        number(minor)?,
        access,
    ))
}

/// The major and minor numbers of the block device at `path` (links followed).
fn block_device(path: &str) -> Result<(i64, i64), SpecError> {
    let meta = std::fs::metadata(path).map_err(|e| invalid(format!("{path}: {e}")))?;
    match defaults::device_node(path.into(), &meta) {
        Some(d) if d.typ() == LinuxDeviceType::B => Ok((d.major(), d.minor())),
        _ => Err(invalid(format!("{path} is not a block device"))),
    }
}

/// A blkio weight as dockerd takes it: 0 (unset) or 10 to 1000.
fn weight(w: u64) -> Result<Option<u16>, SpecError> {
    match w {
        0 => Ok(None),
        10..=1000 => Ok(u16::try_from(w).ok()),
        _ => Err(invalid("Range of blkio weight is from 10 to 1000")),
    }
}

fn throttles(
    list: Option<&Vec<ThrottleDevice>>,
) -> Result<Option<Vec<LinuxThrottleDevice>>, SpecError> {
    let mut out = vec![];
    for t in list.into_iter().flatten() {
        let path = t.path.as_deref().unwrap_or("");
        let rate = t.rate.unwrap_or(0);
        let rate = u64::try_from(rate).map_err(|_| {
            invalid(format!(
                "invalid rate {rate} for {path}: it cannot be negative"
            ))
        })?;
        let (major, minor) = block_device(path)?;
        out.push(
            LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .rate(rate)
                .build()?,
        );
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `linux.resources.blockIO` from the blkio fields; None when none is set.
/// `weights` says whether this host's cgroups take a weight: dockerd drops one
/// it cannot apply (with a warning at create) rather than fail the start.
pub fn block_io(hc: &HostConfig, weights: bool) -> Result<Option<LinuxBlockIo>, SpecError> {
    let mut io = LinuxBlockIo::default();
    let w = weight(u64::from(hc.blkio_weight.unwrap_or(0)))?;
    let mut weight_devices = vec![];
    for wd in hc.blkio_weight_device.iter().flatten() {
        let path = wd.path.as_deref().unwrap_or("");
        let w = weight(wd.weight.unwrap_or(0) as u64)?;
        let (major, minor) = block_device(path)?;
        let mut d = LinuxWeightDeviceBuilder::default()
            .major(major)
            .minor(minor);
        if let Some(w) = w {
            d = d.weight(w);
        }
        weight_devices.push(d.build()?);
    }
    if weights {
        io.set_weight(w);
        io.set_weight_device((!weight_devices.is_empty()).then_some(weight_devices));
    }
    io.set_throttle_read_bps_device(throttles(hc.blkio_device_read_bps.as_ref())?);
    io.set_throttle_write_bps_device(throttles(hc.blkio_device_write_bps.as_ref())?);
    io.set_throttle_read_iops_device(throttles(hc.blkio_device_read_iops.as_ref())?);
    io.set_throttle_write_iops_device(throttles(hc.blkio_device_write_iops.as_ref())?);
    Ok((io != LinuxBlockIo::default()).then_some(io))
}

/// Whether the create sets a blkio weight (its warning when this host takes none).
pub fn asks_for_weight(hc: &HostConfig) -> bool {
    hc.blkio_weight.unwrap_or(0) != 0
        || hc
            .blkio_weight_device
            .as_ref()
            .is_some_and(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::DeviceMapping;

    fn mapping(host: &str, inside: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: Some(host.into()),
            path_in_container: Some(inside.into()),
            cgroup_permissions: Some(perms.into()),
        }
    }

    fn hc(devices: Vec<DeviceMapping>, rules: &[&str]) -> HostConfig {
        HostConfig {
            devices: Some(devices),
            device_cgroup_rules: Some(rules.iter().map(|r| r.to_string()).collect()),
            ..HostConfig::default()
        }
    }

    #[test]
    fn a_node_is_made_where_asked_with_its_rule() {
        let (nodes, rules) = mapped(
            &hc(vec![mapping("/dev/null", "/dev/xnull", "r")], &[]),
            false,
        )
        .unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].path(), Path::new("/dev/xnull"));
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(nodes[0].typ(), LinuxDeviceType::C);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].access().as_deref(), Some("r"));
        assert_eq!((rules[0].major(), rules[0].minor()), (Some(1), Some(3)));
        assert!(rules[0].allow());

        // No container path: the host's; no permissions: rwm.
        let m = DeviceMapping {
            path_on_host: Some("/dev/zero".into()),
            ..DeviceMapping::default()
        };
        let (nodes, rules) = mapped(&hc(vec![m], &[]), false).unwrap();
        assert_eq!(nodes[0].path(), Path::new("/dev/zero"));
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn a_directory_gives_every_node_below_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let made = nix::sys::stat::mknod(
            &dir.path().join("sub/null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        );
        if made.is_err() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let host = dir.path().to_str().unwrap();
        let (nodes, rules) =
            mapped(&hc(vec![mapping(host, "/dev/mine", "rw")], &[]), false).unwrap();
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        assert_eq!(nodes[0].path(), Path::new("/dev/mine/sub/null"));
        assert_eq!(nodes[0].file_mode(), Some(0o600));
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn privileged_gets_only_the_moved_nodes_and_no_rules() {
        let h = hc(
            vec![
                mapping("/dev/null", "/dev/null", "rwm"),
                mapping("/dev/zero", "/dev/z", "r"),
            ],
            &[],
        );
        let (nodes, rules) = mapped(&h, true).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].path(), Path::new("/dev/z"));
        assert!(rules.is_empty());
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        let refused = |m: DeviceMapping| match mapped(&hc(vec![m], &[]), false) {
            Err(SpecError::Invalid(msg)) => msg,
            other => panic!("accepted: {other:?}"),
        };
        assert!(refused(mapping("/nonexistent/dev", "/dev/x", "rwm")).contains("No such file"));
        assert!(refused(mapping("/etc/hostname", "/dev/x", "rwm")).contains("not a device node"));
        assert!(refused(mapping("/dev/null", "dev/x", "rwm")).contains("not absolute"));
        assert!(refused(mapping("/dev/null", "/dev/x", "rwx")).contains("invalid device mode"));
        assert!(refused(DeviceMapping::default()).contains("PathOnHost"));
    }

    #[test]
    fn cgroup_rules_parse_as_dockers() {
        let rules = cgroup_rules(&hc(vec![], &["c 1:3 mr", "b 8:* rw", "a *:* m"])).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].typ(), Some(LinuxDeviceType::C));
        assert_eq!((rules[0].major(), rules[0].minor()), (Some(1), Some(3)));
        assert_eq!(rules[0].access().as_deref(), Some("mr"));
        assert_eq!((rules[1].major(), rules[1].minor()), (Some(8), None));
        assert_eq!(rules[2].typ(), Some(LinuxDeviceType::A));
        assert!(rules.iter().all(|r| r.allow()));
        for bad in [
            "c 1:3",
            "x 1:3 r",
            "c 1:3 rwx",
            "c -1:3 r",
            "c 1:3 rwmr",
            "c 1 r",
            "c 1:3  r",
            "",
        ] {
            assert!(
                cgroup_rules(&hc(vec![], &[bad])).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
