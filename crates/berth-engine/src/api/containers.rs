//! Container endpoints: create, list, inspect, start, stop, kill, wait, remove, rename,
//! resize. Each parses its request, calls the state machine ([`crate::lifecycle`]) or
//! the store, and renders the answer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateResponse, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerSummary, ContainerSummaryHostConfig, ContainerWaitResponse, DriverData, HostConfig,
    MountPoint, MountPointTypeEnum, MountTypeEnum, NetworkingConfig,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{channel_body, json, read_json, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::lifecycle::{self, CreateRequest, StopOptions, WaitCondition};
use crate::spec::{self, etc};
use crate::store::ContainerRecord;

use crate::lifecycle::parse_signal;

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
    /// docker-py's `create_container(runtime=)` sends `Runtime` beside the Config;
    /// taken when `HostConfig.Runtime` is not set.
    #[serde(rename = "Runtime", default)]
    pub runtime: Option<String>,
}

/// `POST /containers/create?name=`.
pub async fn create(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let mut raw: serde_json::Value = read_json(req.into_body()).await?;
    if let Some(hc) = raw.get_mut("HostConfig").and_then(|h| h.as_object_mut()) {
        go_case_keys(hc, GO_CASE_HOST_CONFIG);
    }
    let body: CreateBody = if raw.is_null() {
        CreateBody::default()
    } else {
        serde_json::from_value(raw).map_err(EngineError::InvalidJson)?
    };
    let resp = create_container(engine, ctx.query.get("name"), body).await?;
    Ok(json(StatusCode::CREATED, &resp))
}

/// HostConfig fields clients spell in another case: dockerd's Go decoder matches
/// names without regard to case, and docker-py sends `CPURealtimePeriod`.
const GO_CASE_HOST_CONFIG: &[&str] = &["CpuRealtimePeriod", "CpuRealtimeRuntime"];

/// Renames the keys of `obj` that equal one of `names` but for case to that name
/// (an exact key, when present, wins, as Go's decoder prefers it).
fn go_case_keys(obj: &mut serde_json::Map<String, serde_json::Value>, names: &[&str]) {
    for name in names {
        if obj.contains_key(*name) {
            continue;
        }
        let other = obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
        if let Some(k) = other {
            if let Some(v) = obj.remove(&k) {
                obj.insert((*name).to_string(), v);
            }
        }
    }
}

/// Creates a container from a create body (`POST /containers/create`, and the
/// builder's RUN steps).
pub async fn create_container(
    engine: &Arc<Engine>,
    name: Option<&str>,
    body: CreateBody,
) -> Result<ContainerCreateResponse, EngineError> {
    let (id, warnings) = lifecycle::create(
        engine,
        CreateRequest {
            name: name.map(str::to_string),
            config: body.config,
            host_config: {
                let mut hc = body.host_config.unwrap_or_default();
                if hc.runtime.as_deref().unwrap_or("").is_empty() {
                    hc.runtime = body.runtime.filter(|r| !r.is_empty()).or(hc.runtime);
                }
                hc
            },
            networking: body.networking_config,
        },
    )
    .await?;
    Ok(ContainerCreateResponse { id, warnings })
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

/// go-units' `HumanDuration`, the one dockerd writes `Status` with, as a table over
/// whole seconds `s`: below `limit` seconds the text is `text`, or, with `unit`,
/// the count `(s + offset) / step` before it (hours are rounded: an offset of half
/// an hour). Both what a duration reads and until when it reads so come from here.
struct Form {
    limit: i64,
    step: i64,
    offset: i64,
    text: &'static str,
    unit: Option<&'static str>,
}

const fn form(
    limit: i64,
    step: i64,
    offset: i64,
    text: &'static str,
    unit: Option<&'static str>,
) -> Form {
    Form {
        limit,
        step,
        offset,
        text,
        unit,
    }
}

const HOUR: i64 = 3600;
const HALF_HOUR: i64 = HOUR / 2;
/// A count of rounded hours `h` below `hours`: seconds below `hours` h - 30 min.
const fn below_hours(hours: i64) -> i64 {
    hours * HOUR - HALF_HOUR
}

const FORMS: [Form; 11] = [
    form(1, 1, 0, "Less than a second", None),
    form(2, 1, 0, "1 second", None),
    form(60, 1, 0, "", Some("seconds")),
    form(120, 60, 0, "About a minute", None),
    form(HOUR, 60, 0, "", Some("minutes")),
    form(below_hours(2), HOUR, HALF_HOUR, "About an hour", None),
    form(below_hours(48), HOUR, HALF_HOUR, "", Some("hours")),
    form(
        below_hours(24 * 7 * 2),
        24 * HOUR,
        HALF_HOUR,
        "",
        Some("days"),
    ),
    form(
        below_hours(24 * 30 * 2),
        24 * 7 * HOUR,
        HALF_HOUR,
        "",
        Some("weeks"),
    ),
    form(
        below_hours(24 * 365 * 2),
        24 * 30 * HOUR,
        HALF_HOUR,
        "",
        Some("months"),
    ),
    form(i64::MAX, 24 * 365 * HOUR, 0, "", Some("years")),
];

fn form_of(s: i64) -> &'static Form {
    let i = FORMS
        .iter()
        .position(|f| s < f.limit)
        .unwrap_or(FORMS.len() - 1);
    &FORMS[i]
}

