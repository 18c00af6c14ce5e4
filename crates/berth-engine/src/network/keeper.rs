//! A bridge network's keeper: one veth on its bridge, in a namespace of its own with
//! no address, set up by netavark like a container's (IPAM `none`, no DNS, no ports).
//!
//! netavark removes a bridge, and every firewall rule and chain of its network, when
//! the last container leaves it, and makes them all again for the next one. That is
//! most of what a container's setup and teardown cost (an `iptables` process per
//! rule, and the bridge's deletion): with one interface always on the bridge, a
//! container's teardown only takes its own veth and port rules away, and its setup
//! only checks the network's rules. So a network keeps its bridge from its first
//! container until the network is removed, as dockerd keeps its bridges.
//!
//! A keeper is recorded as a container's live state is (`keepers/<network id>.json`,
//! the namespace pinned at `keepers/<network id>.ns`), so it outlives berthd and
//! `teardown_all` undoes it with the options it was set up with. It never holds an
//! address, a host port or a DNS name, and is no endpoint of the network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::netavark::{NvOptions, NvPerNetwork};
use super::store::{self, Attachment, LiveState, NetworkRecord};
use super::Networks;

impl Networks {
    fn keeper_path(&self, network_id: &str) -> PathBuf {
        self.keepers_dir.join(format!("{network_id}.json"))
    }

    fn keeper_netns(&self, network_id: &str) -> PathBuf {
        self.keepers_dir.join(format!("{network_id}.ns"))
    }

    /// Puts a keeper on `net`'s bridge unless it has one. Called under the network
    /// lock, after a container's setup on `net` succeeded (so the bridge exists with
    /// its gateway addresses, which netavark gives a bridge only when it makes it).
    /// A keeper is a saving, not a need: a failure is logged and leaves nothing.
    pub(super) async fn ensure_keeper(&self, net: &NetworkRecord) {
        if !net.is_bridge() || self.keeper_path(&net.id).exists() {
            return;
        }
        let netns = self.keeper_netns(&net.id);
        if let Err(e) = self.backend.ensure_netns(&netns).await {
            tracing::warn!(network = %net.name, error = %e, "no namespace for the bridge's keeper");
            return;
        }
        let (setup, teardown) = keeper_options(net);
        let mut live = LiveState {
            container_id: format!("keeper-{}", net.id),
            netns: Some(netns.clone()),
            attachments: vec![Attachment {
                network_id: net.id.clone(),
                interface: "eth0".into(),
                endpoint_id: String::new(),
                addresses: vec![],
                gateways: vec![],
                mac: String::new(),
                dns_names: vec![],
                options: teardown,
                up: false,
                host_link: None,
            }],
            ports: vec![],
        };
        let path = self.keeper_path(&net.id);
        // Recorded before the setup: a crash inside it is undone by teardown_all.
        if let Err(e) = store::save_volatile(&path, &live) {
            tracing::warn!(network = %net.name, error = %e, "recording the bridge's keeper");
            let _ = self.backend.remove_netns(&netns).await;
            return;
        }
        match self.setup_watching(&netns, &setup).await {
            Ok(_) => {
                if let Some(a) = live.attachments.first_mut() {
                    a.up = true;
                }
                if let Err(e) = store::save_volatile(&path, &live) {
                    tracing::debug!(network = %net.name, error = %e, "recording the keeper up");
                }
            }
            Err(e) => {
                tracing::warn!(network = %net.name, error = %e, "setting up the bridge's keeper");
                if let Some(a) = live.attachments.first() {
                    let _ = self.teardown(&netns, &a.options).await;
                }
                let _ = self.backend.remove_netns(&netns).await;
                let _ = store::remove(&path);
            }
        }
    }

