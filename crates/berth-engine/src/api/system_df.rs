//! `GET /system/df`: images (with how many containers use each), containers, volumes
//! (with their size and users) and the classic builder's step cache.

use std::collections::{HashMap, HashSet};

use bollard_stubs::models::{ContainerSummary, SystemDataUsageResponse};
use http::{Response, StatusCode};

use super::images::{familiar, summary};
use super::{json, volumes, Body};
use crate::engine::Engine;
use crate::error::EngineError;

/// `GET /system/df`.
pub async fn df(engine: &Engine) -> Result<Response<Body>, EngineError> {
    let images = engine.manager.images_list(vec![]).await?;
    let records = engine.store.list();
    let mut layers_size = 0i64;
    let mut seen = HashSet::new();
    for img in &images {
        for l in &img.layers {
            if seen.insert(l.diff_id.clone()) {
                layers_size = layers_size.saturating_add(l.size);
            }
        }
    }
    // dockerd's SharedSize: the unpacked bytes of an image's layers that other
    // images have too. The docker CLI counts an image in use as `Size -
    // SharedSize`, and as nothing while SharedSize is -1 (the list's "not
    // computed"). An image that shares no layer shares 0 bytes; the manager
    // does not give a layer's unpacked size, so one that shares some stays -1.
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for img in &images {
        let mut own = HashSet::new();
        for l in img.layers.iter().filter(|l| own.insert(l.diff_id.as_str())) {
            *holders.entry(l.diff_id.as_str()).or_default() += 1;
        }
    }
    let image_summaries = images
        .iter()
        .map(|i| {
            let n = records.iter().filter(|r| r.image == i.id).count();
            let mut s = summary(i, i64::try_from(n).unwrap_or(i64::MAX));
            let shares = i
                .layers
                .iter()
                .any(|l| holders.get(l.diff_id.as_str()).is_some_and(|h| *h > 1));
            if !shares {
                s.shared_size = 0;
            }
            s
        })
        .collect();
    let sizes = super::containers::sizes(engine, &records, &images).await;
    let containers = records
        .iter()
        .zip(sizes)
        .map(|(r, (rw, root))| {
            let state = r
                .state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "created".to_string());
            ContainerSummary {
                id: Some(r.id.clone()),
                names: Some(vec![r.name.clone()]),
                image: r.config.image.clone().map(|i| familiar(&i)),
                image_id: Some(r.image.clone()),
                command: Some(
                    std::iter::once(r.path.clone())
                        .chain(r.args.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                created: chrono::DateTime::parse_from_rfc3339(&r.created)
                    .ok()
                    .map(|t| t.timestamp()),
                state: Some(state),
                status: Some(super::containers::status_text(r)),
                size_rw: Some(rw),
                size_root_fs: Some(root),
                labels: r.config.labels.clone(),
                ..ContainerSummary::default()
            }
        })
        .collect();
    let users = volumes::users(engine);
    let vols = tokio::task::spawn_blocking({
        let all = volumes::all(engine);
        move || {
            all.into_iter()
                .map(|v| volumes::with_usage(v, &users))
                .collect::<Vec<_>>()
        }
    })
    .await
    .map_err(|e| EngineError::io("measuring volumes", std::io::Error::other(e)))?;
    Ok(json(
        StatusCode::OK,
        &SystemDataUsageResponse {
            layers_size: Some(layers_size),
            images: Some(image_summaries),
            containers: Some(containers),
            volumes: Some(vols),
            build_cache: Some(
                crate::build::cache(engine)
                    .entries()
                    .into_iter()
                    .map(|(key, e)| bollard_stubs::models::BuildCache {
                        id: Some(key),
                        parent: Some(e.parent.clone()),
                        parents: Some(vec![e.parent]),
                        typ: Some(bollard_stubs::models::BuildCacheTypeEnum::REGULAR),
                        description: Some(e.created_by),
                        in_use: Some(false),
                        shared: Some(false),
                        size: Some(0),
                        created_at: Some(e.created.clone()),
                        last_used_at: Some(e.created),
                        usage_count: Some(0),
                    })
                    .collect(),
            ),
        },
    ))
}