/// Docker's human durations ("5 minutes", "About an hour").
pub fn human_duration(d: chrono::Duration) -> String {
    let mut out = String::new();
    human_duration_into(d, &mut out);
    out
}

/// [`human_duration`] appended to `out`.
fn human_duration_into(d: chrono::Duration, out: &mut String) {
    let s = d.num_seconds();
    let f = form_of(s);
    match f.unit {
        Some(unit) => {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(out, "{} {unit}", (s + f.offset) / f.step);
        }
        None => out.push_str(f.text),
    }
}

/// Until when [`human_duration`] of the time since `since` says what it says at
/// `now`: the next second, minute, hour, ... at which its text changes.
pub fn human_duration_until(since: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let s = (now - since).num_seconds().max(0);
    let f = form_of(s);
    let next = match f.unit {
        Some(_) => ((s + f.offset) / f.step)
            .saturating_add(1)
            .saturating_mul(f.step)
            .saturating_sub(f.offset)
            .min(f.limit),
        None => f.limit,
    };
    since
        .checked_add_signed(chrono::Duration::seconds(next))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The `Status` column of `docker ps`.
pub fn status_text(rec: &ContainerRecord) -> String {
    StatusForm::of(rec).text_at(Utc::now())
}

/// A `Status` text as far as its record decides it: the words around the time
/// counted (`Up …`, `Exited (0) … ago`) and the moment it counts from, so that the
/// text at any time is written without the record.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusForm {
    head: Cow<'static, str>,
    tail: Cow<'static, str>,
    /// Whether a duration goes between `head` and `tail`.
    counts: bool,
    /// What it counts from: the start of a running or paused container, the end
    /// of an exited one (None: unknown, and the duration is left out).
    since: Option<DateTime<Utc>>,
}

impl StatusForm {
    pub fn of(rec: &ContainerRecord) -> StatusForm {
        let counting =
            |head: Cow<'static, str>, tail: Cow<'static, str>, at: Option<&str>| StatusForm {
                head,
                tail,
                counts: true,
                since: parse_time(at),
            };
        let fixed = |text: &'static str| StatusForm {
            head: Cow::Borrowed(text),
            tail: Cow::Borrowed(""),
            counts: false,
            since: None,
        };
        let started = rec.state.started_at.as_deref();
        match rec.state.status {
            Some(ContainerStateStatusEnum::PAUSED) => {
                counting("Up ".into(), " (Paused)".into(), started)
            }
            Some(ContainerStateStatusEnum::RUNNING) => counting(
                "Up ".into(),
                crate::health::status_suffix(rec.state.health.as_ref()).into(),
                started,
            ),
            Some(ContainerStateStatusEnum::EXITED) => counting(
                format!("Exited ({}) ", rec.state.exit_code.unwrap_or(0)).into(),
                " ago".into(),
                rec.state.finished_at.as_deref(),
            ),
            Some(ContainerStateStatusEnum::REMOVING) => fixed("Removal In Progress"),
            Some(ContainerStateStatusEnum::DEAD) => fixed("Dead"),
            _ => fixed("Created"),
        }
    }

    /// The text at `now`.
    pub fn text_at(&self, now: DateTime<Utc>) -> String {
        let mut out = String::with_capacity(self.head.len() + self.tail.len() + 16);
        self.write_at(now, &mut out);
        out
    }

    /// [`Self::text_at`] appended to `out` (a list writes hundreds into one buffer).
    pub fn write_at(&self, now: DateTime<Utc>, out: &mut String) {
        out.push_str(&self.head);
        if let (true, Some(t)) = (self.counts, self.since) {
            human_duration_into(now - t, out);
        }
        out.push_str(&self.tail);
    }

    /// Until when the text at `now` reads the same (None: for as long as the
    /// record is the same).
    pub fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.since
            .filter(|_| self.counts)
            .map(|t| human_duration_until(t, now))
    }
}

