//! A pooled namespace's veth on the default bridge, made in-process over rtnetlink
//! instead of by `netavark setup`.
//!
//! Why: netavark 1.4 checks every firewall rule of the network on each setup, one
//! `iptables` process per rule: 22 of them for a plain default-bridge container,
//! about 1 ms of CPU each here. The namespace pool hid that latency from a start, not
//! its CPU: in a loop of `run --rm`, the refill behind each run was about half of the
//! machine's busy time. dockerd makes its veths in-process the same way.
//!
//! Only what netavark's setup would have made for such a container is made here, and
//! only when netavark has already made the rest: the bridge exists and is kept (see
//! `keeper`), with the network's firewall rules, so nothing on the host side but
//! the veth is new. The caller checks that (the default network, IPv4 only, not
//! internal, its keeper in place); everything else still goes through netavark.
//!
//! The result matches netavark's: a veth whose host end is on the bridge and up; its
//! other end `eth0` in the namespace with the given MAC (and MTU), IPv6 autoconf off,
//! up, with its addresses and a default route through the gateway (`proto static
//! metric 100`); loopback up. It holds nothing outside the namespace, so dropping the
//! namespace undoes it, as for a netavark-made pooled entry (see `container::unplug`).
//!
//! Must never: touch the firewall, the bridge itself, or any namespace but the one
//! it is given; leave a thread of berthd in another namespace (the namespace's part
//! runs on a thread of its own that ends with it).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The main routing table (`RT_TABLE_MAIN`).
const MAIN_TABLE: u8 = 254;
/// The metric netavark gives a container's default route.
const DEFAULT_ROUTE_METRIC: u32 = 100;

/// One veth to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainVeth {
    /// The bridge its host end goes on (it must exist).
    pub bridge: String,
    /// Its host end's name (at most 15 bytes).
    pub host_name: String,
    /// The MAC address of `eth0`.
    pub mac: [u8; 6],
    /// Both ends' MTU; the kernel's default when `None`.
    pub mtu: Option<u32>,
    /// `eth0`'s addresses.
    pub addresses: Vec<Ipv4Net>,
    /// The default route's gateway; no default route when `None`.
    pub gateway: Option<Ipv4Addr>,
}

/// Parses `02:42:0a:...` into bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Makes `v` with its `eth0` in the namespace pinned at `netns`; answers its host
/// end's interface index. Blocking. A failure leaves no veth behind.
pub fn attach(netns: &Path, v: &PlainVeth) -> io::Result<u32> {
    if v.host_name.is_empty() || v.host_name.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {:?}", v.host_name),
        ));
    }
    let ns = std::fs::File::open(netns)?;
    let bridge = index_of(&v.bridge)
        .map_err(|e| io::Error::new(e.kind(), format!("bridge {}: {e}", v.bridge)))?;
    let rt = Rtnl::open()?;
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName("eth0".into()));
    peer.attributes.push(LinkAttribute::Address(v.mac.to_vec()));
    peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    let mut host = LinkMessage::default();
    host.header.flags = LinkFlags::Up;
    host.header.change_mask = LinkFlags::Up;
    host.attributes
        .push(LinkAttribute::IfName(v.host_name.clone()));
    host.attributes.push(LinkAttribute::Controller(bridge));
    if let Some(mtu) = v.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
        host.attributes.push(LinkAttribute::Mtu(mtu));
    }
    host.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    rt.request(
        RouteNetlinkMessage::NewLink(host),
        NLM_F_CREATE | NLM_F_EXCL,
        "creating the veth",
    )?;
    let host_index = index_of(&v.host_name)?;
    let inside = v.clone();
    let configured = std::thread::Builder::new()
        .name("berth-veth".into())
        .spawn(move || -> io::Result<()> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            configure_inside(&inside)
        })
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("the veth thread panicked")))
        });
    if let Err(e) = configured {
        // Both ends go with the host one: nothing half made is left, even in a
        // namespace that outlives this call.
        let mut gone = LinkMessage::default();
        gone.header.index = host_index;
        let _ = rt.request(RouteNetlinkMessage::DelLink(gone), 0, "deleting the veth");
        return Err(e);
    }
    Ok(host_index)
}

/// In the container's namespace (this thread's): `eth0` and `lo` up, addresses, the
/// default route.
fn configure_inside(v: &PlainVeth) -> io::Result<()> {
    // Like netavark: no IPv6 autoconfiguration on the container's interface. The
    // network sysctls are those of the opening thread's namespace; absent when the
    // kernel has no IPv6.
    match std::fs::write("/proc/sys/net/ipv6/conf/eth0/autoconf", "0") {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let rt = Rtnl::open()?;
    let eth0 = index_of("eth0")?;
    let lo = index_of("lo")?;
    for index in [lo, eth0] {
        let mut up = LinkMessage::default();
        up.header.index = index;
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        rt.request(RouteNetlinkMessage::SetLink(up), 0, "setting a link up")?;
    }
    for a in &v.addresses {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = a.prefix_len();
        m.header.scope = AddressScope::Universe;
        m.header.index = eth0;
        m.attributes.push(AddressAttribute::Local(a.addr().into()));
        m.attributes
            .push(AddressAttribute::Address(a.addr().into()));
        m.attributes
            .push(AddressAttribute::Broadcast(a.broadcast()));
        rt.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            "adding an address",
        )?;
    }
    if let Some(gw) = v.gateway {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = MAIN_TABLE;
        r.header.protocol = RouteProtocol::Static;
        r.header.scope = RouteScope::Universe;
        r.header.kind = RouteType::Unicast;
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        r.attributes.push(RouteAttribute::Oif(eth0));
        r.attributes
            .push(RouteAttribute::Priority(DEFAULT_ROUTE_METRIC));
        rt.request(
            RouteNetlinkMessage::NewRoute(r),
            NLM_F_CREATE | NLM_F_EXCL,
            "adding the default route",
        )?;
    }
    Ok(())
}

/// The index of the interface `name` in this thread's network namespace.
fn index_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with a NUL"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// An rtnetlink socket of the namespace of the thread that opened it.
struct Rtnl {
    sock: Socket,
    seq: std::cell::Cell<u32>,
}

impl Rtnl {
    fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            sock,
            seq: std::cell::Cell::new(0),
        })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<()> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        loop {
            let mut rx = Vec::with_capacity(8192);
            let n = self.sock.recv(&mut rx, 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::other(format!("{what}: bad netlink answer: {e}")))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == seq {
                    if let NetlinkPayload::Error(e) = reply.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => {
                                let os = io::Error::from_raw_os_error(-code.get());
                                Err(io::Error::new(os.kind(), format!("{what}: {os}")))
                            }
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_six_hex_bytes() {
        assert_eq!(
            parse_mac("02:42:0a:c9:0a:03"),
            Some([0x02, 0x42, 0x0a, 0xc9, 0x0a, 0x03])
        );
        assert_eq!(parse_mac("02:42:0a:c9:0a"), None);
        assert_eq!(parse_mac("02:42:0a:c9:0a:03:04"), None);
        assert_eq!(parse_mac("02:42:0a:c9:0a:zz"), None);
        assert_eq!(parse_mac(""), None);
    }
}
