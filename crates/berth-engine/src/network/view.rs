//! How networks look from the API: `GET /networks` and `/networks/{id}`, a container's
//! `NetworkSettings` (inspect) and `Ports`/`NetworkSettings` (ps), and the `networks`
//! part of stats, in dockerd's shapes.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models::{
    ContainerSummaryNetworkSettings, EndpointSettings, NetworkSettings, Port, PortBinding,
    PortTypeEnum,
};
use serde_json::{json, Value};

use super::container::{load_config, parse_mode, ModeRef};
use super::store::{Attachment, LiveState, NetworkRecord};
use super::{Networks, DEFAULT_NETWORK};
use crate::engine::Engine;
use crate::store::ContainerRecord;

/// A network as `GET /networks/{id}` shows it; `containers` only for inspect.
pub fn network_json(engine: &Engine, net: &NetworkRecord, with_containers: bool) -> Value {
    let config: Vec<Value> = net
        .subnets
        .iter()
        .map(|s| {
            let mut c = json!({"Subnet": s.subnet.to_string()});
            if let Some(r) = &s.ip_range {
                c["IPRange"] = json!(r.to_string());
            }
            if let Some(g) = &s.gateway {
                c["Gateway"] = json!(g.to_string());
            }
            if !s.aux.is_empty() {
                let aux: BTreeMap<&String, String> =
                    s.aux.iter().map(|(k, v)| (k, v.to_string())).collect();
                c["AuxiliaryAddresses"] = json!(aux);
            }
            c
        })
        .collect();
    let mut containers = serde_json::Map::new();
    if with_containers {
        for live in engine.networks.all_live() {
            for a in live
                .attachments
                .iter()
                .filter(|a| a.network_id == net.id && a.up)
            {
                let name = engine
                    .store
                    .get(&live.container_id)
                    .map(|r| r.name.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                let v4 = a.addresses.iter().find(|n| n.addr().is_ipv4());
                let v6 = a.addresses.iter().find(|n| n.addr().is_ipv6());
                containers.insert(
                    live.container_id.clone(),
                    json!({
                        "Name": name,
                        "EndpointID": a.endpoint_id,
                        "MacAddress": a.mac,
                        "IPv4Address": v4.map(|n| n.to_string()).unwrap_or_default(),
                        "IPv6Address": v6.map(|n| n.to_string()).unwrap_or_default(),
                    }),
                );
            }
        }
    }
    json!({
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv4": true,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": if net.ipam_driver.is_empty() { "default" } else { net.ipam_driver.as_str() },
            "Options": if net.ipam_options.is_empty() { Value::Null } else { json!(net.ipam_options) },
            "Config": config,
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": net.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": net.options,
        "Labels": net.labels,
    })
}

fn attachment_of<'a>(live: Option<&'a LiveState>, network_id: &str) -> Option<&'a Attachment> {
    live?
        .attachments
        .iter()
        .find(|a| a.network_id == network_id && a.up)
}

/// An endpoint as inspect shows it: the settings asked for, and while attached what
/// was set up.
fn endpoint_settings(
    net: &NetworkRecord,
    asked: &EndpointSettings,
    a: Option<&Attachment>,
) -> EndpointSettings {
    let mut e = asked.clone();
    e.network_id = Some(net.id.clone());
    if e.aliases.as_ref().is_some_and(|a| a.is_empty()) {
        e.aliases = None;
    }
    match a {
        Some(a) => {
            let v4 = a.addresses.iter().find(|n| n.addr().is_ipv4());
            let v6 = a.addresses.iter().find(|n| n.addr().is_ipv6());
            e.endpoint_id = Some(a.endpoint_id.clone());
            e.ip_address = Some(v4.map(|n| n.addr().to_string()).unwrap_or_default());
            e.ip_prefix_len = Some(v4.map(|n| i64::from(n.prefix_len())).unwrap_or(0));
            e.gateway = Some(
                a.gateways
                    .iter()
                    .find(|g| g.is_ipv4())
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            );
            e.global_ipv6_address = Some(v6.map(|n| n.addr().to_string()).unwrap_or_default());
            e.global_ipv6_prefix_len = Some(v6.map(|n| i64::from(n.prefix_len())).unwrap_or(0));
            e.ipv6_gateway = Some(
                a.gateways
                    .iter()
                    .find(|g| g.is_ipv6())
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            );
            e.mac_address = Some(a.mac.clone());
            // Since API 1.45 `Aliases` are the user's only; every name the
            // network's DNS answers for is in `DNSNames`.
            if !net.builtin {
                e.dns_names = Some(a.dns_names.clone());
            }
        }
        None => {
            e.endpoint_id = Some(String::new());
            e.ip_address = Some(String::new());
            e.ip_prefix_len = Some(0);
            e.gateway = Some(String::new());
            e.global_ipv6_address = Some(String::new());
            e.global_ipv6_prefix_len = Some(0);
            e.ipv6_gateway = Some(String::new());
            if e.mac_address.is_none() {
                e.mac_address = Some(String::new());
            }
        }
    }
    e
}

