//! Container endpoints: create, list, inspect, start, stop, kill, wait, remove, rename,
//! resize. Each parses its request and calls the store, the spec generator and the
//! manager.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateResponse, ContainerInspectResponse, ContainerState,
    ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHostConfig, ContainerWaitResponse,
    DriverData, HostConfig, ImageConfig, MountPoint, MountPointTypeEnum, NetworkingConfig,
};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::{channel_body, json, read_json, status_only, Body, Ctx};
use crate::engine::{ContainerEvent, Engine};
use crate::error::EngineError;
use crate::manager::{self, SnapshotInfo};
use crate::spec::{self, etc, SpecInput};
use crate::store::{short_id, ContainerRecord};

/// The body of `POST /containers/create`: a Config with HostConfig and
/// NetworkingConfig beside its fields.
#[derive(Debug, Default, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: Option<NetworkingConfig>,
}

/// RFC 3339 with nanoseconds, as dockerd writes times.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Takes the image's `config` object out of an image config JSON.
pub fn image_config(raw: &[u8]) -> Result<ImageConfig, EngineError> {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        config: Option<ImageConfig>,
    }
    let outer: Outer = serde_json::from_slice(raw)
        .map_err(|e| EngineError::io("reading the image config", std::io::Error::other(e)))?;
    Ok(outer.config.unwrap_or_default())
}

/// Maps the manager's "not found" for an image to dockerd's "No such image: X".
async fn get_image(engine: &Engine, reference: &str) -> Result<manager::Image, EngineError> {
    match engine.manager.images_get(reference).await {
        Err(EngineError::Manager {
            code: tonic::Code::NotFound,
            ..
        }) => Err(EngineError::NoSuchImage(reference.to_string())),
        other => other,
    }
}

