//! The network endpoints and the network parts of the container endpoints, over a real
//! unix socket with the fake manager and the fake network backend behind berthd: no
//! kernel state, no root needed. The kernel side is tested in e2e_network.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_daemon;

use fake_daemon::{daemon, request, Daemon};
use serde_json::{json, Value};

async fn post(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    let r = request(&d.sock, "POST", path, Some(&body.to_string())).await;
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    };
    (r.status, v)
}

async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = request(&d.sock, "GET", path, None).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn create_net(d: &Daemon, body: Value) -> String {
    let (st, v) = post(d, "/v1.47/networks/create", body).await;
    assert_eq!(st, 201, "{v}");
    v["Id"].as_str().unwrap().to_string()
}

async fn create_container(d: &Daemon, name: &str, body: Value) -> (u16, Value) {
    post(d, &format!("/v1.47/containers/create?name={name}"), body).await
}

#[tokio::test]
async fn builtin_networks_are_listed_and_cannot_be_removed() {
    let d = daemon().await;
    let (st, v) = get(&d, "/v1.47/networks").await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    let (_, bridge) = get(&d, "/v1.47/networks/bridge").await;
    assert_eq!(bridge["Driver"], "bridge");
    assert_eq!(bridge["Scope"], "local");
    assert_eq!(
        bridge["Options"]["com.docker.network.bridge.default_bridge"],
        "true"
    );
    assert_eq!(
        bridge["Options"]["com.docker.network.bridge.name"],
        "berth0"
    );
    assert!(bridge["IPAM"]["Config"][0]["Subnet"].as_str().is_some());
    for n in ["bridge", "host", "none"] {
        let r = request(&d.sock, "DELETE", &format!("/v1.47/networks/{n}"), None).await;
        assert_eq!(r.status, 403, "{n}");
        assert!(String::from_utf8_lossy(&r.body).contains("pre-defined network"));
    }
    let (st, v) = get(
        &d,
        "/v1.47/networks?filters=%7B%22type%22%3A%5B%22custom%22%5D%7D",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn create_inspect_list_filter_remove_prune() {
    let d = daemon().await;
    let id = create_net(
        &d,
        json!({"Name": "test 01", "Labels": {"a": "b"},
               "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.77.0.0/16", "IPRange": "10.77.5.0/24",
                        "Gateway": "10.77.5.254", "AuxiliaryAddresses": {"x": "10.77.1.5"}}]}}),
    )
    .await;
    let (_, n) = get(&d, "/v1.47/networks/test%2001").await;
    assert_eq!(n["Id"], id);
    assert_eq!(n["Name"], "test 01");
    assert_eq!(n["IPAM"]["Driver"], "default");
    assert_eq!(n["IPAM"]["Options"], Value::Null);
    assert_eq!(
        n["IPAM"]["Config"],
        json!([{"Subnet": "10.77.0.0/16", "IPRange": "10.77.5.0/24", "Gateway": "10.77.5.254",
                "AuxiliaryAddresses": {"x": "10.77.1.5"}}])
    );
    assert_eq!(n["Labels"], json!({"a": "b"}));
    assert_eq!(n["Containers"], json!({}));
    // by id prefix
    let (st, _) = get(&d, &format!("/v1.47/networks/{}", &id[..8])).await;
    assert_eq!(st, 200);
    // names are unique; overlapping subnets refused
    let (st, v) = post(&d, "/v1.47/networks/create", json!({"Name": "test 01"})).await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = post(
        &d,
        "/v1.47/networks/create",
        json!({"Name": "other", "IPAM": {"Config": [{"Subnet": "10.77.3.0/24"}]}}),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("overlaps"));
    // bad input is a 400
    for bad in [
        json!({"Name": "b1", "IPAM": {"Config": [{"Subnet": "10.78.0.1/16"}]}}),
        json!({"Name": "b2", "IPAM": {"Config": [{"Subnet": "nope"}]}}),
        json!({"Name": "b3", "IPAM": {"Config": [{"Subnet": "10.79.0.0/16", "Gateway": "10.80.0.1"}]}}),
        json!({"Name": "b4", "Options": {"com.docker.network.bridge.name": "much-too-long-name"}}),
        json!({"Name": "b5", "Options": {"com.docker.network.driver.mtu": "x"}}),
        json!({"Name": "b6", "EnableIPv6": true}),
    ] {
        let (st, v) = post(&d, "/v1.47/networks/create", bad.clone()).await;
        assert_eq!(st, 400, "{bad} -> {v}");
    }
    let (st, _) = post(
        &d,
        "/v1.47/networks/create",
        json!({"Name": "h", "Driver": "host"}),
    )
    .await;
    assert_eq!(st, 403);
    // a network without a subnet gets one from the pools
    let auto = create_net(&d, json!({"Name": "auto", "Labels": {"keep": "1"}})).await;
    let (_, a) = get(&d, &format!("/v1.47/networks/{auto}")).await;
    let subnet = a["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        subnet.starts_with("172.") || subnet.starts_with("192.168."),
        "{subnet}"
    );
    assert!(a["Options"].as_object().unwrap().is_empty());
    // filters
    let f = |q: &str| format!("/v1.47/networks?filters={}", urlencode(q));
    let (_, v) = get(&d, &f(r#"{"name":["test"]}"#)).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = get(&d, &f(&format!(r#"{{"id":["{}"]}}"#, &id[..10]))).await;
    assert_eq!(v[0]["Id"], id);
    let (_, v) = get(&d, &f(r#"{"label":["a=b"]}"#)).await;
    assert_eq!(v[0]["Id"], id);
    let (_, v) = get(&d, &f(r#"{"type":["custom"]}"#)).await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (st, _) = get(&d, &f(r#"{"bogus":["x"]}"#)).await;
    assert_eq!(st, 400);
    // prune keeps what the label filter excludes
    let (st, v) = post(
        &d,
        &format!(
            "/v1.47/networks/prune?filters={}",
            urlencode(r#"{"label!":["keep"]}"#)
        ),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["NetworksDeleted"], json!(["test 01"]));
    let r = request(&d.sock, "DELETE", "/v1.47/networks/auto", None).await;
    assert_eq!(r.status, 204);
    let (st, v) = get(&d, "/v1.47/networks/auto").await;
    assert_eq!(st, 404);
    assert_eq!(v["message"], "network auto not found");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn containers_get_addresses_ports_and_settings() {
    let d = daemon().await;
    let net = create_net(
        &d,
        json!({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.91.0.0/24"}]}}),
    )
    .await;
    let (st, c) = create_container(
        &d,
        "web",
        json!({"Image": "busybox", "Cmd": ["true"], "ExposedPorts": {"80/tcp": {}},
               "HostConfig": {"NetworkMode": "appnet",
                              "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
               "NetworkingConfig": {"EndpointsConfig": {"appnet": {"Aliases": ["www"],
                   "IPAMConfig": {"IPv4Address": "10.91.0.50"}}}}}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let id = c["Id"].as_str().unwrap().to_string();
    // before start: the settings asked for, no address yet
    let (_, i) = get(&d, "/v1.47/containers/web/json").await;
    let ep = &i["NetworkSettings"]["Networks"]["appnet"];
    assert_eq!(ep["NetworkID"], net);
    assert_eq!(ep["IPAddress"], "");
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.91.0.50");
    assert_eq!(i["NetworkSettings"]["Ports"], json!({}));
    let (st, _) = post(&d, "/v1.47/containers/web/start", json!({})).await;
    assert_eq!(st, 204);
    let (_, i) = get(&d, "/v1.47/containers/web/json").await;
    let ep = &i["NetworkSettings"]["Networks"]["appnet"];
    assert_eq!(ep["IPAddress"], "10.91.0.50");
    assert_eq!(ep["IPPrefixLen"], 24);
    assert_eq!(ep["Gateway"], "10.91.0.1");
    assert_eq!(ep["MacAddress"], "02:42:0a:5b:00:32");
    // API 1.45+: the user's aliases only; every DNS name in DNSNames.
    assert_eq!(ep["Aliases"], json!(["www"]));
    assert_eq!(ep["DNSNames"], json!(["web", "www", &id[..12]]));
    // the top-level address is the default bridge's only, as dockerd's
    assert_eq!(i["NetworkSettings"]["IPAddress"], "");
    let binding = &i["NetworkSettings"]["Ports"]["80/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1");
    let port: u16 = binding["HostPort"].as_str().unwrap().parse().unwrap();
    assert!(port > 0);
    // the list shows the port and the network
    let (_, l) = get(&d, "/v1.47/containers/json").await;
    assert_eq!(
        l[0]["Ports"],
        json!([{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"}])
    );
    assert_eq!(
        l[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"],
        "10.91.0.50"
    );
    // ps filters: network, publish, expose
    for (f, n) in [
        (r#"{"network":["appnet"]}"#, 1),
        (r#"{"network":["bridge"]}"#, 0),
        (r#"{"publish":["80/tcp"]}"#, 1),
        (r#"{"publish":["81"]}"#, 0),
        (r#"{"expose":["79-81"]}"#, 1),
    ] {
        let (_, l) = get(
            &d,
            &format!("/v1.47/containers/json?filters={}", urlencode(f)),
        )
        .await;
        assert_eq!(l.as_array().unwrap().len(), n, "{f}");
    }
    // the network lists it
    let (_, n) = get(&d, "/v1.47/networks/appnet").await;
    assert_eq!(n["Containers"][&id]["IPv4Address"], "10.91.0.50/24");
    assert_eq!(n["Containers"][&id]["Name"], "web");
    // in use: no removal
    let r = request(&d.sock, "DELETE", "/v1.47/networks/appnet", None).await;
    assert_eq!(r.status, 409);
    // the same static address for a second container is refused at start
    let (st, _) = create_container(
        &d,
        "web2",
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "appnet"},
               "NetworkingConfig": {"EndpointsConfig": {"appnet": {"IPAMConfig": {"IPv4Address": "10.91.0.50"}}}}}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, v) = post(&d, "/v1.47/containers/web2/start", json!({})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already in use"));
    // a second one without an address gets the first free one
    let (st, _) = create_container(
        &d,
        "web3",
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "appnet"}}),
    )
    .await;
    assert_eq!(st, 201);
    post(&d, "/v1.47/containers/web3/start", json!({})).await;
    let (_, i3) = get(&d, "/v1.47/containers/web3/json").await;
    assert_eq!(
        i3["NetworkSettings"]["Networks"]["appnet"]["IPAddress"],
        "10.91.0.2"
    );
    // removal frees the address and the network
    for c in ["web", "web2", "web3"] {
        let r = request(
            &d.sock,
            "DELETE",
            &format!("/v1.47/containers/{c}?force=1"),
            None,
        )
        .await;
        assert_eq!(r.status, 204, "{c}");
    }
    assert!(d.engine.networks.all_live().is_empty());
    let r = request(&d.sock, "DELETE", "/v1.47/networks/appnet", None).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn create_refuses_what_dockerd_refuses() {
    let d = daemon().await;
    create_net(&d, json!({"Name": "auto"})).await;
    let cases = [
        // unknown network
        (
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "nope"}}),
            404,
        ),
        // a static address on the default bridge
        (
            json!({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"bridge":
                {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}}}),
            400,
        ),
        // a static address where the user gave no subnet
        (
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "auto"},
                   "NetworkingConfig": {"EndpointsConfig": {"auto": {"IPAMConfig": {"IPv4Address": "1.2.3.4"}}}}}),
            400,
        ),
        // aliases on the default bridge
        (
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "bridge"},
                   "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}}}),
            400,
        ),
        // a bad port
        (
            json!({"Image": "busybox", "HostConfig": {"PortBindings": {"80/icmp": [{"HostPort": "1"}]}}}),
            400,
        ),
        (
            json!({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}}),
            400,
        ),
        // a bad MAC
        (json!({"Image": "busybox", "MacAddress": "zz"}), 400),
        // another container's namespace that does not exist
        (
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "container:nope"}}),
            404,
        ),
    ];
    for (i, (body, status)) in cases.into_iter().enumerate() {
        let (st, v) = create_container(&d, &format!("bad{i}"), body.clone()).await;
        assert_eq!(st, status, "{body} -> {v}");
        // nothing left behind
        let (st, _) = get(&d, &format!("/v1.47/containers/bad{i}/json")).await;
        assert_eq!(st, 404);
    }
    // host networking with ports: a warning, as dockerd gives
    let (st, v) = create_container(
        &d,
        "hostnet",
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "80"}]}}}),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(
        v["Warnings"][0],
        "Published ports are discarded when using host network mode"
    );
    // container: with published ports is refused
    let (st, _) = create_container(
        &d,
        "shared",
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "container:hostnet", "PublishAllPorts": true}}),
    )
    .await;
    assert_eq!(st, 400);
}

