//! Image endpoints: list, inspect, history, tag, delete, pull and import
//! (`/images/create`), push, load, save (`/images/get`), prune and `/commit`.
//!
//! The manager does the work; these handlers speak Docker's shapes. Names are shown
//! the way the docker CLI shows them (`busybox:latest`, not
//! `docker.io/library/busybox:latest`), and pull/push/load answer with the JSON
//! progress stream dockerd writes: one object per line, per layer with its short id,
//! `progressDetail` and a drawn `progress` bar, and errors as `errorDetail` lines.

use std::collections::HashMap;

use bollard_stubs::models::{
    DriverData, HistoryResponseItem, ImageConfig, ImageDeleteResponseItem, ImageInspect,
    ImageInspectMetadata, ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{channel_body, json, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::DockerEvent;
use crate::manager::images::{
    Auth, CommitRequest, LayerProgress, LoadUpdate, PullUpdate, PushUpdate, Updates,
};
use crate::manager::Image;

/// Lines of a progress stream queued for a slow client.
const STREAM_QUEUE: usize = 64;
/// Request body chunks queued towards the manager.
const BODY_QUEUE: usize = 8;

/// `docker.io/library/busybox:latest` -> `busybox:latest`, as Docker shows names.
pub fn familiar(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("docker.io/library/") {
        rest.to_string()
    } else if let Some(rest) = name.strip_prefix("docker.io/") {
        rest.to_string()
    } else {
        name.to_string()
    }
}

/// The part of a config digest Docker shows as a layer's id: 12 hex digits.
fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// Whether a name carries a tag or digest (`a/b:1`, `a@sha256:..`; `host:5000/a` does not).
fn has_tag(name: &str) -> bool {
    name.contains('@') || name.rsplit('/').next().is_some_and(|l| l.contains(':'))
}

/// `name` and a tag (or digest) as one reference; no tag means `latest`.
fn reference(name: &str, tag: &str) -> String {
    if !tag.is_empty() {
        if tag.contains(':') {
            format!("{name}@{tag}")
        } else {
            format!("{name}:{tag}")
        }
    } else if has_tag(name) {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn unix_seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// The parts of an image config JSON that the API shows.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ImageConfig>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
struct HistoryEntry {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn config_file(img: &Image) -> ConfigFile {
    // A config the manager stored is valid JSON; an odd one shows as empty fields
    // rather than failing the whole answer.
    serde_json::from_slice(&img.config).unwrap_or_default()
}

fn repo_tags(img: &Image) -> Vec<String> {
    img.names
        .iter()
        .filter(|n| !n.contains('@'))
        .map(|n| familiar(n))
        .collect()
}

fn repo_digests(img: &Image) -> Vec<String> {
    img.repo_digests.iter().map(|n| familiar(n)).collect()
}

/// One image as `GET /images/json` lists it.
pub fn summary(img: &Image, containers: i64) -> ImageSummary {
    let labels = config_file(img)
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    ImageSummary {
        id: img.id.clone(),
        parent_id: img.parent.clone(),
        repo_tags: repo_tags(img),
        repo_digests: repo_digests(img),
        created: unix_seconds(&img.created),
        size: img.size,
        shared_size: -1,
        // Gone from API 1.44, but older clients (docker 20.10) read it.
        virtual_size: Some(img.size),
        labels,
        containers,
        manifests: None,
    }
}

/// How many of the engine's containers use each image id.
fn usage(engine: &Engine) -> HashMap<String, i64> {
    let mut n = HashMap::new();
    for rec in engine.store.list() {
        *n.entry(rec.image.clone()).or_insert(0) += 1;
    }
    n
}

/// Docker's image filters as the manager's `key=value` list.
fn manager_filters(ctx: &Ctx) -> Result<Vec<String>, EngineError> {
    let mut out = vec![];
    for (k, v) in ctx.query.filters()? {
        match k.as_str() {
            "dangling" | "label" | "reference" | "before" | "since" => out.push(format!("{k}={v}")),
            other => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter '{other}'"
                )))
            }
        }
    }
    Ok(out)
}

/// Maps the manager's "not found" to dockerd's "No such image: X".
async fn get(engine: &Engine, name: &str) -> Result<Image, EngineError> {
    match engine.manager.images_get(name).await {
        Err(EngineError::Manager {
            code: tonic::Code::NotFound,
            ..
        }) => Err(EngineError::NoSuchImage(name.to_string())),
        other => other,
    }
}

/// `GET /images/json`.
pub async fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let filters = manager_filters(ctx)?;
    let images = engine.manager.images_list(filters).await?;
    let used = usage(engine);
    // A build's intermediate images (untagged, with children) show only with `all`,
    // as dockerd lists them.
    let parents: std::collections::HashSet<&str> = images
        .iter()
        .map(|i| i.parent.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let all = ctx.query.bool("all");
    let mut out: Vec<ImageSummary> = images
        .iter()
        .filter(|i| all || !i.names.is_empty() || !parents.contains(i.id.as_str()))
        .map(|i| summary(i, used.get(&i.id).copied().unwrap_or(0)))
        .collect();
    out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(json(StatusCode::OK, &out))
}

/// `GET /images/{name}/json`.
pub async fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let img = get(engine, ctx.param()).await?;
    let cfg = config_file(&img);
    let mut graph = HashMap::new();
    if !img.top_snapshot.is_empty() {
        if let Ok(s) = engine.manager.snapshots_info(&img.top_snapshot).await {
            // An image's own layers: the top one is its "upper", the rest below it.
            for (k, v) in [("LowerDir", s.lower_dir), ("UpperDir", s.upper_dir)] {
                if !v.is_empty() {
                    graph.insert(k.to_string(), v);
                }
            }
        }
    }
    let out = ImageInspect {
        id: Some(img.id.clone()),
        repo_tags: Some(repo_tags(&img)),
        repo_digests: Some(repo_digests(&img)),
        parent: Some(img.parent.clone()),
        comment: Some(cfg.comment.clone().unwrap_or_default()),
        created: Some(cfg.created.clone().unwrap_or_else(|| img.created.clone())),
        docker_version: Some(String::new()),
        author: Some(cfg.author.clone().unwrap_or_default()),
        config: Some(cfg.config.clone().unwrap_or_default()),
        architecture: Some(cfg.architecture.clone()),
        variant: cfg.variant.clone(),
        os: Some(cfg.os.clone()),
        os_version: None,
        size: Some(img.size),
        virtual_size: Some(img.size),
        graph_driver: Some(DriverData {
            name: GRAPH_PLACEHOLDER.to_string(),
            data: HashMap::new(),
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_string(),
            layers: Some(cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default()),
        }),
        metadata: Some(ImageInspectMetadata {
            last_tag_time: None,
        }),
    };
    let mut data = serde_json::to_vec(&out)
        .map_err(|e| EngineError::io("encoding the image", std::io::Error::other(e)))?;
    put_graph_driver(&mut data, "overlay2", &graph)?;
    data.push(b'\n');
    let mut resp = Response::new(super::full(data));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Stands for `GraphDriver` in an encoded image until [`put_graph_driver`] writes it.
const GRAPH_PLACEHOLDER: &str = "\u{1}berth graph driver\u{1}";

/// Docker writes `GraphDriver` as Go encodes it: `Data` first with its keys sorted
/// (a Go map), then `Name`. bollard's type keeps `Data` in a HashMap (any order) and
/// puts `Name` first, so the object is written here, in place of the placeholder.
fn put_graph_driver(
    encoded: &mut Vec<u8>,
    name: &str,
    data: &HashMap<String, String>,
) -> Result<(), EngineError> {
    let err =
        |e: serde_json::Error| EngineError::io("encoding the image", std::io::Error::other(e));
    let mark = serde_json::to_vec(&DriverData {
        name: GRAPH_PLACEHOLDER.to_string(),
        data: HashMap::new(),
    })
    .map_err(err)?;
    // serde_json's maps are sorted: "Data" before "Name", its keys in order.
    let real = serde_json::to_vec(&json!({"Data": data, "Name": name})).map_err(err)?;
    if let Some(at) = encoded
        .windows(mark.len())
        .position(|w| w == mark.as_slice())
    {
        encoded.splice(at..at + mark.len(), real);
    }
    Ok(())
}

/// `GET /images/{name}/history`: newest first; only the top entry has the image's id
/// (Docker shows `<missing>` for layers that are not images of their own here).
pub async fn history(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let img = get(engine, ctx.param()).await?;
    let cfg = config_file(&img);
    let mut layers = img.layers.iter();
    let mut items: Vec<HistoryResponseItem> = if cfg.history.is_empty() {
        img.layers
            .iter()
            .map(|l| HistoryResponseItem {
                id: "<missing>".to_string(),
                created: unix_seconds(&img.created),
                created_by: String::new(),
                tags: vec![],
                size: l.size,
                comment: String::new(),
            })
            .collect()
    } else {
        cfg.history
            .iter()
            .map(|h| HistoryResponseItem {
                id: "<missing>".to_string(),
                created: unix_seconds(h.created.as_deref().unwrap_or("")),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: vec![],
                size: if h.empty_layer {
                    0
                } else {
                    layers.next().map(|l| l.size).unwrap_or(0)
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect()
    };
    if items.is_empty() {
        // Docker shows at least the image itself.
        items.push(HistoryResponseItem {
            id: String::new(),
            created: unix_seconds(&img.created),
            created_by: String::new(),
            tags: vec![],
            size: img.size,
            comment: String::new(),
        });
    }
    items.reverse();
    // Each entry from the top gets the id of the image it made, walking the parent
    // chain (built images), as dockerd fills them in; the rest stay `<missing>`.
    let mut cur = Some(img);
    for item in items.iter_mut() {
        let Some(i) = cur.take() else { break };
        item.id = i.id.clone();
        item.tags = repo_tags(&i);
        if i.parent.is_empty() {
            break;
        }
        cur = engine.manager.images_get(&i.parent).await.ok();
    }
    Ok(json(StatusCode::OK, &items))
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub async fn tag(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let repo = ctx.query.get("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(EngineError::BadParameter(
            "repository name must have at least one component".into(),
        ));
    }
    let target = reference(repo, ctx.query.get("tag").unwrap_or(""));
    let img = get(engine, ctx.param()).await?;
    let img = engine.manager.images_tag(&img.id, &target).await?;
    engine
        .event_hub
        .publish(DockerEvent::now("image", "tag", &img.id).attr("name", familiar(&target)));
    Ok(super::status_only(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn delete(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let name = ctx.param();
    // The id, for the untag events of a delete that only removes a name.
    let id = engine
        .manager
        .images_get(name)
        .await
        .map(|i| i.id)
        .unwrap_or_default();
    engine.removals_settled().await;
    let r = match engine
        .manager
        .images_delete(name, ctx.query.bool("force"), ctx.query.bool("noprune"))
        .await
    {
        Err(EngineError::Manager {
            code: tonic::Code::NotFound,
            ..
        }) => return Err(EngineError::NoSuchImage(name.to_string())),
        other => other?,
    };
    let mut out = vec![];
    for u in &r.untagged {
        let u = familiar(u);
        engine
            .event_hub
            .publish(DockerEvent::now("image", "untag", &id).attr("name", u.clone()));
        out.push(ImageDeleteResponseItem {
            untagged: Some(u),
            deleted: None,
        });
    }
    for d in &r.deleted {
        engine
            .event_hub
            .publish(DockerEvent::now("image", "delete", d).attr("name", d.clone()));
        out.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(d.clone()),
        });
    }
    Ok(json(StatusCode::OK, &out))
}

/// `POST /images/prune?filters=`: `dangling=false` means every unused image.
pub async fn prune(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let mut all = false;
    let mut filters = vec![];
    for (k, v) in ctx.query.filters()? {
        match (k.as_str(), v.as_str()) {
            ("dangling", "false" | "0") => all = true,
            ("dangling", _) => {}
            ("label", _) | ("before", _) | ("since", _) => filters.push(format!("{k}={v}")),
            (other, _) => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter '{other}'"
                )))
            }
        }
    }
    engine.removals_settled().await;
    let r = engine.manager.images_prune(all, filters).await?;
    for d in &r.deleted {
        engine
            .event_hub
            .publish(DockerEvent::now("image", "delete", d).attr("name", d.clone()));
    }
    let out = ImagePruneResponse {
        images_deleted: Some(
            r.deleted
                .into_iter()
                .map(|d| ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(d),
                })
                .collect(),
        ),
        space_reclaimed: Some(r.space_reclaimed),
    };
    Ok(json(StatusCode::OK, &out))
}