fn validate(
    engine: &Engine,
    id: &str,
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<(), EngineError> {
    // Everything except the user (which needs the image's files) is checked now, so
    // a bad HostConfig is a 400 at create time as with dockerd.
    let mut c = config.clone();
    c.user = None;
    let mut h = hc.clone();
    h.group_add = None;
    struct NoVolumes;
    impl spec::VolumeResolver for NoVolumes {
        fn resolve(&self, name: &str) -> Result<PathBuf, spec::SpecError> {
            // Start would refuse a bad name: create refuses it first.
            super::volumes::check_name(name).map_err(|e| spec::SpecError::Invalid(e.message()))?;
            Ok(PathBuf::from("/").join(name))
        }
    }
    spec::build_spec(&SpecInput {
        id,
        config: &c,
        host_config: &h,
        image: &ImageConfig::default(),
        rootfs: Path::new("/nonexistent"),
        container_dir: &engine.store.container_dir(id),
        init_path: &engine.config.init_path,
        volumes: &NoVolumes,
        host: &engine.host,
    })?;
    Ok(())
}

/// `POST /containers/create?name=`.
pub async fn create(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: CreateBody = read_json(req.into_body()).await?;
    let resp = create_container(engine, ctx.query.get("name"), body).await?;
    Ok(json(StatusCode::CREATED, &resp))
}

/// Creates a container from a create body (`POST /containers/create`, and the
/// builder's RUN steps): the engine's record, its /etc files and the manager's
/// container with its snapshot.
pub async fn create_container(
    engine: &Arc<Engine>,
    name: Option<&str>,
    body: CreateBody,
) -> Result<ContainerCreateResponse, EngineError> {
    let networking = body.networking_config;
    let mut config = body.config;
    let hc = body.host_config.unwrap_or_default();
    let image_ref = config.image.clone().unwrap_or_default();
    if image_ref.is_empty() {
        return Err(EngineError::BadParameter("no image specified".to_string()));
    }
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => engine.store.generate_name()?,
    };
    if !crate::store::valid_name(&name) {
        return Err(crate::store::StoreError::InvalidName(name).into());
    }
    if engine.store.name_taken(&name) {
        let id = engine.store.resolve(&name)?;
        return Err(crate::store::StoreError::NameConflict {
            name: format!("/{}", name.trim_start_matches('/')),
            id,
        }
        .into());
    }
    let image = get_image(engine, &image_ref).await?;
    spec::merge_image_config(&mut config, &image_config(&image.config)?);
    let id = crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    if config.hostname.as_deref().unwrap_or("").is_empty() {
        config.hostname = Some(spec::hostname(&id, &config, &hc, &engine.host));
    }
    validate(engine, &id, &config, &hc)?;
    let args = spec::command(&config)?;
    let dir = engine.store.container_dir(&id);
    let log_path = dir.join(format!("{id}-json.log"));
    let rec = ContainerRecord {
        id: id.clone(),
        name,
        created: now_rfc3339(),
        path: args[0].clone(),
        args: args[1..].to_vec(),
        config: config.clone(),
        host_config: hc.clone(),
        state: ContainerState {
            status: Some(ContainerStateStatusEnum::CREATED),
            running: Some(false),
            paused: Some(false),
            restarting: Some(false),
            oom_killed: Some(false),
            dead: Some(false),
            pid: Some(0),
            exit_code: Some(0),
            error: Some(String::new()),
            started_at: Some("0001-01-01T00:00:00Z".to_string()),
            finished_at: Some("0001-01-01T00:00:00Z".to_string()),
            health: None,
        },
        image: image.id.clone(),
        log_path: log_path.to_string_lossy().into_owned(),
        snapshot_key: id.clone(),
        ..ContainerRecord::default()
    };
    engine.store.create(rec)?;
    let result = async {
        let warnings = crate::network::container::container_created(
            engine,
            &id,
            &config,
            &hc,
            networking.as_ref(),
        )?;
        write_etc_files(engine, &id, &config, &hc)?;
        engine
            .manager
            .containers_create(manager::Container {
                id: id.clone(),
                image: image.id.clone(),
                snapshot_key: String::new(),
                labels: config.labels.clone().unwrap_or_default(),
                log_path: log_path.to_string_lossy().into_owned(),
                created_at: now_rfc3339(),
                ..manager::Container::default()
            })
            .await
            .map(|c| (c, warnings))
    }
    .await;
    let warnings = match result {
        Ok((c, warnings)) => {
            if c.snapshot_key != id {
                engine
                    .store
                    .update(&id, |r| r.snapshot_key = c.snapshot_key.clone())?;
            }
            warnings
        }
        Err(e) => {
            let _ = engine.store.remove(&id);
            return Err(e);
        }
    };
    Ok(ContainerCreateResponse { id, warnings })
}

fn write_etc_files(
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
    let content = etc::EtcContent {
        hostname,
        hosts: if host_mode {
            read("/etc/hosts")
        } else {
            etc::hosts_file(&crate::network::etc::resolve_extra_hosts(
                hc.extra_hosts.as_deref().unwrap_or(&[]),
                engine.networks.host_gateway(),
            ))
        },
        resolv_conf: if host_mode {
            read("/etc/resolv.conf")
        } else {
            etc::resolv_conf(
                &read("/etc/resolv.conf"),
                hc.dns.as_deref().unwrap_or(&[]),
                hc.dns_search.as_deref().unwrap_or(&[]),
                hc.dns_options.as_deref().unwrap_or(&[]),
            )
        },
    };
    etc::write(&dir, &content)
        .map_err(|e| EngineError::io(format!("writing /etc files in {}", dir.display()), e))?;
    Ok(())
}

