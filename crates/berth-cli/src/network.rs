//! Networks: `berth network create|ls|inspect|rm|prune|connect|disconnect`, `berth
//! port`, the networking flags of `run` and `create` (`--network`, `-p`, `-P`,
//! `--expose`, `--ip`, `--network-alias`, `--link`, `--mac-address`; `--dns*`,
//! `--add-host` and `--domainname` live with the other container options), as
//! docker's CLI has them.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::client::{enc, Client};
use crate::format::misc;

/// The networking flags of `run` and `create`.
#[derive(Debug, Args, Clone, Default)]
pub struct NetworkFlags {
    /// Connect a container to a network
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
}

/// One `-p` spec expanded: (container port key, host ip, host port).
type Binding = (String, String, String);

fn split_range(s: &str) -> Result<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().with_context(|| format!("invalid port {s:?}"))?;
    let b: u16 = b.parse().with_context(|| format!("invalid port {s:?}"))?;
    if b < a {
        bail!("invalid range specified for container port: {s}");
    }
    Ok((a, b))
}

/// Parses `-p` as docker's CLI does: `[ip:[hostPort]:]containerPort[/proto]`, with
/// ranges on either side (`8000-8010:80-90`, or a host range for one port).
pub fn parse_publish(spec: &str) -> Result<Vec<Binding>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    // An IPv6 host address comes in brackets.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .with_context(|| format!("invalid IPv6 address in {spec:?}"))?;
        (ip.to_string(), after.trim_start_matches(':').to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => bail!("invalid port format {spec:?}"),
        }
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        bail!("invalid IP address: {ip}");
    }
    let (host, container) = match rest.rsplit_once(':') {
        Some((h, c)) => (h.to_string(), c.to_string()),
        None => (String::new(), rest.clone()),
    };
    if container.is_empty() {
        bail!("no port specified: {spec}<empty>");
    }
    let (cs, ce) = split_range(&container)?;
    let mut out = vec![];
    if host.is_empty() {
        for p in cs..=ce {
            out.push((format!("{p}/{proto}"), ip.clone(), String::new()));
        }
        return Ok(out);
    }
    let (hs, he) = split_range(&host)?;
    if cs == ce {
        // One container port, a host port or a range to pick from.
        let hp = if hs == he {
            hs.to_string()
        } else {
            format!("{hs}-{he}")
        };
        out.push((format!("{cs}/{proto}"), ip, hp));
        return Ok(out);
    }
    if he - hs != ce - cs {
        bail!("invalid ranges specified for container and host ports: {spec}");
    }
    for i in 0..=(ce - cs) {
        out.push((
            format!("{}/{proto}", cs + i),
            ip.clone(),
            (hs + i).to_string(),
        ));
    }
    Ok(out)
}

/// `--expose 80`, `--expose 53/udp`, `--expose 8000-8010`.
pub fn parse_expose(spec: &str) -> Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (a, b) = split_range(ports)?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