/// `NetworkSettings.Ports`: each published port with its host bindings, exposed
/// ones with null; empty while the container is not running.
pub fn ports_map(
    rec: &ContainerRecord,
    live: Option<&LiveState>,
) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut out: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if rec.state.running != Some(true) {
        return out;
    }
    for key in rec.config.exposed_ports.iter().flat_map(|p| p.keys()) {
        let key = if key.contains('/') {
            key.clone()
        } else {
            format!("{key}/tcp")
        };
        out.insert(key, None);
    }
    if let Some(l) = live {
        for p in &l.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            out.entry(key)
                .or_insert(None)
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
    }
    out
}

/// The network state of a running container; `None` for one that is not running.
pub fn live_of(engine: &Engine, rec: &ContainerRecord) -> Option<std::sync::Arc<LiveState>> {
    if rec.state.running == Some(true) {
        engine.networks.live_shared(&rec.id)
    } else {
        None
    }
}

/// A container's `NetworkSettings` for inspect.
pub fn network_settings(engine: &Engine, rec: &ContainerRecord) -> NetworkSettings {
    let live = live_of(engine, rec);
    let networks = endpoints(engine, rec, live.as_deref());
    let mut s = NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: Some(String::new()),
        hairpin_mode: Some(false),
        link_local_ipv6_address: Some(String::new()),
        link_local_ipv6_prefix_len: Some(0),
        ports: Some(ports_map(rec, live.as_deref())),
        sandbox_key: Some(String::new()),
        secondary_ip_addresses: None,
        secondary_ipv6_addresses: None,
        endpoint_id: Some(String::new()),
        gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ip_address: Some(String::new()),
        ip_prefix_len: Some(0),
        ipv6_gateway: Some(String::new()),
        mac_address: Some(String::new()),
        networks: Some(networks.clone()),
    };
    if let Some(l) = &live {
        if let Some(ns) = &l.netns {
            s.sandbox_key = Some(ns.display().to_string());
            s.sandbox_id = Some(
                ns.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    // The top-level fields are the default bridge's, as in dockerd.
    if let Some(e) = networks.get(DEFAULT_NETWORK).filter(|_| live.is_some()) {
        s.endpoint_id = e.endpoint_id.clone();
        s.gateway = e.gateway.clone();
        s.ip_address = e.ip_address.clone();
        s.ip_prefix_len = e.ip_prefix_len;
        s.ipv6_gateway = e.ipv6_gateway.clone();
        s.global_ipv6_address = e.global_ipv6_address.clone();
        s.global_ipv6_prefix_len = e.global_ipv6_prefix_len;
        s.mac_address = e.mac_address.clone();
    }
    s
}

/// The `Networks` of a container's settings: one endpoint per network it is on,
/// with the addresses of its live attachment if it runs.
fn endpoints(
    engine: &Engine,
    rec: &ContainerRecord,
    live: Option<&LiveState>,
) -> HashMap<String, EndpointSettings> {
    let nets: &Networks = &engine.networks;
    let cfg = load_config(nets, rec);
    let mut networks = HashMap::new();
    match parse_mode(&cfg.mode) {
        ModeRef::Host | ModeRef::None => {
            let builtin = if cfg.mode == "host" { "host" } else { "none" };
            if let Some((name, id)) = nets.with(builtin, |n| (n.name.clone(), n.id.clone())) {
                networks.insert(
                    name,
                    EndpointSettings {
                        network_id: Some(id),
                        endpoint_id: Some(String::new()),
                        gateway: Some(String::new()),
                        ip_address: Some(String::new()),
                        ip_prefix_len: Some(0),
                        ipv6_gateway: Some(String::new()),
                        global_ipv6_address: Some(String::new()),
                        global_ipv6_prefix_len: Some(0),
                        mac_address: Some(String::new()),
                        ..EndpointSettings::default()
                    },
                );
            }
        }
        ModeRef::Container(_) => {}
        ModeRef::Network(_) => {
            for ep in &cfg.endpoints {
                let settings = nets.with(&ep.network_id, |net| {
                    let a = attachment_of(live, &net.id);
                    (net.name.clone(), endpoint_settings(net, &ep.settings, a))
                });
                if let Some((name, settings)) = settings {
                    networks.insert(name, settings);
                }
            }
        }
    }
    networks
}

/// [`network_settings`] as dockerd writes it: the fields it sends as `null` are
/// there as `null` (clients index them), not left out.
pub fn network_settings_json(engine: &Engine, rec: &ContainerRecord) -> Value {
    let mut v = serde_json::to_value(network_settings(engine, rec)).unwrap_or_else(|_| json!({}));
    for k in ["SecondaryIPAddresses", "SecondaryIPv6Addresses"] {
        if v.get(k).is_none() {
            v[k] = Value::Null;
        }
    }
    if let Some(nets) = v.get_mut("Networks").and_then(Value::as_object_mut) {
        for ep in nets.values_mut() {
            for k in ["IPAMConfig", "Links", "Aliases", "DriverOpts", "DNSNames"] {
                if ep.get(k).is_none() {
                    ep[k] = Value::Null;
                }
            }
        }
    }
    v
}

/// `Ports` of `GET /containers/json`: published ports with their host side, exposed
/// ones alone, as dockerd lists them.
pub fn summary_ports(rec: &ContainerRecord, live: Option<&LiveState>) -> Vec<Port> {
    let mut out = vec![];
    let typ = |p: &str| p.parse::<PortTypeEnum>().ok();
    let mut published = std::collections::HashSet::new();
    if let Some(l) = live {
        for p in &l.ports {
            published.insert((p.container_port, p.protocol.clone()));
            out.push(Port {
                ip: Some(p.host_ip.clone()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                typ: typ(&p.protocol),
            });
        }
    }
    for key in rec.config.exposed_ports.clone().unwrap_or_default().keys() {
        if let Ok((port, proto)) = super::ports::parse_port_key(key) {
            if !published.contains(&(port, proto.clone())) {
                out.push(Port {
                    ip: None,
                    private_port: port,
                    public_port: None,
                    typ: typ(&proto),
                });
            }
        }
    }
    out
}

/// `NetworkSettings` of `GET /containers/json`.
pub fn summary_networks(
    engine: &Engine,
    rec: &ContainerRecord,
    live: Option<&LiveState>,
) -> ContainerSummaryNetworkSettings {
    ContainerSummaryNetworkSettings {
        networks: Some(endpoints(engine, rec, live)),
    }
}

/// The container list's network filters: `network` (a network's name or id the
/// container is connected to), `publish` and `expose` (`80`, `80/tcp`, `8000-8010`);
/// `None` for other keys.
pub fn matches_filter(
    engine: &Engine,
    rec: &ContainerRecord,
    key: &str,
    value: &str,
) -> Option<bool> {
    let ports = |keys: Vec<String>| {
        let (range, proto) = value.split_once('/').unwrap_or((value, ""));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
            return false;
        };
        keys.iter().any(|k| {
            super::ports::parse_port_key(k)
                .is_ok_and(|(p, pr)| (a..=b).contains(&p) && (proto.is_empty() || pr == proto))
        })
    };
    match key {
        "network" => {
            let cfg = load_config(&engine.networks, rec);
            Some(
                cfg.endpoints.iter().any(|e| {
                    engine.networks.get(&e.network_id).is_ok_and(|n| {
                        n.name == value || (!value.is_empty() && n.id.starts_with(value))
                    })
                }) || cfg.mode == value,
            )
        }
        "publish" => {
            let live = engine.networks.live_shared(&rec.id);
            let keys = ports_map(rec, live.as_deref())
                .into_iter()
                .filter(|(_, b)| b.is_some())
                .map(|(k, _)| k)
                .collect();
            Some(ports(keys))
        }
        "expose" => Some(ports(
            rec.config
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .into_keys()
                .collect(),
        )),
        _ => None,
    }
}

/// The `networks` part of stats: every interface of the container's namespace but
/// loopback, from `/proc/<pid>/net/dev` (which shows the namespace of that process).
pub fn stats(pid: i64) -> Option<Value> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut out = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }),
        );
    }
    if out.is_empty() {
        None
    } else {
        Some(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_an_unknown_process_are_none() {
        assert!(stats(0).is_none());
        assert!(stats(i64::from(i32::MAX)).is_none());
    }
}