/// The directory to read /etc/passwd from before the rootfs is mounted: the first of
/// the snapshot's upper and lower directories that has one.
pub fn passwd_root(info: &SnapshotInfo) -> PathBuf {
    std::iter::once(info.upper_dir.as_str())
        .chain(info.lower_dir.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .find(|d| d.join("etc/passwd").is_file())
        .unwrap_or_else(|| PathBuf::from(&info.merged_dir))
}

fn state_str(rec: &ContainerRecord) -> String {
    rec.state
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "created".to_string())
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Docker's human durations ("5 minutes", "About an hour").
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".to_string(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// The `Status` column of `docker ps`.
pub fn status_text(rec: &ContainerRecord) -> String {
    let now = Utc::now();
    match rec.state.status {
        Some(ContainerStateStatusEnum::RUNNING) | Some(ContainerStateStatusEnum::PAUSED) => {
            let up = parse_time(rec.state.started_at.as_deref())
                .map(|t| human_duration(now - t))
                .unwrap_or_default();
            if rec.state.status == Some(ContainerStateStatusEnum::PAUSED) {
                format!("Up {up} (Paused)")
            } else {
                format!(
                    "Up {up}{}",
                    crate::health::status_suffix(rec.state.health.as_ref())
                )
            }
        }
        Some(ContainerStateStatusEnum::EXITED) => {
            let ago = parse_time(rec.state.finished_at.as_deref())
                .map(|t| human_duration(now - t))
                .unwrap_or_default();
            format!("Exited ({}) {ago} ago", rec.state.exit_code.unwrap_or(0))
        }
        Some(ContainerStateStatusEnum::REMOVING) => "Removal In Progress".to_string(),
        Some(ContainerStateStatusEnum::DEAD) => "Dead".to_string(),
        _ => "Created".to_string(),
    }
}

fn mount_points(rec: &ContainerRecord, engine: &Engine) -> Vec<MountPoint> {
    let vols = engine.volumes();
    let mut out = vec![];
    for b in rec.host_config.binds.as_deref().unwrap_or(&[]) {
        struct Peek<'a>(&'a crate::engine::LocalVolumes);
        impl spec::VolumeResolver for Peek<'_> {
            fn resolve(&self, name: &str) -> Result<PathBuf, spec::SpecError> {
                Ok(self.0.root.join(name).join("_data"))
            }
        }
        if let Ok(m) = spec::mounts::parse_bind(b, &Peek(&vols)) {
            out.push(MountPoint {
                typ: Some(if m.kind == "volume" {
                    MountPointTypeEnum::VOLUME
                } else {
                    MountPointTypeEnum::BIND
                }),
                name: m.name.clone(),
                source: Some(m.source.to_string_lossy().into_owned()),
                destination: Some(m.destination.clone()),
                driver: m.name.as_ref().map(|_| "local".to_string()),
                mode: Some(String::new()),
                rw: Some(!m.read_only),
                propagation: Some(m.propagation.clone()),
            });
        }
    }
    out
}

fn summary(rec: &ContainerRecord, engine: &Engine) -> ContainerSummary {
    let mut command = vec![rec.path.clone()];
    command.extend(rec.args.iter().cloned());
    ContainerSummary {
        id: Some(rec.id.clone()),
        names: Some(vec![rec.name.clone()]),
        image: rec.config.image.clone(),
        image_id: Some(rec.image.clone()),
        command: Some(command.join(" ")),
        created: parse_time(Some(&rec.created)).map(|t| t.timestamp()),
        ports: Some(crate::network::view::summary_ports(engine, rec)),
        network_settings: Some(crate::network::view::summary_networks(engine, rec)),
        labels: Some(rec.config.labels.clone().unwrap_or_default()),
        state: Some(state_str(rec)),
        status: Some(status_text(rec)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(
                rec.host_config
                    .network_mode
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "default".to_string()),
            ),
            annotations: None,
        }),
        mounts: Some(mount_points(rec, engine)),
        ..ContainerSummary::default()
    }
}

fn matches_filter(rec: &ContainerRecord, key: &str, value: &str) -> Result<bool, EngineError> {
    Ok(match key {
        "status" => state_str(rec) == value,
        "name" => rec
            .name
            .trim_start_matches('/')
            .contains(value.trim_start_matches('/')),
        "id" => rec.id.starts_with(value),
        "label" => {
            let labels = rec.config.labels.clone().unwrap_or_default();
            match value.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(value),
            }
        }
        "ancestor" => {
            let img = rec.config.image.clone().unwrap_or_default();
            img == value
                || img == format!("{value}:latest")
                || rec.image == value
                || rec
                    .image
                    .trim_start_matches("sha256:")
                    .starts_with(value.trim_start_matches("sha256:"))
        }
        "health" => crate::health::filter_word(rec.state.health.as_ref()) == value,
        "exited" => {
            rec.state.status == Some(ContainerStateStatusEnum::EXITED)
                && rec.state.exit_code.map(|c| c.to_string()).as_deref() == Some(value)
        }
        other => {
            return Err(EngineError::BadParameter(format!(
                "invalid filter '{other}'"
            )))
        }
    })
}

