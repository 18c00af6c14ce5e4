//! `GET /events?since=&until=&filters=`: the hub's kept events from `since`, then the
//! live ones, one JSON object per line, until `until` passes or the client leaves.
//! Without `since` only new events are sent, as dockerd does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Response;
use tokio::sync::{broadcast, mpsc};

use super::{channel_body, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{now_nanos, parse_timestamp, DockerEvent};

/// Filters by key; the values of one key are alternatives.
#[derive(Debug, Default)]
struct Filters(Vec<(String, String)>);

impl Filters {
    fn parse(pairs: Vec<(String, String)>) -> Result<Filters, EngineError> {
        for (k, _) in &pairs {
            if !matches!(
                k.as_str(),
                "type"
                    | "event"
                    | "container"
                    | "image"
                    | "volume"
                    | "label"
                    | "network"
                    | "daemon"
                    | "scope"
            ) {
                return Err(EngineError::BadParameter(format!("invalid filter '{k}'")));
            }
        }
        Ok(Filters(pairs))
    }

    fn key_matches(&self, key: &str, ev: &DockerEvent) -> bool {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            return true;
        }
        let name = ev.attributes.get("name").map(String::as_str).unwrap_or("");
        values.iter().any(|v| match key {
            "type" => ev.typ == *v,
            "event" => ev.action == *v || ev.action.split(':').next() == Some(v),
            "container" => ev.typ == "container" && (ev.id.starts_with(v) || name == *v),
            "image" => {
                let image = ev.attributes.get("image").map(String::as_str).unwrap_or("");
                (ev.typ == "image" && (ev.id == *v || name == *v))
                    || image == *v
                    || image.split(':').next() == Some(v)
            }
            "volume" => ev.typ == "volume" && ev.id == *v,
            "network" => ev.typ == "network" && (ev.id == *v || name == *v),
            "daemon" => ev.typ == "daemon",
            "scope" => *v == "local",
            "label" => match v.split_once('=') {
                Some((k, want)) => ev.attributes.get(k).is_some_and(|x| x == want),
                None => ev.attributes.contains_key(*v),
            },
            _ => false,
        })
    }

    fn matches(&self, ev: &DockerEvent) -> bool {
        [
            "type",
            "event",
            "container",
            "image",
            "volume",
            "label",
            "network",
            "daemon",
            "scope",
        ]
        .iter()
        .all(|k| self.key_matches(k, ev))
    }
}

fn time_param(ctx: &Ctx, key: &str) -> Result<Option<i64>, EngineError> {
    match ctx.query.get(key) {
        None | Some("") => Ok(None),
        Some(v) => parse_timestamp(v)
            .map(Some)
            .ok_or_else(|| EngineError::BadParameter(format!("invalid value for {key}: {v:?}"))),
    }
}

fn line(ev: &DockerEvent) -> Bytes {
    let mut b = ev.to_json().to_string().into_bytes();
    b.push(b'\n');
    Bytes::from(b)
}

/// `GET /events`.
pub fn events(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let since = time_param(ctx, "since")?;
    let until = time_param(ctx, "until")?;
    let filters = Filters::parse(ctx.query.filters()?)?;
    let (history, mut live) = engine.event_hub.listen();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if let Some(since) = since {
            for ev in history.iter().filter(|e| e.time_nano >= since) {
                if until.is_some_and(|u| ev.time_nano > u) {
                    return;
                }
                if filters.matches(ev) && tx.send(line(ev)).await.is_err() {
                    return;
                }
            }
        }
        loop {
            // The stream ends at `until`, whether or not anything happens by then.
            let left = until.map(|u| u.saturating_sub(now_nanos()));
            if left.is_some_and(|l| l <= 0) {
                return;
            }
            let deadline = async {
                match left {
                    Some(l) => {
                        tokio::time::sleep(Duration::from_nanos(u64::try_from(l).unwrap_or(0)))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) => {
                        if since.is_some_and(|s| ev.time_nano < s) {
                            continue;
                        }
                        if until.is_some_and(|u| ev.time_nano > u) {
                            return;
                        }
                        if filters.matches(&ev) && tx.send(line(&ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an events listener fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_dockerd() {
        let ev = DockerEvent::now("container", "die", "abcdef")
            .attr("name", "web")
            .attr("image", "busybox:latest");
        let f = |pairs: &[(&str, &str)]| {
            Filters::parse(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .unwrap()
        };
        assert!(f(&[]).matches(&ev));
        assert!(f(&[("type", "container"), ("event", "die")]).matches(&ev));
        assert!(f(&[("event", "start"), ("event", "die")]).matches(&ev));
        assert!(!f(&[("event", "start")]).matches(&ev));
        assert!(f(&[("container", "web")]).matches(&ev));
        assert!(f(&[("container", "abc")]).matches(&ev));
        assert!(f(&[("image", "busybox")]).matches(&ev));
        assert!(!f(&[("type", "image")]).matches(&ev));
        assert!(Filters::parse(vec![("bogus".into(), "x".into())]).is_err());
    }
}
