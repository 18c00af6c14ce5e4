//! CRI streaming through the manager's streaming server: Exec, Attach and
//! PortForward answer with one-time URLs, which Kubernetes' own client (crictl,
//! client-go's SPDY executor and port forwarder) upgrades to SPDY/3.1.
//!
//! The pod is made through CRI (on the test's own CNI bridge); its container, a
//! busybox httpd listening on the pod's loopback, is made through the manager's
//! own API and joined to the pod's network namespace, so that these tests need
//! nothing of the CRI container calls. Traffic goes only to 127.0.0.1 (crictl's
//! local ports, and the pod's own loopback).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cri_common;
mod daemon_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use berth_api::berth::manager::v1 as pb;
use berth_cri_api::runtime::v1 as cri;
use berth_cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use cri_common::*;
use daemon_common::*;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Deletes the test's bridge when the test ends (the bridge plugin never does).
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// Kills and reaps a child (crictl port-forward) when the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, name: &str) -> String {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}"),
                namespace: "berth-test".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .pod_sandbox_id
}

/// What the web container serves.
const PAGE: &str = "hello from the pod";
/// Where it listens, on the pod's loopback only.
const WEB_PORT: u16 = 8080;

/// How a test container's stdio is set up.
#[derive(Clone, Copy, PartialEq)]
enum Stdio3 {
    /// No stdin.
    Plain,
    /// Stdin open (for attach).
    Stdin,
    /// A terminal, with stdin.
    Tty,
}