/// `GET /containers/json`.
pub fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let all = ctx.query.bool("all");
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0);
    let filters = ctx.query.filters()?;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in filters {
        by_key.entry(k).or_default().push(v);
    }
    let mut out = vec![];
    for rec in engine.store.list() {
        let running = rec.state.running == Some(true);
        if !all && limit.is_none() && !running && !by_key.contains_key("status") {
            continue;
        }
        let mut keep = true;
        for (k, vals) in &by_key {
            // Values of one key are ORed, keys are ANDed, as in dockerd.
            let mut any = false;
            for v in vals {
                any |= match crate::network::view::matches_filter(engine, &rec, k, v) {
                    Some(m) => m,
                    None => matches_filter(&rec, k, v)?,
                };
            }
            keep &= any;
        }
        if keep {
            out.push(summary(&rec, engine));
        }
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(json(StatusCode::OK, &out))
}

/// `GET /containers/{id}/json`.
pub async fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let graph = match engine.manager.snapshots_info(&rec.snapshot_key).await {
        Ok(info) => DriverData {
            name: "overlay2".to_string(),
            data: HashMap::from([
                ("LowerDir".to_string(), info.lower_dir),
                ("UpperDir".to_string(), info.upper_dir),
                ("WorkDir".to_string(), info.work_dir),
                ("MergedDir".to_string(), info.merged_dir),
            ]),
        },
        Err(e) => {
            tracing::debug!(container = %rec.id, error = %e, "no snapshot info");
            DriverData {
                name: "overlay2".to_string(),
                data: HashMap::new(),
            }
        }
    };
    let dir = engine.store.container_dir(&rec.id);
    let files = etc::EtcFiles::in_dir(&dir);
    let resp = ContainerInspectResponse {
        id: Some(rec.id.clone()),
        created: Some(rec.created.clone()),
        path: Some(rec.path.clone()),
        args: Some(rec.args.clone()),
        state: Some(rec.state.clone()),
        image: Some(rec.image.clone()),
        resolv_conf_path: Some(files.resolv_conf.to_string_lossy().into_owned()),
        hostname_path: Some(files.hostname.to_string_lossy().into_owned()),
        hosts_path: Some(files.hosts.to_string_lossy().into_owned()),
        log_path: Some(rec.log_path.clone()),
        name: Some(rec.name.clone()),
        restart_count: Some(rec.restart_count),
        driver: Some("overlay2".to_string()),
        platform: Some("linux".to_string()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: if rec.exec_ids.is_empty() {
            None
        } else {
            Some(rec.exec_ids.clone())
        },
        host_config: Some({
            // Every container logs to json-file; docker-py's `containers.run` reads it.
            let mut hc = rec.host_config.clone();
            if hc
                .log_config
                .as_ref()
                .and_then(|l| l.typ.as_ref())
                .is_none()
            {
                hc.log_config = Some(bollard_stubs::models::HostConfigLogConfig {
                    typ: Some("json-file".to_string()),
                    config: Some(HashMap::new()),
                });
            }
            hc
        }),
        graph_driver: Some(graph),
        mounts: Some(mount_points(&rec, engine)),
        config: Some(rec.config.clone()),
        ..ContainerInspectResponse::default()
    };
    let mut v = serde_json::to_value(&resp)
        .map_err(|e| EngineError::io("encoding the container", std::io::Error::other(e)))?;
    v["NetworkSettings"] = crate::network::view::network_settings_json(engine, &rec);
    Ok(json(StatusCode::OK, &v))
}