/// Decodes base64 in either alphabet (Docker sends X-Registry-Auth URL-safe), with or
/// without padding.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The credentials in `X-Registry-Auth` (base64 JSON; absent or `{}` = anonymous).
fn registry_auth(ctx: &Ctx) -> Result<Auth, EngineError> {
    let Some(h) = ctx.headers.get("x-registry-auth") else {
        return Ok(Auth::default());
    };
    let raw = h.to_str().unwrap_or("");
    if raw.is_empty() {
        return Ok(Auth::default());
    }
    let bad = || EngineError::BadParameter("invalid X-Registry-Auth header".into());
    let bytes = base64_decode(raw).ok_or_else(bad)?;
    #[derive(Deserialize, Default)]
    struct AuthConfig {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
        #[serde(default)]
        auth: String,
        #[serde(default, rename = "identitytoken")]
        identity_token: String,
    }
    let a: AuthConfig = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let (mut username, mut password) = (a.username, a.password);
    // `auth` is base64 "user:password", as in ~/.docker/config.json.
    if username.is_empty() && !a.auth.is_empty() {
        if let Some(pair) = base64_decode(&a.auth) {
            let pair = String::from_utf8_lossy(&pair).into_owned();
            if let Some((u, p)) = pair.split_once(':') {
                username = u.to_string();
                password = p.to_string();
            }
        }
    }
    Ok(Auth {
        username,
        password,
        identity_token: a.identity_token,
    })
}