fn mount_points(rec: &ContainerRecord, engine: &Engine) -> Vec<MountPoint> {
    struct Peek<'a>(&'a crate::engine::LocalVolumes);
    impl spec::VolumeResolver for Peek<'_> {
        fn resolve(&self, name: &str) -> Result<PathBuf, spec::SpecError> {
            Ok(self.0.root.join(name).join("_data"))
        }
    }
    let vols = engine.volumes();
    let mut out = vec![];
    for b in rec.host_config.binds.as_deref().unwrap_or(&[]) {
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
    for m in rec.host_config.mounts.as_deref().unwrap_or(&[]) {
        if let Ok(m) = spec::mounts::parse_mount(m, &Peek(&vols)) {
            let (typ, mode) = match m.kind {
                "volume" => (MountPointTypeEnum::VOLUME, "z"),
                "tmpfs" => (MountPointTypeEnum::TMPFS, ""),
                _ => (MountPointTypeEnum::BIND, ""),
            };
            out.push(MountPoint {
                typ: Some(typ),
                driver: m.name.as_ref().map(|_| "local".to_string()),
                name: m.name,
                source: Some(if m.kind == "tmpfs" {
                    String::new()
                } else {
                    m.source.to_string_lossy().into_owned()
                }),
                destination: Some(m.destination),
                mode: Some(mode.to_string()),
                rw: Some(!m.read_only),
                propagation: Some(m.propagation),
            });
        }
    }
    out
}