/// The container list's row for `name`, listed twice so that the second answer is
/// built from rows kept since the first: what a client polling the list sees.
async fn list_row(d: &Daemon, name: &str) -> Value {
    let mut row = Value::Null;
    for _ in 0..2 {
        let (st, l) = get(d, "/v1.47/containers/json?all=1").await;
        assert_eq!(st, 200, "{l}");
        row = l
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Names"][0] == format!("/{name}"))
            .cloned()
            .unwrap_or(Value::Null);
    }
    row
}

/// The list's networks of `name` agree with inspect's: the same names, and each
/// with the same address.
async fn list_agrees_with_inspect(d: &Daemon, name: &str) {
    let row = list_row(d, name).await;
    let (_, i) = get(d, &format!("/v1.47/containers/{name}/json")).await;
    let listed = row["NetworkSettings"]["Networks"].as_object().unwrap();
    let inspected = i["NetworkSettings"]["Networks"].as_object().unwrap();
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(listed), keys(inspected), "{row}");
    for (k, v) in inspected {
        assert_eq!(listed[k]["IPAddress"], v["IPAddress"], "{k}: {row}");
        assert_eq!(listed[k]["MacAddress"], v["MacAddress"], "{k}: {row}");
    }
    assert_eq!(row["State"], i["State"]["Status"], "{row}");
}