/// `POST /auth` (docker login): the registry is asked to accept the credentials;
/// nothing is stored (the client keeps them).
pub async fn auth(engine: &Engine, req: Request<Incoming>) -> Result<Response<Body>, EngineError> {
    #[derive(Deserialize, Default)]
    struct AuthConfig {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
        #[serde(default)]
        serveraddress: String,
        #[serde(default, rename = "identitytoken")]
        identity_token: String,
    }
    let a: AuthConfig = super::read_json(req.into_body()).await?;
    let auth = Auth {
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    };
    let token = match engine.manager.images_login(&a.serveraddress, auth).await {
        Ok(t) => t,
        // dockerd answers a refusal with 401 and the registry's verdict.
        Err(EngineError::Manager {
            code: tonic::Code::Unauthenticated,
            message,
        }) => return Err(EngineError::Unauthorized(message)),
        Err(e) => return Err(e),
    };
    Ok(json(
        StatusCode::OK,
        &json!({"Status": "Login Succeeded", "IdentityToken": token}),
    ))
}

/// Docker's progress bar: `[==>      ]  1.2MB/3.4MB`.
fn bar(current: i64, total: i64) -> String {
    let size = |n: i64| {
        let units = ["B", "kB", "MB", "GB", "TB"];
        let mut v = n.max(0) as f64;
        let mut i = 0;
        while v >= 1000.0 && i + 1 < units.len() {
            v /= 1000.0;
            i += 1;
        }
        if i == 0 {
            format!("{}{}", n.max(0), units[0])
        } else {
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
                + units[i]
        }
    };
    if total <= 0 {
        return size(current);
    }
    const WIDTH: i64 = 50;
    let done = (current.clamp(0, total) * WIDTH / total).clamp(0, WIDTH);
    let mut s = String::from("[");
    // Both lie in 0..=WIDTH (clamped above).
    let done_cols = usize::try_from(done).unwrap_or(0);
    s.push_str(&"=".repeat(done_cols));
    if done < WIDTH {
        s.push('>');
        s.push_str(&" ".repeat(usize::try_from(WIDTH - done - 1).unwrap_or(0)));
    }
    s.push_str(&format!("] {:>8}/{}", size(current), size(total)));
    s
}

