//! Address management for berth's bridge networks, as dockerd's default IPAM does it:
//! subnets taken from address pools (the first one that neither another network nor a
//! route of the host uses), and container addresses handed out from a network's range.
//!
//! netavark 1.4 assigns no addresses itself (podman does it before calling it), so this
//! is the engine's job. Nothing here is kept on disk: the addresses in use are those of
//! the live attachments, which are (see `store`), so the allocator is rebuilt from them
//! when berthd starts.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Errors of address management.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// A pool, subnet, range or address that does not parse.
    #[error("{0}")]
    Invalid(String),
    /// Every address of the range is in use.
    #[error("no available IPv{version} addresses on network {network}")]
    Exhausted { version: u8, network: String },
    /// No pool has a subnet left.
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoPool,
}

/// One address pool (`--default-address-pool base=10.10.0.0/16,size=24`): subnets of
/// prefix `size` carved out of `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Ipv4Net,
    pub size: u8,
}

impl Pool {
    /// Parses dockerd's `base=CIDR,size=N` form.
    pub fn parse(s: &str) -> Result<Pool, IpamError> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| IpamError::Invalid(format!("invalid address pool {s:?}")))?;
            match k.trim() {
                "base" => base = Some(parse_v4_net(v.trim())?),
                "size" => {
                    size = Some(v.trim().parse::<u8>().map_err(|_| {
                        IpamError::Invalid(format!("invalid size in address pool {s:?}"))
                    })?)
                }
                other => {
                    return Err(IpamError::Invalid(format!(
                        "unexpected key {other:?} in address pool {s:?}"
                    )))
                }
            }
        }
        let base =
            base.ok_or_else(|| IpamError::Invalid(format!("address pool {s:?} has no base")))?;
        let size =
            size.ok_or_else(|| IpamError::Invalid(format!("address pool {s:?} has no size")))?;
        if size < base.prefix_len() || size > 30 {
            return Err(IpamError::Invalid(format!(
                "invalid pools configuration: size {size} must be between {} and 30",
                base.prefix_len()
            )));
        }
        Ok(Pool { base, size })
    }

    /// The subnets of this pool, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.base.subnets(self.size).into_iter().flatten()
    }
}

/// dockerd's default pools: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut v: Vec<Pool> = (17u8..=31)
        .filter_map(|b| {
            Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16)
                .ok()
                .map(|base| Pool { base, size: 16 })
        })
        .collect();
    if let Ok(base) = Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        v.push(Pool { base, size: 20 });
    }
    v
}

/// Parses an IPv4 CIDR, with dockerd's wording when it is not one.
pub fn parse_v4_net(s: &str) -> Result<Ipv4Net, IpamError> {
    s.parse::<Ipv4Net>()
        .map_err(|_| IpamError::Invalid(format!("invalid CIDR address: {s}")))
}

/// Parses a CIDR of either family.
pub fn parse_net(s: &str) -> Result<IpNet, IpamError> {
    s.parse::<IpNet>()
        .map_err(|_| IpamError::Invalid(format!("invalid CIDR address: {s}")))
}

/// Parses an address of either family.
pub fn parse_addr(s: &str) -> Result<IpAddr, IpamError> {
    s.parse::<IpAddr>()
        .map_err(|_| IpamError::Invalid(format!("invalid IP address: {s}")))
}

/// Whether two networks share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of the pools that overlaps none of `taken` (other networks'
/// subnets and the host's routes).
pub fn choose_subnet(pools: &[Pool], taken: &[IpNet]) -> Result<Ipv4Net, IpamError> {
    for pool in pools {
        for candidate in pool.subnets() {
            let c = IpNet::V4(candidate);
            if !taken.iter().any(|t| overlaps(t, &c)) {
                return Ok(candidate);
            }
        }
    }
    Err(IpamError::NoPool)
}