fn summary(rec: &ContainerRecord, engine: &Engine) -> ContainerSummary {
    let mut command = vec![rec.path.clone()];
    command.extend(rec.args.iter().cloned());
    let live = crate::network::view::live_of(engine, rec);
    ContainerSummary {
        id: Some(rec.id.clone()),
        names: Some(vec![rec.name.clone()]),
        image: rec.config.image.clone(),
        image_id: Some(rec.image.clone()),
        command: Some(command.join(" ")),
        created: parse_time(Some(&rec.created)).map(|t| t.timestamp()),
        ports: Some(crate::network::view::summary_ports(rec, live.as_deref())),
        network_settings: Some(crate::network::view::summary_networks(
            engine,
            rec,
            live.as_deref(),
        )),
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
pub async fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let all = ctx.query.bool("all");
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0);
    let filters = ctx.query.filters()?;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in filters {
        by_key.entry(k).or_default().push(v);
    }
    // `before`/`since` name a container (id or name): its creation time, looked
    // up once.
    let mut created_of = HashMap::new();
    for v in ["before", "since"]
        .iter()
        .filter_map(|k| by_key.get(*k))
        .flatten()
    {
        created_of.insert(v.clone(), engine.store.get(v)?.created);
    }
    // As dockerd: these filters look at stopped containers too.
    let any_state = ["status", "before", "since"]
        .iter()
        .any(|k| by_key.contains_key(*k));
    let size = ctx.query.bool("size");
    // A list without filters is answered as it was last time while nothing it shows
    // changed (see `list_rows`); the versions are read before what they count.
    let plain = by_key.is_empty() && limit.is_none() && !size;
    let networks_version = engine.networks.version();
    let now = Utc::now();
    if plain {
        // Changes since the answer was kept that concerned only containers it
        // does not show and that are not to be shown now leave it as it is.
        let shown_now = |rec: &ContainerRecord| all || rec.state.running == Some(true);
        let kept = engine.list_rows.whole(
            all,
            engine.store.version(),
            networks_version,
            now,
            |store_then, networks_then, may_show| {
                engine
                    .networks
                    .only_unseen_since(networks_then, |id| !may_show(id))
                    && engine.store.only_unseen_since(store_then, |id, rec| {
                        !may_show(id) && !rec.is_some_and(shown_now)
                    })
            },
        );
        if let Some(body) = kept {
            return Ok(super::json_bytes(StatusCode::OK, body));
        }
    }
    let (store_version, every) = engine.store.list_versioned();
    let mut recs = vec![];
    for rec in every {
        let running = rec.state.running == Some(true);
        if !all && limit.is_none() && !running && !any_state {
            continue;
        }
        let mut keep = true;
        for (k, vals) in &by_key {
            // Values of one key are ORed, keys are ANDed, as in dockerd; except
            // labels, which must all match (compose tells its one-off containers
            // from its services by a second label).
            let every = k == "label";
            let mut hits = 0;
            for v in vals {
                let m = match (
                    k.as_str(),
                    crate::network::view::matches_filter(engine, &rec, k, v),
                ) {
                    (_, Some(m)) => m,
                    // Created before or after another container (its id or name).
                    ("before", None) => created_of.get(v).is_some_and(|c| rec.created < *c),
                    ("since", None) => created_of.get(v).is_some_and(|c| rec.created > *c),
                    (_, None) => matches_filter(&rec, k, v)?,
                };
                hits += usize::from(m);
            }
            keep &= if every { hits == vals.len() } else { hits > 0 };
        }
        if keep {
            recs.push(rec);
        }
        if limit.is_some_and(|l| recs.len() as i64 >= l) {
            break;
        }
    }
    if size {
        let mut out: Vec<ContainerSummary> = recs.iter().map(|r| summary(r, engine)).collect();
        let images = engine.manager.images_list(vec![]).await?;
        for (row, (rw, root)) in out.iter_mut().zip(sizes(engine, &recs, &images).await) {
            row.size_rw = Some(rw);
            row.size_root_fs = Some(root);
        }
        return Ok(json(StatusCode::OK, &out));
    }
    // Each key read before its row is built (see `list_rows`).
    let networks = engine.networks.generation();
    let lives = engine.networks.live_shared_each(
        recs.iter()
            .map(|r| (r.state.running == Some(true)).then_some(r.id.as_str())),
    );
    let configs = crate::network::container::load_configs(&engine.networks, &recs);
    let keys = recs
        .into_iter()
        .zip(lives)
        .zip(configs)
        .map(|((rec, live), config)| super::list_rows::RowKey {
            live,
            config,
            networks,
            rec,
        })
        .collect();
    let mut body = Vec::with_capacity(engine.list_rows.last_len());
    let written = engine.list_rows.write_array(
        keys,
        &mut body,
        |k| {
            let mut row = summary(&k.rec, engine);
            row.status = None;
            serde_json::to_vec(&row).map_err(|e| {
                EngineError::io("encoding the container list", std::io::Error::other(e))
            })
        },
        StatusForm::of,
        now,
    )?;
    body.push(b'\n');
    let body = bytes::Bytes::from(body);
    if plain {
        engine
            .list_rows
            .keep_whole(all, store_version, networks_version, body.clone(), written);
    }
    Ok(super::json_bytes(StatusCode::OK, body))
}

