//! The container life cycle's network hooks, each one call from the life cycle:
//!
//! - [`container_created`]: checks the network mode and endpoint settings, records
//!   them (`network.json`);
//! - [`apply_to_spec`]: puts the namespace path in the OCI spec (pure: the path of a
//!   container's namespace is known before it exists);
//! - [`container_start`]: before the task is created: pins the namespace, picks and
//!   holds host ports and addresses, writes hosts/resolv.conf; then
//!   [`finish_start`], which may run while the task is created: `netavark setup`
//!   per network;
//! - [`container_stopped`]: when the task is gone: `netavark teardown`, ports freed
//!   (the namespace stays for the next start and for `container:` sharers);
//! - [`container_removed`]: teardown if still needed, the namespace unpinned;
//! - [`restore`]: at berthd start, finishes what a crash interrupted.
//!
//! Plus `connect` and `disconnect` of running or stopped containers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, EndpointSettings, HostConfig, NetworkingConfig};
use ipnet::IpNet;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::etc::{self as netetc, Hosts};
use super::netavark::{NvNetwork, NvOptions, NvPerNetwork, NvSubnet};
use super::store::{Attachment, ContainerNetConfig, EndpointRequest, LiveState, NetworkRecord};
use super::{ipam, pool, ports, NetworkError, Networks, DEFAULT_NETWORK};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::DockerEvent;
use crate::spec::etc as base_etc;
use crate::store::{short_id, ContainerRecord};

/// A network mode as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeRef {
    Host,
    None,
    Container(String),
    /// The default bridge ("", "default", "bridge") or a user network's name or id.
    Network(String),
}