impl NetworkFlags {
    /// Puts the flags into a `POST /containers/create` body.
    pub fn apply(&self, body: &mut Value) -> Result<()> {
        let mode = self
            .network
            .clone()
            .unwrap_or_else(|| "default".to_string());
        body["HostConfig"]["NetworkMode"] = json!(mode);
        let mut exposed = body["ExposedPorts"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for e in &self.expose {
            for k in parse_expose(e)? {
                exposed.insert(k, json!({}));
            }
        }
        let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in &self.publish {
            for (key, ip, hp) in parse_publish(p)? {
                exposed.insert(key.clone(), json!({}));
                bindings
                    .entry(key)
                    .or_default()
                    .push(json!({"HostIp": ip, "HostPort": hp}));
            }
        }
        if !exposed.is_empty() {
            body["ExposedPorts"] = Value::Object(exposed);
        }
        if !bindings.is_empty() {
            body["HostConfig"]["PortBindings"] = json!(bindings);
        }
        if self.publish_all {
            body["HostConfig"]["PublishAllPorts"] = json!(true);
        }
        if !self.link.is_empty() {
            body["HostConfig"]["Links"] = json!(self.link);
        }
        let mut ep = Map::new();
        if !self.network_alias.is_empty() {
            ep.insert("Aliases".into(), json!(self.network_alias));
        }
        let mut ipam = Map::new();
        if let Some(ip) = &self.ip {
            ipam.insert("IPv4Address".into(), json!(ip));
        }
        if let Some(ip) = &self.ip6 {
            ipam.insert("IPv6Address".into(), json!(ip));
        }
        if !ipam.is_empty() {
            ep.insert("IPAMConfig".into(), Value::Object(ipam));
        }
        if let Some(m) = &self.mac_address {
            ep.insert("MacAddress".into(), json!(m));
        }
        if !ep.is_empty() {
            body["NetworkingConfig"] = json!({"EndpointsConfig": {mode: Value::Object(ep)}});
        }
        Ok(())
    }
}

/// `berth network ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateOpts),
    /// List networks
    #[command(alias = "list")]
    Ls {
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(short = 'v', long)]
        verbose: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        #[arg(long)]
        alias: Vec<String>,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        ip6: Option<String>,
        #[arg(long)]
        link: Vec<String>,
        #[arg(long = "driver-opt")]
        driver_opt: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
}

/// The flags of `network create`.
#[derive(Debug, Args)]
pub struct CreateOpts {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt")]
    pub ipam_opt: Vec<String>,
    /// Control the network's scope
    #[arg(long)]
    pub scope: Option<String>,
    pub name: String,
}

fn kv(items: &[String], what: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i.as_str(), ""));
        if k.is_empty() {
            bail!("invalid {what} {i:?}");
        }
        m.insert(k.to_string(), json!(v));
    }
    Ok(m)
}

/// The IPAM `Config` of `network create`: each ip-range, gateway and aux-address
/// goes with the subnet that contains it, as docker's CLI pairs them.
pub fn ipam_config(o: &CreateOpts) -> Result<Vec<Value>> {
    let mut subnets: Vec<(IpNet, Map<String, Value>)> = vec![];
    for s in &o.subnet {
        let n: IpNet = s.parse().with_context(|| format!("invalid subnet {s}"))?;
        let mut m = Map::new();
        m.insert("Subnet".into(), json!(s));
        subnets.push((n, m));
    }
    let find = |subnets: &mut Vec<(IpNet, Map<String, Value>)>,
                ip: IpAddr,
                what: &str,
                v: &str|
     -> Result<usize> {
        subnets
            .iter()
            .position(|(n, _)| n.contains(&ip))
            .with_context(|| format!("no matching subnet for {what} {v}"))
    };
    for r in &o.ip_range {
        let n: IpNet = r.parse().with_context(|| format!("invalid ip-range {r}"))?;
        let i = find(&mut subnets, n.network(), "range", r)?;
        if subnets[i].1.insert("IPRange".into(), json!(r)).is_some() {
            bail!("cannot configure multiple ranges ({r}) on the same subnet");
        }
    }
    for g in &o.gateway {
        let ip: IpAddr = g.parse().with_context(|| format!("invalid gateway {g}"))?;
        let i = find(&mut subnets, ip, "gateway", g)?;
        if subnets[i].1.insert("Gateway".into(), json!(g)).is_some() {
            bail!("cannot configure multiple gateways ({g}) for the same subnet");
        }
    }
    for a in &o.aux_address {
        let (name, addr) = a
            .split_once('=')
            .with_context(|| format!("invalid aux-address {a:?}: want name=ip"))?;
        let ip: IpAddr = addr
            .parse()
            .with_context(|| format!("invalid aux-address {a}"))?;
        let i = find(&mut subnets, ip, "auxiliary address", addr)?;
        let aux = subnets[i]
            .1
            .entry("AuxiliaryAddresses")
            .or_insert_with(|| json!({}));
        aux[name] = json!(addr);
    }
    if subnets.is_empty() && (!o.ip_range.is_empty() || !o.gateway.is_empty()) {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    Ok(subnets.into_iter().map(|(_, m)| Value::Object(m)).collect())
}

fn filters_query(filters: &[String]) -> Result<String> {
    if filters.is_empty() {
        return Ok(String::new());
    }
    let mut m: Map<String, Value> = Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        let e = m.entry(k.to_string()).or_insert_with(|| json!({}));
        e[v] = json!(true);
    }
    Ok(format!("filters={}", enc(&Value::Object(m).to_string())))
}

