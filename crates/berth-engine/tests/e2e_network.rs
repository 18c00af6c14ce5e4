//! End to end, as root, through our CLI and docker's: container networking on
//! netavark and aardvark-dns. Published ports on 127.0.0.1 through stop and start,
//! the default bridge, user networks with names and isolation, connect and
//! disconnect, `container:` sharing, daemons killed under published ports, and
//! create/start/rm cycles that must leak nothing.
//!
//! Each stack has its own bridge names and subnets (see `support::free_subnet`);
//! traffic goes only to 127.0.0.1 and to the addresses of the test's own containers.
//! The stack's guard tears down whatever berthd left set up, even when a test fails.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::{eventually, free_subnet, serial, stderr, stdout, unique_bridge, Stack};

/// Our CLI and docker's current one (the docker CLI's own parsing of -p, --network...
/// is what users run).
fn net_clis() -> Vec<PathBuf> {
    let mut v = vec![];
    if std::env::var_os("BERTH_NET_DOCKER_ONLY").is_none() {
        v.push(berth_testutil::binary("berth"));
    }
    let d = PathBuf::from("/usr/local/bin/docker");
    if d.is_file() {
        v.push(d);
    } else {
        v.extend(support::docker_clis());
    }
    v
}

fn tag(cli: &Path) -> &'static str {
    if cli.ends_with("berth") {
        "b"
    } else {
        "d"
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl -s 127.0.0.1:PORT/PATH`: the body, or None when nothing answers.
fn curl(port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A directory with an index.html, to bind-mount at /www.
fn www(stack: &Stack, text: &str) -> String {
    let d = stack.path(&format!("www-{}", text.len()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), text).unwrap();
    d.display().to_string()
}

/// What a container left in the kernel and in berthd's files, by name: its veth
/// (an interface whose master is one of `bridges`), its pinned namespace, iptables
/// rules naming its address or id, aardvark-dns lines with its id.
#[derive(Debug, Default, PartialEq, Eq)]
struct Leftovers {
    veths: Vec<String>,
    netns: Vec<String>,
    rules: Vec<String>,
    dns: Vec<String>,
    live: Vec<String>,
    /// Userland proxies (`berthd userland-proxy ...`), their command lines.
    proxies: Vec<String>,
}

/// The command lines of berthd's userland proxies that mention one of `needles`.
fn proxies(needles: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| {
            c.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| c.starts_with("berthd userland-proxy "))
        .filter(|c| needles.iter().any(|n| c.contains(n)))
        .collect();
    out.sort();
    out
}

fn leftovers(stack: &Stack, bridges: &[&str], needles: &[&str]) -> Leftovers {
    // Listed before the keepers and the pool are read: a pooled namespace being set
    // up meanwhile is then either in both lists or in neither.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut keepers = support::keeper_links(stack);
    keepers.extend(support::pool_links(stack));
    let veths = stdout(&links)
        .lines()
        .filter(|l| bridges.iter().any(|b| l.contains(&format!("master {b} "))))
        .filter(|l| !keepers.iter().any(|k| l.starts_with(&format!("{k}: "))))
        .map(str::to_string)
        .collect();
    let list = |d: &str| -> Vec<String> {
        std::fs::read_dir(stack.path(d))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let save = Command::new("iptables-save").output().unwrap();
    let rules = stdout(&save)
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect();
    let mut dns = vec![];
    for f in list("engine-run/network/aardvark-dns") {
        let text =
            std::fs::read_to_string(stack.path(&format!("engine-run/network/aardvark-dns/{f}")))
                .unwrap_or_default();
        dns.extend(
            text.lines()
                .filter(|l| needles.iter().any(|n| l.contains(n)))
                .map(str::to_string),
        );
    }
    Leftovers {
        veths,
        netns: list("engine-run/network/netns"),
        rules,
        dns,
        live: list("engine-run/network/containers"),
        proxies: proxies(needles),
    }
}

fn create_network(stack: &Stack, cli: &Path, name: &str) -> (String, String) {
    let subnet = free_subnet(24);
    let bridge = unique_bridge("bn");
    stack.ok(
        cli,
        &[
            "network",
            "create",
            "--subnet",
            &subnet.to_string(),
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            name,
        ],
    );
    (subnet.to_string(), bridge)
}

#[test]
fn published_ports_answer_on_localhost_through_stop_and_start() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let www = www(&stack, "hello from berth\n");
    for cli in net_clis() {
        let cli = cli.as_path();
        let web = format!("web-{}", tag(cli));
        let port = free_port();
        let id = stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &web,
                "-v",
                &format!("{www}:/www"),
                "-p",
                &format!("127.0.0.1:{port}:80"),
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/www",
            ],
        );
        let id = id.trim().to_string();
        let body = eventually("the published port answers", || curl(port, "index.html"));
        assert_eq!(body, "hello from berth\n");
        let ps = stack.ok(cli, &["ps", "--filter", &format!("name={web}")]);
        assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
        let p = stack.ok(cli, &["port", &web]);
        assert_eq!(p.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
        let bindings = stack.ok(
            cli,
            &["inspect", "-f", "{{json .HostConfig.PortBindings}}", &web],
        );
        let bindings: Value = serde_json::from_str(bindings.trim()).unwrap();
        assert_eq!(
            bindings,
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}]})
        );

        // A second container cannot take the same port: a clear error, nothing set up.
        let clash = format!("clash-{}", tag(cli));
        let out = stack.cli(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &clash,
                "-p",
                &format!("127.0.0.1:{port}:80"),
                "busybox",
                "sleep",
                "100",
            ],
        );
        assert_ne!(out.status.code(), Some(0));
        assert!(
            stderr(&out).contains("port is already allocated"),
            "{}",
            stderr(&out)
        );
        let clash_id = stack.inspect(&clash, "{{.Id}}");
        let live: Value = serde_json::from_str(
            &std::fs::read_to_string(
                stack.path(&format!("engine-run/network/containers/{clash_id}.json")),
            )
            .unwrap_or_else(|_| "{}".into()),
        )
        .unwrap();
        assert!(
            live["attachments"].as_array().is_none_or(|a| a.is_empty()),
            "{live}"
        );
        assert!(
            live["ports"].as_array().is_none_or(|a| a.is_empty()),
            "{live}"
        );
        stack.ok(cli, &["rm", &clash]);
        // The first one still answers.
        assert_eq!(
            curl(port, "index.html").as_deref(),
            Some("hello from berth\n")
        );

        // stop: the port stops answering; start: it answers again.
        stack.ok(cli, &["stop", "-t", "1", &web]);
        assert_eq!(curl(port, "index.html"), None, "answers after stop");
        stack.ok(cli, &["start", &web]);
        let body = eventually("the port answers after start", || curl(port, "index.html"));
        assert_eq!(body, "hello from berth\n");

        // -P: an ephemeral port for each exposed one, reported by `port`.
        let auto = format!("auto-{}", tag(cli));
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &auto,
                "-v",
                &format!("{www}:/www"),
                "-P",
                "--expose",
                "80",
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/www",
            ],
        );
        let p = stack.ok(cli, &["port", &auto, "80/tcp"]);
        let line = p.lines().next().unwrap_or_default().to_string();
        assert!(line.starts_with("0.0.0.0:"), "{p}");
        let hp: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        let body = eventually("the -P port answers on 127.0.0.1", || {
            curl(hp, "index.html")
        });
        assert_eq!(body, "hello from berth\n");
        let ps = stack.ok(cli, &["ps", "--filter", &format!("name={auto}")]);
        assert!(ps.contains(&format!("0.0.0.0:{hp}->80/tcp")), "{ps}");
        stack.ok(cli, &["rm", "-f", &auto, &web]);
        assert_eq!(curl(port, "index.html"), None);
        let left = leftovers(
            &stack,
            &[&stack.bridge],
            &[&id, &format!(":{port}"), &format!("dport {port}")],
        );
        assert_eq!(left, Leftovers::default());
    }
}

fn ip_of(stack: &Stack, name: &str, net: &str) -> String {
    // `index`: network names may hold '-', which a template field cannot.
    let ip = stack.inspect(
        name,
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty(), "{name} has no address on {net}");
    ip
}

#[test]
fn default_bridge_and_user_networks_with_names_and_isolation() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in net_clis() {
        let cli = cli.as_path();
        let t = tag(cli);
        // The default bridge: addresses from --bip, ping by address.
        let (d1, d2) = (format!("def1-{t}"), format!("def2-{t}"));
        for n in [&d1, &d2] {
            stack.ok(cli, &["run", "-d", "--name", n, "busybox", "sleep", "1000"]);
        }
        let ip1 = stack.inspect(&d1, "{{.NetworkSettings.IPAddress}}");
        let prefix = stack.bip.rsplit_once('.').unwrap().0.to_string();
        assert!(ip1.starts_with(&prefix), "{ip1} not in {}", stack.bip);
        assert_eq!(
            stack.inspect(&d1, "{{.NetworkSettings.Gateway}}"),
            stack.bip.trim_end_matches("/24")
        );
        stack.ok(cli, &["exec", &d2, "ping", "-c1", "-W5", &ip1]);
        // No names on the default bridge, as docker.
        // (Judged by its output: docker's CLI reads exec exit codes racily.)
        let out = stack.cli(cli, &["exec", &d2, "ping", "-c1", "-W1", &d1]);
        assert!(stderr(&out).contains("bad address"), "{}", stderr(&out));
        // hosts has the container's own address and name
        let hosts = stack.ok(cli, &["exec", &d1, "cat", "/etc/hosts"]);
        let hostname = stack.inspect(&d1, "{{.Config.Hostname}}");
        assert!(hosts.contains(&format!("{ip1}\t{hostname}\n")), "{hosts}");

        // A user network: names, aliases and short ids resolve; another network
        // cannot reach it.
        let (front, back) = (format!("front-{t}"), format!("back-{t}"));
        let (_, fb) = create_network(&stack, cli, &front);
        let (_, bb) = create_network(&stack, cli, &back);
        let (a, b, c) = (
            format!("alpha-{t}"),
            format!("beta-{t}"),
            format!("gamma-{t}"),
        );
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &a,
                "--network",
                &front,
                "--network-alias",
                &format!("al-{t}"),
                "busybox",
                "sleep",
                "1000",
            ],
        );
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &b,
                "--network",
                &front,
                "busybox",
                "sleep",
                "1000",
            ],
        );
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &c,
                "--network",
                &back,
                "busybox",
                "sleep",
                "1000",
            ],
        );
        let ipa = ip_of(&stack, &a, &front);
        let a_id = stack.inspect(&a, "{{.Id}}");
        for name in [a.clone(), format!("al-{t}"), a_id[..12].to_string()] {
            let out = stack.ok(cli, &["exec", &b, "nslookup", &name]);
            assert!(
                out.contains(&format!("Address: {ipa}")),
                "nslookup {name}: {out}"
            );
            stack.ok(cli, &["exec", &b, "ping", "-c1", "-W5", &name]);
        }
        let resolv = stack.ok(cli, &["exec", &b, "cat", "/etc/resolv.conf"]);
        assert!(resolv.starts_with("nameserver "), "{resolv}");
        // gamma, on the other network: no name, no route.
        let out = stack.cli(cli, &["exec", &c, "nslookup", &a]);
        assert!(!stdout(&out).contains(&ipa), "{}", stdout(&out));
        assert!(
            isolated(&stack, cli, &c, &ipa),
            "{c} reached {ipa} across networks"
        );
        // rm -f and the networks go
        stack.ok(cli, &["rm", "-f", &a, &b, &c, &d1, &d2]);
        stack.ok(cli, &["network", "rm", &front, &back]);
        let left = leftovers(&stack, &[&stack.bridge, &fb, &bb], &[&a_id, &ipa]);
        assert_eq!(left, Leftovers::default());
        for br in [&fb, &bb] {
            assert!(
                !Path::new(&format!("/sys/class/net/{br}")).exists(),
                "{br} left"
            );
        }
    }
}

/// Whether `from` cannot reach `ip`. netavark 1.4 removes its shared isolation jump
/// whenever some network's last container goes (other tests on this host may do that
/// at any moment) until the next setup puts it back, so one lucky packet is not a
/// failure: isolation holds if any of a few tries is blocked.
fn isolated(stack: &Stack, cli: &Path, from: &str, ip: &str) -> bool {
    (0..3).any(|_| {
        let out = stack.cli(cli, &["exec", from, "ping", "-c1", "-W2", ip]);
        stdout(&out).contains(" 0 packets received")
    })
}

/// Whether `FORWARD -j NETAVARK_ISOLATION_1` is in place now.
fn isolation_jump() -> bool {
    Command::new("iptables")
        .args([
            "-w",
            "-t",
            "filter",
            "-C",
            "FORWARD",
            "-j",
            "NETAVARK_ISOLATION_1",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn removing_a_network_leaves_the_others_isolated() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let cli = berth_testutil::binary("berth");
    let cli = cli.as_path();
    let (gone, left, right) = ("iso-gone", "iso-left", "iso-right");
    let (_, gb) = create_network(&stack, cli, gone);
    let (_, lb) = create_network(&stack, cli, left);
    let (_, rb) = create_network(&stack, cli, right);
    // A container once on `gone` gives it a keeper: its removal is then netavark's
    // complete teardown of that network, which also deletes the jump the other
    // networks' isolation hangs on.
    stack.ok(cli, &["run", "--rm", "--network", gone, "busybox", "true"]);
    for (name, net) in [("iso-l", left), ("iso-r", right)] {
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                net,
                "busybox",
                "sleep",
                "1000",
            ],
        );
    }
    let ipr = ip_of(&stack, "iso-r", right);
    assert!(isolated(&stack, cli, "iso-l", &ipr), "reached {ipr} before");
    stack.ok(cli, &["network", "rm", gone]);
    // No container start since: what puts the jump back is the removal itself.
    assert!(
        isolation_jump(),
        "the isolation jump is gone after network rm"
    );
    assert!(
        isolated(&stack, cli, "iso-l", &ipr),
        "iso-l reached {ipr} across networks after network rm {gone}"
    );
    assert!(
        !Path::new(&format!("/sys/class/net/{gb}")).exists(),
        "{gb} left"
    );
    assert!(
        !stack.path("engine-run/network/pool/isolation.ns").exists(),
        "the throwaway namespace is left"
    );
    stack.ok(cli, &["rm", "-f", "iso-l", "iso-r"]);
    stack.ok(cli, &["network", "rm", left, right]);
    for br in [&gb, &lb, &rb] {
        assert!(
            !Path::new(&format!("/sys/class/net/{br}")).exists(),
            "{br} left"
        );
    }
}

/// How many containers `network inspect` lists.
fn attached(stack: &Stack, cli: &Path, net: &str) -> usize {
    let out = stack.ok(
        cli,
        &["network", "inspect", "-f", "{{json .Containers}}", net],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v.as_object().map(|o| o.len()).unwrap_or(0)
}

#[test]
fn connect_disconnect_and_shared_namespaces() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in net_clis() {
        let cli = cli.as_path();
        let t = tag(cli);
        let net = format!("side-{t}");
        let (_, br) = create_network(&stack, cli, &net);
        let (app, peer) = (format!("app-{t}"), format!("peer-{t}"));
        stack.ok(
            cli,
            &["run", "-d", "--name", &app, "busybox", "sleep", "1000"],
        );
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &peer,
                "--network",
                &net,
                "busybox",
                "sleep",
                "1000",
            ],
        );
        let before = stack.ok(cli, &["exec", &app, "ip", "addr"]);
        assert!(!before.contains("eth1"), "{before}");
        stack.ok(
            cli,
            &[
                "network",
                "connect",
                "--alias",
                &format!("other-{t}"),
                &net,
                &app,
            ],
        );
        let after = stack.ok(cli, &["exec", &app, "ip", "addr"]);
        assert!(after.contains("eth1"), "{after}");
        let ip = ip_of(&stack, &app, &net);
        assert!(after.contains(&format!("inet {ip}/24")), "{after}");
        for name in [app.clone(), format!("other-{t}")] {
            let out = stack.ok(cli, &["exec", &peer, "nslookup", &name]);
            assert!(out.contains(&format!("Address: {ip}")), "{out}");
        }
        assert_eq!(attached(&stack, cli, &net), 2);
        stack.ok(cli, &["network", "disconnect", &net, &app]);
        let gone = stack.ok(cli, &["exec", &app, "ip", "addr"]);
        assert!(!gone.contains("eth1"), "{gone}");
        let out = stack.cli(cli, &["exec", &peer, "nslookup", &app]);
        assert!(!stdout(&out).contains(&ip), "{}", stdout(&out));
        assert_eq!(attached(&stack, cli, &net), 1);

        // --network container:A: the same interfaces.
        let shared = format!("shared-{t}");
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &shared,
                "--network",
                &format!("container:{app}"),
                "busybox",
                "sleep",
                "1000",
            ],
        );
        let a = stack.ok(cli, &["exec", &app, "ip", "addr"]);
        let s = stack.ok(cli, &["exec", &shared, "ip", "addr"]);
        // The IPv6 link-local address may still be `tentative` (duplicate address
        // detection) in the first read and not in the second: the same interfaces.
        let settled = |s: &str| s.replace(" tentative", "");
        assert_eq!(settled(&a), settled(&s));
        assert!(a.contains("eth0"), "{a}");
        // --network none: loopback only, and up.
        let lo = stack.ok(
            cli,
            &["run", "--rm", "--network", "none", "busybox", "ip", "addr"],
        );
        assert!(
            lo.contains("inet 127.0.0.1/8") && !lo.contains("eth0"),
            "{lo}"
        );
        // --network host: the host's interfaces.
        let host = stack.ok(
            cli,
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "busybox",
                "cat",
                "/proc/net/dev",
            ],
        );
        assert!(host.contains(&stack.bridge), "{host}");

        stack.ok(cli, &["rm", "-f", &shared, &app, &peer]);
        stack.ok(cli, &["network", "rm", &net]);
        let left = leftovers(&stack, &[&stack.bridge, &br], &[&ip]);
        assert_eq!(left, Leftovers::default());
    }
}

#[test]
fn dns_hosts_and_container_options() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in net_clis() {
        let cli = cli.as_path();
        let t = tag(cli);
        let up = format!("upstream-{t}");
        stack.ok(
            cli,
            &[
                "run", "-d", "--name", &up, "-e", "FOO=1", "--expose", "80", "busybox", "sleep",
                "1000",
            ],
        );
        let up_ip = stack.inspect(&up, "{{.NetworkSettings.IPAddress}}");
        let gw = stack.bip.trim_end_matches("/24").to_string();
        let out = stack.ok(
            cli,
            &[
                "run",
                "--rm",
                "--hostname",
                "box",
                "--domainname",
                "example.org",
                "--dns",
                "192.0.2.53",
                "--dns-search",
                "corp.example",
                "--dns-option",
                "ndots:3",
                "--add-host",
                "db:192.0.2.10",
                "--add-host",
                "gw:host-gateway",
                "--link",
                &format!("{up}:upper"),
                "--mac-address",
                "02:42:0a:0b:0c:0d",
                // Written by the runtime at create: eth0 must exist by then.
                "--sysctl",
                "net.ipv4.conf.eth0.rp_filter=2",
                "busybox",
                "sh",
                "-c",
                "cat /etc/hosts /etc/resolv.conf; hostname; ip link show eth0; \
                 echo rp_filter=$(cat /proc/sys/net/ipv4/conf/eth0/rp_filter); env",
            ],
        );
        assert!(out.contains("\nrp_filter=2\n"), "{out}");
        assert!(out.contains("\tbox.example.org box\n"), "{out}");
        assert!(out.contains("192.0.2.10\tdb\n"), "{out}");
        assert!(out.contains(&format!("{gw}\tgw\n")), "{out}");
        assert!(out.contains(&format!("{up_ip}\tupper ")), "{out}");
        assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
        assert!(out.contains("search corp.example\n"), "{out}");
        assert!(out.contains("options ndots:3\n"), "{out}");
        assert!(out.contains("\nbox\n"), "{out}");
        assert!(out.contains("link/ether 02:42:0a:0b:0c:0d"), "{out}");
        // Legacy links' environment.
        assert!(out.contains("\nUPPER_NAME=/"), "{out}");
        assert!(out.contains("\nUPPER_ENV_FOO=1\n"), "{out}");
        assert!(
            out.contains(&format!("\nUPPER_PORT_80_TCP=tcp://{up_ip}:80\n")),
            "{out}"
        );
        // A link to a container that does not run is refused.
        let out = stack.cli(
            cli,
            &["run", "--rm", "--link", "nope-nope:x", "busybox", "true"],
        );
        assert_ne!(out.status.code(), Some(0));
        // Network stats come from the container's namespace.
        let st = stack.ok(cli, &["exec", &up, "ping", "-c2", "-W5", &gw]);
        assert!(st.contains("2 packets received"), "{st}");
        stack.ok(cli, &["rm", "-f", &up]);
    }
    // stats over the API: networks.eth0
    stack.ok(
        &berth_testutil::binary("berth"),
        &["run", "-d", "--name", "statty", "busybox", "sleep", "100"],
    );
    let (status, body) = stack.http(
        "GET",
        "/v1.47/containers/statty/stats?stream=0&one-shot=1",
        b"",
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["networks"]["eth0"]["rx_bytes"].as_u64().is_some(), "{v}");
    assert!(v["networks"]["lo"].is_null());
    stack.ok(&berth_testutil::binary("berth"), &["rm", "-f", "statty"]);
}

#[test]
fn daemons_killed_under_published_ports() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let www = www(&stack, "still here\n");
    let berth = berth_testutil::binary("berth");
    let net = "crashnet";
    let (_, br) = create_network(&stack, &berth, net);
    // One port on loopback (a userland proxy serves it) and one on every address
    // (netavark's DNAT, reached here through 127.0.0.1 as well).
    let port = free_port();
    let all_port = free_port();
    let id = stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "survivor",
            "--network",
            net,
            "-v",
            &format!("{www}:/www"),
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "-p",
            &format!("{all_port}:80"),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    let id = id.trim().to_string();
    eventually("answers", || curl(port, "index.html"));
    eventually("answers on every address", || curl(all_port, "index.html"));
    let ip = ip_of(&stack, "survivor", net);
    let before = leftovers(&stack, &[&br], &[&id, &ip]);
    assert_eq!(before.veths.len(), 1, "{before:?}");
    assert_eq!(before.netns, vec![id.clone()]);
    assert!(
        !before.proxies.is_empty() && !before.rules.is_empty() && !before.dns.is_empty(),
        "{before:?}"
    );
    // A second one, made by docker's CLI on the default bridge, with a restart
    // policy: its run ends while the daemons are down, and the restart policy must
    // bring it (and its published port) back once they are up.
    let docker = net_clis().into_iter().find(|c| tag(c) == "d");
    let phoenix_port = free_port();
    let phoenix = docker.as_ref().map(|d| {
        stack.ok(
            d,
            &[
                "run",
                "-d",
                "--name",
                "phoenix",
                "--restart",
                "always",
                "-v",
                &format!("{www}:/www"),
                "-p",
                &format!("127.0.0.1:{phoenix_port}:80"),
                "busybox",
                "sh",
                "-c",
                "httpd -f -p 80 -h /www; exit 3",
            ],
        );
        eventually("phoenix answers", || curl(phoenix_port, "index.html"));
        let pid: i32 = stack.inspect("phoenix", "{{.State.Pid}}").parse().unwrap();
        (stack.inspect("phoenix", "{{.Id}}"), pid)
    });
    stack.kill_berthd();
    stack.kill_manager();
    for p in [port, all_port] {
        assert_eq!(
            curl(p, "index.html").as_deref(),
            Some("still here\n"),
            "while the daemons are down"
        );
    }
    if let Some((_, pid)) = phoenix {
        // Its init is the shell; httpd is the shell's only child.
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let httpd = children.split_whitespace().next().expect("httpd runs");
        assert!(Command::new("kill")
            .args(["-9", httpd])
            .status()
            .unwrap()
            .success());
        eventually("phoenix's run ends", || {
            support::proc_stat(pid)
                .is_none_or(|(_, st)| st == "Z")
                .then_some(())
        });
    }
    stack.start_manager();
    stack.start_berthd();
    eventually("the stack answers again", || {
        let out = stack.cli(&berth, &["ps", "-q"]);
        (out.status.code() == Some(0) && stdout(&out).contains(&id[..12])).then_some(())
    });
    for p in [port, all_port] {
        assert_eq!(
            curl(p, "index.html").as_deref(),
            Some("still here\n"),
            "after the restart"
        );
    }
    if let Some((ph_id, _)) = &phoenix {
        let body = eventually("the restart policy brings phoenix back", || {
            curl(phoenix_port, "index.html")
        });
        assert_eq!(body, "still here\n");
        assert_ne!(stack.inspect("phoenix", "{{.RestartCount}}"), "0");
        let left = leftovers(&stack, &[&stack.bridge], &[ph_id]);
        assert_eq!(left.veths.len(), 1, "{left:?}");
        stack.ok(&berth, &["rm", "-f", "phoenix"]);
        assert_eq!(curl(phoenix_port, "index.html"), None);
        let left = leftovers(
            &stack,
            &[&stack.bridge],
            &[ph_id, &format!("dport {phoenix_port}")],
        );
        // (The survivor's namespace and state stay: only phoenix's must go.)
        assert!(
            left.veths.is_empty()
                && left.rules.is_empty()
                && left.dns.is_empty()
                && !left.netns.contains(ph_id)
                && !left.live.contains(&format!("{ph_id}.json")),
            "{left:?}"
        );
    }
    // The port is still held: another container cannot take it.
    let out = stack.cli(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "thief",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "busybox",
            "true",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    stack.ok(&berth, &["rm", "-f", "thief"]);
    assert_eq!(leftovers(&stack, &[&br], &[&id, &ip]), before);
    stack.ok(&berth, &["rm", "-f", "survivor"]);
    assert_eq!(curl(port, "index.html"), None);
    assert_eq!(curl(all_port, "index.html"), None);
    assert_eq!(
        leftovers(
            &stack,
            &[&br],
            &[
                &id,
                &ip,
                &format!("dport {all_port}"),
                &format!("127.0.0.1:{port} ")
            ]
        ),
        Leftovers::default()
    );
    stack.ok(&berth, &["network", "rm", net]);
}

#[test]
fn create_start_rm_cycles_leak_nothing() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let (subnet, br) = create_network(&stack, &berth, "cycles");
    let cycles: usize = std::env::var("BERTH_NET_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let net_id = stack.ok(&berth, &["network", "inspect", "-f", "{{.Id}}", "cycles"]);
    let nv_name = format!("berth-{}", &net_id.trim()[..12]);
    let body = json!({
        "Image": "busybox", "Cmd": ["sleep", "100"],
        "HostConfig": {"NetworkMode": "cycles",
                       "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""},
                                                   {"HostIp": "", "HostPort": ""}]}},
    })
    .to_string();
    // Four clients at once, as a busy host has them; each container publishes two
    // ephemeral ports: one on loopback (a userland proxy) and one on every address
    // (netavark's DNAT).
    let workers = 4;
    std::thread::scope(|s| {
        for w in 0..workers {
            let (stack, body) = (&stack, &body);
            s.spawn(move || {
                for i in (w..cycles).step_by(workers) {
                    let (st, v) = stack.http(
                        "POST",
                        &format!("/v1.47/containers/create?name=cyc{i}"),
                        body.as_bytes(),
                    );
                    assert_eq!(st, 201, "create {i}: {v}");
                    let id = serde_json::from_str::<Value>(&v).unwrap()["Id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let (st, v) = stack.http("POST", &format!("/v1.47/containers/{id}/start"), b"");
                    assert_eq!(st, 204, "start {i}: {v}");
                    let (st, v) =
                        stack.http("DELETE", &format!("/v1.47/containers/{id}?force=1"), b"");
                    assert_eq!(st, 204, "rm {i}: {v}");
                }
            });
        }
    });
    // Nothing of the containers is left: no veth on the bridge (its keeper's
    // aside), no rule naming the network's netavark name (the containers' DNAT
    // rules do), no DNS line, no namespace or live state, no proxy towards the
    // network's addresses.
    let to_net = format!(
        "--to {}.",
        subnet.rsplit_once('.').map_or(subnet.as_str(), |(p, _)| p)
    );
    let left = leftovers(&stack, &[&br], &[&nv_name, &to_net]);
    assert_eq!(left, Leftovers::default());
    // Every address went back: the next container gets the first one again.
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "last",
            "--network",
            "cycles",
            "busybox",
            "sleep",
            "100",
        ],
    );
    let first = subnet.replace(".0/24", ".2");
    assert_eq!(ip_of(&stack, "last", "cycles"), first);
    stack.ok(&berth, &["rm", "-f", "last"]);
    stack.ok(&berth, &["network", "rm", "cycles"]);
    // With the network, its bridge, its keeper and every rule naming its subnet.
    let left = leftovers(
        &stack,
        &[&br],
        &[subnet.trim_end_matches(".0/24"), &nv_name],
    );
    assert_eq!(left, Leftovers::default());
    assert!(!Path::new(&format!("/sys/class/net/{br}")).exists());
    assert!(support::keeper_links(&stack).is_empty());
}

/// The network follows the task, not the container: a run that ends on its own
/// gives back its veth and host port at once; each restart of the restart policy
/// sets the network up again (the port answers after it, one veth, not one per run);
/// `run --rm` whose start fails leaves nothing behind.
#[test]
fn exits_restarts_and_failed_starts_release_the_network() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let www = www(&stack, "back again\n");
    for cli in net_clis() {
        let cli = cli.as_path();
        let t = tag(cli);
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:80");

        // A run that ends by itself: torn down when its task is gone, before any rm.
        let quick = format!("quick-{t}");
        stack.ok(
            cli,
            &["run", "--name", &quick, "-p", &publish, "busybox", "true"],
        );
        let quick_id = stack.inspect(&quick, "{{.Id}}");
        let left = leftovers(&stack, &[&stack.bridge], &[&quick_id]);
        assert!(left.veths.is_empty() && left.dns.is_empty(), "{left:?}");
        let live: Value = serde_json::from_str(
            &std::fs::read_to_string(
                stack.path(&format!("engine-run/network/containers/{quick_id}.json")),
            )
            .unwrap_or_else(|_| "{}".into()),
        )
        .unwrap();
        assert!(
            live["attachments"].as_array().is_none_or(|a| a.is_empty())
                && live["ports"].as_array().is_none_or(|a| a.is_empty()),
            "{live}"
        );

        // Its port is free again: a container with a restart policy takes it. The
        // shell outlives httpd, so killing httpd ends the run with code 3.
        let web = format!("phoenix-{t}");
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &web,
                "--restart",
                "on-failure",
                "-v",
                &format!("{www}:/www"),
                "-p",
                &publish,
                "busybox",
                "sh",
                "-c",
                "httpd -f -p 80 -h /www; exit 3",
            ],
        );
        let web_id = stack.inspect(&web, "{{.Id}}");
        eventually("the port answers", || curl(port, "index.html"));
        for round in 1..=2 {
            let out = stack.cli(cli, &["exec", &web, "killall", "httpd"]);
            assert!(out.status.success() || cli.ends_with("docker"), "{out:?}");
            eventually("the restart policy starts it again", || {
                let n: i64 = stack
                    .inspect(&web, "{{.RestartCount}}")
                    .parse()
                    .unwrap_or(0);
                (n >= round && stack.inspect(&web, "{{.State.Running}}") == "true").then_some(())
            });
            let body = eventually("the port answers after the restart", || {
                curl(port, "index.html")
            });
            assert_eq!(body, "back again\n");
            let left = leftovers(&stack, &[&stack.bridge], &[&web_id]);
            assert_eq!(left.veths.len(), 1, "round {round}: {left:?}");
            assert!(left.netns.contains(&web_id), "round {round}: {left:?}");
        }
        // While it runs, the port is its own.
        let thief = format!("thief-{t}");
        let out = stack.cli(
            cli,
            &[
                "run", "-d", "--name", &thief, "-p", &publish, "busybox", "true",
            ],
        );
        assert_ne!(out.status.code(), Some(0));
        stack.ok(cli, &["rm", "-f", &thief, &web, &quick]);
        assert_eq!(curl(port, "index.html"), None);

        // run --rm whose start fails: the container goes, and its network with it.
        let out = stack.cli(
            cli,
            &["run", "--rm", "-p", &publish, "busybox", "/no/such/command"],
        );
        assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
        eventually("the failed container is removed", || {
            let ps = stack.ok(cli, &["ps", "-aq"]);
            ps.trim().is_empty().then_some(())
        });
        let left = leftovers(
            &stack,
            &[&stack.bridge],
            &[&web_id, &quick_id, &format!("dport {port}")],
        );
        assert_eq!(left, Leftovers::default());
    }
}

/// The namespaces berthd sets up in advance on the default bridge (its pool), as
/// `pool/<name>.json` says: ready ones (set up), by address.
fn pooled(stack: &Stack) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(stack.path("engine-run/network/pool"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
    {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap_or_default())
            .unwrap_or_default();
        let a = &v["attachments"][0];
        if a["up"] == json!(true) {
            let addr = a["addresses"][0].as_str().unwrap_or_default();
            out.push(addr.split('/').next().unwrap_or_default().to_string());
        }
    }
    out.sort();
    out
}

/// Whether the pool directory holds nothing (no record, no pinned namespace).
fn pool_empty(stack: &Stack) -> bool {
    std::fs::read_dir(stack.path("engine-run/network/pool"))
        .into_iter()
        .flatten()
        .flatten()
        .next()
        .is_none()
}

/// A container that needs nothing of its own on the default bridge takes a
/// namespace berthd set up in advance, and sees what a setup of its own would have
/// given it (address, MAC, route, hosts); another is made at once. The pool is
/// made only once wanted, dropped when berthd restarts after a crash (nothing
/// left of it), and dropped at a clean stop. Exits from the default bridge drop the
/// namespace instead of running netavark, and leave nothing behind either.
#[test]
fn default_bridge_namespaces_made_in_advance() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let cli = berth_testutil::binary("berth");
    let cli = cli.as_path();
    let bridge = stack.bridge.clone();
    // Nothing is made before a container wants it, and one with a port netavark
    // forwards does not (a port on loopback would: a proxy serves it).
    let port = free_port();
    stack.ok(
        cli,
        &[
            "run",
            "--rm",
            "-p",
            &format!("{port}:80"),
            "busybox",
            "true",
        ],
    );
    assert!(pooled(&stack).is_empty());

    stack.ok(
        cli,
        &["run", "-d", "--name", "first", "busybox", "sleep", "1000"],
    );
    let ready = eventually("the pool is made", || {
        let p = pooled(&stack);
        (p.len() == 2).then_some(p)
    });
    stack.ok(
        cli,
        &["run", "-d", "--name", "second", "busybox", "sleep", "1000"],
    );
    let ip = stack.inspect("second", "{{.NetworkSettings.IPAddress}}");
    assert!(
        ready.contains(&ip),
        "{ip} is not one of the pool's {ready:?}"
    );
    // As a setup of its own would have made it.
    let mac = stack.inspect("second", "{{.NetworkSettings.MacAddress}}");
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    assert_eq!(
        mac,
        format!(
            "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3]
        )
    );
    let addr = stack.ok(
        cli,
        &["exec", "second", "ip", "-o", "-4", "addr", "show", "eth0"],
    );
    assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    let route = stack.ok(cli, &["exec", "second", "ip", "route"]);
    assert!(
        route.contains(&format!(
            "default via {}",
            stack.bip.trim_end_matches("/24")
        )),
        "{route}"
    );
    let hosts = stack.ok(cli, &["exec", "second", "cat", "/etc/hosts"]);
    let hostname = stack.inspect("second", "{{.Config.Hostname}}");
    assert!(hosts.contains(&format!("{ip}\t{hostname}\n")), "{hosts}");
    let first_ip = stack.inspect("first", "{{.NetworkSettings.IPAddress}}");
    stack.ok(cli, &["exec", "second", "ping", "-c1", "-W5", &first_ip]);
    // The pool's first entry was set up by netavark, the next ones (the bridge kept
    // by then) in-process (see network::veth): a namespace like the other all the
    // same, its veth named after the entry.
    let ours = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 15 && n.starts_with("veth"))
        .count();
    assert!(ours >= 1, "no veth made in-process on {bridge}");
    stack.ok(
        cli,
        &["run", "-d", "--name", "third", "busybox", "sleep", "1000"],
    );
    let third_ip = stack.inspect("third", "{{.NetworkSettings.IPAddress}}");
    assert!(
        ready.contains(&third_ip),
        "{third_ip} is not one of the pool's {ready:?}"
    );
    let seen = |name: &str, ip: &str| {
        let mac = stack.inspect(name, "{{.NetworkSettings.MacAddress}}");
        stack
            .ok(
                cli,
                &[
                    "exec",
                    name,
                    "sh",
                    "-c",
                    "ip route; ip -o -4 addr show eth0; cat /sys/class/net/eth0/address \
                     /sys/class/net/eth0/mtu /sys/class/net/eth0/operstate \
                     /sys/class/net/lo/operstate /proc/sys/net/ipv6/conf/eth0/autoconf",
                ],
            )
            .replace(ip, "IP")
            .replace(&mac, "MAC")
    };
    assert_eq!(seen("third", &third_ip), seen("second", &ip));
    stack.ok(cli, &["exec", "third", "ping", "-c1", "-W5", &first_ip]);
    let again = eventually("the pool is made again", || {
        let p = pooled(&stack);
        (p.len() == 2).then_some(p)
    });
    assert!(
        !again.contains(&ip) && !again.contains(&first_ip) && !again.contains(&third_ip),
        "{again:?}"
    );

    // A run that ends: its veth and namespace go at its exit, before any rm (beside
    // the exit's report: without published ports nothing waits for it).
    stack.ok(cli, &["run", "--name", "quick", "busybox", "true"]);
    let quick = stack.inspect("quick", "{{.Id}}");
    let dropped = support::eventually_or_none(|| {
        let left = leftovers(&stack, &[&bridge], &[&quick]);
        (left.veths.len() == 3 && !left.netns.contains(&quick)).then_some(())
    });
    assert!(
        dropped.is_some(),
        "the exit left {:?}",
        leftovers(&stack, &[&bridge], &[&quick])
    );
    // ... and it starts again (from the pool) with an address of its own.
    stack.ok(cli, &["start", "-a", "quick"]);
    stack.ok(cli, &["rm", "-f", "first", "second", "third", "quick"]);
    let left = leftovers(&stack, &[&bridge], &[&ip, &first_ip, &third_ip, &quick]);
    assert_eq!(left, Leftovers::default());

    // A crash: the next berthd drops what the last one made in advance.
    stack.kill_berthd();
    stack.start_berthd();
    assert!(pool_empty(&stack), "the pool outlived a restart");
    let left = support::network_leftovers(&stack, &bridge);
    assert!(left.is_empty(), "left after the restart: {left:?}");

    // A clean stop drops it too.
    stack.ok(cli, &["run", "--rm", "busybox", "true"]);
    eventually("the pool is made", || {
        (pooled(&stack).len() == 2).then_some(())
    });
    let pid = stack.berthd_pid();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    eventually("berthd stops", || {
        support::proc_stat(pid as i32)
            .is_none_or(|(_, state)| state == "Z")
            .then_some(())
    });
    stack.kill_berthd();
    assert!(pool_empty(&stack), "the pool outlived a clean stop");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let keepers = support::keeper_links(&stack);
    let on_bridge: Vec<_> = stdout(&links)
        .lines()
        .filter(|l| l.contains(&format!("master {bridge} ")))
        .filter(|l| !keepers.iter().any(|k| l.starts_with(&format!("{k}: "))))
        .map(str::to_string)
        .collect();
    assert!(on_bridge.is_empty(), "{on_bridge:?}");
}
