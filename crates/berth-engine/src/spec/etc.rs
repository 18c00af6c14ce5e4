//! The `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` a container sees: generated
//! into its directory under the data root and bind-mounted over the image's.

use std::path::{Path, PathBuf};

const HOSTNAME: &str = "hostname";
const HOSTS: &str = "hosts";
const RESOLV_CONF: &str = "resolv.conf";

/// DNS servers used when the host has only local ones (which a container in its own
/// network namespace cannot reach).
const FALLBACK_DNS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The three files, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcFiles {
    /// Where they live in a container directory.
    pub fn in_dir(dir: &Path) -> EtcFiles {
        EtcFiles {
            hostname: dir.join(HOSTNAME),
            hosts: dir.join(HOSTS),
            resolv_conf: dir.join(RESOLV_CONF),
        }
    }
}

/// `/etc/hosts` for a container with its own network namespace: the loopback names,
/// the IPv6 multicast names, then `ExtraHosts` (`name:ip`).
pub fn hosts_file(extra_hosts: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for e in extra_hosts {
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s
}

fn is_local_nameserver(addr: &str) -> bool {
    addr.starts_with("127.") || addr == "::1"
}

/// `/etc/resolv.conf`: the host's, without loopback name servers (unreachable from a
/// private network namespace), with fallbacks if none remain, and the user's `Dns`,
/// `DnsSearch` and `DnsOptions` replacing the host's values where given.
pub fn resolv_conf(host: &str, dns: &[String], search: &[String], options: &[String]) -> String {
    let mut servers: Vec<String> = vec![];
    let mut host_search: Vec<String> = vec![];
    let mut host_options: Vec<String> = vec![];
    for line in host.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(a) = f.next() {
                    if !is_local_nameserver(a) {
                        servers.push(a.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => host_search = f.map(str::to_string).collect(),
            Some("options") => host_options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    }
    if servers.is_empty() {
        servers = FALLBACK_DNS.iter().map(|s| s.to_string()).collect();
    }
    let search = if search.is_empty() {
        host_search
    } else {
        search.to_vec()
    };
    let options = if options.is_empty() {
        host_options
    } else {
        options.to_vec()
    };
    let mut s = String::new();
    for n in servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

/// What the files should say.
#[derive(Debug, Clone, Default)]
pub struct EtcContent {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

/// Writes the three files into `dir` (atomically, world-readable), without fsyncs:
/// every start writes them again, so a power loss can only lose a version that the
/// next start replaces. A file that already says what it should is left as it is
/// (a `run` writes them at its create and again at its start, a moment later).
pub fn write(dir: &Path, content: &EtcContent) -> std::io::Result<EtcFiles> {
    std::fs::create_dir_all(dir)?;
    let hostname = format!("{}\n", content.hostname);
    let wanted = [
        (HOSTNAME, hostname.as_bytes()),
        (HOSTS, content.hosts.as_bytes()),
        (RESOLV_CONF, content.resolv_conf.as_bytes()),
    ];
    let changed: Vec<(&str, &[u8])> = wanted
        .into_iter()
        .filter(|(name, data)| std::fs::read(dir.join(name)).ok().as_deref() != Some(*data))
        .collect();
    if !changed.is_empty() {
        crate::fsutil::atomic_write_all_volatile(dir, &changed, 0o644)?;
    }
    Ok(EtcFiles::in_dir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_and_extra_hosts() {
        let h = hosts_file(&["db:10.0.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.0.5\tdb\n"));
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# x\nnameserver 127.0.0.53\nnameserver 1.1.1.1\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &[], &[], &[]),
            "nameserver 1.1.1.1\nsearch lan\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(
                host,
                &["9.9.9.9".into()],
                &["corp".into()],
                &["ndots:2".into()]
            ),
            "nameserver 9.9.9.9\nsearch corp\noptions ndots:2\n"
        );
    }

    #[test]
    fn writes_three_files() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            &EtcContent {
                hostname: "abc".into(),
                hosts: hosts_file(&[]),
                resolv_conf: "nameserver 1.1.1.1\n".into(),
            },
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(f.hostname).unwrap(), "abc\n");
        assert!(f.hosts.is_file() && f.resolv_conf.is_file());
    }

    #[test]
    fn only_files_that_change_are_written_again() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let mut content = EtcContent {
            hostname: "abc".into(),
            hosts: hosts_file(&[]),
            resolv_conf: "nameserver 1.1.1.1\n".into(),
        };
        let f = write(d.path(), &content).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let (hostname, hosts) = (ino(&f.hostname), ino(&f.hosts));
        content.hosts = hosts_file(&["db:10.0.0.5".into()]);
        let f = write(d.path(), &content).unwrap();
        assert_eq!(ino(&f.hostname), hostname, "unchanged, not replaced");
        assert_ne!(ino(&f.hosts), hosts, "changed, replaced");
        assert!(std::fs::read_to_string(&f.hosts).unwrap().contains("db"));
        // Nothing left behind by the write that had nothing to do.
        write(d.path(), &content).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }
}