/// `SizeRw` and `SizeRootFs` of each container (`?size=1`), as dockerd counts
/// them: the bytes of its writable layer, and those plus its image's (from
/// `images`, the manager's list the caller has). A layer that cannot be
/// measured (gone meanwhile) counts 0.
pub async fn sizes<R: std::borrow::Borrow<ContainerRecord>>(
    engine: &Engine,
    recs: &[R],
    images: &[crate::manager::Image],
) -> Vec<(i64, i64)> {
    let images: HashMap<&str, i64> = images.iter().map(|i| (i.id.as_str(), i.size)).collect();
    let rw = futures_util::future::join_all(recs.iter().map(|r| async move {
        engine
            .manager
            .snapshots_usage(&r.borrow().snapshot_key)
            .await
            .unwrap_or(0)
    }))
    .await;
    recs.iter()
        .zip(rw)
        .map(|(r, rw)| {
            let image = images.get(r.borrow().image.as_str()).copied().unwrap_or(0);
            (rw, rw + image)
        })
        .collect()
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
    let mut resp = ContainerInspectResponse {
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
    if ctx.query.bool("size") {
        let images = engine.manager.images_list(vec![]).await?;
        if let Some((rw, root)) = sizes(engine, std::slice::from_ref(&rec), &images)
            .await
            .pop()
        {
            resp.size_rw = Some(rw);
            resp.size_root_fs = Some(root);
        }
    }
    let mut v = serde_json::to_value(&resp)
        .map_err(|e| EngineError::io("encoding the container", std::io::Error::other(e)))?;
    v["NetworkSettings"] = crate::network::view::network_settings_json(engine, &rec);
    Ok(json(StatusCode::OK, &v))
}

/// `POST /containers/{id}/start`.
pub async fn start(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    Ok(match lifecycle::start(engine, ctx.param()).await? {
        lifecycle::Started::Started => status_only(StatusCode::NO_CONTENT),
        lifecycle::Started::AlreadyRunning => status_only(StatusCode::NOT_MODIFIED),
    })
}

/// The `signal=` and `t=` of stop and restart.
pub fn stop_options(ctx: &Ctx) -> Result<StopOptions, EngineError> {
    Ok(StopOptions {
        signal: match ctx.query.get("signal").filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_signal(s)?),
            None => None,
        },
        timeout: ctx.query.int("t")?,
    })
}

/// `POST /containers/{id}/stop?t=&signal=`.
pub async fn stop(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let opts = stop_options(ctx)?;
    Ok(match lifecycle::stop(engine, ctx.param(), &opts).await? {
        lifecycle::Stopped::Stopped => status_only(StatusCode::NO_CONTENT),
        lifecycle::Stopped::NotRunning => status_only(StatusCode::NOT_MODIFIED),
    })
}