/// Parses `HostConfig.NetworkMode`.
pub fn parse_mode(mode: &str) -> ModeRef {
    match mode {
        "" | "default" => ModeRef::Network(DEFAULT_NETWORK.to_string()),
        "host" => ModeRef::Host,
        "none" => ModeRef::None,
        m => match m.strip_prefix("container:") {
            Some(c) => ModeRef::Container(c.to_string()),
            None => ModeRef::Network(m.to_string()),
        },
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::from(NetworkError::Invalid(msg.into()))
}

/// Loads a container's network configuration; containers made before it existed
/// get one from their HostConfig.
pub fn load_config(nets: &Networks, rec: &ContainerRecord) -> Arc<ContainerNetConfig> {
    match nets.stored_config(&rec.id) {
        Some(c) => c,
        None => config_from_host_config(nets, rec),
    }
}

/// [`load_config`] of each container.
pub fn load_configs<R: std::ops::Deref<Target = ContainerRecord>>(
    nets: &Networks,
    recs: &[R],
) -> Vec<Arc<ContainerNetConfig>> {
    nets.stored_configs(recs.iter().map(|r| r.id.as_str()))
        .into_iter()
        .zip(recs)
        .map(|(c, rec)| c.unwrap_or_else(|| config_from_host_config(nets, rec)))
        .collect()
}

fn config_from_host_config(nets: &Networks, rec: &ContainerRecord) -> Arc<ContainerNetConfig> {
    let mode = rec.host_config.network_mode.clone().unwrap_or_default();
    Arc::new(match parse_mode(&mode) {
        ModeRef::Network(n) => match nets.get(&n) {
            Ok(net) if net.is_bridge() => ContainerNetConfig {
                mode: net.name.clone(),
                endpoints: vec![EndpointRequest {
                    network_id: net.id,
                    settings: EndpointSettings::default(),
                }],
            },
            _ => ContainerNetConfig {
                mode,
                endpoints: vec![],
            },
        },
        ModeRef::Host => ContainerNetConfig {
            mode: "host".into(),
            endpoints: vec![],
        },
        ModeRef::None => ContainerNetConfig {
            mode: "none".into(),
            endpoints: vec![],
        },
        ModeRef::Container(c) => ContainerNetConfig {
            mode: format!("container:{c}"),
            endpoints: vec![],
        },
    })
}

fn save_config(nets: &Networks, id: &str, cfg: &ContainerNetConfig) -> Result<(), EngineError> {
    nets.save_config(id, cfg)?;
    Ok(())
}

/// Checks endpoint settings against the network they are for.
fn check_endpoint(net: &NetworkRecord, s: &EndpointSettings) -> Result<(), EngineError> {
    let ipam = s.ipam_config.clone().unwrap_or_default();
    let v4 = ipam.ipv4_address.filter(|a| !a.is_empty());
    let v6 = ipam.ipv6_address.filter(|a| !a.is_empty());
    if net.builtin {
        if s.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        if v4.is_some() || v6.is_some() {
            return Err(invalid(
                "user specified IP address is supported on user defined networks only",
            ));
        }
    } else if (v4.is_some() || v6.is_some()) && !net.user_subnets {
        return Err(invalid(
            "user specified IP address is supported only when connecting to networks with user configured subnets",
        ));
    }
    for a in [v4, v6].into_iter().flatten() {
        let ip = ipam::parse_addr(&a).map_err(NetworkError::from)?;
        if !net.subnets.iter().any(|s| s.subnet.contains(&ip)) {
            return Err(invalid(format!(
                "no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
    }
    if let Some(m) = s.mac_address.as_deref().filter(|m| !m.is_empty()) {
        if !ipam::valid_mac(m) {
            return Err(invalid(format!("invalid MAC address: {m}")));
        }
    }
    // Aliases and link aliases become names aardvark-dns answers, written by
    // netavark into a line-based file: one with a space, comma or newline
    // would add entries of its own (another container's name, say).
    let link_aliases = s
        .links
        .iter()
        .flatten()
        .filter_map(|l| l.split_once(':').map(|(_, alias)| alias.to_string()));
    for a in s.aliases.iter().flatten().cloned().chain(link_aliases) {
        if !valid_dns_name(&a) {
            return Err(invalid(format!(
                "invalid network alias {a:?}: at most 255 characters, no spaces, commas or control characters"
            )));
        }
    }
    Ok(())
}

/// A name aardvark-dns can be given: empty (skipped), or at most 255
/// characters with no whitespace, commas or control characters.
fn valid_dns_name(name: &str) -> bool {
    name.len() <= 255
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

/// The endpoint settings `nc` gives for `net` (by name, id or id prefix).
fn endpoint_for(nc: Option<&NetworkingConfig>, net: &NetworkRecord) -> Option<EndpointSettings> {
    let eps = nc?.endpoints_config.as_ref()?;
    eps.iter()
        .find(|(k, _)| {
            *k == &net.name
                || *k == &net.id
                || (k.len() >= 12 && net.id.starts_with(k.as_str()))
                || (k.as_str() == "default" && net.builtin && net.name == DEFAULT_NETWORK)
        })
        .map(|(_, v)| v.clone())
}

/// At create, once the container's record exists: checks the network mode, its
/// endpoint settings and ports against it, and records them. Returns warnings.
pub fn container_created(
    engine: &Engine,
    id: &str,
    config: &ContainerConfig,
    hc: &HostConfig,
    nc: Option<&NetworkingConfig>,
) -> Result<Vec<String>, EngineError> {
    let nets = &engine.networks;
    let mut warnings = vec![];
    // `Config.NetworkDisabled` (docker-py's `network_disabled`): no network, as
    // `none`, whatever the mode says.
    let mode = if config.network_disabled == Some(true) {
        "none".to_string()
    } else {
        hc.network_mode.clone().unwrap_or_default()
    };
    let publishes = hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
        || hc.publish_all_ports == Some(true);
    // Port specs are checked whatever the mode, so a bad one is a 400 now.
    ports::requests(config, hc)?;
    let cfg = match parse_mode(&mode) {
        ModeRef::Host => {
            if publishes {
                warnings.push("Published ports are discarded when using host network mode".into());
            }
            ContainerNetConfig {
                mode: "host".into(),
                endpoints: vec![],
            }
        }
        ModeRef::None => ContainerNetConfig {
            mode: "none".into(),
            endpoints: vec![],
        },
        ModeRef::Container(other) => {
            if publishes {
                return Err(invalid(
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
            if hc.dns.as_ref().is_some_and(|d| !d.is_empty()) {
                return Err(invalid("conflicting options: dns and the network mode"));
            }
            if hc.extra_hosts.as_ref().is_some_and(|d| !d.is_empty()) {
                return Err(invalid(
                    "conflicting options: custom host-to-IP mapping and the network mode",
                ));
            }
            let target = engine.store.get(&other)?;
            if target.id == id {
                return Err(invalid("cannot join own network namespace"));
            }
            // It shares the other one's UTS view of the network: its hostname too.
            let hostname = target.config.hostname.clone();
            engine.store.update(id, |r| r.config.hostname = hostname)?;
            ContainerNetConfig {
                mode: format!("container:{}", target.id),
                endpoints: vec![],
            }
        }
        ModeRef::Network(reference) => {
            let net = nets.get(&reference)?;
            if !net.is_bridge() {
                // "host" and "none" by id.
                return container_created(
                    engine,
                    id,
                    config,
                    &HostConfig {
                        network_mode: Some(
                            if net.driver == "host" { "host" } else { "none" }.into(),
                        ),
                        ..hc.clone()
                    },
                    nc,
                );
            }
            let mut primary = endpoint_for(nc, &net).unwrap_or_default();
            #[allow(deprecated)]
            let legacy_mac = config.mac_address.clone().filter(|m| !m.is_empty());
            if primary.mac_address.as_deref().unwrap_or("").is_empty() {
                primary.mac_address = legacy_mac;
            }
            if !net.builtin {
                // Links on a user network are names that network's DNS gives to
                // the linked container for this one.
                let mut links = primary.links.clone().unwrap_or_default();
                links.extend(hc.links.clone().unwrap_or_default());
                if !links.is_empty() {
                    primary.links = Some(links.iter().map(|l| normalize_link(l)).collect());
                }
            }
            check_endpoint(&net, &primary)?;
            let mut endpoints = vec![EndpointRequest {
                network_id: net.id.clone(),
                settings: primary,
            }];
            for (key, settings) in nc
                .and_then(|n| n.endpoints_config.clone())
                .unwrap_or_default()
            {
                let key = if key == "default" {
                    DEFAULT_NETWORK.to_string()
                } else {
                    key
                };
                let other = nets.get(&key)?;
                if other.id == net.id {
                    continue;
                }
                if !other.is_bridge() {
                    return Err(invalid(format!(
                        "container cannot be connected to network {} together with {}",
                        other.name, net.name
                    )));
                }
                check_endpoint(&other, &settings)?;
                endpoints.push(EndpointRequest {
                    network_id: other.id.clone(),
                    settings,
                });
            }
            ContainerNetConfig {
                mode: net.name.clone(),
                endpoints,
            }
        }
    };
    save_config(nets, id, &cfg)?;
    Ok(warnings)
}

/// `upstream:alias` from either the CLI's form or dockerd's stored `/upstream:/me/alias`.
pub fn normalize_link(link: &str) -> String {
    let (name, alias) = link.split_once(':').unwrap_or((link, link));
    let name = name.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    format!("{name}:{alias}")
}

/// The namespace the container's spec joins: `None` for the host's.
pub fn namespace_path(
    engine: &Engine,
    rec: &ContainerRecord,
) -> Result<Option<PathBuf>, EngineError> {
    let nets = &engine.networks;
    let cfg = load_config(nets, rec);
    match parse_mode(&cfg.mode) {
        ModeRef::Host => Ok(None),
        ModeRef::Container(other) => {
            let target = engine.store.get(&other)?;
            if target.state.running != Some(true) {
                return Err(EngineError::Conflict(format!(
                    "cannot join network of a non running container: {}",
                    target.id
                )));
            }
            let tcfg = load_config(nets, &target);
            match parse_mode(&tcfg.mode) {
                ModeRef::Host => Ok(None),
                ModeRef::Container(_) => Err(invalid(format!(
                    "cannot join the network of {} which joins another container's",
                    target.name.trim_start_matches('/')
                ))),
                _ => match nets.live(&target.id).and_then(|l| l.netns) {
                    Some(p) => Ok(Some(p)),
                    None => Ok(Some(PathBuf::from(format!(
                        "/proc/{}/ns/net",
                        target.state.pid.unwrap_or(0)
                    )))),
                },
            }
        }
        _ => Ok(Some(nets.netns_path(&rec.id))),
    }
}

/// The environment of legacy links on the default bridge, as dockerd sets it:
/// `ALIAS_NAME=/me/alias`, `ALIAS_ENV_K=V` for the linked container's env (but HOME
/// and PATH), and `ALIAS_PORT_80_TCP=tcp://ip:80` (with `_ADDR`, `_PORT`, `_PROTO`,
/// and `ALIAS_PORT` for the lowest port) for its exposed ports.
pub fn link_env(engine: &Engine, rec: &ContainerRecord) -> Vec<String> {
    let nets = &engine.networks;
    let cfg = load_config(nets, rec);
    let on_default = cfg.endpoints.first().is_some_and(|e| {
        nets.get(&e.network_id)
            .is_ok_and(|n| n.builtin && n.name == DEFAULT_NETWORK)
    });
    if !on_default {
        return vec![];
    }
    let me = rec.name.trim_start_matches('/');
    let mut env = vec![];
    for l in rec.host_config.links.clone().unwrap_or_default() {
        let l = normalize_link(&l);
        let Some((target, alias)) = l.split_once(':') else {
            continue;
        };
        let Ok(t) = engine.store.get(target) else {
            continue;
        };
        let ip = nets.live(&t.id).and_then(|lv| {
            lv.attachments.first().and_then(|a| {
                a.addresses
                    .iter()
                    .find(|n| n.addr().is_ipv4())
                    .map(|n| n.addr())
            })
        });
        let prefix = alias.to_ascii_uppercase().replace('-', "_");
        env.push(format!("{prefix}_NAME=/{me}/{alias}"));
        for e in t.config.env.clone().unwrap_or_default() {
            if let Some((k, v)) = e.split_once('=') {
                if k != "HOME" && k != "PATH" {
                    env.push(format!("{prefix}_ENV_{k}={v}"));
                }
            }
        }
        let Some(ip) = ip else {
            continue;
        };
        let mut ports: Vec<(u16, String)> = t
            .config
            .exposed_ports
            .clone()
            .unwrap_or_default()
            .keys()
            .filter_map(|k| ports::parse_port_key(k).ok())
            .collect();
        ports.sort();
        if let Some((p, proto)) = ports.first() {
            env.push(format!("{prefix}_PORT={proto}://{ip}:{p}"));
        }
        for (p, proto) in ports {
            let up = proto.to_ascii_uppercase();
            env.push(format!("{prefix}_PORT_{p}_{up}={proto}://{ip}:{p}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_PORT={p}"));
            env.push(format!("{prefix}_PORT_{p}_{up}_PROTO={proto}"));
        }
    }
    env
}

/// Sets the network namespace of `spec` (the pinned one, or the host's) and adds
/// the environment of legacy links.
pub fn apply_to_spec(
    engine: &Engine,
    rec: &ContainerRecord,
    spec: &mut Spec,
) -> Result<(), EngineError> {
    let links = link_env(engine, rec);
    if !links.is_empty() {
        if let Some(process) = spec.process_mut().as_mut() {
            let mut env = process.env().clone().unwrap_or_default();
            let key = |e: &str| {
                e.split_once('=')
                    .map(|(k, _)| k.to_string())
                    .unwrap_or_default()
            };
            for l in links {
                // The container's own variables win.
                if !env.iter().any(|e| key(e) == key(&l)) {
                    env.push(l);
                }
            }
            process.set_env(Some(env));
        }
    }
    let path = namespace_path(engine, rec)?;
    let Some(linux) = spec.linux_mut().as_mut() else {
        return Ok(());
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    if let Some(p) = path {
        let mut ns = oci_spec::runtime::LinuxNamespace::default();
        ns.set_typ(LinuxNamespaceType::Network);
        ns.set_path(Some(p));
        namespaces.push(ns);
    }
    linux.set_namespaces(Some(namespaces));
    Ok(())
}

fn publish(engine: &Engine, action: &str, net: &NetworkRecord, container: &str) {
    engine.event_hub.publish(
        DockerEvent::now("network", action, &net.id)
            .attr("container", container)
            .attr("name", net.name.clone())
            .attr("type", net.driver.clone()),
    );
}

/// The names aardvark-dns answers for a container on a network: its name, its
/// aliases there, its short id, and the aliases other containers' links give it.
fn dns_names(
    engine: &Engine,
    rec: &ContainerRecord,
    net: &NetworkRecord,
    settings: &EndpointSettings,
) -> Vec<String> {
    let name = rec.name.trim_start_matches('/').to_string();
    let mut names = vec![name.clone()];
    for a in settings.aliases.clone().unwrap_or_default() {
        if !a.is_empty() && !names.contains(&a) {
            names.push(a);
        }
    }
    let sid = short_id(&rec.id).to_string();
    if !names.contains(&sid) {
        names.push(sid);
    }
    for other in engine.store.list() {
        if other.id == rec.id {
            continue;
        }
        let Some(cfg) = engine.networks.stored_config(&other.id) else {
            continue;
        };
        for ep in cfg.endpoints.iter().filter(|e| e.network_id == net.id) {
            for l in ep.settings.links.clone().unwrap_or_default() {
                let l = normalize_link(&l);
                if let Some((target, alias)) = l.split_once(':') {
                    if (target == name || rec.id.starts_with(target))
                        && !names.iter().any(|n| n == alias)
                    {
                        names.push(alias.to_string());
                    }
                }
            }
        }
    }
    names
}

/// netavark's view of a network.
pub(super) fn nv_network(net: &NetworkRecord) -> NvNetwork {
    let mut options = BTreeMap::from([("isolate".to_string(), "true".to_string())]);
    if let Some(mtu) = net.mtu {
        options.insert("mtu".into(), mtu.to_string());
    }
    NvNetwork {
        name: net.netavark_name(),
        id: net.id.clone(),
        driver: "bridge".into(),
        network_interface: Some(net.bridge.clone()),
        subnets: Some(
            net.subnets
                .iter()
                .map(|s| NvSubnet {
                    subnet: s.subnet,
                    gateway: s.gateway,
                    lease_range: None,
                })
                .collect(),
        ),
        ipv6_enabled: net.subnets.iter().any(|s| s.subnet.addr().is_ipv6()),
        internal: net.internal,
        // The default bridge has no name resolution, as docker's.
        dns_enabled: !net.builtin,
        options: Some(options),
        ipam_options: Some(BTreeMap::from([("driver".into(), "host-local".into())])),
        network_dns_servers: None,
    }
}

/// Addresses for a container on `net`: the ones asked for, else the first free.
pub(super) fn addresses(
    nets: &Networks,
    net: &NetworkRecord,
    settings: &EndpointSettings,
) -> Result<Vec<IpNet>, NetworkError> {
    let used = nets.used_addresses(&net.id);
    let ipam_cfg = settings.ipam_config.clone().unwrap_or_default();
    let mut out = vec![];
    for s in &net.subnets {
        let mut reserved: std::collections::HashSet<IpAddr> = s.aux.values().copied().collect();
        reserved.extend(s.gateway);
        let wanted = if s.subnet.addr().is_ipv4() {
            ipam_cfg.ipv4_address.clone()
        } else {
            ipam_cfg.ipv6_address.clone()
        }
        .filter(|a| !a.is_empty());
        let addr = match wanted {
            Some(a) => {
                let ip = ipam::parse_addr(&a)?;
                ipam::check_static(ip, &s.subnet, &reserved, &used)?;
                ip
            }
            None => ipam::allocate(&net.name, &s.subnet, s.ip_range.as_ref(), &reserved, &used)?,
        };
        out.push(
            IpNet::new(addr, s.subnet.prefix_len())
                .map_err(|e| NetworkError::Invalid(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Attaches a container to one network: addresses, the attachment recorded (not up
/// yet), `netavark setup`, the attachment marked up. On failure nothing of it stays.
#[allow(clippy::too_many_arguments)]
async fn attach_one(
    engine: &Engine,
    rec: &ContainerRecord,
    live: &mut LiveState,
    net: &NetworkRecord,
    settings: &EndpointSettings,
    interface: &str,
    port_mappings: Option<Vec<super::netavark::NvPortMapping>>,
) -> Result<(), EngineError> {
    plan_one(engine, rec, live, net, settings, interface, port_mappings)?;
    set_up_planned(engine, live).await
}

/// The first half of an attachment: addresses picked and the attachment recorded,
/// not up, so that IPAM counts its addresses and a crash before its setup is undone
/// at the next start or restore.
#[allow(clippy::too_many_arguments)]
fn plan_one(
    engine: &Engine,
    rec: &ContainerRecord,
    live: &mut LiveState,
    net: &NetworkRecord,
    settings: &EndpointSettings,
    interface: &str,
    port_mappings: Option<Vec<super::netavark::NvPortMapping>>,
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let addrs = addresses(nets, net, settings)?;
    let mac = match settings.mac_address.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m.to_ascii_lowercase(),
        None => match addrs.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }) {
            Some(v4) => ipam::mac_for(v4),
            None => String::new(),
        },
    };
    let names = dns_names(engine, rec, net, settings);
    let nvname = net.netavark_name();
    let dns_servers: Vec<IpAddr> = rec
        .host_config
        .dns
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    let options = NvOptions {
        container_id: rec.id.clone(),
        container_name: names.first().cloned().unwrap_or_default(),
        networks: BTreeMap::from([(
            nvname.clone(),
            NvPerNetwork {
                interface_name: interface.to_string(),
                static_ips: Some(addrs.iter().map(|a| a.addr()).collect()),
                aliases: Some(names[1..].to_vec()),
                static_mac: if mac.is_empty() {
                    None
                } else {
                    Some(mac.clone())
                },
            },
        )]),
        network_info: BTreeMap::from([(nvname, nv_network(net))]),
        port_mappings: port_mappings.filter(|p| !p.is_empty()),
        dns_servers: if dns_servers.is_empty() {
            None
        } else {
            Some(dns_servers)
        },
    };
    let endpoint_id =
        crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    live.attachments.push(Attachment {
        network_id: net.id.clone(),
        interface: interface.to_string(),
        endpoint_id,
        addresses: addrs,
        gateways: net.subnets.iter().filter_map(|s| s.gateway).collect(),
        mac,
        dns_names: if net.builtin { vec![] } else { names },
        options,
        up: false,
        host_link: None,
    });
    nets.put_live(live)?;
    Ok(())
}

/// The second half: `netavark setup` of every planned attachment, in order, each
/// marked up as it is. On a failure the failed one is torn down and the planned
/// ones after it are dropped; those already up stay for the caller to undo.
async fn set_up_planned(engine: &Engine, live: &mut LiveState) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let netns = live
        .netns
        .clone()
        .unwrap_or_else(|| nets.netns_path(&live.container_id));
    for i in 0..live.attachments.len() {
        let Some(a) = live.attachments.get(i).filter(|a| !a.up) else {
            continue;
        };
        let options = a.options.clone();
        // The default bridge's plain case, when the pool had none ready: the veth
        // in-process, as the pool makes it (see `veth`); netavark if that fails.
        let plain = (live.attachments.len() == 1)
            .then(|| {
                let hex = live.container_id.get(..11)?;
                nets.plain_veth(a, format!("veth{hex}"))
            })
            .flatten();
        if let Some(v) = plain {
            match nets.backend().attach_veth(&netns, &v).await {
                Ok(host_link) => {
                    if let Some(a) = live.attachments.get_mut(i) {
                        a.host_link = host_link;
                        a.up = true;
                    }
                    nets.put_live(live)?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(container = %live.container_id, error = %e, "making the veth in-process; netavark sets it up")
                }
            }
        }
        match nets.setup_watching(&netns, &options).await {
            Ok((status, host_link)) => {
                if let Some(a) = live.attachments.get_mut(i) {
                    a.host_link = host_link;
                    let made_mac = options
                        .networks
                        .keys()
                        .next()
                        .and_then(|n| status.get(n))
                        .and_then(|s| s.interfaces.as_ref())
                        .and_then(|m| m.get(&a.interface))
                        .map(|m| m.mac_address.clone());
                    if let Some(m) = made_mac {
                        a.mac = m;
                    }
                    a.up = true;
                }
                nets.put_live(live)?;
                // The network keeps its bridge from now on (see `keeper`).
                if let Some(net) = live
                    .attachments
                    .get(i)
                    .and_then(|a| nets.get(&a.network_id).ok())
                {
                    nets.ensure_keeper(&net).await;
                    if options
                        .port_mappings
                        .as_ref()
                        .is_some_and(|p| !p.is_empty())
                    {
                        nets.keeper_saw_ports(&net);
                    }
                }
            }
            Err(e) => {
                // netavark undoes most of a failed setup itself; a teardown makes sure.
                let _ = nets.teardown(&netns, &options).await;
                live.attachments.truncate(i);
                nets.put_live(live)?;
                return Err(NetworkError::from(e).into());
            }
        }
    }
    Ok(())
}

/// Tears down every attachment of a live state, newest first; errors are logged.
async fn detach_all(engine: &Engine, live: &mut LiveState) {
    let nets = &engine.networks;
    let Some(netns) = live.netns.clone() else {
        live.attachments.clear();
        return;
    };
    if live.attachments.is_empty() {
        return;
    }
    if unplug(engine, live, &netns).await {
        return;
    }
    // teardown needs the namespace to exist; a fresh one lets it remove the rest.
    if let Err(e) = nets.backend().ensure_netns(&netns).await {
        tracing::warn!(container = %live.container_id, error = %e, "no namespace for teardown");
    }
    while let Some(a) = live.attachments.pop() {
        if let Err(e) = nets.teardown(&netns, &a.options).await {
            tracing::warn!(container = %live.container_id, network = %a.network_id, error = %e, "netavark teardown");
        }
        if a.up {
            if let Ok(net) = nets.get(&a.network_id) {
                publish(engine, "disconnect", &net, &live.container_id);
            }
        }
        if let Err(e) = nets.put_live(live) {
            tracing::warn!(container = %live.container_id, error = %e, "recording teardown");
        }
    }
}

/// Undoes the attachments of `live` by dropping its namespace, when that is all
/// `netavark teardown` would do and no process is left inside it: each attachment
/// holds nothing outside the namespace but its veth (no published port, so no
/// rule of its own; a network without DNS, so no aardvark-dns entry; addresses are
/// berth's own IPAM's), and the kernel deletes both ends of a veth with the
/// namespace. That spares a netavark process (and the `iptables` ones it starts)
/// on every exit from the default bridge. Returns whether it did; the namespace is
/// made again at the next start. Waits until each veth is gone, so that what the
/// caller reports (an exit, a removal) leaves nothing behind and the address can be
/// given again at once.
async fn unplug(engine: &Engine, live: &mut LiveState, netns: &std::path::Path) -> bool {
    let nets = &engine.networks;
    let plain = live.attachments.iter().all(|a| {
        a.up && a.host_link.is_some()
            && a.options.networks.len() == 1
            && a.options
                .port_mappings
                .as_ref()
                .is_none_or(|p| p.is_empty())
            && a.options.network_info.values().all(|n| !n.dns_enabled)
    });
    if !plain || !super::netns::is_pinned(netns) {
        return false;
    }
    // A process inside (a `container:` sharer, one left by a run without a PID
    // namespace, an `nsenter`) would keep the namespace and the veth alive.
    let path = netns.to_path_buf();
    let in_use = tokio::task::spawn_blocking(move || super::links::netns_in_use(&path))
        .await
        .ok()
        .flatten();
    if in_use != Some(false) {
        return false;
    }
    if let Err(e) = nets.backend().remove_netns(netns).await {
        tracing::warn!(container = %live.container_id, error = %e, "dropping the network namespace");
        return false;
    }
    let links: Vec<_> = live
        .attachments
        .iter()
        .filter_map(|a| a.host_link.clone())
        .collect();
    if !super::links::wait_gone(&links).await {
        tracing::warn!(container = %live.container_id, ?links, "a veth outlived its network namespace");
    }
    for a in std::mem::take(&mut live.attachments) {
        if let Ok(net) = nets.get(&a.network_id) {
            publish(engine, "disconnect", &net, &live.container_id);
        }
    }
    if let Err(e) = nets.put_live(live) {
        tracing::warn!(container = %live.container_id, error = %e, "recording teardown");
    }
    true
}

/// What is left of a start once [`container_start`] made the namespace, held the
/// host ports, picked the addresses and wrote the /etc files: the `netavark setup`
/// calls. They may run while the task is created (the runtime only joins the pinned
/// namespace), and must be done before it starts. Holds the network lock until
/// [`finish_start`] is done with it.
pub struct PendingSetup<'a> {
    _ops: tokio::sync::MutexGuard<'a, ()>,
    work: Pending,
}

impl PendingSetup<'_> {
    /// Whether what is left is quick: every interface is in place already (a
    /// namespace taken from the pool), so only the proxies of its ports and the
    /// `connect` events remain, nothing that could overlap the task's creation.
    pub fn is_quick(&self) -> bool {
        match &self.work {
            Pending::Networks { live, .. } => live.attachments.iter().all(|a| a.up),
        }
    }
}

enum Pending {
    /// Bridge networks, planned in `live`.
    Networks {
        live: LiveState,
        networks: Vec<NetworkRecord>,
        /// The sockets of the ports a proxy will serve, by index in `live.ports`.
        proxied: Vec<(usize, std::os::fd::OwnedFd)>,
    },
}

/// Before the task is created: what must exist when the runtime creates it (the
/// pinned namespace, the host ports held, the /etc files). A host port in use fails
/// here, with nothing set up. What is left to do comes back as a [`PendingSetup`]
/// for [`finish_start`].
pub async fn container_start<'a>(
    engine: &'a Engine,
    rec: &ContainerRecord,
) -> Result<Option<PendingSetup<'a>>, EngineError> {
    let nets = &engine.networks;
    let cfg = load_config(nets, rec);
    match parse_mode(&cfg.mode) {
        ModeRef::Host => {
            write_base_etc(engine, &rec.id, &rec.config, &rec.host_config)?;
            Ok(None)
        }
        ModeRef::Container(other) => {
            // Its /etc files are the other container's.
            let target = engine.store.get(&other)?;
            let from = base_etc::EtcFiles::in_dir(&engine.store.container_dir(&target.id));
            let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
            let content = base_etc::EtcContent {
                hostname: read(&from.hostname).trim_end().to_string(),
                hosts: read(&from.hosts),
                resolv_conf: read(&from.resolv_conf),
            };
            let dir = engine.store.container_dir(&rec.id);
            base_etc::write(&dir, &content).map_err(|e| {
                EngineError::io(format!("writing /etc files in {}", dir.display()), e)
            })?;
            Ok(None)
        }
        ModeRef::None => {
            write_base_etc(engine, &rec.id, &rec.config, &rec.host_config)?;
            // The namespace is made with its loopback up (see `netns::create`), as
            // docker's `none` has it: nothing is left for netavark to do.
            let _ops = nets.ops.lock().await;
            let netns = nets.netns_path(&rec.id);
            // A namespace kept from an earlier run is used again; else one made in
            // advance, else one made now.
            if !nets.backend().netns_pinned(&netns) {
                nets.take_bare(&netns).await;
            }
            nets.backend()
                .ensure_netns(&netns)
                .await
                .map_err(NetworkError::from)?;
            nets.put_live(&LiveState {
                container_id: rec.id.clone(),
                netns: Some(netns),
                ..LiveState::default()
            })?;
            Ok(None)
        }
        ModeRef::Network(_) => plan_at_start(engine, rec, &cfg).await.map(Some),
    }
}

async fn plan_at_start<'a>(
    engine: &'a Engine,
    rec: &ContainerRecord,
    cfg: &ContainerNetConfig,
) -> Result<PendingSetup<'a>, EngineError> {
    let nets = &engine.networks;
    let began = std::time::Instant::now();
    let ops = nets.ops.lock().await;
    let locked_ms = began.elapsed().as_millis() as u64;
    let netns = nets.netns_path(&rec.id);
    let mut live = nets.live(&rec.id).unwrap_or_else(|| LiveState {
        container_id: rec.id.clone(),
        ..LiveState::default()
    });
    live.netns = Some(netns.clone());
    // Left by a crash between setup and exit: undone before anything new.
    detach_all(engine, &mut live).await;
    nets.release_ports(&rec.id);
    super::proxy::stop_all(&live.ports);
    live.ports.clear();
    let mut nets_of = vec![];
    for ep in &cfg.endpoints {
        let net = nets.get(&ep.network_id).map_err(|_| {
            NetworkError::NoSuchNetwork(format!(
                "{} (the container was connected to it, and it was removed)",
                ep.network_id
            ))
        })?;
        nets_of.push((net, ep.settings.clone()));
    }
    let reqs = ports::requests(&rec.config, &rec.host_config)?;
    let name = rec.name.trim_start_matches('/').to_string();
    // Ports a proxy serves need nothing of netavark: such a container can take a
    // namespace from the pool.
    let forwarded = reqs
        .iter()
        .any(|r| !super::proxy::proxied(&r.host_ip, &r.protocol));
    if pool::poolable(&nets_of, forwarded) && !super::netns::is_pinned(&netns) {
        if let Some(entry) = nets.take_pooled().await {
            match nets.adopt_pooled(entry, &mut live, &netns).await {
                Ok(()) => {
                    let picked = if reqs.is_empty() {
                        Ok(ports::Picked::default())
                    } else {
                        let mut st = nets.lock();
                        let mut cursor = st.next_ephemeral;
                        let r = ports::pick(&reqs, &mut cursor, &name);
                        st.next_ephemeral = cursor;
                        r
                    };
                    let picked = match picked {
                        Ok(p) => p,
                        Err(e) => {
                            detach_all(engine, &mut live).await;
                            let _ = nets.put_live(&live);
                            return Err(e.into());
                        }
                    };
                    live.ports = picked.ports;
                    if let Err(e) = write_etc(engine, rec, cfg, &live) {
                        detach_all(engine, &mut live).await;
                        live.ports.clear();
                        let _ = nets.put_live(&live);
                        return Err(e);
                    }
                    tracing::debug!(
                        container = %rec.id,
                        locked_ms,
                        total_ms = began.elapsed().as_millis() as u64,
                        "network taken from the pool"
                    );
                    return Ok(PendingSetup {
                        _ops: ops,
                        work: Pending::Networks {
                            live,
                            networks: nets_of.into_iter().map(|(n, _)| n).collect(),
                            proxied: picked.proxied,
                        },
                    });
                }
                Err(e) => {
                    tracing::warn!(container = %rec.id, error = %e, "a namespace from the pool could not be taken")
                }
            }
        }
    }
    nets.backend()
        .ensure_netns(&netns)
        .await
        .map_err(NetworkError::from)?;
    let netns_ms = began.elapsed().as_millis() as u64;
    let picked = {
        let mut st = nets.lock();
        let mut cursor = st.next_ephemeral;
        let r = ports::pick(&reqs, &mut cursor, &name);
        st.next_ephemeral = cursor;
        r?
    };
    live.ports = picked.ports.clone();
    nets.hold_ports(&rec.id, picked.held);
    let proxied = picked.proxied;
    let planned = (|| {
        if nets_of.is_empty() {
            // Otherwise each plan records the ports with it: one write fewer.
            nets.put_live(&live)?;
        }
        for (i, (net, settings)) in nets_of.iter().enumerate() {
            let mappings = if i == 0 {
                Some(ports::mappings(&live.ports))
            } else {
                None
            };
            plan_one(
                engine,
                rec,
                &mut live,
                net,
                settings,
                &format!("eth{i}"),
                mappings,
            )?;
        }
        write_etc(engine, rec, cfg, &live)
    })();
    if let Err(e) = planned {
        // Nothing was set up yet: the plans are dropped, the ports given back.
        live.attachments.clear();
        live.ports.clear();
        nets.release_ports(&rec.id);
        let _ = nets.put_live(&live);
        return Err(e);
    }
    tracing::debug!(
        container = %rec.id,
        locked_ms,
        netns_ms,
        total_ms = began.elapsed().as_millis() as u64,
        "network planned (namespace, ports, addresses, /etc files)"
    );
    Ok(PendingSetup {
        _ops: ops,
        work: Pending::Networks {
            live,
            networks: nets_of.into_iter().map(|(n, _)| n).collect(),
            proxied,
        },
    })
}

/// Runs what [`container_start`] left: `netavark setup` of each planned network. On
/// a failure everything of the start is undone (attachments, host ports).
pub async fn finish_start(
    engine: &Engine,
    id: &str,
    pending: PendingSetup<'_>,
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    match pending.work {
        Pending::Networks {
            mut live,
            networks,
            proxied,
        } => {
            let mut done = set_up_planned(engine, &mut live).await;
            if done.is_ok() && !proxied.is_empty() {
                done = start_proxies(engine, &mut live, &proxied);
            }
            if let Err(e) = done {
                detach_all(engine, &mut live).await;
                super::proxy::stop_all(&live.ports);
                live.ports.clear();
                nets.release_ports(id);
                let _ = nets.put_live(&live);
                return Err(e);
            }
            for net in &networks {
                publish(engine, "connect", net, id);
            }
            Ok(())
        }
    }
}

/// Starts a proxy for each proxied port, towards the container's first IPv4 (or
/// else first) address, and records them.
fn start_proxies(
    engine: &Engine,
    live: &mut LiveState,
    proxied: &[(usize, std::os::fd::OwnedFd)],
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let addrs: Vec<std::net::IpAddr> = live
        .attachments
        .first()
        .map(|a| a.addresses.iter().map(|n| n.addr()).collect())
        .unwrap_or_default();
    let Some(ip) = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
    else {
        return Err(invalid(
            "a published port needs an address in the container",
        ));
    };
    for (i, fd) in proxied {
        let Some(port) = live.ports.get_mut(*i) else {
            continue;
        };
        let to = std::net::SocketAddr::new(ip, port.container_port);
        port.proxy = nets
            .backend()
            .spawn_proxy(fd, to)
            .map_err(NetworkError::from)?;
    }
    nets.put_live(live)?;
    Ok(())
}

/// hostname, hosts and resolv.conf with no network of ours named in them: written
/// at create for every container, so a created one has them, and again at every
/// start of a `none` or `host` container, as dockerd does, so a `host` container
/// sees the host's files of the day (a bridge or `container:` container gets its
/// own at every start when its network is set up). Not synced: a power loss can
/// only lose a version that the next start writes again.
pub(crate) fn write_base_etc(
    engine: &Engine,
    id: &str,
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<(), EngineError> {
    let dir = engine.store.container_dir(id);
    let hostname = config
        .hostname
        .clone()
        .unwrap_or_else(|| short_id(id).to_string());
    let host_mode = hc.network_mode.as_deref() == Some("host");
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let content = base_etc::EtcContent {
        hostname,
        hosts: if host_mode {
            read("/etc/hosts")
        } else {
            base_etc::hosts_file(&netetc::resolve_extra_hosts(
                hc.extra_hosts.as_deref().unwrap_or(&[]),
                engine.networks.host_gateway(),
            ))
        },
        resolv_conf: if host_mode {
            read("/etc/resolv.conf")
        } else {
            base_etc::resolv_conf(
                &read("/etc/resolv.conf"),
                hc.dns.as_deref().unwrap_or(&[]),
                hc.dns_search.as_deref().unwrap_or(&[]),
                hc.dns_options.as_deref().unwrap_or(&[]),
            )
        },
    };
    base_etc::write(&dir, &content)
        .map_err(|e| EngineError::io(format!("writing /etc files in {}", dir.display()), e))?;
    Ok(())
}

/// hosts and resolv.conf for a container on bridge networks.
fn write_etc(
    engine: &Engine,
    rec: &ContainerRecord,
    cfg: &ContainerNetConfig,
    live: &LiveState,
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let hc = &rec.host_config;
    let own = live
        .attachments
        .first()
        .and_then(|a| {
            a.addresses
                .iter()
                .find(|n| n.addr().is_ipv4())
                .or(a.addresses.first())
        })
        .map(|n| n.addr());
    let mut links = vec![];
    let first_net = live
        .attachments
        .first()
        .and_then(|a| nets.get(&a.network_id).ok());
    // Legacy links (default bridge): the linked container must run; its address on
    // a network both share goes in the hosts file.
    let mut link_specs: Vec<(String, bool)> = hc
        .links
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|l| (normalize_link(l), true))
        .collect();
    if first_net.as_ref().is_some_and(|n| !n.builtin) {
        for ep in &cfg.endpoints {
            for l in ep.settings.links.clone().unwrap_or_default() {
                link_specs.push((normalize_link(&l), false));
            }
        }
        link_specs.retain(|(_, legacy)| !legacy);
    }
    for (link, legacy) in link_specs {
        let Some((target, alias)) = link.split_once(':') else {
            continue;
        };
        let found = engine
            .store
            .get(target)
            .ok()
            .filter(|t| t.state.running == Some(true));
        let Some(t) = found else {
            if legacy {
                return Err(invalid(format!(
                    "Cannot link to a non running container: /{target} AS /{}/{alias}",
                    rec.name.trim_start_matches('/')
                )));
            }
            continue;
        };
        let their = nets.live(&t.id).and_then(|l| {
            l.attachments
                .iter()
                .find(|a| {
                    live.attachments
                        .iter()
                        .any(|m| m.network_id == a.network_id)
                })
                .and_then(|a| a.addresses.first().map(|n| n.addr()))
        });
        if let Some(ip) = their {
            let tname = t.name.trim_start_matches('/').to_string();
            let mut names = vec![alias.to_string(), short_id(&t.id).to_string()];
            if tname != alias {
                names.push(tname);
            }
            links.push((ip, names));
        }
    }
    let hosts = netetc::hosts(&Hosts {
        own_address: own,
        hostname: rec
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| short_id(&rec.id).to_string()),
        domainname: rec.config.domainname.clone().unwrap_or_default(),
        links,
        extra: hc.extra_hosts.clone().unwrap_or_default(),
        host_gateway: nets.host_gateway(),
    });
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns_server = first_net.as_ref().filter(|n| !n.builtin).and_then(|n| {
        n.subnets
            .iter()
            .find_map(|s| s.gateway.filter(|g| g.is_ipv4()))
    });
    let search = hc.dns_search.clone().unwrap_or_default();
    let options = hc.dns_options.clone().unwrap_or_default();
    let resolv_conf = match dns_server {
        Some(gw) => netetc::resolv_conf_user_network(&host_resolv, gw, &search, &options),
        None => base_etc::resolv_conf(
            &host_resolv,
            hc.dns.as_deref().unwrap_or(&[]),
            &search,
            &options,
        ),
    };
    let dir = engine.store.container_dir(&rec.id);
    let content = base_etc::EtcContent {
        hostname: rec
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| short_id(&rec.id).to_string()),
        hosts,
        resolv_conf,
    };
    base_etc::write(&dir, &content)
        .map_err(|e| EngineError::io(format!("writing /etc files in {}", dir.display()), e))?;
    Ok(())
}

/// When the container's task is gone (exit, stop, kill, failed start): its network
/// torn down and its host ports freed; its namespace stays for the next start.
pub async fn container_stopped(engine: &Engine, id: &str) {
    let nets = &engine.networks;
    let began = std::time::Instant::now();
    let _ops = nets.ops.lock().await;
    let Some(mut live) = nets.live(id) else {
        return;
    };
    let locked_ms = began.elapsed().as_millis() as u64;
    detach_all(engine, &mut live).await;
    tracing::debug!(container = %id, locked_ms, total_ms = began.elapsed().as_millis() as u64, "network torn down");
    nets.release_ports(id);
    super::proxy::stop_all(&live.ports);
    // detach_all recorded what it undid; only the ports are left to forget.
    if !live.ports.is_empty() {
        live.ports.clear();
        if let Err(e) = nets.put_live(&live) {
            tracing::warn!(container = %id, error = %e, "recording the teardown");
        }
    }
}

/// When the container is removed: anything left torn down, the namespace unpinned,
/// the live state forgotten.
pub async fn container_removed(engine: &Engine, id: &str) {
    container_stopped(engine, id).await;
    let nets = &engine.networks;
    nets.forget_config(id);
    let _ops = nets.ops.lock().await;
    let netns = nets
        .live(id)
        .and_then(|l| l.netns)
        .unwrap_or_else(|| nets.netns_path(id));
    if let Err(e) = nets.backend().remove_netns(&netns).await {
        tracing::warn!(container = %id, error = %e, "removing the network namespace");
        return;
    }
    if let Err(e) = nets.drop_live(id) {
        tracing::warn!(container = %id, error = %e, "forgetting the network state");
    }
}

/// At berthd start: containers that are gone lose their network entirely, those not
/// running lose what a crash left set up, running ones get their ports held again.
pub async fn restore(engine: &Engine) {
    let nets = &engine.networks;
    {
        // Whatever a crash left of the pool; it is made again once wanted.
        let _ops = nets.ops.lock().await;
        nets.drop_pool(false).await;
    }
    nets.restore_keepers().await;
    for live in nets.all_live() {
        let id = live.container_id.clone();
        match engine.store.get(&id) {
            Err(_) => {
                tracing::info!(container = %id, "removing the network of a container that is gone");
                container_removed(engine, &id).await;
            }
            Ok(rec) if rec.state.running != Some(true) => {
                super::proxy::stop_all(&live.ports);
                if !live.attachments.is_empty() {
                    tracing::info!(container = %id, "tearing down the network of a container that is not running");
                    container_stopped(engine, &id).await;
                }
            }
            Ok(_) => {
                let fds = ports::rehold(&live.ports);
                nets.hold_ports(&id, fds);
                respawn_proxies(engine, LiveState::clone(&live));
            }
        }
    }
}

/// A running container's proxies that did not survive (killed while berthd was
/// down): their ports bound and served again.
fn respawn_proxies(engine: &Engine, mut live: LiveState) {
    let mut again = vec![];
    for (i, p) in live.ports.iter().enumerate() {
        if !super::proxy::is_proxied(p) || p.proxy.as_ref().is_some_and(super::proxy::alive) {
            continue;
        }
        let ip = p
            .host_ip
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        match ports::hold(ip, p.host_port, &p.protocol) {
            Ok(Some(fd)) => again.push((i, fd)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container = %live.container_id, port = p.host_port, error = %e, "cannot bind a published port again for its proxy")
            }
        }
    }
    if again.is_empty() {
        return;
    }
    tracing::info!(container = %live.container_id, ports = again.len(), "starting the proxies of published ports again");
    if let Err(e) = start_proxies(engine, &mut live, &again) {
        tracing::warn!(container = %live.container_id, error = %e, "starting the proxies of published ports again");
    }
}

/// `DELETE /containers/<parent>/<alias>?link=1`: the legacy link goes from its
/// parent's `HostConfig.Links` (the linked container stays).
pub fn remove_link(engine: &Engine, path: &str) -> Result<(), EngineError> {
    let path = path.trim_start_matches('/');
    let (parent, alias) = path.rsplit_once('/').ok_or_else(|| {
        invalid(format!(
            "Conflict, cannot remove the default link name of the container {path}"
        ))
    })?;
    let rec = engine.store.get(parent).map_err(|_| {
        EngineError::NotFound(format!("Cannot get parent /{parent} for link name /{path}"))
    })?;
    let links = rec.host_config.links.clone().unwrap_or_default();
    let kept: Vec<String> = links
        .iter()
        .filter(|l| normalize_link(l).split_once(':').map(|(_, a)| a) != Some(alias))
        .cloned()
        .collect();
    if kept.len() == links.len() {
        return Err(EngineError::NotFound(format!(
            "Could not find entity for /{path}"
        )));
    }
    engine
        .store
        .update(&rec.id, |r| r.host_config.links = Some(kept))?;
    Ok(())
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    engine: &Engine,
    net_ref: &str,
    container_ref: &str,
    settings: EndpointSettings,
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let net = nets.get(net_ref)?;
    let rec = engine.store.get(container_ref)?;
    let mut cfg = Arc::unwrap_or_clone(load_config(nets, &rec));
    match parse_mode(&cfg.mode) {
        ModeRef::Host => {
            return Err(NetworkError::Forbidden(
                "container cannot be disconnected from host network or connected to host network".into(),
            )
            .into())
        }
        ModeRef::None => {
            return Err(NetworkError::Forbidden(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
            )
            .into())
        }
        ModeRef::Container(_) => {
            return Err(NetworkError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            )
            .into())
        }
        ModeRef::Network(_) => {}
    }
    if !net.is_bridge() {
        return Err(NetworkError::Forbidden(format!(
            "container cannot be disconnected from host network or connected to {} network",
            net.name
        ))
        .into());
    }
    if cfg.endpoints.iter().any(|e| e.network_id == net.id) {
        return Err(NetworkError::Forbidden(format!(
            "endpoint with name {} already exists in network {}",
            rec.name.trim_start_matches('/'),
            net.name
        ))
        .into());
    }
    let mut settings = settings;
    if let Some(l) = settings.links.take() {
        settings.links = Some(l.iter().map(|x| normalize_link(x)).collect());
    }
    check_endpoint(&net, &settings)?;
    if rec.state.running == Some(true) {
        let _ops = nets.ops.lock().await;
        let mut live = nets.live(&rec.id).unwrap_or_else(|| LiveState {
            container_id: rec.id.clone(),
            netns: Some(nets.netns_path(&rec.id)),
            ..LiveState::default()
        });
        let iface = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !live.attachments.iter().any(|a| &a.interface == n))
            .unwrap_or_else(|| "eth9".into());
        attach_one(engine, &rec, &mut live, &net, &settings, &iface, None).await?;
        publish(engine, "connect", &net, &rec.id);
    }
    cfg.endpoints.push(EndpointRequest {
        network_id: net.id.clone(),
        settings,
    });
    save_config(nets, &rec.id, &cfg)?;
    Ok(())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    engine: &Engine,
    net_ref: &str,
    container_ref: &str,
    force: bool,
) -> Result<(), EngineError> {
    let nets = &engine.networks;
    let net = nets.get(net_ref)?;
    let rec = match engine.store.get(container_ref) {
        Ok(r) => r,
        Err(e) if force => {
            // A forced disconnect of a container that is gone: nothing to undo.
            tracing::debug!(error = %e, "disconnect of an unknown container");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut cfg = Arc::unwrap_or_clone(load_config(nets, &rec));
    if let ModeRef::Host = parse_mode(&cfg.mode) {
        return Err(NetworkError::Forbidden(
            "container cannot be disconnected from host network or connected to host network"
                .into(),
        )
        .into());
    }
    if !cfg.endpoints.iter().any(|e| e.network_id == net.id) {
        return Err(NetworkError::Forbidden(format!(
            "container {} is not connected to network {}",
            rec.id, net.name
        ))
        .into());
    }
    {
        let _ops = nets.ops.lock().await;
        if let Some(mut live) = nets.live(&rec.id) {
            if let Some(pos) = live.attachments.iter().position(|a| a.network_id == net.id) {
                let a = live.attachments.remove(pos);
                if let Some(netns) = live.netns.clone() {
                    if let Err(e) = nets.teardown(&netns, &a.options).await {
                        tracing::warn!(container = %rec.id, error = %e, "netavark teardown");
                    }
                }
                nets.put_live(&live)?;
                publish(engine, "disconnect", &net, &rec.id);
            }
        }
    }
    cfg.endpoints.retain(|e| e.network_id != net.id);
    save_config(nets, &rec.id, &cfg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_docker_names_them() {
        assert_eq!(parse_mode(""), ModeRef::Network("bridge".into()));
        assert_eq!(parse_mode("default"), ModeRef::Network("bridge".into()));
        assert_eq!(parse_mode("bridge"), ModeRef::Network("bridge".into()));
        assert_eq!(parse_mode("host"), ModeRef::Host);
        assert_eq!(parse_mode("none"), ModeRef::None);
        assert_eq!(
            parse_mode("container:web"),
            ModeRef::Container("web".into())
        );
        assert_eq!(parse_mode("appnet"), ModeRef::Network("appnet".into()));
    }

    #[test]
    fn links_in_both_forms() {
        assert_eq!(normalize_link("db:database"), "db:database");
        assert_eq!(normalize_link("/db:/web/database"), "db:database");
        assert_eq!(normalize_link("db"), "db:db");
    }

    #[test]
    fn netavark_sees_isolated_networks_with_dns_on_user_ones_only() {
        let mut net = NetworkRecord {
            id: "ab".repeat(32),
            name: "appnet".into(),
            driver: "bridge".into(),
            bridge: "br-abababababab".into(),
            subnets: vec![super::super::store::SubnetConfig {
                subnet: "10.3.0.0/24".parse().unwrap(),
                gateway: Some("10.3.0.1".parse().unwrap()),
                ip_range: None,
                aux: BTreeMap::new(),
            }],
            mtu: Some(1400),
            ..NetworkRecord::default()
        };
        let nv = nv_network(&net);
        assert_eq!(nv.name, "berth-abababababab");
        assert!(nv.dns_enabled && !nv.ipv6_enabled && !nv.internal);
        let opts = nv.options.unwrap();
        assert_eq!(opts["isolate"], "true");
        assert_eq!(opts["mtu"], "1400");
        net.builtin = true;
        assert!(!nv_network(&net).dns_enabled);
    }

    #[test]
    fn aliases_cannot_add_dns_entries_of_their_own() {
        let net = NetworkRecord {
            id: "cd".repeat(32),
            name: "appnet".into(),
            ..NetworkRecord::default()
        };
        let with = |aliases: Vec<&str>, links: Vec<&str>| EndpointSettings {
            aliases: Some(aliases.into_iter().map(String::from).collect()),
            links: Some(links.into_iter().map(String::from).collect()),
            ..EndpointSettings::default()
        };
        check_endpoint(&net, &with(vec!["db", "db.example", ""], vec!["web:front"])).unwrap();
        for (aliases, links) in [
            (vec!["x\nabcdef 10.3.0.9  db"], vec![]),
            (vec!["a b"], vec![]),
            (vec!["a,b"], vec![]),
            (vec![], vec!["web:a\tb"]),
        ] {
            let e = check_endpoint(&net, &with(aliases, links)).unwrap_err();
            assert!(e.to_string().contains("invalid network alias"), "{e}");
        }
        let long = "a".repeat(256);
        assert!(check_endpoint(&net, &with(vec![&long], vec![])).is_err());
    }
}
