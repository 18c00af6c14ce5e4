//! Volume endpoints with Docker's `local` driver: a volume is the directory
//! `<data-root>/volumes/<name>/_data` (where named volumes in `Binds` already resolve,
//! created on first use) and its metadata beside it in `volume.json`, written
//! atomically. A volume made by a bind has no metadata file and shows with the
//! directory's time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{
    Volume, VolumeCreateOptions, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum,
    VolumeUsageData,
};
use chrono::{DateTime, SecondsFormat, Utc};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{json, read_json, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::DockerEvent;
use crate::store::ContainerRecord;

/// The label Docker puts on volumes it made up a name for.
const ANONYMOUS: &str = "com.docker.volume.anonymous";
const META: &str = "volume.json";

/// What is kept about a volume besides its data.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "CreatedAt", default)]
    created_at: String,
    #[serde(rename = "Labels", default)]
    labels: HashMap<String, String>,
    #[serde(rename = "Options", default)]
    options: HashMap<String, String>,
}

fn root(engine: &Engine) -> PathBuf {
    engine.config.data_root.join("volumes")
}

/// A local volume's name, as dockerd accepts it (checked at create too).
pub(crate) fn check_name(name: &str) -> Result<(), EngineError> {
    if crate::store::valid_name(name) && !name.starts_with('/') && !name.contains('/') {
        Ok(())
    } else {
        Err(EngineError::BadParameter(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

/// Reads one volume; `None` when there is no such volume. A name that is not a
/// valid volume name (`..`, anything with a slash after decoding) names nothing: it
/// must never become a path outside the volumes directory.
fn read(dir: &Path, name: &str) -> Option<Volume> {
    check_name(name).ok()?;
    let data = dir.join(name).join("_data");
    let md = std::fs::metadata(&data).ok()?;
    if !md.is_dir() {
        return None;
    }
    let meta: Meta = std::fs::read(dir.join(name).join(META))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let created = if meta.created_at.is_empty() {
        md.modified()
            .map(|t| DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default()
    } else {
        meta.created_at
    };
    Some(Volume {
        name: name.to_string(),
        driver: "local".to_string(),
        mountpoint: data.to_string_lossy().into_owned(),
        created_at: Some(created),
        status: None,
        labels: meta.labels,
        scope: Some(VolumeScopeEnum::LOCAL),
        cluster_volume: None,
        options: meta.options,
        usage_data: None,
    })
}

/// Every volume, by name.
pub fn all(engine: &Engine) -> Vec<Volume> {
    let dir = root(engine);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().filter_map(|n| read(&dir, n)).collect()
}

/// The names of the volumes a container mounts.
fn volumes_of(rec: &ContainerRecord) -> Vec<String> {
    let mut out = vec![];
    for b in rec.host_config.binds.iter().flatten() {
        let src = b.split(':').next().unwrap_or("");
        if !src.is_empty() && !src.starts_with('/') {
            out.push(src.to_string());
        }
    }
    for m in rec.host_config.mounts.iter().flatten() {
        let is_volume = m.typ.as_ref().is_some_and(|t| t.to_string() == "volume");
        if let (true, Some(src)) = (is_volume, &m.source) {
            out.push(src.clone());
        }
    }
    out
}

/// Volume name -> ids of the containers that use it.
pub fn users(engine: &Engine) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for rec in engine.store.list() {
        for v in volumes_of(&rec) {
            out.entry(v).or_default().push(rec.id.clone());
        }
    }
    out
}

/// Bytes under a directory (files counted once each, links not followed).
pub fn dir_size(path: &Path) -> i64 {
    let mut total = 0i64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(i64::try_from(md.len()).unwrap_or(i64::MAX));
            }
        }
    }
    total
}

/// A volume with its usage (for `system df`).
pub fn with_usage(v: Volume, users: &HashMap<String, Vec<String>>) -> Volume {
    let size = dir_size(Path::new(&v.mountpoint));
    let refs = users.get(&v.name).map_or(0, |u| u.len());
    Volume {
        usage_data: Some(VolumeUsageData {
            size,
            ref_count: i64::try_from(refs).unwrap_or(i64::MAX),
        }),
        ..v
    }
}

fn matches(v: &Volume, used: bool, k: &str, val: &str) -> Result<bool, EngineError> {
    Ok(match k {
        "name" => v.name.contains(val),
        "driver" => v.driver == val,
        "dangling" => match val {
            "true" | "1" => !used,
            "false" | "0" => used,
            _ => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter 'dangling={val}'"
                )))
            }
        },
        "label" => match val.split_once('=') {
            Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
            None => v.labels.contains_key(val),
        },
        "label!" => match val.split_once('=') {
            Some((lk, lv)) => v.labels.get(lk).is_none_or(|x| x != lv),
            None => !v.labels.contains_key(val),
        },
        other => {
            return Err(EngineError::BadParameter(format!(
                "invalid filter '{other}'"
            )))
        }
    })
}

/// Filters grouped by key: values of one key are alternatives, keys must all match.
fn filtered(
    engine: &Engine,
    filters: &[(String, String)],
    skip: &[&str],
) -> Result<Vec<Volume>, EngineError> {
    let users = users(engine);
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    let mut out = vec![];
    for v in all(engine) {
        let used = users.contains_key(&v.name);
        let mut ok = true;
        for k in keys.iter().filter(|k| !skip.contains(k)) {
            let mut any = false;
            for (_, val) in filters.iter().filter(|(fk, _)| fk == k) {
                any |= matches(&v, used, k, val)?;
            }
            ok &= any;
        }
        if ok {
            out.push(v);
        }
    }
    Ok(out)
}

