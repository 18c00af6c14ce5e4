//! `/etc/hosts` and `/etc/resolv.conf` as dockerd writes them for a container with a
//! network: the hosts file gets the container's own address and name, its legacy links
//! and `--add-host` entries (`host-gateway` resolved); resolv.conf points at
//! aardvark-dns (the network's gateway) on user-defined networks, and is the host's
//! (without loopback servers) on the default bridge.

use std::net::IpAddr;

use crate::spec::etc as base;

/// What goes into /etc/hosts.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    pub own_address: Option<IpAddr>,
    pub hostname: String,
    pub domainname: String,
    /// `(address, names)` of legacy links, in order.
    pub links: Vec<(IpAddr, Vec<String>)>,
    /// `--add-host` entries as `name:address`.
    pub extra: Vec<String>,
    /// What `host-gateway` means.
    pub host_gateway: Option<IpAddr>,
}

/// Resolves `host-gateway` in `name:address` entries; entries naming it are dropped
/// when there is no gateway to give.
pub fn resolve_extra_hosts(extra: &[String], gateway: Option<IpAddr>) -> Vec<String> {
    extra
        .iter()
        .filter_map(|e| {
            let (name, addr) = e.split_once(':')?;
            if addr == "host-gateway" {
                Some(format!("{name}:{}", gateway?))
            } else {
                Some(e.clone())
            }
        })
        .collect()
}

/// The hosts file: loopback and IPv6 names, the container's own line, links, extra
/// hosts.
pub fn hosts(h: &Hosts) -> String {
    let mut s = base::hosts_file(&[]);
    if let Some(ip) = h.own_address {
        if h.domainname.is_empty() {
            s.push_str(&format!("{ip}\t{}\n", h.hostname));
        } else {
            s.push_str(&format!(
                "{ip}\t{}.{} {}\n",
                h.hostname, h.domainname, h.hostname
            ));
        }
    }
    for (ip, names) in &h.links {
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    for e in resolve_extra_hosts(&h.extra, h.host_gateway) {
        if let Some((name, addr)) = e.split_once(':') {
            // `[::1]` is how IPv6 addresses may be given.
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            s.push_str(&format!("{addr}\t{name}\n"));
        }
    }
    s
}

/// resolv.conf for a container on a user-defined network: aardvark-dns on the
/// gateway answers for the containers and forwards the rest upstream (the host's
/// servers, or `--dns`); search and options as on the host unless given.
pub fn resolv_conf_user_network(
    host: &str,
    dns_server: IpAddr,
    search: &[String],
    options: &[String],
) -> String {
    let mut host_search: Vec<String> = vec![];
    let mut host_options: Vec<String> = vec![];
    for line in host.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("search") | Some("domain") => host_search = f.map(str::to_string).collect(),
            Some("options") => host_options.extend(f.map(str::to_string)),
            _ => {}
        }
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
    let mut s = format!("nameserver {dns_server}\n");
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_own_line_links_and_resolved_extra_hosts() {
        let h = Hosts {
            own_address: Some("172.18.0.2".parse().unwrap()),
            hostname: "abc".into(),
            domainname: "example.org".into(),
            links: vec![(
                "172.18.0.3".parse().unwrap(),
                vec!["db".into(), "0123456789ab".into(), "postgres".into()],
            )],
            extra: vec![
                "gw:host-gateway".into(),
                "x:10.0.0.1".into(),
                "v6:[::1]".into(),
            ],
            host_gateway: Some("172.18.0.1".parse().unwrap()),
        };
        let s = hosts(&h);
        assert!(s.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(s.contains("172.18.0.2\tabc.example.org abc\n"), "{s}");
        assert!(s.contains("172.18.0.3\tdb 0123456789ab postgres\n"));
        assert!(s.contains("172.18.0.1\tgw\n"));
        assert!(s.contains("10.0.0.1\tx\n"));
        assert!(s.contains("::1\tv6\n"));
        assert_eq!(
            resolve_extra_hosts(&["gw:host-gateway".into()], None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn user_networks_resolve_through_the_gateway() {
        let host = "nameserver 127.0.0.53\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf_user_network(host, "10.5.0.1".parse().unwrap(), &[], &[]),
            "nameserver 10.5.0.1\nsearch lan\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf_user_network(
                host,
                "10.5.0.1".parse().unwrap(),
                &["corp".into()],
                &["ndots:2".into()]
            ),
            "nameserver 10.5.0.1\nsearch corp\noptions ndots:2\n"
        );
    }
}