    /// Records that a container with forwarded ports was set up on `net`, so that
    /// netavark made the network's DNAT chain: the keeper's last teardown then asks
    /// netavark to delete it (see `keeper_options`). Errors are logged.
    pub(super) fn keeper_saw_ports(&self, net: &NetworkRecord) {
        let path = self.keeper_path(&net.id);
        let Some(mut live) = store::load::<LiveState>(&path) else {
            return;
        };
        let mut changed = false;
        for a in &mut live.attachments {
            if a.options.port_mappings.is_none() {
                a.options.port_mappings = Some(vec![]);
                changed = true;
            }
        }
        if changed {
            if let Err(e) = store::save_volatile(&path, &live) {
                tracing::warn!(network = %net.name, error = %e, "recording the keeper's ports");
            }
        }
    }

    /// Whether `network_id`'s keeper was set up (and so its bridge is kept, with the
    /// network's firewall rules netavark made for it).
    pub(super) fn keeper_up(&self, network_id: &str) -> bool {
        store::load::<LiveState>(&self.keeper_path(network_id))
            .is_some_and(|l| l.attachments.iter().all(|a| a.up) && !l.attachments.is_empty())
    }

    /// Takes a network's keeper away (and with it the bridge and the network's
    /// firewall rules, when no container is left on it). Under the network lock.
    /// Errors are logged.
    pub(super) async fn drop_keeper(&self, network_id: &str) {
        let path = self.keeper_path(network_id);
        let netns = self.keeper_netns(network_id);
        if let Some(live) = store::load::<LiveState>(&path) {
            if let Err(e) = self.backend.ensure_netns(&netns).await {
                tracing::warn!(network = %network_id, error = %e, "no namespace for the keeper's teardown");
            }
            for a in &live.attachments {
                if let Err(e) = self.teardown(&netns, &a.options).await {
                    tracing::warn!(network = %network_id, error = %e, "netavark teardown of the bridge's keeper");
                }
            }
        }
        if let Err(e) = self.backend.remove_netns(&netns).await {
            tracing::warn!(network = %network_id, error = %e, "removing the keeper's namespace");
        }
        if let Err(e) = store::remove(&path) {
            tracing::warn!(network = %network_id, error = %e, "forgetting the bridge's keeper");
        }
    }

    /// After a teardown that took a bridge away: netavark 1.4's complete teardown
    /// of one network also deletes `FORWARD -j NETAVARK_ISOLATION_1`, the jump
    /// every other network's isolation rules hang on, and only a `netavark setup`
    /// puts it back. Left alone, the remaining networks could reach each other
    /// until the next container start. So a throwaway endpoint (the keeper's
    /// options: no address, no DNS, no ports) is set up on one remaining bridge
    /// whose keeper is up, which makes netavark check its shared rules, then
    /// unpinned: it holds nothing outside its namespace, so the kernel takes its
    /// veth away, and this waits for that (a veth left on the bridge would keep
    /// a later complete teardown from being complete). Under the network lock;
    /// pinned in the pool's directory, whose stray pins berthd's start and
    /// `teardown_all` remove. A failure is logged (netavark undoes a setup that
    /// failed): the next setup is netavark's.
    pub(super) async fn reassert_shared_rules(&self) {
        if self.rules_checked() {
            return;
        }
        let Some(net) = self
            .list()
            .into_iter()
            .find(|n| n.is_bridge() && self.keeper_up(&n.id))
        else {
            return;
        };
        let netns = self.pool_dir.join("isolation.ns");
        if let Err(e) = self.backend.ensure_netns(&netns).await {
            tracing::warn!(error = %e, "no namespace to put netavark's shared rules back");
            return;
        }
        let (mut setup, _) = keeper_options(&net);
        setup.container_id = format!("isolation-{}", net.id);
        let link = match self.setup_watching(&netns, &setup).await {
            Ok((_, link)) => link,
            Err(e) => {
                tracing::warn!(network = %net.name, error = %e, "putting netavark's shared rules back");
                None
            }
        };
        if let Err(e) = self.backend.remove_netns(&netns).await {
            tracing::warn!(error = %e, "removing the namespace that put the shared rules back");
        }
        if let Some(link) = link {
            super::links::wait_gone(&[link]).await;
        }
    }