/// `POST /containers/{id}/start`.
pub async fn start(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    if rec.state.running == Some(true) {
        return Ok(status_only(StatusCode::NOT_MODIFIED));
    }
    // A start by the user re-arms the restart policy a stop disarmed.
    engine
        .store
        .update(&rec.id, |r| r.has_been_manually_stopped = false)?;
    start_container(engine, &rec).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Builds the spec of a container that is not running, creates and starts its task,
/// records it running and watches it (start and restart).
pub async fn start_container(
    engine: &Arc<Engine>,
    rec: &ContainerRecord,
) -> Result<(), EngineError> {
    let id = rec.id.clone();
    let info = engine.manager.snapshots_info(&rec.snapshot_key).await?;
    let rootfs = passwd_root(&info);
    let vols = engine.volumes();
    let mut spec = spec::build_spec(&SpecInput {
        id: &id,
        config: &rec.config,
        host_config: &rec.host_config,
        image: &ImageConfig::default(),
        rootfs: &rootfs,
        container_dir: &engine.store.container_dir(&id),
        init_path: &engine.config.init_path,
        volumes: &vols,
        host: &engine.host,
    })?;
    crate::network::container::apply_to_spec(engine, rec, &mut spec)?;
    let spec_json = serde_json::to_vec(&spec)
        .map_err(|e| EngineError::io("encoding the OCI spec", std::io::Error::other(e)))?;
    engine
        .manager
        .containers_update(
            manager::Container {
                id: id.clone(),
                spec: spec_json,
                ..manager::Container::default()
            },
            vec!["spec".to_string()],
        )
        .await?;
    // A stopped task from an earlier run must go before a new one is created.
    let _ = engine.manager.tasks_delete(&id, true).await;
    let started = async {
        crate::network::container::container_start(engine, rec).await?;
        engine
            .manager
            .tasks_create(&id, rec.config.open_stdin.unwrap_or(false))
            .await?;
        engine.manager.tasks_start(&id, "").await
    }
    .await;
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            let msg = e.message();
            let _ = engine.store.update(&id, |r| {
                r.state.error = Some(msg.clone());
                r.state.exit_code = Some(128);
            });
            let _ = engine.manager.tasks_delete(&id, true).await;
            crate::network::container::container_stopped(engine, &id).await;
            // dockerd removes an AutoRemove container whose start failed: `run --rm`
            // waits for that removal.
            if rec.host_config.auto_remove == Some(true) {
                if let Err(re) = engine.remove_container(&id).await {
                    tracing::warn!(container = %id, error = %re, "auto-remove after a failed start");
                }
            }
            return Err(e);
        }
    };
    engine.store.update(&id, |r| {
        let st = &mut r.state;
        st.status = Some(ContainerStateStatusEnum::RUNNING);
        st.running = Some(true);
        st.paused = Some(false);
        st.pid = Some(i64::from(pid));
        st.exit_code = Some(0);
        st.error = Some(String::new());
        st.oom_killed = Some(false);
        st.started_at = Some(now_rfc3339());
        st.finished_at = Some("0001-01-01T00:00:00Z".to_string());
        r.has_been_started_before = true;
    })?;
    engine.spawn_monitor(id.clone());
    crate::health::spawn(engine, &id);
    Ok(())
}

/// Parses a signal as Docker accepts it: "9", "KILL", "SIGKILL".
pub fn parse_signal(s: &str) -> Result<u32, EngineError> {
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > 64 {
            return Err(EngineError::BadParameter(format!("Invalid signal: {s}")));
        }
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32 as u32)
        .map_err(|_| EngineError::BadParameter(format!("Invalid signal: {s}")))
}

pub async fn wait_exit(
    rx: &mut broadcast::Receiver<ContainerEvent>,
    id: &str,
    timeout: Duration,
) -> bool {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ContainerEvent::Exited { id: x, .. })
                | Ok(ContainerEvent::Removed { id: x })
                    if x == id =>
                {
                    return true
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
}

