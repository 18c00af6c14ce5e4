//! Published ports: `HostConfig.PortBindings` and `PublishAllPorts` turned into host
//! ports, checked free and held, and the netavark port mappings that forward them.
//!
//! netavark forwards with DNAT and binds nothing, so a port another program listens
//! on would be silently shadowed. The engine therefore binds each host port itself
//! (bound, never listening: nothing is accepted on it) and keeps the socket while the
//! container runs, as docker-proxy and podman's conmon do: a port in use is a clear
//! error at start, and nothing else can take a published port afterwards.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use bollard_stubs::models::{ContainerConfig, HostConfig};

use super::netavark::NvPortMapping;
use super::store::PublishedPort;
use super::NetworkError;

/// One container port to publish, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub container_port: u16,
    pub protocol: String,
    /// As given: "" for every address.
    pub host_ip: String,
    /// A port or a range to pick from; `None` for an ephemeral port.
    pub host_ports: Option<(u16, u16)>,
}

/// Parses `80`, `80/tcp`, `53/udp`: (port, protocol).
pub fn parse_port_key(key: &str) -> Result<(u16, String), NetworkError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(NetworkError::Invalid(format!("invalid proto: {proto}")));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| NetworkError::Invalid(format!("invalid port: {key:?}")))?;
    Ok((port, proto))
}