/// A busybox container in the pod's network namespace (by the manager's own API),
/// started, running `args`.
async fn run_in_pod(
    stack: &Stack,
    c: &mut Clients,
    id: &str,
    pod: &str,
    args: &[&str],
    io: Stdio3,
) {
    let netns = stack.state.join("cri/sandboxes").join(pod).join("net");
    let mut spec: serde_json::Value = serde_json::from_slice(&stack.spec(id, args)).unwrap();
    spec["process"]["terminal"] = (io == Stdio3::Tty).into();
    let stdin = io != Stdio3::Plain;
    for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = netns.display().to_string().into();
        }
    }
    c.containers
        .create(pb::CreateContainerRequest {
            container: Some(pb::Container {
                id: id.to_string(),
                image: BUSYBOX.to_string(),
                spec: serde_json::to_vec(&spec).unwrap(),
                log_path: stack.log_path(id).to_string_lossy().into_owned(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let pid = c
        .tasks
        .create(pb::CreateTaskRequest {
            container_id: id.to_string(),
            stdin,
            spec: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    stack.track_pid(pid);
    c.tasks
        .start(pb::StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
}

fn web_args() -> Vec<String> {
    vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html && \
             exec httpd -f -p 127.0.0.1:{WEB_PORT} -h /tmp/www"
        ),
    ]
}

/// Kill a task and forget it and its container.
async fn remove(c: &mut Clients, id: &str) {
    let _ = c
        .tasks
        .kill(pb::KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal: 9,
            all: false,
        })
        .await;
    Stack::wait_delete(c, id).await;
}

/// The answer to a raw HTTP/1.1 request for `url` (no upgrade).
fn plain_request(url: &str, extra: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(EVENTUALLY)).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The CRI calls check what they are asked; a URL opens one connection, and only
/// as SPDY/3.1 with a protocol both sides speak.
#[tokio::test(flavor = "multi_thread")]
async fn streaming_requests_are_checked_and_urls_are_one_time() {
    berth_testutil::require_root!();
    let n = std::process::id() % 200 + 20;
    let bridge = format!("bcst{}", std::process::id());
    let _bridge = BridgeGuard(bridge.clone());
    let stack = start_cri_stack(&bridge, &format!("10.100.{n}.0/24")).await;
    let mut rt = cri_client(&stack.dir.path().join("cri.sock")).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;

    let err = rt
        .exec(cri::ExecRequest {
            container_id: "no-such-container".to_string(),
            cmd: vec!["true".to_string()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "no-such-pod".to_string(),
            port: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let pod = run_pod(&mut rt, "checks").await;
    let web = "streamchecks";
    let args = web_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in_pod(&stack, &mut c, web, &pod, &args, Stdio3::Plain).await;

    for bad in [
        cri::ExecRequest {
            container_id: web.to_string(),
            cmd: vec![],
            stdout: true,
            ..Default::default()
        },
        cri::ExecRequest {
            container_id: web.to_string(),
            cmd: vec!["true".to_string()],
            ..Default::default()
        },
        cri::ExecRequest {
            container_id: web.to_string(),
            cmd: vec!["true".to_string()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    ] {
        let err = rt.exec(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let exec = |rt: &mut RuntimeServiceClient<Channel>| {
        let mut rt = rt.clone();
        async move {
            rt.exec(cri::ExecRequest {
                container_id: web.to_string(),
                cmd: vec!["true".to_string()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url
        }
    };
    let url = exec(&mut rt).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("/exec/"), "{url}");
    // Not an upgrade: refused, and the URL is used up.
    assert!(plain_request(&url, "").starts_with("HTTP/1.1 400"));
    assert!(plain_request(&url, "").starts_with("HTTP/1.1 404"));
    // An upgrade without a protocol we speak.
    let url = exec(&mut rt).await;
    let answer = plain_request(
        &url,
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: channel.k8s.io\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));
    // Upgraded, then bytes that are not SPDY/3: the server closes the connection
    // and goes on serving.
    let url = exec(&mut rt).await;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(EVENTUALLY)).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
    .unwrap();
    conn.write_all(&[0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0c])
        .unwrap();
    conn.write_all(&[0xff; 12]).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"));
    // A port-forward URL is not an exec URL.
    let pf = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(plain_request(&pf.replace("/portforward/", "/exec/"), "").starts_with("HTTP/1.1 404"));
    assert!(plain_request(&pf, "").starts_with("HTTP/1.1 404"));

    remove(&mut c, web).await;
    // Exec into a container that is not running is refused at the call.
    let err = rt
        .exec(cri::ExecRequest {
            container_id: web.to_string(),
            cmd: vec!["true".to_string()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    let log = stack.manager_log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Kubernetes' own client: `crictl exec` (output, exit codes, stdin, a terminal),
/// `crictl attach`, and `crictl port-forward` to a server on the pod's loopback,
/// which the host's loopback does not reach.
#[tokio::test(flavor = "multi_thread")]
async fn crictl_exec_attach_and_port_forward() {
    berth_testutil::require_root!();
    let Some(crictl) = crictl() else {
        eprintln!(
            "skipped: no crictl (CRITEST_BUILD_ONLY=1 scripts/critest.sh CRI_TOOLS_SRC builds it)"
        );
        return;
    };
    let n = (std::process::id() + 100) % 200 + 20;
    let bridge = format!("bcsc{}", std::process::id());
    let _bridge = BridgeGuard(bridge.clone());
    let mut stack = start_cri_stack(&bridge, &format!("10.100.{n}.0/24")).await;
    let socket = stack.dir.path().join("cri.sock");
    let mut rt = cri_client(&socket).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let endpoint = format!("unix://{}", socket.display());
    let crictl_cmd = |args: &[&str]| {
        // A bound on a stream that would hang: a guard, not a timing assertion.
        let mut cmd = Command::new("timeout");
        cmd.arg("120")
            .arg(&crictl)
            .args(["--runtime-endpoint", &endpoint, "--timeout", "60s"])
            .args(args);
        cmd
    };
    let run = |args: &[&str], input: &str| {
        let mut child = crictl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let pod = run_pod(&mut rt, "stream").await;
    let web = "streamweb";
    let args = web_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in_pod(&stack, &mut c, web, &pod, &args, Stdio3::Plain).await;

    // Exec: output on both streams, in the container (its server is there).
    let (code, out, err) = run(
        &[
            "exec",
            web,
            "sh",
            "-c",
            "echo out; echo err >&2; cat /tmp/www/index.html",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{out} {err}");
    assert_eq!(out, format!("out\n{PAGE}\n"));
    assert_eq!(err, "err\n");
    // Much output, faster than it is read: all of it arrives (an exec's output
    // waits for its client; kubectl cp depends on it).
    let (code, out, err) = run(&["exec", web, "seq", "1", "1000000"], "");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), 6_888_896);
    assert!(out.ends_with("\n999999\n1000000\n"));
    // A unique prefix of the id will do, as with containerd.
    let (code, out, err) = run(&["exec", &web[..7], "echo", "by prefix"], "");
    assert_eq!((code, out.as_str()), (Some(0), "by prefix\n"), "{err}");
    // An exit status other than 0 reaches the client as kubelet sends it.
    let (code, _, err) = run(&["exec", web, "sh", "-c", "exit 3"], "");
    assert_ne!(code, Some(0));
    assert!(err.contains("exit code 3"), "{err}");
    // A command that does not exist fails, with the reason.
    let (code, _, err) = run(&["exec", web, "/no/such/program"], "");
    assert_ne!(code, Some(0), "{err}");
    // Stdin, to its end.
    let (code, out, err) = run(
        &["exec", "-i", web, "sh", "-c", "cat; echo done"],
        "piped in\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "piped in\ndone\n");
    // A terminal: crictl under script(1), which gives it one, 91x33: the size
    // reaches the process's terminal (a bounded wait: it comes on its own stream).
    let line = format!(
        "stty cols 91 rows 33; timeout {} exec -it {web} sh -c \
         'for i in $(seq 100); do s=$(stty size); [ \"$s\" = \"33 91\" ] && break; \
          sleep 0.1; done; tty; echo \"size $s\"'",
        crictl_cmd(&[])
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut script = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stdin stays open (and quiet) until it is done.
    let keep_stdin = script.stdin.take();
    let out = script.wait_with_output().unwrap();
    drop(keep_stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("size 33 91"), "{text}");

    // A client that goes away takes its process with it.
    let mut gone = ChildGuard(
        crictl_cmd(&["exec", web, "sleep", "4242"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sleeping = || run(&["exec", web, "ps"], "").1.contains("sleep 4242");
    eventually("the exec'd sleep runs", sleeping).await;
    // timeout(1) passes the SIGTERM on to crictl.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(gone.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = gone.0.wait();
    eventually("the exec'd sleep is gone", || !sleeping()).await;

    // Attach to a container's shell: its stdin in, its output out, to its end.
    let shell = "streamshell";
    run_in_pod(&stack, &mut c, shell, &pod, &["sh"], Stdio3::Stdin).await;
    let (code, out, err) = run(
        &["attach", "-i", shell],
        "echo attached; echo to-stderr >&2; exit 0\n",
    );
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(out.contains("attached"), "{out}");
    assert!(err.contains("to-stderr"), "{err}");
    Stack::wait_delete(&mut c, shell).await;

    // Attach to a container with a terminal, from a terminal of 91x33 (script(1)):
    // keystrokes in, the screen out, the size through.
    let tty_shell = "streamtty";
    run_in_pod(&stack, &mut c, tty_shell, &pod, &["sh"], Stdio3::Tty).await;
    let line = format!(
        "stty cols 91 rows 33; timeout {} attach -it {tty_shell}",
        crictl_cmd(&[])
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut script = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = script.stdin.take().unwrap();
    keys.write_all(
        b"for i in $(seq 100); do s=$(stty size); [ \"$s\" = \"33 91\" ] && break; \
          sleep 0.1; done; echo \"got $s\"; exit\n",
    )
    .unwrap();
    let out = script.wait_with_output().unwrap();
    drop(keys);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("got 33 91"), "{text}");
    Stack::wait_delete(&mut c, tty_shell).await;

    // kill -9 of the manager: the streaming server comes back (on a port of its
    // own again) and serves the same containers and pods.
    stack.kill_manager();
    stack.start_manager().await;
    let mut rt = cri_client(&socket).await;
    let (code, out, err) = run(&["exec", web, "echo", "after the restart"], "");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "after the restart\n"),
        "{err}"
    );

    // Port-forward: a local port to the pod's loopback; and to a port only the
    // host's loopback has, which must not be reached.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let host_port = host.local_addr().unwrap().port();
    let mut pf = ChildGuard(
        crictl_cmd(&[
            "port-forward",
            &pod,
            &format!(":{WEB_PORT}"),
            &format!(":{host_port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut lines = BufReader::new(pf.0.stdout.take().unwrap()).lines();
    let mut local = |remote: u16| -> u16 {
        // "Forwarding from 127.0.0.1:LOCAL -> REMOTE"
        loop {
            let l = lines.next().expect("crictl port-forward ended").unwrap();
            if l.starts_with("Forwarding from 127.0.0.1:") && l.ends_with(&format!("-> {remote}")) {
                let port = l["Forwarding from 127.0.0.1:".len()..]
                    .split(' ')
                    .next()
                    .unwrap();
                return port.parse().unwrap();
            }
        }
    };
    let to_web = local(WEB_PORT);
    let to_host = local(host_port);
    let get = |port: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(EVENTUALLY)).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    // Two connections, one after the other, on the same forwarding.
    for _ in 0..2 {
        let page = get(to_web);
        assert!(page.starts_with("HTTP/1.") && page.contains(PAGE), "{page}");
    }
    // The pod has nothing on the host listener's port: nothing comes back, and
    // the host's listener sees no connection.
    let page = get(to_host);
    assert!(!page.contains("HTTP/"), "{page}");
    assert!(host.accept().is_err(), "the host's loopback was reached");
    drop(pf);

    remove(&mut c, web).await;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    // The manager served all of it without trouble.
    let log = stack.manager_log();
    assert!(!log.contains("panicked"), "{log}");
}