/// `POST /containers/{id}/kill?signal=`.
pub async fn kill(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let signal = parse_signal(
        ctx.query
            .get("signal")
            .filter(|s| !s.is_empty())
            .unwrap_or("SIGKILL"),
    )?;
    lifecycle::kill(engine, ctx.param(), signal).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/wait?condition=`. The headers go out at once; the body when
/// the condition is met (the docker CLI sends this before start).
pub async fn wait(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let condition = WaitCondition::parse(ctx.query.get("condition").unwrap_or(""))?;
    let done = lifecycle::wait(engine, ctx.param(), condition)?;
    let (tx, body_rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        if let Some(code) = done.await {
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
pub async fn delete(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    if ctx.query.bool("link") {
        crate::network::container::remove_link(engine, ctx.param())?;
        return Ok(status_only(StatusCode::NO_CONTENT));
    }
    // `v=1`: the anonymous volumes go with the container, as with dockerd, unless
    // another container uses them too.
    let anonymous: Vec<String> = if ctx.query.bool("v") {
        let rec = engine.store.get(ctx.param())?;
        rec.host_config
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ == Some(MountTypeEnum::VOLUME))
            .filter_map(|m| m.source.clone())
            .filter(|n| crate::api::volumes::is_anonymous(engine, n))
            .collect()
    } else {
        vec![]
    };
    lifecycle::remove(engine, ctx.param(), ctx.query.bool("force")).await?;
    if !anonymous.is_empty() {
        let users = crate::api::volumes::users(engine);
        for v in anonymous.iter().filter(|v| !users.contains_key(*v)) {
            crate::api::volumes::remove_quietly(engine, v);
        }
    }
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
    let old = engine.store.get(&id)?.name;
    engine.store.rename(&id, name)?;
    engine.publish_container(
        "rename",
        &id,
        &[("oldName", format!("/{}", old.trim_start_matches('/')))],
    );
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
    if !lifecycle::Phase::of(&rec.state).has_live_task() {
        return Err(EngineError::Conflict(format!(
            "cannot resize container {}: container is not running",
            rec.id
        )));
    }
    engine.manager.tasks_resize_pty(&rec.id, "", w, h).await?;
    engine.publish_container(
        "resize",
        &rec.id,
        &[("height", h.to_string()), ("width", w.to_string())],
    );
    Ok(status_only(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(600)), "10 minutes");
        assert_eq!(human_duration(d(5000)), "About an hour");
        assert_eq!(human_duration(d(3 * 3600)), "3 hours");
        // As go-units: hours are rounded, weeks end at 60 days.
        assert_eq!(human_duration(d(5400)), "2 hours");
        assert_eq!(human_duration(d(61 * 86400)), "2 months");
    }

    #[test]
    fn human_durations_hold_until_they_change() {
        let since = Utc::now();
        let at = |ms: i64| since + chrono::Duration::milliseconds(ms);
        // Every 0.7 s over three days and at some later points: the text is the
        // same just before its end and different at it.
        let points = (0..370_000i64).map(|i| i * 700).chain([
            20 * 86_400_000,
            59 * 86_400_000,
            61 * 86_400_000,
            100 * 86_400_000,
            800 * 86_400_000,
        ]);
        for ms in points {
            let now = at(ms);
            let text = human_duration(now - since);
            let until = human_duration_until(since, now);
            assert!(until > now, "at {ms} ms");
            let before = until - chrono::Duration::milliseconds(1);
            assert_eq!(human_duration(before - since), text, "at {ms} ms");
            assert_ne!(
                human_duration(until - since),
                text,
                "at {ms} ms, until {until}"
            );
        }
    }

    #[test]
    fn status_texts_as_docker_writes_them() {
        use bollard_stubs::models::{Health, HealthStatusEnum};
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let rec = |status, started: bool, finished: bool| {
            let mut r = ContainerRecord::default();
            r.state.status = Some(status);
            r.state.started_at = started.then(|| t0.to_rfc3339());
            r.state.finished_at = finished.then(|| at(60).to_rfc3339());
            r.state.exit_code = Some(137);
            r
        };
        use ContainerStateStatusEnum as S;
        let text = |r: &ContainerRecord, s: i64| StatusForm::of(r).text_at(at(s));
        let mut running = rec(S::RUNNING, true, false);
        assert_eq!(text(&running, 5), "Up 5 seconds");
        running.state.health = Some(Health {
            status: Some(HealthStatusEnum::HEALTHY),
            ..Health::default()
        });
        assert_eq!(text(&running, 600), "Up 10 minutes (healthy)");
        assert_eq!(
            text(&rec(S::PAUSED, true, false), 7200),
            "Up 2 hours (Paused)"
        );
        let exited = rec(S::EXITED, true, true);
        assert_eq!(text(&exited, 65), "Exited (137) 5 seconds ago");
        // Counted from the exit, until the next whole second.
        assert_eq!(StatusForm::of(&exited).until(at(65)), Some(at(66)));
        for (s, t) in [
            (S::CREATED, "Created"),
            (S::DEAD, "Dead"),
            (S::REMOVING, "Removal In Progress"),
        ] {
            let r = rec(s, true, true);
            assert_eq!(text(&r, 5), t);
            assert_eq!(StatusForm::of(&r).until(at(5)), None);
        }
        // A start time that cannot be read: the duration is left out.
        assert_eq!(text(&rec(S::RUNNING, false, false), 5), "Up ");
    }

    #[test]
    fn host_config_keys_in_another_case_are_taken() {
        let mut hc =
            serde_json::json!({"CPURealtimePeriod": 1000, "cpurealtimeruntime": 500, "Memory": 1})
                .as_object()
                .cloned()
                .unwrap();
        go_case_keys(&mut hc, GO_CASE_HOST_CONFIG);
        assert_eq!(
            serde_json::Value::Object(hc),
            serde_json::json!({"CpuRealtimePeriod": 1000, "CpuRealtimeRuntime": 500, "Memory": 1})
        );
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
}
