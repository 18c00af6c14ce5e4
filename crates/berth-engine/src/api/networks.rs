//! Network endpoints: list, inspect, create, remove, prune, connect, disconnect. The
//! work is in `crate::network`; this file parses requests and publishes the
//! `network` events dockerd publishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard_stubs::models::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkPruneResponse,
};
use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{json, read_json, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::DockerEvent;
use crate::network::store::NetworkRecord;
use crate::network::{container, view, CreateRequest};

fn event(engine: &Engine, action: &str, net: &NetworkRecord) {
    engine.event_hub.publish(
        DockerEvent::now("network", action, &net.id)
            .attr("name", net.name.clone())
            .attr("type", net.driver.clone()),
    );
}

fn label_matches(net: &NetworkRecord, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => net.labels.get(k).is_some_and(|x| x == v),
        None => net.labels.contains_key(filter),
    }
}

fn matches(
    engine: &Engine,
    net: &NetworkRecord,
    key: &str,
    value: &str,
) -> Result<bool, EngineError> {
    Ok(match key {
        "name" => net.name.contains(value),
        "id" => net.id.starts_with(value) || net.id.contains(value),
        "driver" => net.driver == value,
        "label" => label_matches(net, value),
        "scope" => value == "local",
        "type" => match value {
            "custom" => !net.builtin,
            "builtin" => net.builtin,
            other => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter: 'type'='{other}'"
                )))
            }
        },
        "dangling" => {
            let dangling = engine.networks.attached_containers(&net.id).is_empty() && !net.builtin;
            match value {
                "true" | "1" => dangling,
                "false" | "0" => !dangling,
                other => {
                    return Err(EngineError::BadParameter(format!(
                        "invalid filter: 'dangling'='{other}'"
                    )))
                }
            }
        }
        other => {
            return Err(EngineError::BadParameter(format!(
                "invalid filter '{other}'"
            )))
        }
    })
}

/// `GET /networks?filters=`.
pub fn list(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in ctx.query.filters()? {
        by_key.entry(k).or_default().push(v);
    }
    let mut out: Vec<Value> = vec![];
    for net in engine.networks.list() {
        let mut keep = true;
        for (k, vals) in &by_key {
            let mut any = false;
            for v in vals {
                any |= matches(engine, &net, k, v)?;
            }
            keep &= any;
        }
        if keep {
            out.push(view::network_json(engine, &net, false));
        }
    }
    Ok(json(StatusCode::OK, &out))
}

/// `GET /networks/{id}?verbose=&scope=`.
pub fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let net = engine.networks.get(ctx.param())?;
    if let Some(scope) = ctx.query.get("scope").filter(|s| !s.is_empty()) {
        if scope != "local" {
            return Err(
                crate::network::NetworkError::NoSuchNetwork(ctx.param().to_string()).into(),
            );
        }
    }
    Ok(json(
        StatusCode::OK,
        &view::network_json(engine, &net, true),
    ))
}

/// `POST /networks/create`.
pub async fn create(
    engine: &Engine,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: NetworkCreateRequest = read_json(req.into_body()).await?;
    let ipam = body.ipam.clone().unwrap_or_default();
    let net = engine
        .networks
        .create(CreateRequest {
            name: body.name.clone(),
            driver: body.driver.clone().unwrap_or_default(),
            scope: body.scope.clone().unwrap_or_default(),
            internal: body.internal.unwrap_or(false),
            attachable: body.attachable.unwrap_or(false),
            ingress: body.ingress.unwrap_or(false),
            enable_ipv6: body.enable_ipv6.unwrap_or(false),
            ipam_driver: ipam.driver.clone().unwrap_or_default(),
            ipam_config: ipam.config.clone().unwrap_or_default(),
            ipam_options: ipam
                .options
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            options: body
                .options
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            labels: body
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
        .await?;
    event(engine, "create", &net);
    Ok(json(
        StatusCode::CREATED,
        &NetworkCreateResponse {
            id: net.id,
            warning: String::new(),
        },
    ))
}

/// `DELETE /networks/{id}`.
pub async fn delete(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let net = engine.networks.remove(ctx.param()).await?;
    event(engine, "destroy", &net);
    Ok(status_only(StatusCode::NO_CONTENT))
}

fn parse_until(v: &str) -> Result<DateTime<Utc>, EngineError> {
    let bad = || EngineError::BadParameter(format!("invalid until filter {v:?}"));
    // Unix seconds, with a fraction docker accepts and drops.
    if v.parse::<f64>().is_ok() {
        let whole = v.split_once('.').map_or(v, |(s, _)| s);
        let secs: i64 = whole.parse().map_err(|_| bad())?;
        return DateTime::from_timestamp(secs, 0).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        _ => return Err(bad()),
    };
    Ok(Utc::now() - d)
}

/// `POST /networks/prune?filters=`: every user network no running container is on.
pub async fn prune(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let mut until = None;
    let mut labels = vec![];
    let mut not_labels = vec![];
    for (k, v) in ctx.query.filters()? {
        match k.as_str() {
            "until" => until = Some(parse_until(&v)?),
            "label" => labels.push(v),
            "label!" => not_labels.push(v),
            other => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter '{other}'"
                )))
            }
        }
    }
    let mut deleted = vec![];
    for net in engine.networks.list() {
        if net.builtin || !engine.networks.attached_containers(&net.id).is_empty() {
            continue;
        }
        if let Some(u) = until {
            let created = DateTime::parse_from_rfc3339(&net.created)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(u);
            if created >= u {
                continue;
            }
        }
        if !labels.iter().all(|l| label_matches(&net, l))
            || not_labels.iter().any(|l| label_matches(&net, l))
        {
            continue;
        }
        match engine.networks.remove(&net.id).await {
            Ok(n) => {
                event(engine, "destroy", &n);
                deleted.push(n.name);
            }
            Err(e) => tracing::debug!(network = %net.name, error = %e, "prune: kept"),
        }
    }
    Ok(json(
        StatusCode::OK,
        &NetworkPruneResponse {
            networks_deleted: Some(deleted),
        },
    ))
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: NetworkConnectRequest = read_json(req.into_body()).await?;
    let c = body
        .container
        .filter(|c| !c.is_empty())
        .ok_or_else(|| EngineError::BadParameter("no container given".into()))?;
    container::connect(
        engine,
        ctx.param(),
        &c,
        body.endpoint_config.unwrap_or_default(),
    )
    .await?;
    Ok(status_only(StatusCode::OK))
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: NetworkDisconnectRequest = read_json(req.into_body()).await?;
    let c = body
        .container
        .filter(|c| !c.is_empty())
        .ok_or_else(|| EngineError::BadParameter("no container given".into()))?;
    container::disconnect(engine, ctx.param(), &c, body.force.unwrap_or(false)).await?;
    Ok(status_only(StatusCode::OK))
}