/// The networks the host routes to, from /proc/net/route and /proc/net/ipv6_route
/// (default routes excepted: they overlap everything).
pub fn host_routes() -> Vec<IpNet> {
    let mut out = vec![];
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        out.extend(parse_proc_route(&text));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        out.extend(parse_proc_ipv6_route(&text));
    }
    out
}

/// Parses /proc/net/route: `Iface Destination Gateway Flags ... Mask ...`, addresses
/// as little-endian hex.
pub fn parse_proc_route(text: &str) -> Vec<IpNet> {
    let mut out = vec![];
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        // The kernel prints the address's bytes in memory order as a little-endian number.
        let addr = Ipv4Addr::from(dest.to_le_bytes());
        if let Ok(n) = Ipv4Net::new(addr, prefix) {
            out.push(IpNet::V4(n.trunc()));
        }
    }
    out
}

/// Parses /proc/net/ipv6_route: `dest prefix_len src src_len next_hop metric ...`.
pub fn parse_proc_ipv6_route(text: &str) -> Vec<IpNet> {
    let mut out = vec![];
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[9] == "lo" {
            continue;
        }
        let (Ok(dest), Ok(prefix)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16))
        else {
            continue;
        };
        if prefix == 0 || prefix == 128 {
            continue;
        }
        let addr = Ipv6Addr::from(dest);
        if addr.segments()[0] & 0xffc0 == 0xfe80 || addr.segments()[0] & 0xff00 == 0xff00 {
            continue; // link-local and multicast are on every interface
        }
        if let Ok(n) = Ipv6Net::new(addr, prefix) {
            out.push(IpNet::V6(n.trunc()));
        }
    }
    out
}

/// The gateway dockerd gives a subnet: its first address.
pub fn default_gateway(subnet: &IpNet) -> Option<IpAddr> {
    subnet.hosts().next()
}

/// The addresses of `range` (or of the whole subnet) a container may get, in order:
/// not the network or broadcast address, not the gateway nor a reserved one.
fn candidates<'a>(
    subnet: &'a IpNet,
    range: Option<&'a IpNet>,
    reserved: &'a HashSet<IpAddr>,
) -> impl Iterator<Item = IpAddr> + 'a {
    let from = range.unwrap_or(subnet);
    // A /64 has more addresses than anyone will use: look at the first million.
    from.hosts()
        .take(1 << 20)
        .filter(move |a| subnet.contains(a) && !reserved.contains(a))
}

/// Picks the first free address (dockerd hands out the lowest one free on a fresh
/// network). `used` holds addresses taken by other endpoints; `reserved` the gateway
/// and auxiliary addresses.
pub fn allocate(
    network: &str,
    subnet: &IpNet,
    range: Option<&IpNet>,
    reserved: &HashSet<IpAddr>,
    used: &HashSet<IpAddr>,
) -> Result<IpAddr, IpamError> {
    candidates(subnet, range, reserved)
        .find(|a| !used.contains(a))
        .ok_or(IpamError::Exhausted {
            version: if subnet.addr().is_ipv4() { 4 } else { 6 },
            network: network.to_string(),
        })
}

/// Checks an address a user asked for (`--ip`, `IPv4Address`).
pub fn check_static(
    addr: IpAddr,
    subnet: &IpNet,
    reserved: &HashSet<IpAddr>,
    used: &HashSet<IpAddr>,
) -> Result<(), IpamError> {
    if !subnet.contains(&addr) {
        return Err(IpamError::Invalid(format!(
            "no configured subnet or ip-range contain the IP address {addr}"
        )));
    }
    if used.contains(&addr) || reserved.contains(&addr) {
        return Err(IpamError::Invalid(format!(
            "Address already in use: {addr}"
        )));
    }
    if let IpNet::V4(n) = subnet {
        if IpAddr::V4(n.network()) == addr || IpAddr::V4(n.broadcast()) == addr {
            return Err(IpamError::Invalid(format!(
                "Address {addr} is the network or broadcast address of {subnet}"
            )));
        }
    }
    Ok(())
}

