//! `POST /build` (the classic builder), `POST /build/prune` and `GET /build` style
//! cache answers. The build runs as its own task writing dockerd's JSON stream; when
//! the client goes away the stream's channel closes and the build stops, removing
//! what it had made.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;

use super::{channel_body, json, Body, Ctx};
use crate::build::{self, BuildOptions, Output};
use crate::engine::Engine;
use crate::error::EngineError;

fn json_param<T: serde::de::DeserializeOwned + Default>(
    ctx: &Ctx,
    key: &str,
) -> Result<T, EngineError> {
    match ctx.query.get(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_str(v)
            .map_err(|e| EngineError::BadParameter(format!("invalid {key} parameter: {e}"))),
    }
}

fn all(ctx: &Ctx, key: &str) -> Vec<String> {
    ctx.query
        .0
        .iter()
        .filter(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect()
}

/// The build's options from the query, checked before the context is read.
pub fn options(ctx: &Ctx) -> Result<BuildOptions, EngineError> {
    let q = &ctx.query;
    if q.get("version") == Some("2") {
        return Err(EngineError::BadParameter(
            "BuildKit is not supported by berth: use the classic builder (DOCKER_BUILDKIT=0)"
                .into(),
        ));
    }
    if q.bool("squash") {
        return Err(EngineError::BadParameter(
            "squash is not supported by berth's builder".into(),
        ));
    }
    let platform = q.get("platform").unwrap_or("").to_string();
    if !platform.is_empty() {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or("");
        let arch = parts.next().unwrap_or("");
        let host_arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        if os != "linux" || (!arch.is_empty() && arch != host_arch) {
            return Err(EngineError::BadParameter(format!(
                "\"{platform}\": unknown operating system or architecture: invalid argument"
            )));
        }
    }
    let build_args: BTreeMap<String, Option<String>> = json_param(ctx, "buildargs")?;
    let labels: BTreeMap<String, String> = json_param(ctx, "labels")?;
    let cache_from: Vec<String> = json_param(ctx, "cachefrom")?;
    let mut extra_hosts = all(ctx, "extrahosts");
    // docker-py and the CLI repeat the parameter; an old form is one comma list.
    extra_hosts = extra_hosts
        .iter()
        .flat_map(|h| h.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|h| !h.is_empty())
        .collect();
    let int = |k: &str| q.int(k).map(|v| v.filter(|n| *n != 0));
    Ok(BuildOptions {
        tags: all(ctx, "t"),
        dockerfile: q.get("dockerfile").unwrap_or("").to_string(),
        quiet: q.bool("q"),
        no_cache: q.bool("nocache"),
        rm: q.get("rm").is_none_or(|_| q.bool("rm")),
        force_rm: q.bool("forcerm"),
        pull: q.bool("pull"),
        build_args,
        labels,
        target: q.get("target").unwrap_or("").to_string(),
        shm_size: int("shmsize")?,
        memory: int("memory")?,
        memswap: int("memswap")?,
        cpu_shares: int("cpushares")?,
        cpuset_cpus: q
            .get("cpusetcpus")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        cpu_period: int("cpuperiod")?,
        cpu_quota: int("cpuquota")?,
        extra_hosts,
        network_mode: q.get("networkmode").unwrap_or("").to_string(),
        cache_from,
        remote: q.get("remote").unwrap_or("").to_string(),
        platform,
    })
}

/// `POST /build`.
pub async fn build(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let opts = options(ctx)?;
    for t in &opts.tags {
        let name = t.split('@').next().unwrap_or(t);
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return Err(EngineError::BadParameter(format!(
                "invalid reference format: repository name ({t}) must be lowercase"
            )));
        }
    }
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(8);
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        if !data.is_empty() && body_tx.send(data).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reading a build context");
                    return;
                }
            }
        }
    });
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (out, early) = Output::new(tx, opts.quiet);
    tokio::spawn(build::build(engine.clone(), opts, body_rx, out));
    // dockerd answers a build that fails before its first line (no Dockerfile, a
    // bad context) with an HTTP error, not a 200 stream: clients tell them apart.
    if let Ok(e) = early.await {
        return Err(EngineError::Failed(e.message));
    }
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// `POST /build/prune`: drops the build cache and the intermediate images only it
/// kept (untagged, unused; the manager removes parents with their last child).
pub async fn prune(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let all = ctx.query.bool("all");
    let _ = all;
    let cache = build::cache(engine);
    let entries = cache.entries();
    let used: std::collections::HashSet<String> = engine
        .store
        .list()
        .into_iter()
        .map(|r| r.image.clone())
        .collect();
    let mut deleted = vec![];
    let mut reclaimed: i64 = 0;
    engine.removals_settled().await;
    for (key, e) in &entries {
        cache.remove(key);
        let Ok(img) = engine.manager.images_get(&e.image).await else {
            continue;
        };
        if !img.names.is_empty() || used.contains(&img.id) {
            continue;
        }
        if let Ok(r) = engine.manager.images_delete(&img.id, false, false).await {
            reclaimed += img.layers.last().map(|l| l.size).unwrap_or(0);
            deleted.extend(r.deleted);
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "CachesDeleted": deleted,
            "SpaceReclaimed": reclaimed,
        }),
    ))
}