/// `GET /volumes?filters=`.
pub fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let filters = ctx.query.filters()?;
    let volumes = filtered(engine, &filters, &[])?;
    Ok(json(
        StatusCode::OK,
        &VolumeListResponse {
            volumes: Some(volumes),
            warnings: Some(vec![]),
        },
    ))
}

/// `GET /volumes/{name}`.
pub fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let name = ctx.param();
    let v = read(&root(engine), name).ok_or_else(|| EngineError::NoSuchVolume(name.into()))?;
    Ok(json(StatusCode::OK, &v))
}

#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    #[serde(flatten)]
    opts: VolumeCreateOptions,
}

/// dockerd's words for a volume driver other than `local` (berth has no plugins).
pub fn plugin_not_found(driver: &str) -> String {
    format!("error looking up volume plugin {driver}: plugin {driver:?} not found")
}

/// `POST /volumes/create`: an existing name answers the existing volume, as dockerd.
pub async fn create(
    engine: &Engine,
    _ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: CreateBody = read_json(req.into_body()).await?;
    let o = body.opts;
    let driver = o.driver.clone().unwrap_or_default();
    if !driver.is_empty() && driver != "local" {
        return Err(EngineError::NotFound(plugin_not_found(&driver)));
    }
    let opts = o.driver_opts.clone().unwrap_or_default();
    if !opts.is_empty() {
        return Err(EngineError::NotImplemented(
            "local volume options (type, o, device) are not implemented in berth yet".into(),
        ));
    }
    let v = create_local(
        engine,
        o.name.clone(),
        o.labels.clone().unwrap_or_default(),
        opts,
    )?;
    Ok(json(StatusCode::CREATED, &v))
}

/// Makes a `local` volume (an existing name answers the existing volume). Without a
/// name it gets a random one and the anonymous label, as dockerd's anonymous volumes.
pub(crate) fn create_local(
    engine: &Engine,
    name: Option<String>,
    mut labels: HashMap<String, String>,
    opts: HashMap<String, String>,
) -> Result<Volume, EngineError> {
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => {
            labels.insert(ANONYMOUS.to_string(), String::new());
            crate::fsutil::random_id().map_err(|e| EngineError::io("making a volume name", e))?
        }
    };
    check_name(&name)?;
    let dir = root(engine);
    if let Some(v) = read(&dir, &name) {
        return Ok(v);
    }
    let data = dir.join(&name).join("_data");
    std::fs::create_dir_all(&data)
        .map_err(|e| EngineError::io(format!("creating {}", data.display()), e))?;
    let meta = Meta {
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        labels,
        options: opts,
    };
    let bytes = serde_json::to_vec(&meta)
        .map_err(|e| EngineError::io("encoding volume metadata", std::io::Error::other(e)))?;
    let meta_path = dir.join(&name).join(META);
    crate::fsutil::atomic_write(&meta_path, &bytes, 0o600)
        .map_err(|e| EngineError::io(format!("writing {}", meta_path.display()), e))?;
    let v = read(&dir, &name).ok_or_else(|| EngineError::NoSuchVolume(name.clone()))?;
    engine
        .event_hub
        .publish(DockerEvent::now("volume", "create", &name).attr("driver", "local"));
    Ok(v)
}

/// Removes a volume that a failed create made, or an anonymous one with its container.
pub(crate) fn remove_quietly(engine: &Engine, name: &str) {
    if let Err(e) = remove_dir(engine, name) {
        tracing::warn!(volume = name, error = %e, "could not remove a volume");
    }
}

/// Whether the volume carries the anonymous label.
pub(crate) fn is_anonymous(engine: &Engine, name: &str) -> bool {
    read(&root(engine), name).is_some_and(|v| v.labels.contains_key(ANONYMOUS))
}

fn remove_dir(engine: &Engine, name: &str) -> Result<(), EngineError> {
    check_name(name)?;
    let path = root(engine).join(name);
    std::fs::remove_dir_all(&path)
        .map_err(|e| EngineError::io(format!("removing {}", path.display()), e))?;
    engine
        .event_hub
        .publish(DockerEvent::now("volume", "destroy", name).attr("driver", "local"));
    Ok(())
}

/// `DELETE /volumes/{name}?force=`: 409 while a container uses it.
pub fn delete(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let name = ctx.param();
    if read(&root(engine), name).is_none() {
        if ctx.query.bool("force") {
            return Ok(status_only(StatusCode::NO_CONTENT));
        }
        return Err(EngineError::NoSuchVolume(name.into()));
    }
    if let Some(ids) = users(engine).get(name) {
        return Err(EngineError::Conflict(format!(
            "remove {name}: volume is in use - [{}]",
            ids.join(", ")
        )));
    }
    remove_dir(engine, name)?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /volumes/prune?filters=`: unused volumes; from API 1.42 only anonymous ones
/// unless `all=true`, as dockerd.
pub async fn prune(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let filters = ctx.query.filters()?;
    let all = filters
        .iter()
        .any(|(k, v)| k == "all" && matches!(v.as_str(), "true" | "1"))
        || ctx.matched.version.minor < 42;
    let users = users(engine);
    let mut deleted = vec![];
    let mut reclaimed = 0i64;
    for v in filtered(engine, &filters, &["all"])? {
        if users.contains_key(&v.name) || (!all && !v.labels.contains_key(ANONYMOUS)) {
            continue;
        }
        let size = dir_size(Path::new(&v.mountpoint));
        match remove_dir(engine, &v.name) {
            Ok(()) => {
                reclaimed = reclaimed.saturating_add(size);
                deleted.push(v.name);
            }
            Err(e) => tracing::warn!(volume = %v.name, error = %e, "pruning a volume"),
        }
    }
    Ok(json(
        StatusCode::OK,
        &VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        },
    ))
}