/// Parses a host port: "" (ephemeral), "8080", "8080-8090".
pub fn parse_host_ports(s: &str) -> Result<Option<(u16, u16)>, NetworkError> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let bad = || NetworkError::Invalid(format!("invalid hostPort: {s}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// What a container asks to publish, in a stable order (by port, then protocol).
pub fn requests(
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<PortRequest>, NetworkError> {
    let mut out = vec![];
    let mut keys: Vec<(u16, String)> = vec![];
    for (key, bindings) in hc.port_bindings.clone().unwrap_or_default() {
        let (port, proto) = parse_port_key(&key)?;
        let bindings = bindings.unwrap_or_default();
        keys.push((port, proto.clone()));
        for b in bindings {
            let host_ip = b.host_ip.clone().unwrap_or_default();
            if !host_ip.is_empty() && host_ip.parse::<IpAddr>().is_err() {
                return Err(NetworkError::Invalid(format!(
                    "invalid IP address: {host_ip}"
                )));
            }
            out.push(PortRequest {
                container_port: port,
                protocol: proto.clone(),
                host_ip,
                host_ports: parse_host_ports(b.host_port.as_deref().unwrap_or(""))?,
            });
        }
    }
    if hc.publish_all_ports == Some(true) {
        for key in config.exposed_ports.clone().unwrap_or_default().keys() {
            let (port, proto) = parse_port_key(key)?;
            let published = out
                .iter()
                .any(|r| r.container_port == port && r.protocol == proto);
            if !published {
                out.push(PortRequest {
                    container_port: port,
                    protocol: proto,
                    host_ip: String::new(),
                    host_ports: None,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.container_port, &a.protocol, &a.host_ip).cmp(&(
            b.container_port,
            &b.protocol,
            &b.host_ip,
        ))
    });
    Ok(out)
}

/// The range ephemeral host ports come from (the kernel's local port range, as
/// dockerd reads it).
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(a, b)| *a > 0 && a <= b)
        .unwrap_or((49153, 65535))
}

fn bind_addr(host_ip: &str) -> IpAddr {
    match host_ip.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Binds `ip:port`, so no other program can take it: never listening, but for a
/// port a proxy serves (see [`super::proxy`]), which listens at once (its
/// connections queue until the proxy accepts them) and may be bound again while
/// connections of an earlier proxy linger in TIME_WAIT, as any server's port.
pub fn hold(ip: IpAddr, port: u16, protocol: &str) -> std::io::Result<Option<OwnedFd>> {
    let serve = super::proxy::proxied(&ip.to_string(), protocol);
    use socket2::{Domain, Socket, Type};
    let typ = match protocol {
        "tcp" => Type::STREAM,
        "udp" => Type::DGRAM,
        // SCTP sockets need a kernel module: the port is forwarded but not held.
        _ => return Ok(None),
    };
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // socket2 opens it close-on-exec: netavark and the shims never inherit it.
    let sock = Socket::new(domain, typ, None)?;
    if serve {
        sock.set_reuse_address(true)?;
    }
    sock.bind(&SocketAddr::new(ip, port).into())?;
    if serve {
        sock.listen(1024)?;
    }
    Ok(Some(OwnedFd::from(sock)))
}

/// Host ports picked and held for a container.
#[derive(Debug, Default)]
pub struct Picked {
    pub ports: Vec<PublishedPort>,
    pub held: Vec<OwnedFd>,
    /// The sockets of the ports a proxy serves (see [`super::proxy`]), by their
    /// index in `ports`; not in `held`: the proxy holds them.
    pub proxied: Vec<(usize, OwnedFd)>,
}

/// Picks and holds a host port for every request. `cursor` is where the search for
/// ephemeral ports starts (moved past each port given, as dockerd's allocator does).
/// On error nothing stays held.
pub fn pick(
    reqs: &[PortRequest],
    cursor: &mut u16,
    endpoint: &str,
) -> Result<Picked, NetworkError> {
    let (lo, hi) = ephemeral_range();
    let mut out = Picked::default();
    for r in reqs {
        let ip = bind_addr(&r.host_ip);
        let shown_ip = if r.host_ip.is_empty() {
            "0.0.0.0".to_string()
        } else {
            ip.to_string()
        };
        let try_port = |port: u16| -> Result<Option<Option<OwnedFd>>, NetworkError> {
            match hold(ip, port, &r.protocol) {
                Ok(fd) => Ok(Some(fd)),
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    Err(NetworkError::Invalid(format!(
                        "driver failed programming external connectivity on endpoint {endpoint}: \
                         listen {}4 {shown_ip}:{port}: bind: cannot assign requested address",
                        r.protocol
                    )))
                }
                Err(e) => Err(NetworkError::PortInUse(format!(
                    "driver failed programming external connectivity on endpoint {endpoint}: \
                     binding {shown_ip}:{port}/{}: {e}",
                    r.protocol
                ))),
            }
        };
        let (port, fd) = match r.host_ports {
            Some((a, b)) if a == b => match try_port(a)? {
                Some(fd) => (a, fd),
                None => {
                    return Err(NetworkError::PortInUse(format!(
                        "driver failed programming external connectivity on endpoint {endpoint}: \
                         Bind for {shown_ip}:{a} failed: port is already allocated"
                    )))
                }
            },
            Some((a, b)) => {
                let mut found = None;
                for p in a..=b {
                    if let Some(fd) = try_port(p)? {
                        found = Some((p, fd));
                        break;
                    }
                }
                found.ok_or_else(|| {
                    NetworkError::PortInUse(format!(
                        "driver failed programming external connectivity on endpoint {endpoint}: \
                         Bind for {shown_ip}:{a}-{b} failed: every port of the range is already allocated"
                    ))
                })?
            }
            None => {
                let span = u32::from(hi - lo) + 1;
                let start = if (lo..=hi).contains(cursor) {
                    *cursor
                } else {
                    lo
                };
                let mut found = None;
                for i in 0..span {
                    let p = (u32::from(start - lo) + i) % span + u32::from(lo);
                    let p = p as u16;
                    if out
                        .ports
                        .iter()
                        .any(|x| x.host_port == p && x.protocol == r.protocol)
                    {
                        continue;
                    }
                    if let Some(fd) = try_port(p)? {
                        found = Some((p, fd));
                        *cursor = if p == hi { lo } else { p + 1 };
                        break;
                    }
                }
                found.ok_or_else(|| {
                    NetworkError::PortInUse(format!(
                        "driver failed programming external connectivity on endpoint {endpoint}: \
                         no free host port in {lo}-{hi}"
                    ))
                })?
            }
        };
        let proxied = super::proxy::proxied(&shown_ip, &r.protocol);
        out.ports.push(PublishedPort {
            container_port: r.container_port,
            protocol: r.protocol.clone(),
            host_ip: shown_ip,
            host_port: port,
            proxy: None,
        });
        match fd {
            Some(fd) if proxied => out.proxied.push((out.ports.len() - 1, fd)),
            fd => out.held.extend(fd),
        }
    }
    Ok(out)
}

/// Holds again the ports of a container that runs on (after berthd restarted).
pub fn rehold(ports: &[PublishedPort]) -> Vec<OwnedFd> {
    let mut out = vec![];
    // A proxied port is held by its proxy, which outlived berthd.
    for p in ports.iter().filter(|p| !super::proxy::is_proxied(p)) {
        let ip = bind_addr(&p.host_ip);
        match hold(ip, p.host_port, &p.protocol) {
            Ok(fd) => out.extend(fd),
            Err(e) => tracing::warn!(
                port = p.host_port,
                error = %e,
                "cannot hold a published port again after restart"
            ),
        }
    }
    out
}

/// The netavark mappings for published ports. An unspecified host address is
/// given as none at all, which netavark reads as every local address (127.0.0.1
/// included: it enables route_localnet on the bridge for that).
pub fn mappings(ports: &[PublishedPort]) -> Vec<NvPortMapping> {
    ports
        .iter()
        .filter(|p| !super::proxy::is_proxied(p))
        .map(|p| NvPortMapping {
            host_ip: match p.host_ip.as_str() {
                "0.0.0.0" | "::" | "" => String::new(),
                ip => ip.to_string(),
            },
            container_port: p.container_port,
            host_port: p.host_port,
            range: 1,
            protocol: p.protocol.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::PortBinding;
    use std::collections::HashMap;

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        }
    }

    #[test]
    fn keys_and_host_ports_parse() {
        assert_eq!(parse_port_key("80").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_port_key("53/UDP").unwrap(), (53, "udp".into()));
        assert!(parse_port_key("80/icmp").is_err());
        assert!(parse_port_key("x/tcp").is_err());
        assert_eq!(parse_host_ports("").unwrap(), None);
        assert_eq!(parse_host_ports("8080").unwrap(), Some((8080, 8080)));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), Some((8000, 8010)));
        assert!(parse_host_ports("9-8").is_err());
        assert!(parse_host_ports("99999").is_err());
    }

    #[test]
    fn bindings_and_publish_all() {
        let hc = HostConfig {
            port_bindings: Some(HashMap::from([
                (
                    "80/tcp".to_string(),
                    Some(vec![binding("127.0.0.1", "8080")]),
                ),
                ("53/udp".to_string(), Some(vec![binding("", "")])),
            ])),
            publish_all_ports: Some(true),
            ..HostConfig::default()
        };
        let config = ContainerConfig {
            exposed_ports: Some(HashMap::from([
                ("80/tcp".to_string(), HashMap::new()),
                ("443/tcp".to_string(), HashMap::new()),
            ])),
            ..ContainerConfig::default()
        };
        let r = requests(&config, &hc).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].container_port, 53);
        assert_eq!(r[0].host_ports, None);
        assert_eq!(r[1].container_port, 80);
        assert_eq!(r[1].host_ports, Some((8080, 8080)));
        assert_eq!(r[2].container_port, 443);
        assert_eq!(r[2].host_ports, None);
        let bad = HostConfig {
            port_bindings: Some(HashMap::from([(
                "80/tcp".to_string(),
                Some(vec![binding("nope", "1")]),
            )])),
            ..HostConfig::default()
        };
        assert!(requests(&config, &bad).is_err());
    }

    #[test]
    fn a_taken_port_is_refused_and_ephemeral_ports_skip_it() {
        // Hold a port, then ask for it.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = probe.local_addr().unwrap().port();
        let req = |host_ports| PortRequest {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
            host_ports,
        };
        let mut cursor = 0;
        let e = pick(&[req(Some((taken, taken)))], &mut cursor, "web").unwrap_err();
        assert!(e.to_string().contains("port is already allocated"), "{e}");
        // a range that starts with the taken port moves on
        let got = pick(
            &[req(Some((taken, taken.saturating_add(20))))],
            &mut cursor,
            "web",
        );
        if let Ok(p) = got {
            assert_ne!(p.ports[0].host_port, taken);
            // TCP on loopback: held for its proxy, not by berthd.
            assert_eq!((p.held.len(), p.proxied.len()), (0, 1));
            // and now that one is held: a second pick of it fails
            let again = p.ports[0].host_port;
            assert!(pick(&[req(Some((again, again)))], &mut cursor, "web").is_err());
        }
        let eph = pick(&[req(None)], &mut cursor, "web").unwrap();
        let (lo, hi) = ephemeral_range();
        assert!((lo..=hi).contains(&eph.ports[0].host_port));
        assert_eq!(eph.ports[0].host_ip, "127.0.0.1");
        // The proxy forwards it: netavark is given no mapping for it.
        assert!(mappings(&eph.ports).is_empty());
        let udp = PublishedPort {
            container_port: 53,
            protocol: "udp".into(),
            host_ip: "127.0.0.1".into(),
            host_port: 1,
            proxy: None,
        };
        assert_eq!(mappings(&[udp])[0].host_ip, "127.0.0.1");
        let any = PublishedPort {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port: 1,
            proxy: None,
        };
        assert_eq!(mappings(&[any])[0].host_ip, "");
    }
}