    /// At berthd start: keepers of networks that are gone, or whose bridge or
    /// subnets changed (the default bridge, reconfigured), are taken away.
    pub(super) async fn restore_keepers(&self) {
        let _ops = self.ops.lock().await;
        for live in store::load_all::<LiveState>(&self.keepers_dir) {
            let Some(id) = live.container_id.strip_prefix("keeper-") else {
                continue;
            };
            let current = self.get(id).ok().filter(|n| n.is_bridge()).map(|n| {
                let info = super::container::nv_network(&n);
                (info.network_interface, info.subnets)
            });
            let recorded = live.attachments.first().and_then(|a| {
                a.options
                    .network_info
                    .values()
                    .next()
                    .map(|i| (i.network_interface.clone(), i.subnets.clone()))
            });
            if current.is_none() || current != recorded {
                tracing::info!(network = %id, "taking away the keeper of a network that is gone or changed");
                self.drop_keeper(id).await;
            }
        }
    }
}

/// What the keeper of `net` is set up with, and what it is torn down with (the
/// recorded one). Set up: the network as containers see it, but no address (IPAM
/// `none`), no DNS. Torn down: one address per subnet, never used by a rule, and
/// no list of ports until a container with forwarded ports was set up on the
/// network (`keeper_saw_ports` adds an empty one): netavark 1.4 deletes a network's
/// DNAT chain only in a complete teardown of an endpoint that has an address and a
/// list of ports, the keeper's is the last, complete teardown of its network, and
/// deleting a chain that was never made fails that teardown ("No chain/target/match
/// by that name") after everything else is gone.
fn keeper_options(net: &NetworkRecord) -> (NvOptions, NvOptions) {
    let nvname = net.netavark_name();
    let info = super::container::nv_network(net);
    let options =
        |info: super::netavark::NvNetwork,
         static_ips: Option<Vec<std::net::IpAddr>>,
         port_mappings: Option<Vec<super::netavark::NvPortMapping>>| NvOptions {
            container_id: format!("keeper-{}", net.id),
            container_name: String::new(),
            networks: BTreeMap::from([(
                nvname.clone(),
                NvPerNetwork {
                    interface_name: "eth0".into(),
                    static_ips,
                    aliases: None,
                    static_mac: None,
                },
            )]),
            network_info: BTreeMap::from([(nvname.clone(), info)]),
            port_mappings,
            dns_servers: None,
        };
    let mut quiet = info;
    quiet.dns_enabled = false;
    let mut unaddressed = quiet.clone();
    unaddressed.ipam_options = Some(BTreeMap::from([("driver".into(), "none".into())]));
    let network_addresses = net.subnets.iter().map(|s| s.subnet.network()).collect();
    (
        options(unaddressed, None, None),
        options(quiet, Some(network_addresses), None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keeper_has_no_address_and_is_torn_down_as_a_complete_endpoint() {
        let net = NetworkRecord {
            id: "ef".repeat(32),
            name: "appnet".into(),
            driver: "bridge".into(),
            bridge: "br-efefefefefef".into(),
            subnets: vec![store::SubnetConfig {
                subnet: "10.4.0.0/24".parse().unwrap(),
                gateway: Some("10.4.0.1".parse().unwrap()),
                ip_range: None,
                aux: BTreeMap::new(),
            }],
            ..NetworkRecord::default()
        };
        let (setup, teardown) = keeper_options(&net);
        let info = &setup.network_info["berth-efefefefefef"];
        assert_eq!(info.ipam_options.as_ref().unwrap()["driver"], "none");
        assert!(!info.dns_enabled);
        assert_eq!(info.network_interface.as_deref(), Some("br-efefefefefef"));
        assert!(setup.networks["berth-efefefefefef"].static_ips.is_none());
        assert!(setup.port_mappings.is_none());
        let info = &teardown.network_info["berth-efefefefefef"];
        assert_eq!(info.ipam_options.as_ref().unwrap()["driver"], "host-local");
        assert!(!info.dns_enabled);
        assert_eq!(
            teardown.networks["berth-efefefefefef"].static_ips,
            Some(vec!["10.4.0.0".parse().unwrap()])
        );
        assert_eq!(teardown.port_mappings, None);
    }
}