/// The MAC address dockerd derives from an IPv4 address (`02:42:` and its four bytes),
/// so that a reused address keeps its MAC and neighbours' caches stay right.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Checks a MAC address in the `aa:bb:cc:dd:ee:ff` form.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn pools_parse_and_split() {
        let p = Pool::parse("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.size, 24);
        let subs: Vec<_> = p.subnets().take(2).map(|n| n.to_string()).collect();
        assert_eq!(subs, ["10.10.0.0/24", "10.10.1.0/24"]);
        assert!(Pool::parse("base=10.10.0.0/16").is_err());
        assert!(Pool::parse("base=10.10.0.0/16,size=8").is_err());
        assert!(Pool::parse("base=nope,size=24").is_err());
    }

    #[test]
    fn the_first_subnet_nobody_uses_is_chosen() {
        let pools = default_pools();
        assert_eq!(
            choose_subnet(&pools, &[]).unwrap().to_string(),
            "172.17.0.0/16"
        );
        let taken = [
            net("172.17.0.0/16"),
            net("172.18.5.0/24"),
            net("10.88.0.0/16"),
        ];
        assert_eq!(
            choose_subnet(&pools, &taken).unwrap().to_string(),
            "172.19.0.0/16"
        );
        // a default route is not in the list, a /12 covering every pool is
        let all = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert_eq!(choose_subnet(&pools, &all), Err(IpamError::NoPool));
    }

    #[test]
    fn proc_routes_parse() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r: Vec<String> = parse_proc_route(v4).iter().map(|n| n.to_string()).collect();
        assert_eq!(r, ["192.0.2.0/24", "172.17.0.0/16"]);
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
        let r: Vec<String> = parse_proc_ipv6_route(v6)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(r, ["fd00::/64"]);
    }

    #[test]
    fn allocation_skips_gateway_and_used_and_honours_the_range() {
        let s = net("10.1.0.0/24");
        let gw = default_gateway(&s).unwrap();
        assert_eq!(gw.to_string(), "10.1.0.1");
        let reserved = HashSet::from([gw]);
        let mut used = HashSet::new();
        let a = allocate("n", &s, None, &reserved, &used).unwrap();
        assert_eq!(a.to_string(), "10.1.0.2");
        used.insert(a);
        assert_eq!(
            allocate("n", &s, None, &reserved, &used)
                .unwrap()
                .to_string(),
            "10.1.0.3"
        );
        let range = net("10.1.0.128/25");
        assert_eq!(
            allocate("n", &s, Some(&range), &reserved, &used)
                .unwrap()
                .to_string(),
            "10.1.0.129"
        );
        let tiny = net("10.2.0.0/30");
        let r2 = HashSet::from([default_gateway(&tiny).unwrap()]);
        let used2 = HashSet::from(["10.2.0.2".parse().unwrap()]);
        assert!(matches!(
            allocate("tiny", &tiny, None, &r2, &used2),
            Err(IpamError::Exhausted { version: 4, .. })
        ));
    }

    #[test]
    fn static_addresses_are_checked() {
        let s = net("10.1.0.0/24");
        let reserved = HashSet::from(["10.1.0.1".parse().unwrap()]);
        let used = HashSet::from(["10.1.0.5".parse().unwrap()]);
        let ok = |a: &str| check_static(a.parse().unwrap(), &s, &reserved, &used);
        assert!(ok("10.1.0.9").is_ok());
        assert!(ok("10.1.0.5").is_err());
        assert!(ok("10.1.0.1").is_err());
        assert!(ok("10.1.0.255").is_err());
        assert!(ok("10.9.0.9").is_err());
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(mac_for("172.17.0.2".parse().unwrap()), "02:42:ac:11:00:02");
        assert!(valid_mac("02:42:ac:11:00:02"));
        assert!(!valid_mac("02:42:ac:11:00"));
        assert!(!valid_mac("zz:42:ac:11:00:02"));
    }
}
