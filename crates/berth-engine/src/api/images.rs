//! `/images/*`: list, inspect, and `POST /images/create` with `fromSrc=-` (docker
//! import). Images live in berth-manager; this file turns its records into Docker's
//! shapes and names.

use bollard_stubs::models::{
    DriverData, ImageConfig, ImageInspect, ImageInspectRootFs, ImageSummary,
};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{json, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::manager::Image;

/// The name as docker prints it: `busybox:latest` for
/// `docker.io/library/busybox:latest`, `me/app:1` for `docker.io/me/app:1`.
pub fn familiar(name: &str) -> String {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_string()
}

fn created_unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn config_json(i: &Image) -> serde_json::Value {
    serde_json::from_slice(&i.config).unwrap_or(serde_json::Value::Null)
}

fn summary(i: &Image) -> ImageSummary {
    let cfg = config_json(i);
    ImageSummary {
        id: i.id.clone(),
        parent_id: String::new(),
        repo_tags: i.names.iter().map(|n| familiar(n)).collect(),
        repo_digests: i.repo_digests.iter().map(|n| familiar(n)).collect(),
        created: created_unix(&i.created),
        size: i.size,
        shared_size: -1,
        virtual_size: Some(i.size),
        labels: serde_json::from_value(cfg["config"]["Labels"].clone()).unwrap_or_default(),
        containers: -1,
        manifests: None,
    }
}

/// `GET /images/json`.
pub async fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let filters: Vec<String> = ctx
        .query
        .filters()?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let images = engine.manager.images_list(filters).await?;
    let out: Vec<ImageSummary> = images.iter().map(summary).collect();
    Ok(json(StatusCode::OK, &out))
}

/// `GET /images/{name}/json`.
pub async fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let i = engine.manager.images_get(ctx.param()).await?;
    let cfg = config_json(&i);
    let text = |k: &str| cfg[k].as_str().map(str::to_string);
    let out = ImageInspect {
        id: Some(i.id.clone()),
        repo_tags: Some(i.names.iter().map(|n| familiar(n)).collect()),
        repo_digests: Some(i.repo_digests.iter().map(|n| familiar(n)).collect()),
        parent: Some(String::new()),
        comment: Some(
            cfg["history"]
                .as_array()
                .and_then(|h| h.last())
                .and_then(|h| h["comment"].as_str())
                .unwrap_or("")
                .to_string(),
        ),
        created: text("created").or_else(|| Some(i.created.clone())),
        author: text("author"),
        config: serde_json::from_value::<ImageConfig>(cfg["config"].clone()).ok(),
        architecture: text("architecture"),
        variant: text("variant"),
        os: text("os"),
        size: Some(i.size),
        virtual_size: Some(i.size),
        graph_driver: Some(DriverData {
            name: "overlay2".to_string(),
            data: Default::default(),
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_string(),
            layers: Some(i.layers.iter().map(|l| l.diff_id.clone()).collect()),
        }),
        ..Default::default()
    };
    Ok(json(StatusCode::OK, &out))
}

/// `POST /images/create`. Only `fromSrc=-` (import of the request body) is served;
/// pulls go through the manager's Pull, not wired into berthd yet.
pub async fn create(
    engine: &Engine,
    ctx: &Ctx,
    body: Incoming,
) -> Result<Response<Body>, EngineError> {
    match (ctx.query.get("fromSrc"), ctx.query.get("fromImage")) {
        (Some("-"), _) => {}
        (Some(src), _) => {
            return Err(EngineError::NotImplemented(format!(
                "import from a URL ({src}) is not supported by berth: send the tarball as the request body (fromSrc=-)"
            )))
        }
        (None, Some(image)) => {
            return Err(EngineError::NotImplemented(format!(
                "pulling {image} through berthd is not implemented yet: import the image (berth import) or load it (berth load)"
            )))
        }
        (None, None) => {
            return Err(EngineError::BadParameter(
                "fromImage or fromSrc is required".to_string(),
            ))
        }
    }
    // `repo` may carry the tag itself (docker import f.tar app:1 sends repo=app:1).
    let repo = ctx.query.get("repo").unwrap_or("");
    let reference = match ctx.query.get("tag").filter(|t| !t.is_empty()) {
        Some(tag) if !repo.is_empty() => format!("{repo}:{tag}"),
        _ => repo.to_string(),
    };
    let changes: Vec<String> = ctx
        .query
        .0
        .iter()
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.clone())
        .collect();
    let message = ctx.query.get("message").unwrap_or("");
    let data: Bytes = body
        .collect()
        .await
        .map_err(|e| EngineError::BadParameter(format!("reading the image tarball: {e}")))?
        .to_bytes();
    if data.is_empty() {
        return Err(EngineError::BadParameter(
            "the request body (the image tarball) is empty".to_string(),
        ));
    }
    let image = engine
        .manager
        .images_import(&reference, changes, message, data)
        .await?;
    // dockerd answers an import with a JSON progress stream whose last status is
    // the image id; the docker CLI prints that status.
    let line = serde_json::json!({ "status": image.id });
    let mut r = Response::new(super::full(format!("{line}\r\n")));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
