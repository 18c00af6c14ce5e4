//! berthd's network settings from its flags and its config file (dockerd's
//! `daemon.json` keys: `bridge`, `bip`, `fixed-cidr`, `default-address-pools`, `mtu`,
//! `host-gateway-ip`). A flag wins over the file.

use std::net::IpAddr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::ipam::{self, Pool};
use super::{NetworkError, NetworkOptions};

/// The network flags as given (all optional).
#[derive(Debug, Clone, Default)]
pub struct NetworkFlags {
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub fixed_cidr: Option<String>,
    pub pools: Vec<String>,
    pub mtu: Option<u32>,
    pub host_gateway_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FilePool {
    base: String,
    size: u8,
}

/// The keys of the config file berth reads (others are left to whoever reads them).
#[derive(Debug, Default, Deserialize)]
struct FileOptions {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    bip: Option<String>,
    #[serde(rename = "fixed-cidr", default)]
    fixed_cidr: Option<String>,
    #[serde(rename = "default-address-pools", default)]
    pools: Option<Vec<FilePool>>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(rename = "host-gateway-ip", default)]
    host_gateway_ip: Option<String>,
}

fn bip(s: &str) -> Result<Ipv4Net, NetworkError> {
    let n: Ipv4Net = s.parse().map_err(|_| {
        NetworkError::Invalid(format!(
            "invalid --bip {s:?}: want an address with its prefix, like 172.18.0.1/16"
        ))
    })?;
    if n.addr() == n.network() || n.addr() == n.broadcast() {
        return Err(NetworkError::Invalid(format!(
            "invalid --bip {s:?}: the address is the bridge's gateway, not the network's or broadcast address"
        )));
    }
    Ok(n)
}

/// Combines the flags and the config file at `file` (absent is fine).
pub fn options(flags: &NetworkFlags, file: Option<&Path>) -> Result<NetworkOptions, NetworkError> {
    let from_file: FileOptions = match file {
        Some(p) => match std::fs::read(p) {
            Ok(data) => serde_json::from_slice(&data)
                .map_err(|e| NetworkError::Invalid(format!("reading {}: {e}", p.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileOptions::default(),
            Err(e) => {
                return Err(NetworkError::Invalid(format!(
                    "reading {}: {e}",
                    p.display()
                )))
            }
        },
        None => FileOptions::default(),
    };
    let mut o = NetworkOptions::default();
    if let Some(b) = flags.bridge.clone().or(from_file.bridge) {
        if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(char::is_whitespace) {
            return Err(NetworkError::Invalid(format!(
                "invalid bridge name {b:?}: 1 to 15 characters, no '/' or spaces"
            )));
        }
        o.bridge = b;
    }
    if let Some(b) = flags.bip.clone().or(from_file.bip) {
        o.bip = Some(bip(&b)?);
    }
    if let Some(f) = flags.fixed_cidr.clone().or(from_file.fixed_cidr) {
        let f = ipam::parse_v4_net(&f)?.trunc();
        if let Some(b) = o.bip {
            if !b.trunc().contains(&f) {
                return Err(NetworkError::Invalid(format!(
                    "--fixed-cidr {f} is not inside --bip's network {}",
                    b.trunc()
                )));
            }
        }
        o.fixed_cidr = Some(f);
    }
    let pools: Vec<Pool> = if !flags.pools.is_empty() {
        flags
            .pools
            .iter()
            .map(|p| Pool::parse(p))
            .collect::<Result<_, _>>()?
    } else if let Some(ps) = from_file.pools {
        ps.iter()
            .map(|p| Pool::parse(&format!("base={},size={}", p.base, p.size)))
            .collect::<Result<_, _>>()?
    } else {
        vec![]
    };
    if !pools.is_empty() {
        o.pools = pools;
    }
    o.mtu = flags.mtu.or(from_file.mtu);
    if let Some(ip) = flags.host_gateway_ip.clone().or(from_file.host_gateway_ip) {
        o.host_gateway_ip = Some(
            ip.parse::<IpAddr>()
                .map_err(|_| NetworkError::Invalid(format!("invalid host-gateway-ip {ip:?}")))?,
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"bip": "10.50.0.1/24", "bridge": "filebr", "default-address-pools": [{"base": "10.60.0.0/16", "size": 24}], "debug": true}"#,
        )
        .unwrap();
        let o = options(&NetworkFlags::default(), Some(&f)).unwrap();
        assert_eq!(o.bip.unwrap().to_string(), "10.50.0.1/24");
        assert_eq!(o.bridge, "filebr");
        assert_eq!(o.pools[0].base.to_string(), "10.60.0.0/16");
        let flags = NetworkFlags {
            bip: Some("10.70.0.1/16".into()),
            fixed_cidr: Some("10.70.5.0/24".into()),
            ..NetworkFlags::default()
        };
        let o = options(&flags, Some(&f)).unwrap();
        assert_eq!(o.bip.unwrap().to_string(), "10.70.0.1/16");
        assert_eq!(o.fixed_cidr.unwrap().to_string(), "10.70.5.0/24");
        assert!(options(&NetworkFlags::default(), Some(&d.path().join("none"))).is_ok());
        let bad = NetworkFlags {
            bip: Some("10.70.0.0/16".into()),
            ..NetworkFlags::default()
        };
        assert!(options(&bad, None).is_err());
        let outside = NetworkFlags {
            bip: Some("10.70.0.1/16".into()),
            fixed_cidr: Some("10.80.0.0/24".into()),
            ..NetworkFlags::default()
        };
        assert!(options(&outside, None).is_err());
        let long = NetworkFlags {
            bridge: Some("a-very-long-bridge-name".into()),
            ..NetworkFlags::default()
        };
        assert!(options(&long, None).is_err());
    }
}