/// `POST /containers/{id}/stop?t=&signal=`.
pub async fn stop(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    if rec.state.running != Some(true) {
        // Between two runs of a restart policy: `stop` cancels the next one.
        engine
            .store
            .update(&rec.id, |r| r.has_been_manually_stopped = true)?;
        return Ok(status_only(StatusCode::NOT_MODIFIED));
    }
    stop_container(engine, &rec, ctx).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Stops a running container as `stop` does: its stop signal (or `signal=`), then
/// SIGKILL to all its processes after `t` seconds (or its StopTimeout, or 10).
pub async fn stop_container(
    engine: &Arc<Engine>,
    rec: &ContainerRecord,
    ctx: &Ctx,
) -> Result<(), EngineError> {
    let signal = match ctx.query.get("signal").filter(|s| !s.is_empty()) {
        Some(s) => parse_signal(s)?,
        None => parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?,
    };
    let t = ctx
        .query
        .int("t")?
        .or(rec.config.stop_timeout)
        .unwrap_or(10);
    // A frozen container cannot act on its stop signal: thaw it first, as dockerd does.
    if rec.state.paused == Some(true) {
        engine.manager.tasks_resume(&rec.id).await?;
        engine.store.update(&rec.id, |r| {
            r.state.paused = Some(false);
            r.state.status = Some(ContainerStateStatusEnum::RUNNING);
        })?;
    }
    engine
        .store
        .update(&rec.id, |r| r.has_been_manually_stopped = true)?;
    let mut rx = engine.events.subscribe();
    engine
        .manager
        .tasks_kill(&rec.id, "", signal, false)
        .await?;
    let graceful = if t < 0 {
        wait_exit(&mut rx, &rec.id, Duration::MAX / 4).await
    } else {
        wait_exit(&mut rx, &rec.id, Duration::from_secs(t as u64)).await
    };
    if !graceful {
        engine.manager.tasks_kill(&rec.id, "", 9, true).await?;
        wait_exit(&mut rx, &rec.id, Duration::from_secs(30)).await;
    }
    Ok(())
}

/// `POST /containers/{id}/kill?signal=`.
pub async fn kill(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let signal = parse_signal(
        ctx.query
            .get("signal")
            .filter(|s| !s.is_empty())
            .unwrap_or("SIGKILL"),
    )?;
    if rec.state.running != Some(true) {
        return Err(EngineError::Conflict(format!(
            "cannot kill container: {}: container {} is not running",
            ctx.param(),
            rec.id
        )));
    }
    if signal == 9 || signal == 15 {
        engine
            .store
            .update(&rec.id, |r| r.has_been_manually_stopped = true)?;
    }
    engine
        .manager
        .tasks_kill(&rec.id, "", signal, false)
        .await?;
    thaw_after_kill(engine, &rec).await;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// A frozen process gets its signal only once thawed: after signalling a paused
/// container, resume it, as dockerd does.
async fn thaw_after_kill(engine: &Engine, rec: &ContainerRecord) {
    if rec.state.paused != Some(true) {
        return;
    }
    match engine.manager.tasks_resume(&rec.id).await {
        Ok(()) => {
            let _ = engine.store.update(&rec.id, |r| {
                r.state.paused = Some(false);
                if r.state.running == Some(true) {
                    r.state.status = Some(ContainerStateStatusEnum::RUNNING);
                }
            });
        }
        Err(e) => tracing::warn!(container = %rec.id, error = %e, "cannot unpause after kill"),
    }
}

/// `POST /containers/{id}/wait?condition=`. The headers go out at once; the body when
/// the condition is met (the docker CLI sends this before start).
pub async fn wait(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let condition = ctx
        .query
        .get("condition")
        .unwrap_or("not-running")
        .to_string();
    if !matches!(
        condition.as_str(),
        "not-running" | "next-exit" | "removed" | ""
    ) {
        return Err(EngineError::BadParameter(format!(
            "invalid condition: {condition:?}"
        )));
    }
    let mut rx = engine.events.subscribe();
    let rec = engine.store.get(ctx.param())?;
    let id = rec.id.clone();
    let (tx, body_rx) = mpsc::channel::<Bytes>(1);
    let running = rec.state.running == Some(true);
    let now_code = rec.state.exit_code.unwrap_or(0);
    tokio::spawn(async move {
        let code = if !running && matches!(condition.as_str(), "not-running" | "") {
            Some(now_code)
        } else {
            let mut result = None;
            let mut exit_code = None;
            loop {
                match rx.recv().await {
                    Ok(ContainerEvent::Exited { id: x, code }) if x == id => {
                        exit_code = Some(code);
                        if condition != "removed" {
                            result = Some(code);
                            break;
                        }
                    }
                    Ok(ContainerEvent::Removed { id: x }) if x == id => {
                        result = Some(exit_code.unwrap_or(now_code));
                        break;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            result
        };
        if let Some(code) = code {
            let resp = ContainerWaitResponse {
                status_code: code,
                error: None,
            };
            if let Ok(mut data) = serde_json::to_vec(&resp) {
                data.push(b'\n');
                let _ = tx.send(Bytes::from(data)).await;
            }
        }
    });
    let mut r = Response::new(channel_body(body_rx));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn delete(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    if ctx.query.bool("link") {
        crate::network::container::remove_link(engine, ctx.param())?;
        return Ok(status_only(StatusCode::NO_CONTENT));
    }
    let rec = engine.store.get(ctx.param())?;
    if rec.state.running == Some(true) {
        if !ctx.query.bool("force") {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                rec.name
            )));
        }
        // No restart policy may bring it back while it is being removed.
        engine
            .store
            .update(&rec.id, |r| r.has_been_manually_stopped = true)?;
        let mut rx = engine.events.subscribe();
        engine.manager.tasks_kill(&rec.id, "", 9, true).await?;
        thaw_after_kill(engine, &rec).await;
        wait_exit(&mut rx, &rec.id, Duration::from_secs(30)).await;
    }
    let _ = engine.manager.tasks_delete(&rec.id, true).await;
    engine.remove_container(&rec.id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/rename?name=`.
pub fn rename(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let id = engine.store.resolve(ctx.param())?;
    let name = ctx
        .query
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            EngineError::BadParameter("Neither old nor new names may be empty".into())
        })?;
    engine.store.rename(&id, name)?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let h = ctx.query.int("h")?.unwrap_or(0);
    let w = ctx.query.int("w")?.unwrap_or(0);
    let (h, w) = (
        u32::try_from(h).map_err(|_| EngineError::BadParameter(format!("invalid height {h}")))?,
        u32::try_from(w).map_err(|_| EngineError::BadParameter(format!("invalid width {w}")))?,
    );
    if rec.state.running != Some(true) {
        return Err(EngineError::Conflict(format!(
            "cannot resize container {}: container is not running",
            rec.id
        )));
    }
    engine.manager.tasks_resize_pty(&rec.id, "", w, h).await?;
    Ok(status_only(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn human_durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(600)), "10 minutes");
        assert_eq!(human_duration(d(5000)), "About an hour");
        assert_eq!(human_duration(d(3 * 3600)), "3 hours");
    }

    #[test]
    fn create_body_flattens_config_and_host_config() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Image":"busybox","Cmd":["echo","hi"],"ExposedPorts":{"80/tcp":{}},
                "HostConfig":{"Memory":104857600,"NetworkMode":"none","Isolation":""},
                "NetworkingConfig":{"EndpointsConfig":{}}}"#,
        )
        .unwrap();
        assert_eq!(b.config.image.as_deref(), Some("busybox"));
        assert_eq!(b.host_config.unwrap().memory, Some(104857600));
    }

    #[test]
    fn passwd_root_prefers_the_layer_with_the_file() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("l2");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let info = SnapshotInfo {
            upper_dir: d.path().join("up").to_string_lossy().into_owned(),
            lower_dir: format!("{}:{}", d.path().join("l1").display(), lower.display()),
            merged_dir: "/merged".into(),
            ..SnapshotInfo::default()
        };
        assert_eq!(passwd_root(&info), lower);
        assert_eq!(passwd_root(&SnapshotInfo::default()), PathBuf::from(""));
    }
}