/// A progress line for one layer.
fn layer_line(id: &str, status: &str, p: Option<&LayerProgress>) -> Value {
    match p {
        Some(p) if p.total > 0 || p.current > 0 => json!({
            "status": status,
            "progressDetail": {"current": p.current, "total": p.total},
            "progress": bar(p.current, p.total),
            "id": id,
        }),
        _ => json!({"status": status, "progressDetail": {}, "id": id}),
    }
}

fn error_line(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// Writes JSON lines to a streamed answer.
struct Lines(mpsc::Sender<Bytes>);

impl Lines {
    /// Sends one line; false once the client is gone.
    async fn send(&self, v: Value) -> bool {
        let mut line = v.to_string().into_bytes();
        line.extend_from_slice(b"\r\n");
        self.0.send(Bytes::from(line)).await.is_ok()
    }
}

/// A streamed JSON answer and the writer that feeds it.
fn json_stream() -> (Lines, Response<Body>) {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (Lines(tx), resp)
}

/// Waits for a manager stream's first message, so that an immediate failure (no such
/// image, registry refused) is an HTTP error rather than a line in a 200 stream, as
/// dockerd answers before it has written anything.
async fn first<T>(updates: &mut Updates<T>) -> Result<Option<T>, EngineError> {
    updates.recv().await.transpose()
}

/// The request body as a channel of chunks for the manager; the copy stops when the
/// manager stops reading.
fn body_channel(body: Incoming) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    // The tar is cut short; the manager sees the end and fails on it.
                    tracing::debug!(error = %e, "reading a request body");
                    return;
                }
            }
        }
    });
    rx
}

