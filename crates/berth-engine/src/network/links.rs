//! What the engine reads of the host's interfaces, from sysfs and procfs only (never
//! netlink): the ports of a bridge, whether an interface is gone, and whether any
//! process is inside a pinned network namespace.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::store::HostLink;

/// The interfaces enslaved to `bridge` now (none when it does not exist).
pub fn bridge_ports(bridge: &str) -> Vec<HostLink> {
    if bridge.is_empty() || bridge.contains('/') || bridge.starts_with('.') {
        return vec![];
    }
    let dir = Path::new("/sys/class/net").join(bridge).join("brif");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ifindex = ifindex(&name)?;
            Some(HostLink { name, ifindex })
        })
        .collect()
}

fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The one port in `after` that is not in `before`, if exactly one is new.
pub fn new_port(before: &[HostLink], after: Vec<HostLink>) -> Option<HostLink> {
    let mut new = after
        .into_iter()
        .filter(|l| !before.iter().any(|b| b.ifindex == l.ifindex));
    match (new.next(), new.next()) {
        (Some(l), None) => Some(l),
        _ => None,
    }
}

/// Waits until every one of `links` is gone, which the kernel does on a work queue
/// a few milliseconds after their namespace was unpinned; false when some are still
/// there after two seconds.
pub async fn wait_gone(links: &[HostLink]) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if links.iter().all(is_gone) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Whether `link` no longer exists (its name is gone or names another interface).
pub fn is_gone(link: &HostLink) -> bool {
    ifindex(&link.name) != Some(link.ifindex)
}

/// Whether a process (any thread group leader) is inside the network namespace
/// pinned at `netns`. `None` when that cannot be told (the pin cannot be read).
pub fn netns_in_use(netns: &Path) -> Option<bool> {
    let ino = std::fs::metadata(netns).ok()?.ino();
    let want = format!("net:[{ino}]");
    let procs = std::fs::read_dir("/proc").ok()?;
    for e in procs.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let link = std::fs::read_link(format!("/proc/{pid}/ns/net"));
        if link.is_ok_and(|l| l.as_os_str() == want.as_str()) {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, ifindex: u32) -> HostLink {
        HostLink {
            name: name.into(),
            ifindex,
        }
    }

    #[test]
    fn the_new_port_is_told_only_when_it_is_alone() {
        let before = vec![l("veth0", 7)];
        assert_eq!(
            new_port(&before, vec![l("veth0", 7), l("veth1", 9)]),
            Some(l("veth1", 9))
        );
        assert_eq!(new_port(&before, vec![l("veth0", 7)]), None);
        assert_eq!(
            new_port(&[], vec![l("veth0", 7), l("veth1", 9)]),
            None,
            "two new ports: which is ours cannot be told"
        );
        // A name given again to a new interface is a new port.
        assert_eq!(
            new_port(&before, vec![l("veth0", 11)]),
            Some(l("veth0", 11))
        );
    }

    #[test]
    fn missing_interfaces_are_gone_and_bridges_without_ports_have_none() {
        assert!(is_gone(&l("berth-no-such", 1)));
        assert!(bridge_ports("berth-no-such").is_empty());
        assert!(bridge_ports("../lo").is_empty());
        // Loopback is index 1 in every namespace.
        assert!(!is_gone(&l("lo", 1)));
        assert!(is_gone(&l("lo", 2)));
    }

    #[test]
    fn our_own_namespace_is_in_use() {
        assert_eq!(netns_in_use(Path::new("/proc/self/ns/net")), Some(true));
        assert_eq!(netns_in_use(Path::new("/no/such/netns")), None);
    }
}
