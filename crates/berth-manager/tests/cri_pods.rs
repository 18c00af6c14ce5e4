//! Pod sandboxes through the manager's CRI socket, on the test's own CNI network
//! (the standard plugins from /usr/lib/cni: bridge + host-local + portmap +
//! loopback on a private subnet and bridge): run, status with the pod IP, list
//! with filters, a kill -9 of the manager in between, stop and remove leaving no
//! namespace, veth or mount; host-network pods; bad requests.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cri_common;
mod daemon_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_cri_api::runtime::v1 as cri;
use berth_cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use cri_common::*;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Deletes the test's bridge when the test ends (the bridge plugin never does).
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

async fn cri_client(socket: &Path) -> RuntimeServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    RuntimeServiceClient::new(channel)
}

fn pod_config(name: &str, host_network: bool) -> cri::PodSandboxConfig {
    let mode = if host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "berth-test".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.10.10.10".to_string()],
            searches: vec!["example.test".to_string()],
            options: vec![],
        }),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        annotations: HashMap::from([("note".to_string(), "x".to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path.to_string_lossy()))
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_pod_sandboxes_on_a_cni_bridge() {
    berth_testutil::require_root!();
    let n = std::process::id() % 200 + 20;
    let bridge = format!("bcri{}", std::process::id());
    let _bridge = BridgeGuard(bridge.clone());
    let subnet = format!("10.254.{n}.0/24");
    let mut stack = start_cri_stack(&bridge, &subnet).await;
    let socket = stack.dir.path().join("cri.sock");
    let mut rt = cri_client(&socket).await;

    let st = rt
        .status(cri::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    assert!(
        conds.iter().any(|c| c.r#type == "NetworkReady" && c.status),
        "{conds:?}"
    );

    let mut a = pod_config("pod-a", false);
    a.linux.as_mut().unwrap().sysctls = HashMap::from([
        (
            "net.ipv4.ping_group_range".to_string(),
            "0 4242".to_string(),
        ),
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
    ]);
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(a),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(id.len(), 64);

    let status = |rt: &mut RuntimeServiceClient<Channel>, id: String| {
        let mut rt = rt.clone();
        async move {
            rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            })
            .await
        }
    };
    let s = status(&mut rt, id.clone()).await.unwrap().into_inner();
    let pod = s.status.clone().unwrap();
    assert_eq!(pod.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = pod.network.as_ref().unwrap().ip.clone();
    assert!(ip.starts_with(&format!("10.254.{n}.")), "{ip}");
    assert_eq!(pod.labels["app"], "pod-a");
    assert_eq!(pod.annotations["note"], "x");
    assert_eq!(pod.metadata.as_ref().unwrap().name, "pod-a");
    let info: serde_json::Value = serde_json::from_str(&s.info["info"]).unwrap();
    let netns = PathBuf::from(info["netNamespacePath"].as_str().unwrap());
    assert!(mounted(&netns));
    // The pod's namespaces: its address on eth0, its hostname.
    let addr = sh(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-o", "-4", "addr", "show", "eth0"]));
    assert!(addr.contains(&format!("{ip}/24")), "{addr}");
    let uts = netns.with_file_name("uts");
    let hostname = sh(Command::new("nsenter")
        .arg(format!("--uts={}", uts.display()))
        .arg("hostname"));
    assert_eq!(hostname, "pod-a");
    // Its sysctls, in its own namespaces.
    let ping = sh(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["cat", "/proc/sys/net/ipv4/ping_group_range"]));
    assert_eq!(ping.split_whitespace().collect::<Vec<_>>(), ["0", "4242"]);
    let shm = sh(Command::new("nsenter")
        .arg(format!("--ipc={}", netns.with_file_name("ipc").display()))
        .args(["cat", "/proc/sys/kernel/shm_rmid_forced"]));
    assert_eq!(shm, "1");
    let resolv = std::fs::read_to_string(netns.with_file_name("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.10.10.10"), "{resolv}");
    assert!(!veths_on(&bridge).is_empty());

    // The same pod again is refused; nothing is left of the refused one.
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("pod-a", false)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // Bad requests.
    for bad in [
        cri::RunPodSandboxRequest::default(),
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig::default()),
            runtime_handler: String::new(),
        },
        cri::RunPodSandboxRequest {
            config: Some(pod_config("pod-c", false)),
            runtime_handler: "no-such-handler".to_string(),
        },
        cri::RunPodSandboxRequest {
            config: Some({
                let mut c = pod_config("pod-c", false);
                c.linux.as_mut().unwrap().sysctls =
                    HashMap::from([("vm.swappiness".to_string(), "1".to_string())]);
                c
            }),
            runtime_handler: String::new(),
        },
    ] {
        let err = rt.run_pod_sandbox(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // Nothing is left of the refused ones.
    let sandboxes = netns.parent().unwrap().parent().unwrap();
    assert_eq!(std::fs::read_dir(sandboxes).unwrap().count(), 1);

    // A host-network pod: no IP, no namespace of its own.
    let host_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("pod-b", true)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let hs = status(&mut rt, host_id.clone()).await.unwrap().into_inner();
    assert_eq!(hs.status.unwrap().network.unwrap().ip, "");

    let list = |rt: &mut RuntimeServiceClient<Channel>, filter: Option<cri::PodSandboxFilter>| {
        let mut rt = rt.clone();
        async move {
            rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter })
                .await
                .unwrap()
                .into_inner()
                .items
        }
    };
    assert_eq!(list(&mut rt, None).await.len(), 2);
    let by_label = list(
        &mut rt,
        Some(cri::PodSandboxFilter {
            label_selector: HashMap::from([("app".to_string(), "pod-a".to_string())]),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].id, id);
    let by_id = list(
        &mut rt,
        Some(cri::PodSandboxFilter {
            id: id[..12].to_string(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_id.len(), 1);
    let not_ready = Some(cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue {
            state: cri::PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    });
    assert!(list(&mut rt, not_ready.clone()).await.is_empty());

    // A third pod whose namespaces vanish while the manager is down (as at a
    // reboot): it comes back not ready, and can be removed.
    let lost_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("pod-c", false)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let lost = status(&mut rt, lost_id.clone()).await.unwrap().into_inner();
    let lost_ip = lost.status.unwrap().network.unwrap().ip;
    let lost_info: serde_json::Value = serde_json::from_str(&lost.info["info"]).unwrap();
    let lost_dir = PathBuf::from(lost_info["dir"].as_str().unwrap());

    // kill -9 of the manager changes nothing.
    stack.kill_manager();
    for ns in ["net", "ipc", "uts"] {
        nix::mount::umount2(&lost_dir.join(ns), nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    stack.start_manager().await;
    let mut rt = cri_client(&socket).await;
    let again = status(&mut rt, id.clone()).await.unwrap().into_inner();
    assert_eq!(again.status, s.status);
    assert!(mounted(&netns));

    // Stop: the network and the namespaces go, the record stays NotReady.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let stopped = status(&mut rt, id.clone())
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(stopped.state, cri::PodSandboxState::SandboxNotready as i32);
    assert_eq!(stopped.network.unwrap().ip, "");
    assert!(!mounted(&netns));
    assert_eq!(veths_on(&bridge), "");
    assert_eq!(list(&mut rt, not_ready).await.len(), 2);
    // Stopping again is fine.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();

    let lost = status(&mut rt, lost_id.clone()).await.unwrap().into_inner();
    assert_eq!(
        lost.status.unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    for pod in [&id, &host_id, &lost_id] {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await
        .unwrap();
        let err = status(&mut rt, pod.to_string()).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    // Removing what is gone succeeds, as kubelet expects.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(list(&mut rt, None).await.is_empty());
    assert!(!netns.parent().unwrap().exists());
    // The address went back to the pool.
    let ipam = stack.dir.path().join("ipam").join(CNI_NETWORK);
    assert!(!ipam.join(&ip).exists());
    assert!(!ipam.join(&lost_ip).exists());
}

/// Kubernetes' own client (Go gRPC, which sends the socket path as :authority)
/// runs, inspects, stops and removes a pod, and nothing of it is left.
#[tokio::test(flavor = "multi_thread")]
async fn crictl_runs_and_removes_a_pod() {
    berth_testutil::require_root!();
    let Some(crictl) = crictl() else {
        eprintln!(
            "skipped: no crictl (CRITEST_BUILD_ONLY=1 scripts/critest.sh CRI_TOOLS_SRC builds it)"
        );
        return;
    };
    let n = (std::process::id() + 100) % 200 + 20;
    let bridge = format!("bcrc{}", std::process::id());
    let _bridge = BridgeGuard(bridge.clone());
    let stack = start_cri_stack(&bridge, &format!("10.253.{n}.0/24")).await;
    let endpoint = format!("unix://{}", stack.dir.path().join("cri.sock").display());
    let run = |args: &[&str]| {
        sh(Command::new(&crictl)
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
            ])
            .args(["--timeout", "60s"])
            .args(args))
    };
    assert!(run(&["version"]).contains("RuntimeName:  berth"));
    let pod_json = stack.dir.path().join("pod.json");
    std::fs::write(
        &pod_json,
        serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "web-1", "attempt": 1},
            "hostname": "web",
            "log_directory": stack.dir.path().join("pod-logs"),
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();
    let id = run(&["runp", pod_json.to_str().unwrap()]);
    assert_eq!(id.len(), 64, "{id}");
    assert!(run(&["pods", "-q"]).contains(&id));
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspectp", &id])).unwrap();
    assert_eq!(inspect["status"]["state"], "SANDBOX_READY");
    let ip = inspect["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with(&format!("10.253.{n}.")), "{ip}");
    let dir = stack.state.join("cri/sandboxes").join(&id);
    assert!(mounted(&dir.join("net")));
    assert!(!veths_on(&bridge).is_empty());

    run(&["stopp", &id]);
    run(&["rmp", &id]);
    assert_eq!(run(&["pods", "-q"]), "");
    assert!(!dir.exists());
    assert!(!mounted(&dir.join("net")));
    assert_eq!(veths_on(&bridge), "");
}