/// Runs a `network` verb; the exit code.
pub async fn run(c: &Client, cmd: NetworkCommand) -> Result<i32> {
    match cmd {
        NetworkCommand::Create(o) => {
            let mut body = json!({
                "Name": o.name,
                "Driver": o.driver,
                "Internal": o.internal,
                "Attachable": o.attachable,
                "EnableIPv6": o.ipv6,
                "Options": kv(&o.opt, "option")?,
                "Labels": kv(&o.label, "label")?,
                "IPAM": {
                    "Driver": o.ipam_driver,
                    "Config": ipam_config(&o)?,
                    "Options": kv(&o.ipam_opt, "IPAM option")?,
                },
            });
            if let Some(s) = &o.scope {
                body["Scope"] = json!(s);
            }
            let v = c.json(Method::POST, "/networks/create", Some(body)).await?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
                eprintln!("{w}");
            }
            Ok(0)
        }
        NetworkCommand::Ls {
            filter,
            format,
            quiet,
            no_trunc,
        } => {
            let q = filters_query(&filter)?;
            let path = if q.is_empty() {
                "/networks".to_string()
            } else {
                format!("/networks?{q}")
            };
            let list = c.json(Method::GET, &path, None).await?;
            let mut items = list.as_array().cloned().unwrap_or_default();
            items.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            // As docker: --format, else the config's networksFormat, else the table.
            let source = match format {
                Some(f) => f,
                None if !quiet => crate::config::ConfigFile::load()
                    .ok()
                    .and_then(|cfg| cfg.format("networksFormat"))
                    .unwrap_or_else(|| "table".into()),
                None => "table".into(),
            };
            let fmt = misc::network_format(&source, quiet);
            let rows: Vec<_> = items
                .iter()
                .map(|n| misc::network_row(n, !no_trunc))
                .collect();
            print!(
                "{}",
                crate::format::write(&fmt, &misc::network_header(), &rows)?
            );
            Ok(0)
        }
        NetworkCommand::Inspect {
            format,
            verbose,
            networks,
        } => {
            let mut found = vec![];
            let mut errors = vec![];
            for n in &networks {
                let path = format!(
                    "/networks/{}{}",
                    enc(n),
                    if verbose { "?verbose=1" } else { "" }
                );
                match c.json_ordered(Method::GET, &path).await {
                    Ok(v) => found.push(v),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            crate::container::print_inspect(format.as_deref(), found, errors).await
        }
        NetworkCommand::Rm { force, networks } => {
            let mut code = 0;
            for n in &networks {
                match c
                    .json(Method::DELETE, &format!("/networks/{}", enc(n)), None)
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(crate::client::CliError::Api { status, .. }) if force && status == 404 => {}
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Prune { force, filter } => {
            if !force {
                eprint!(
                    "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
                );
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let q = filters_query(&filter)?;
            let path = if q.is_empty() {
                "/networks/prune".to_string()
            } else {
                format!("/networks/prune?{q}")
            };
            let v = c.json(Method::POST, &path, None).await?;
            let deleted: Vec<&str> = v["NetworksDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for d in deleted {
                    println!("{d}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect {
            alias,
            ip,
            ip6,
            link,
            driver_opt,
            network,
            container,
        } => {
            let mut ep = json!({});
            if !alias.is_empty() {
                ep["Aliases"] = json!(alias);
            }
            if !link.is_empty() {
                ep["Links"] = json!(link);
            }
            if ip.is_some() || ip6.is_some() {
                ep["IPAMConfig"] = json!({"IPv4Address": ip.unwrap_or_default(), "IPv6Address": ip6.unwrap_or_default()});
            }
            if !driver_opt.is_empty() {
                ep["DriverOpts"] = Value::Object(kv(&driver_opt, "driver option")?);
            }
            c.json(
                Method::POST,
                &format!("/networks/{}/connect", enc(&network)),
                Some(json!({"Container": container, "EndpointConfig": ep})),
            )
            .await?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            c.json(
                Method::POST,
                &format!("/networks/{}/disconnect", enc(&network)),
                Some(json!({"Container": container, "Force": force})),
            )
            .await?;
            Ok(0)
        }
    }
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(c: &Client, container: &str, private: Option<&str>) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/json", enc(container)),
            None,
        )
        .await?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (p, proto) = k.split_once('/').unwrap_or((k, ""));
        (p.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    let show = |b: &Value| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let hp = b["HostPort"].as_str().unwrap_or("");
        if ip.contains(':') {
            format!("[{ip}]:{hp}")
        } else {
            format!("{ip}:{hp}")
        }
    };
    match private {
        Some(p) => {
            let key = if p.contains('/') {
                p.to_string()
            } else {
                format!("{p}/tcp")
            };
            let bindings = ports
                .get(&key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if bindings.is_empty() {
                bail!("No public port '{key}' published for {}", container);
            }
            for b in &bindings {
                println!("{}", show(b));
            }
        }
        None => {
            for k in keys {
                for b in ports[k].as_array().into_iter().flatten() {
                    println!("{k} -> {}", show(b));
                }
            }
        }
    }
    Ok(0)
}

/// The `PORTS` column of `ps` from the list's `Ports`, as docker shows it:
/// `0.0.0.0:8080->80/tcp, 443/tcp`, consecutive ports joined into ranges.
pub fn ports_column(ports: &Value) -> String {
    let mut ps: Vec<(String, u64, Option<u64>, String)> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["IP"].as_str().unwrap_or("").to_string(),
                p["PrivatePort"].as_u64().unwrap_or(0),
                p["PublicPort"].as_u64(),
                p["Type"].as_str().unwrap_or("tcp").to_string(),
            )
        })
        .collect();
    ps.sort_by(|a, b| (a.2.is_none(), &a.0, &a.3, a.1).cmp(&(b.2.is_none(), &b.0, &b.3, b.1)));
    // Runs of consecutive (private, public) ports with the same address and protocol.
    // (address, first and last private port, first and last public port, protocol)
    type Run = (String, u64, u64, Option<(u64, u64)>, String);
    let mut groups: Vec<Run> = vec![];
    for (ip, private, public, proto) in ps {
        if let Some(last) = groups.last_mut() {
            let follows = last.0 == ip
                && last.4 == proto
                && last.2 + 1 == private
                && match (last.3, public) {
                    (Some((_, pe)), Some(p)) => pe + 1 == p,
                    (None, None) => true,
                    _ => false,
                };
            if follows {
                last.2 = private;
                if let (Some(r), Some(p)) = (last.3.as_mut(), public) {
                    r.1 = p;
                }
                continue;
            }
        }
        groups.push((ip, private, private, public.map(|p| (p, p)), proto));
    }
    let range = |a: u64, b: u64| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    groups
        .iter()
        .map(|(ip, ps, pe, public, proto)| match public {
            Some((a, b)) => {
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                format!("{host}:{}->{}/{proto}", range(*a, *b), range(*ps, *pe))
            }
            None => format!("{}/{proto}", range(*ps, *pe)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(spec: &str) -> Vec<Binding> {
        parse_publish(spec).unwrap()
    }

    #[test]
    fn publish_specs_parse_as_dockers_cli() {
        let b = |k: &str, ip: &str, hp: &str| (k.to_string(), ip.to_string(), hp.to_string());
        assert_eq!(p("80"), vec![b("80/tcp", "", "")]);
        assert_eq!(p("8080:80"), vec![b("80/tcp", "", "8080")]);
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            vec![b("80/udp", "127.0.0.1", "8080")]
        );
        assert_eq!(p("127.0.0.1::80"), vec![b("80/tcp", "127.0.0.1", "")]);
        assert_eq!(p("[::1]:8080:80"), vec![b("80/tcp", "::1", "8080")]);
        assert_eq!(
            p("8000-8001:80-81"),
            vec![b("80/tcp", "", "8000"), b("81/tcp", "", "8001")]
        );
        assert_eq!(p("8000-8010:80"), vec![b("80/tcp", "", "8000-8010")]);
        assert_eq!(p("80-81"), vec![b("80/tcp", "", ""), b("81/tcp", "", "")]);
        for bad in [
            "80/icmp",
            "x:80",
            "1:2:3:4",
            "8000-8002:80-81",
            "nope:1:80",
            "",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_expose("53/udp").unwrap(), ["53/udp"]);
        assert_eq!(parse_expose("80-81").unwrap(), ["80/tcp", "81/tcp"]);
    }

    #[test]
    fn flags_fill_the_create_body() {
        let f = NetworkFlags {
            network: Some("appnet".into()),
            network_alias: vec!["web".into()],
            ip: Some("10.1.0.5".into()),
            publish: vec!["127.0.0.1:8080:80".into()],
            publish_all: true,
            expose: vec!["443".into()],
            mac_address: Some("02:42:ac:11:00:02".into()),
            ..NetworkFlags::default()
        };
        let mut body = json!({"HostConfig": {}});
        f.apply(&mut body).unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], "appnet");
        assert_eq!(
            body["HostConfig"]["PortBindings"],
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]})
        );
        assert_eq!(body["ExposedPorts"], json!({"80/tcp": {}, "443/tcp": {}}));
        assert_eq!(body["HostConfig"]["PublishAllPorts"], true);
        let ep = &body["NetworkingConfig"]["EndpointsConfig"]["appnet"];
        assert_eq!(ep["Aliases"], json!(["web"]));
        assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.1.0.5");
        assert_eq!(ep["MacAddress"], "02:42:ac:11:00:02");
        let bad = NetworkFlags {
            publish: vec!["80:80:80:80".into()],
            ..NetworkFlags::default()
        };
        assert!(bad.apply(&mut json!({"HostConfig": {}})).is_err());
    }

    #[test]
    fn ipam_pairs_ranges_and_gateways_with_their_subnet() {
        let o = CreateOpts {
            driver: "bridge".into(),
            subnet: vec!["10.1.0.0/16".into(), "10.2.0.0/16".into()],
            ip_range: vec!["10.2.5.0/24".into()],
            gateway: vec!["10.1.0.254".into()],
            aux_address: vec!["a=10.2.1.5".into()],
            internal: false,
            attachable: false,
            ipv6: false,
            label: vec![],
            opt: vec![],
            ipam_driver: "default".into(),
            ipam_opt: vec![],
            scope: None,
            name: "n".into(),
        };
        let c = ipam_config(&o).unwrap();
        assert_eq!(
            c[0],
            json!({"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.254"})
        );
        assert_eq!(
            c[1],
            json!({"Subnet": "10.2.0.0/16", "IPRange": "10.2.5.0/24", "AuxiliaryAddresses": {"a": "10.2.1.5"}})
        );
    }

    #[test]
    fn ps_ports_column() {
        let ports = json!([
            {"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 8001, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8000, "Type": "tcp"},
            {"PrivatePort": 443, "Type": "tcp"},
            {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
        ]);
        assert_eq!(
            ports_column(&ports),
            "0.0.0.0:8000-8001->80-81/tcp, 127.0.0.1:5353->53/udp, 443/tcp"
        );
        assert_eq!(ports_column(&json!([])), "");
    }
}
