//! `/_ping`, `/version` and `/info`.

use std::collections::HashMap;

use bollard_stubs::models::{
    LocalNodeState, SwarmInfo, SystemInfo, SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum,
    SystemVersion, SystemVersionComponents, SystemVersionPlatform,
};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{Method, Response, StatusCode};

use super::{empty, full, json, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::router::{API_VERSION, MIN_API_VERSION};

/// What berthd reports as its version.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET|HEAD /_ping`: "OK" with the headers the docker CLI negotiates from.
pub fn ping(ctx: &Ctx) -> Response<Body> {
    let body = if ctx.method == Method::HEAD {
        empty()
    } else {
        full("OK")
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    // "1": the classic builder. BuildKit ("2") is not served, so clients must not pick it.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    if ctx.method == Method::HEAD {
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("PRETTY_NAME"), field("VERSION_ID"))
}

/// `GET /version`.
pub async fn version(engine: &Engine) -> Result<Response<Body>, EngineError> {
    let v = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "berth".to_string(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".to_string(),
            version: ENGINE_VERSION.to_string(),
            details: None,
        }]),
        version: Some(ENGINE_VERSION.to_string()),
        api_version: Some(API_VERSION.to_string()),
        min_api_version: Some(MIN_API_VERSION.to_string()),
        git_commit: Some(
            option_env!("BERTH_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_string(),
        ),
        go_version: Some(format!("rust (berth {ENGINE_VERSION})")),
        os: Some("linux".to_string()),
        arch: Some(arch().to_string()),
        kernel_version: Some(kernel_version()),
        experimental: Some(false),
        build_time: Some(String::new()),
    };
    // The generated model cannot hold Details' values; fill them in the JSON.
    let mut value = serde_json::to_value(&v)
        .map_err(|e| EngineError::io("encoding /version", std::io::Error::other(e)))?;
    let mut components = vec![serde_json::json!({
        "Name": "Engine",
        "Version": ENGINE_VERSION,
        "Details": {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Arch": arch(),
            "Os": "linux",
            "KernelVersion": kernel_version(),
            "Experimental": "false",
            "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
            "GoVersion": format!("rust (berth {ENGINE_VERSION})"),
            "BuildTime": "",
        }
    })];
    if let Ok(m) = engine.manager.version().await {
        components.push(serde_json::json!({
            "Name": "berth-manager",
            "Version": m.version,
            "Details": {"GitCommit": m.revision},
        }));
        if !m.runtime.is_empty() {
            components.push(serde_json::json!({
                "Name": "runtime",
                "Version": m.runtime,
                "Details": {},
            }));
        }
    }
    value["Components"] = serde_json::Value::Array(components);
    Ok(json(StatusCode::OK, &value))
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `GET /info`: the fields `docker info` prints.
pub async fn info(engine: &Engine) -> Result<Response<Body>, EngineError> {
    let containers = engine.store.list();
    let count = |s: &str| {
        containers
            .iter()
            .filter(|c| c.state.status.map(|x| x.to_string()).as_deref() == Some(s))
            .count() as i64
    };
    let running = count("running");
    let paused = count("paused");
    let mut warnings: Vec<String> = vec![];
    let images = match engine.manager.images_list(vec![]).await {
        Ok(i) => i.len() as i64,
        Err(e) => {
            warnings.push(format!("WARNING: {e}"));
            0
        }
    };
    let (os_name, os_version) = os_release();
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let mut runtimes = HashMap::new();
    let default_runtime = crate::lifecycle::create::DEFAULT_RUNTIME;
    for name in std::iter::once(default_runtime).chain(
        crate::lifecycle::create::OTHER_RUNTIMES
            .iter()
            .copied()
            .filter(|n| crate::lifecycle::create::on_path(n)),
    ) {
        runtimes.insert(
            name.to_string(),
            bollard_stubs::models::Runtime {
                path: Some(name.to_string()),
                ..Default::default()
            },
        );
    }
    let v2 = engine.host.cgroup_v2;
    let info = SystemInfo {
        id: Some(format!("berth:{}", engine.host.hostname)),
        containers: Some(containers.len() as i64),
        containers_running: Some(running),
        containers_paused: Some(paused),
        containers_stopped: Some(containers.len() as i64 - running - paused),
        images: Some(images),
        driver: Some("overlay2".to_string()),
        driver_status: Some(vec![vec!["Backing Filesystem".into(), "extfs".into()]]),
        docker_root_dir: Some(engine.config.data_root.to_string_lossy().into_owned()),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(!v2),
        bridge_nf_iptables: Some(false),
        debug: Some(false),
        nfd: Some(0),
        n_goroutines: Some(0),
        system_time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        logging_driver: Some("json-file".to_string()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(if v2 {
            SystemInfoCgroupVersionEnum::_2
        } else {
            SystemInfoCgroupVersionEnum::_1
        }),
        n_events_listener: Some(0),
        kernel_version: Some(kernel_version()),
        operating_system: Some(os_name),
        os_version: Some(os_version),
        os_type: Some("linux".to_string()),
        architecture: Some(std::env::consts::ARCH.to_string()),
        ncpu: Some(ncpu),
        mem_total: Some(mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".to_string()),
        name: Some(engine.host.hostname.clone()),
        labels: Some(vec![]),
        experimental_build: Some(false),
        server_version: Some(ENGINE_VERSION.to_string()),
        runtimes: Some(runtimes),
        default_runtime: Some("berth-runtime".to_string()),
        swarm: Some(SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        live_restore_enabled: Some(true),
        init_binary: Some("berth-init".to_string()),
        // Docker's spelling: every container gets the default seccomp profile (dockerd 20.10 calls it "default").
        security_options: Some(if v2 {
            vec![
                "name=seccomp,profile=default".to_string(),
                "name=cgroupns".to_string(),
            ]
        } else {
            vec!["name=seccomp,profile=default".to_string()]
        }),
        warnings: Some(warnings),
        ..Default::default()
    };
    Ok(json(StatusCode::OK, &info))
}