#[tokio::test]
async fn connect_and_disconnect_running_and_created_containers() {
    let d = daemon().await;
    let net = create_net(
        &d,
        json!({"Name": "side", "IPAM": {"Config": [{"Subnet": "10.92.0.0/24"}]}}),
    )
    .await;
    create_container(&d, "app", json!({"Image": "busybox"})).await;
    list_agrees_with_inspect(&d, "app").await;
    // a created container: recorded, no address yet
    let (st, v) = post(
        &d,
        &format!("/v1.47/networks/{net}/connect"),
        json!({"Container": "app", "EndpointConfig": {"MacAddress": "02:42:ac:11:00:02", "Aliases": ["a1"]}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, i) = get(&d, "/v1.47/containers/app/json").await;
    assert_eq!(
        i["NetworkSettings"]["Networks"]["side"]["MacAddress"],
        "02:42:ac:11:00:02"
    );
    let (st, _) = post(
        &d,
        &format!("/v1.47/networks/{net}/connect"),
        json!({"Container": "app"}),
    )
    .await;
    assert_eq!(st, 403);
    list_agrees_with_inspect(&d, "app").await;
    post(&d, "/v1.47/containers/app/start", json!({})).await;
    list_agrees_with_inspect(&d, "app").await;
    let (_, i) = get(&d, "/v1.47/containers/app/json").await;
    let nets = i["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(nets.len(), 2, "{nets:?}");
    assert!(i["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .starts_with("172."));
    assert_eq!(nets["side"]["IPAddress"], "10.92.0.2");
    assert_eq!(nets["side"]["MacAddress"], "02:42:ac:11:00:02");
    let (_, n) = get(&d, "/v1.47/networks/side").await;
    assert_eq!(n["Containers"].as_object().unwrap().len(), 1);
    // disconnect while running
    let (st, _) = post(
        &d,
        "/v1.47/networks/side/disconnect",
        json!({"Container": "app"}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, n) = get(&d, "/v1.47/networks/side").await;
    assert_eq!(n["Containers"], json!({}));
    list_agrees_with_inspect(&d, "app").await;
    let (st, _) = post(
        &d,
        "/v1.47/networks/side/disconnect",
        json!({"Container": "app"}),
    )
    .await;
    assert_eq!(st, 403);
    // connect while running: an address at once
    let (st, _) = post(
        &d,
        "/v1.47/networks/side/connect",
        json!({"Container": "app", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.92.0.77"}}}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, i) = get(&d, "/v1.47/containers/app/json").await;
    assert_eq!(
        i["NetworkSettings"]["Networks"]["side"]["IPAddress"],
        "10.92.0.77"
    );
    assert_eq!(
        i["NetworkSettings"]["Networks"]["side"]["IPAMConfig"]["IPv4Address"],
        "10.92.0.77"
    );
    list_agrees_with_inspect(&d, "app").await;
    // a rename is a new record: the list's row follows it
    for (from, to) in [("app", "app2"), ("app2", "app")] {
        let path = format!("/v1.47/containers/{from}/rename?name={to}");
        assert_eq!(request(&d.sock, "POST", &path, None).await.status, 204);
        assert_eq!(list_row(&d, from).await, Value::Null);
        list_agrees_with_inspect(&d, to).await;
    }
    // host networking cannot connect
    create_container(
        &d,
        "hosty",
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "host"}}),
    )
    .await;
    let (st, _) = post(
        &d,
        "/v1.47/networks/side/connect",
        json!({"Container": "hosty"}),
    )
    .await;
    assert_eq!(st, 403);
    let r = request(&d.sock, "DELETE", "/v1.47/containers/app?force=1", None).await;
    assert_eq!(r.status, 204);
    assert!(d.engine.networks.all_live().is_empty());
}

#[tokio::test]
async fn network_events() {
    let d = daemon().await;
    let id = create_net(&d, json!({"Name": "evnet"})).await;
    let r = request(&d.sock, "DELETE", "/v1.47/networks/evnet", None).await;
    assert_eq!(r.status, 204);
    let r = request(
        &d.sock,
        "GET",
        &format!(
            "/v1.47/events?since=0&until={}&filters={}",
            chrono_now_plus(),
            urlencode(r#"{"type":["network"]}"#)
        ),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let evs: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let actions: Vec<(&str, &str)> = evs
        .iter()
        .map(|e| {
            (
                e["Action"].as_str().unwrap(),
                e["Actor"]["ID"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [("create", id.as_str()), ("destroy", id.as_str())]);
    assert_eq!(evs[0]["Actor"]["Attributes"]["name"], "evnet");
    assert_eq!(evs[0]["Actor"]["Attributes"]["type"], "bridge");
}

fn chrono_now_plus() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 2
}

/// The bare namespaces kept for `none` containers (`pool/bare-*.json`).
fn bare_pool(d: &Daemon) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(d._dir.path().join("exec/network/pool"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("bare-"))
        })
        .collect();
    out.sort();
    out
}

/// Waits (up to 10 s, polling) until the bare pool holds `n` namespaces.
async fn bare_pool_reaches(d: &Daemon, n: usize) -> Vec<std::path::PathBuf> {
    for _ in 0..1000 {
        let p = bare_pool(d);
        if p.len() == n {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    bare_pool(d)
}

#[tokio::test]
async fn none_containers_take_namespaces_made_in_advance() {
    let d = daemon().await;
    let run = |name: &'static str| {
        let d = &d;
        async move {
            let (st, v) = create_container(
                d,
                name,
                json!({"Image": "busybox", "Cmd": ["true"],
                       "HostConfig": {"NetworkMode": "none"}}),
            )
            .await;
            assert_eq!(st, 201, "{v}");
            let (st, v) = post(d, &format!("/v1.47/containers/{name}/start"), json!({})).await;
            assert_eq!(st, 204, "{v}");
            v
        }
    };
    // None are made until a `none` start wanted one; then the pool fills.
    assert!(bare_pool(&d).is_empty());
    run("first").await;
    let before = bare_pool_reaches(&d, 2).await;
    assert_eq!(before.len(), 2, "{before:?}");
    // The next takes the oldest: its pool entry is gone, another is made.
    run("second").await;
    let after = bare_pool_reaches(&d, 2).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(
        before.iter().filter(|p| after.contains(p)).count(),
        1,
        "one of {before:?} taken: {after:?}"
    );
    let (_, i) = get(&d, "/v1.47/containers/second/json").await;
    let key = i["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap_or_default();
    assert!(!key.is_empty() && std::path::Path::new(key).exists(), "{i}");
    // A restart of the same container keeps its namespace: the pool is untouched.
    let (st, _) = post(&d, "/v1.47/containers/second/stop", json!({})).await;
    assert!(st == 204 || st == 304, "{st}");
    let (st, _) = post(&d, "/v1.47/containers/second/start", json!({})).await;
    assert_eq!(st, 204);
    assert_eq!(bare_pool_reaches(&d, 2).await, after);
}

/// `Config.NetworkDisabled` (docker-py's `network_disabled`): no network but the
/// loopback, as `none`, whatever the mode says (it was taken and ignored once).
#[tokio::test]
async fn network_disabled_gets_no_network() {
    let d = daemon().await;
    let (st, _) = create_container(
        &d,
        "offline",
        json!({"Image": "busybox", "NetworkDisabled": true}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, v) = post(&d, "/v1.47/containers/offline/start", json!({})).await;
    assert!(st == 204 || st == 304, "{st} {v}");
    let (_, i) = get(&d, "/v1.47/containers/offline/json").await;
    assert_eq!(i["Config"]["NetworkDisabled"], true);
    // As `--network none` shows it.
    let nets = i["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["none"], "{i}");
    assert_eq!(i["NetworkSettings"]["IPAddress"], "");
}