/// `POST /images/create`: a pull (`fromImage`, `tag`) or an import (`fromSrc=-` with
/// the tar as body, `repo`, `tag`, `changes`, `message`).
pub async fn create(
    engine: &std::sync::Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    if let Some(src) = ctx.query.get("fromSrc") {
        return import(engine, ctx, src, req.into_body()).await;
    }
    let from = ctx.query.get("fromImage").unwrap_or("");
    if from.is_empty() {
        return Err(EngineError::BadParameter(
            "fromImage or fromSrc is required".into(),
        ));
    }
    let tag = ctx.query.get("tag").unwrap_or("");
    let wanted = reference(from, tag);
    let auth = registry_auth(ctx)?;
    let before = engine.manager.images_get(&wanted).await.ok().map(|i| i.id);
    let mut updates = engine.manager.images_pull(&wanted, auth).await?;
    let head = first(&mut updates).await?;
    let (out, resp) = json_stream();
    let engine = engine.clone();
    tokio::spawn(async move {
        let (repo, tag_shown) = match wanted.split_once('@') {
            Some((r, d)) => (r.to_string(), d.to_string()),
            None => match wanted.rsplit_once(':') {
                Some((r, t)) if has_tag(&wanted) => (r.to_string(), t.to_string()),
                _ => (wanted.clone(), "latest".to_string()),
            },
        };
        let repo_familiar = familiar(&repo);
        let path = if repo_familiar.contains('/') || repo_familiar.contains('.') {
            repo_familiar.clone()
        } else {
            format!("library/{repo_familiar}")
        };
        if !out
            .send(json!({"status": format!("Pulling from {path}"), "id": tag_shown}))
            .await
        {
            return;
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut next = head.map(Ok);
        loop {
            let item = match next.take() {
                Some(i) => i,
                None => match updates.recv().await {
                    Some(i) => i,
                    None => {
                        let _ = out.send(error_line("the pull ended early")).await;
                        return;
                    }
                },
            };
            match item {
                Ok(PullUpdate::Layer(p)) => {
                    let id = short(&p.digest);
                    // A layer we already had is finished business: dockerd says
                    // "Already exists" and nothing more about it.
                    if seen.get(&id).is_some_and(|s| s == "exists") {
                        continue;
                    }
                    let mut lines = vec![];
                    if !seen.contains_key(&id) && p.status != "exists" {
                        lines.push(layer_line(&id, "Pulling fs layer", None));
                    }
                    let status = match p.status.as_str() {
                        "waiting" => "Waiting",
                        "downloading" => "Downloading",
                        "verifying" => "Verifying Checksum",
                        "extracting" => "Extracting",
                        "done" => "Pull complete",
                        "exists" => "Already exists",
                        other => other,
                    };
                    if p.status == "extracting" && seen.get(&id).is_some_and(|s| s == "downloading")
                    {
                        lines.push(layer_line(&id, "Download complete", None));
                    }
                    let with_bar = matches!(p.status.as_str(), "downloading" | "extracting");
                    lines.push(layer_line(&id, status, with_bar.then_some(&p)));
                    seen.insert(id, p.status.clone());
                    for l in lines {
                        if !out.send(l).await {
                            return;
                        }
                    }
                }
                Ok(PullUpdate::Done(img)) => {
                    if !img.manifest_digest.is_empty() {
                        let _ = out
                            .send(json!({"status": format!("Digest: {}", img.manifest_digest)}))
                            .await;
                    }
                    let shown = familiar(&wanted);
                    let status = if before.as_deref() == Some(img.id.as_str()) {
                        format!("Status: Image is up to date for {shown}")
                    } else {
                        format!("Status: Downloaded newer image for {shown}")
                    };
                    let _ = out.send(json!({"status": status})).await;
                    engine.event_hub.publish(
                        DockerEvent::now("image", "pull", &shown).attr("name", shown.clone()),
                    );
                    return;
                }
                Err(e) => {
                    let _ = out.send(error_line(&e.message())).await;
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// The `changes` of an import or commit: the parameter may repeat, and the docker
/// CLI sends one per `--change`.
fn changes(ctx: &Ctx) -> Vec<String> {
    ctx.query
        .0
        .iter()
        .filter(|(k, v)| k == "changes" && !v.trim().is_empty())
        .map(|(_, v)| v.clone())
        .collect()
}

async fn import(
    engine: &Engine,
    ctx: &Ctx,
    src: &str,
    body: Incoming,
) -> Result<Response<Body>, EngineError> {
    if src != "-" {
        return Err(EngineError::NotImplemented(format!(
            "importing from {src:?} is not implemented in berth yet: send the tar as the body (fromSrc=-)"
        )));
    }
    let repo = ctx.query.get("repo").unwrap_or("");
    let target = if repo.is_empty() {
        String::new()
    } else {
        reference(repo, ctx.query.get("tag").unwrap_or(""))
    };
    let message = ctx.query.get("message").unwrap_or("");
    let img = engine
        .manager
        .images_import(&target, changes(ctx), message, body_channel(body))
        .await?;
    let shown = if target.is_empty() {
        img.id.clone()
    } else {
        familiar(&target)
    };
    engine
        .event_hub
        .publish(DockerEvent::now("image", "import", &img.id).attr("name", shown));
    let mut line = json!({"status": img.id}).to_string();
    line.push_str("\r\n");
    let mut resp = Response::new(super::full(line));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// `POST /images/{name}/push?tag=`: an empty tag pushes every tag of the repository.
pub async fn push(
    engine: &std::sync::Arc<Engine>,
    ctx: &Ctx,
) -> Result<Response<Body>, EngineError> {
    let name = ctx.param().to_string();
    let tag = ctx.query.get("tag").unwrap_or("");
    let auth = registry_auth(ctx)?;
    let targets: Vec<String> = if tag.is_empty() && !has_tag(&name) {
        let img = get(engine, &name).await?;
        let prefix = format!("{}:", familiar(&name));
        let tags: Vec<String> = repo_tags(&img)
            .into_iter()
            .filter(|t| t.starts_with(&prefix))
            .collect();
        if tags.is_empty() {
            vec![reference(&name, "")]
        } else {
            tags
        }
    } else {
        vec![reference(&name, tag)]
    };
    let mut config_ids = std::collections::HashSet::new();
    for t in &targets {
        config_ids.insert(get(engine, t).await?.id);
    }
    let (out, resp) = json_stream();
    let engine = engine.clone();
    tokio::spawn(async move {
        let repo = familiar(&name);
        let repo = repo
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or(repo.clone(), |(r, _)| r.to_string());
        if !out
            .send(json!({"status": format!("The push refers to repository [{repo}]")}))
            .await
        {
            return;
        }
        for target in targets {
            let mut updates = match engine.manager.images_push(&target, auth.clone()).await {
                Ok(u) => u,
                Err(e) => {
                    let _ = out.send(error_line(&e.message())).await;
                    return;
                }
            };
            let mut seen = std::collections::HashSet::new();
            loop {
                match updates.recv().await {
                    Some(Ok(PushUpdate::Layer(p))) => {
                        // The config blob goes up too; docker lists layers only.
                        if config_ids.contains(&p.digest) {
                            continue;
                        }
                        let id = short(&p.digest);
                        if seen.insert(id.clone())
                            && !out.send(layer_line(&id, "Preparing", None)).await
                        {
                            return;
                        }
                        let (status, with_bar) = match p.status.as_str() {
                            "waiting" => ("Waiting", false),
                            "pushing" => ("Pushing", true),
                            "pushed" | "done" => ("Pushed", false),
                            "exists" => ("Layer already exists", false),
                            other => (other, false),
                        };
                        if !out
                            .send(layer_line(&id, status, with_bar.then_some(&p)))
                            .await
                        {
                            return;
                        }
                    }
                    Some(Ok(PushUpdate::Done { digest })) => {
                        let t = target
                            .rsplit_once(':')
                            .map(|(_, t)| t.to_string())
                            .unwrap_or_default();
                        let _ = out
                            .send(json!({"status": format!("{t}: digest: {digest}")}))
                            .await;
                        let _ = out
                            .send(
                                json!({"progressDetail": {}, "aux": {"Tag": t, "Digest": digest}}),
                            )
                            .await;
                        engine.event_hub.publish(
                            DockerEvent::now("image", "push", &familiar(&target))
                                .attr("name", familiar(&target)),
                        );
                        break;
                    }
                    Some(Err(e)) => {
                        let _ = out.send(error_line(&e.message())).await;
                        return;
                    }
                    None => {
                        let _ = out.send(error_line("the push ended early")).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(resp)
}

/// `POST /images/load?quiet=`: a `docker save` archive as the body.
pub async fn load(
    engine: &std::sync::Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let quiet = ctx.query.bool("quiet");
    let mut updates = engine
        .manager
        .images_load(body_channel(req.into_body()))
        .await?;
    let (out, resp) = json_stream();
    // A bad archive is found while reading it: dockerd answers 200 and the error in
    // the stream (docker-py raises ImageLoadError from it, the CLI prints it).
    let head = match first(&mut updates).await {
        Ok(h) => h,
        Err(e) => {
            tokio::spawn(async move {
                let _ = out.send(error_line(&e.message())).await;
            });
            return Ok(resp);
        }
    };
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut next = head.map(Ok);
        let mut any = false;
        loop {
            let item = match next.take() {
                Some(i) => Some(i),
                None => updates.recv().await,
            };
            match item {
                Some(Ok(LoadUpdate::Layer(p))) => {
                    if !quiet
                        && !out
                            .send(layer_line(&short(&p.digest), "Loading layer", Some(&p)))
                            .await
                    {
                        return;
                    }
                }
                Some(Ok(LoadUpdate::Image {
                    image: img,
                    archive_names,
                })) => {
                    any = true;
                    // What the archive named, as dockerd reports it: the image's
                    // other tags in the store are not the load's doing.
                    let names: Vec<String> = archive_names
                        .iter()
                        .filter(|n| !n.contains('@'))
                        .map(|n| familiar(n))
                        .collect();
                    let lines: Vec<String> = if names.is_empty() {
                        vec![format!("Loaded image ID: {}\n", img.id)]
                    } else {
                        names
                            .iter()
                            .map(|n| format!("Loaded image: {n}\n"))
                            .collect()
                    };
                    for l in lines {
                        if !out.send(json!({"stream": l})).await {
                            return;
                        }
                    }
                    engine.event_hub.publish(
                        DockerEvent::now("image", "load", &img.id)
                            .attr("name", names.first().cloned().unwrap_or(img.id.clone())),
                    );
                }
                Some(Err(e)) => {
                    let _ = out.send(error_line(&e.message())).await;
                    return;
                }
                None => {
                    if !any {
                        let _ = out.send(error_line("the archive held no image")).await;
                    }
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// `GET /images/get?names=a&names=b` and `GET /images/{name}/get`: a `docker save`
/// tar of one or more images.
pub async fn save(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let names: Vec<String> = match ctx.matched.param.as_deref() {
        Some(n) => vec![n.to_string()],
        None => ctx
            .query
            .0
            .iter()
            .filter(|(k, v)| k == "names" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
    };
    if names.is_empty() {
        return Err(EngineError::BadParameter("no image names given".into()));
    }
    for n in &names {
        get(engine, n).await?;
    }
    let mut updates = engine.manager.images_save(names.clone()).await?;
    let head = first(&mut updates).await?;
    for n in &names {
        engine
            .event_hub
            .publish(DockerEvent::now("image", "save", n).attr("name", n.clone()));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    tokio::spawn(async move {
        let mut next = head;
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match updates.recv().await {
                    Some(Ok(c)) => c,
                    // A failure half-way can only cut the tar short: the client sees
                    // a truncated archive, as with dockerd.
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "image save failed");
                        return;
                    }
                    None => return,
                },
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`, with an
/// optional Config as the body to use instead of the container's.
pub async fn commit(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let name = ctx.query.get("container").unwrap_or("");
    if name.is_empty() {
        return Err(EngineError::BadParameter("container is required".into()));
    }
    let rec = engine
        .store
        .get(name)
        .map_err(|_| EngineError::NoSuchContainer(name.to_string()))?;
    let body: Value = super::read_json(req.into_body()).await?;
    let config = match body {
        Value::Object(m) if !m.is_empty() => Value::Object(m),
        _ => {
            let mut c = serde_json::to_value(&rec.config)
                .map_err(|e| EngineError::io("encoding the config", std::io::Error::other(e)))?;
            // What belongs to the container, not to the image made from it.
            if let Some(o) = c.as_object_mut() {
                o.remove("Image");
                o.remove("Hostname");
            }
            c
        }
    };
    let repo = ctx.query.get("repo").unwrap_or("");
    let target = if repo.is_empty() {
        String::new()
    } else {
        reference(repo, ctx.query.get("tag").unwrap_or(""))
    };
    let comment = ctx.query.get("comment").unwrap_or("").to_string();
    // dockerd pauses by default; only a running, unpaused container can be.
    let pause = ctx
        .query
        .get("pause")
        .is_none_or(|_| ctx.query.bool("pause"))
        && crate::lifecycle::Phase::of(&rec.state) == crate::lifecycle::Phase::Running;
    let img = engine
        .manager
        .images_commit(
            CommitRequest {
                container_id: rec.id.clone(),
                reference: target.clone(),
                author: ctx.query.get("author").unwrap_or("").to_string(),
                comment: comment.clone(),
                changes: changes(ctx),
                config: config.to_string().into_bytes(),
                exclude: super::container_ops::MOUNT_POINTS
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                ..CommitRequest::default()
            },
            pause,
        )
        .await?;
    let ev = engine
        .container_event("commit", &rec.id)
        .attr("comment", comment)
        .attr("imageID", img.id.clone())
        .attr("imageRef", familiar(&target));
    engine.event_hub.publish(ev);
    // dockerd writes "Id" (bollard's IdResponse would write "ID").
    Ok(json(StatusCode::CREATED, &json!({ "Id": img.id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_driver_is_written_as_dockers() {
        #[derive(serde::Serialize)]
        struct Img {
            #[serde(rename = "Id")]
            id: &'static str,
            #[serde(rename = "GraphDriver")]
            graph_driver: DriverData,
            #[serde(rename = "Os")]
            os: &'static str,
        }
        let v = Img {
            id: "x",
            graph_driver: DriverData {
                name: GRAPH_PLACEHOLDER.to_string(),
                data: HashMap::new(),
            },
            os: "linux",
        };
        let mut out = serde_json::to_vec(&v).unwrap();
        let data = HashMap::from([
            ("UpperDir".to_string(), "/u".to_string()),
            ("LowerDir".to_string(), "/l".to_string()),
            ("WorkDir".to_string(), "/w".to_string()),
            ("MergedDir".to_string(), "/m".to_string()),
        ]);
        put_graph_driver(&mut out, "overlay2", &data).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"Id":"x","GraphDriver":{"Data":{"LowerDir":"/l","MergedDir":"/m","UpperDir":"/u","WorkDir":"/w"},"Name":"overlay2"},"Os":"linux"}"#
        );
    }

    #[test]
    fn references_and_names() {
        assert_eq!(reference("busybox", ""), "busybox:latest");
        assert_eq!(reference("busybox", "1"), "busybox:1");
        assert_eq!(reference("localhost:5000/a", ""), "localhost:5000/a:latest");
        assert_eq!(reference("a", "sha256:ab"), "a@sha256:ab");
        assert_eq!(reference("a:2", ""), "a:2");
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/me/x:1"), "me/x:1");
        assert_eq!(familiar("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64_decode("e30=").unwrap(), b"{}");
        assert_eq!(base64_decode("e30").unwrap(), b"{}");
        assert_eq!(base64_decode("Pz8-").unwrap(), b"??>");
        assert_eq!(base64_decode("Pz8+").unwrap(), b"??>");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn progress_bars_like_dockers() {
        let b = bar(50, 100);
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(b.ends_with("50B/100B"), "{b}");
        assert!(bar(100, 100).starts_with(&format!("[{}]", "=".repeat(50))));
        assert_eq!(bar(1_234_000, 0), "1.234MB");
    }
}
