//! The container endpoints beyond the life cycle: restart, pause, unpause, update,
//! top, changes, export, stats and prune. Each turns a Docker request into the
//! manager's RPCs (Tasks.Pause/Resume/Update/Stats/Pids, Snapshots.Changes/Export) and
//! the answer into Docker's JSON.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ChangeType, ContainerPruneResponse, ContainerTopResponse, ContainerUpdateResponse,
    FilesystemChange, HostConfig, ImageConfig, Resources,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::containers::stop_options;
use super::{channel_body, json, read_json, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::lifecycle::{self, now_rfc3339, passwd_root, Phase};
use crate::spec::{self, SpecInput};
use crate::store::ContainerRecord;

/// How often a streamed `stats` sends a sample, as dockerd's collector does.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Go's zero time, which dockerd writes for a time that never happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn not_running(rec: &ContainerRecord) -> EngineError {
    EngineError::Conflict(format!("Container {} is not running", rec.id))
}

/// `POST /containers/{id}/restart?t=&signal=`: stop (if running), then start.
pub async fn restart(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let opts = stop_options(ctx)?;
    lifecycle::restart(engine, ctx.param(), &opts).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/pause`.
pub async fn pause(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    lifecycle::pause(engine, ctx.param()).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    lifecycle::unpause(engine, ctx.param()).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Whether a JSON value is Go's zero value: dockerd's update leaves a field alone
/// when the client sends it empty, and the docker CLI sends every field.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_unset),
    }
}

/// Applies an update body (Resources and RestartPolicy) to a HostConfig: only the
/// fields the body sets change.
pub fn merge_update(hc: &HostConfig, body: &Map<String, Value>) -> Result<HostConfig, EngineError> {
    // Typed first, so a wrong type is a 400 naming the field.
    serde_json::from_value::<Resources>(Value::Object(body.clone()))
        .map_err(EngineError::InvalidJson)?;
    let resource_keys = serde_json::to_value(Resources::default())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .unwrap_or_default();
    let mut merged = serde_json::to_value(hc)
        .map_err(|e| EngineError::io("encoding the host config", std::io::Error::other(e)))?;
    let Some(target) = merged.as_object_mut() else {
        return Err(EngineError::BadParameter(
            "host config is not an object".into(),
        ));
    };
    for (k, v) in body {
        let known =
            k == "RestartPolicy" || resource_keys.iter().any(|r| r == k) || is_resource_key(k);
        if known && !is_unset(v) {
            target.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(merged).map_err(EngineError::InvalidJson)
}

/// The Resources fields (Resources::default() serializes none of its `None`s, so the
/// names are listed too).
fn is_resource_key(k: &str) -> bool {
    matches!(
        k,
        "CpuShares"
            | "Memory"
            | "CgroupParent"
            | "BlkioWeight"
            | "BlkioWeightDevice"
            | "BlkioDeviceReadBps"
            | "BlkioDeviceWriteBps"
            | "BlkioDeviceReadIOps"
            | "BlkioDeviceWriteIOps"
            | "CpuPeriod"
            | "CpuQuota"
            | "CpuRealtimePeriod"
            | "CpuRealtimeRuntime"
            | "CpusetCpus"
            | "CpusetMems"
            | "Devices"
            | "DeviceCgroupRules"
            | "DeviceRequests"
            | "KernelMemoryTCP"
            | "MemoryReservation"
            | "MemorySwap"
            | "MemorySwappiness"
            | "NanoCpus"
            | "OomKillDisable"
            | "Init"
            | "PidsLimit"
            | "Ulimits"
            | "CpuCount"
            | "CpuPercent"
            | "IOMaximumIOps"
            | "IOMaximumBandwidth"
    )
}

/// `POST /containers/{id}/update`: new limits for a container, applied at once to a
/// running one (Tasks.Update) and kept for its next start.
pub async fn update(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let body: Value = read_json(req.into_body()).await?;
    let body = match body {
        Value::Null => Map::new(),
        Value::Object(o) => o,
        _ => {
            return Err(EngineError::BadParameter(
                "the update body must be a JSON object".into(),
            ))
        }
    };
    let rec = engine.store.get(ctx.param())?;
    let hc = merge_update(&rec.host_config, &body)?;
    let info = engine.manager.snapshots_info(&rec.snapshot_key).await?;
    let rootfs = passwd_root(&info);
    let vols = engine.volumes();
    // The same generator as start, so limits are checked and converted one way.
    let spec = spec::build_spec(&SpecInput {
        id: &rec.id,
        config: &rec.config,
        host_config: &hc,
        image: &ImageConfig::default(),
        rootfs: Path::new(&rootfs),
        container_dir: &engine.store.container_dir(&rec.id),
        init_path: &engine.config.init_path,
        volumes: &vols,
        host: &engine.host,
    })?;
    if Phase::of(&rec.state).has_live_task() {
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        let data = serde_json::to_vec(&resources)
            .map_err(|e| EngineError::io("encoding the resources", std::io::Error::other(e)))?;
        engine
            .manager
            .tasks_update(&rec.id, data)
            .await
            .map_err(|e| match e {
                EngineError::Manager { code, message } => EngineError::Manager {
                    code,
                    message: format!("Cannot update container {}: {message}", rec.id),
                },
                other => other,
            })?;
    }
    engine
        .store
        .update(&rec.id, |r| r.host_config = hc.clone())?;
    engine.publish_container("update", &rec.id, &[]);
    Ok(json(
        StatusCode::OK,
        &ContainerUpdateResponse {
            warnings: Some(vec![]),
        },
    ))
}

/// Docker's `ps` output parsing: the title line, then one row per process whose PID
/// column is one of `pids`; the last column (the command) keeps its spaces.
pub fn parse_ps(output: &str, pids: &[u32]) -> Result<ContainerTopResponse, EngineError> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::BadParameter("Couldn't find PID field in ps output".into()))?;
    let mut processes = vec![];
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_index) else {
            continue;
        };
        let pid: u32 = pid.parse().map_err(|_| {
            EngineError::BadParameter(format!("Unexpected pid '{pid}' in ps output"))
        })?;
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..last].iter().map(|s| s.to_string()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(ContainerTopResponse {
        titles: Some(titles),
        processes: Some(processes),
    })
}

/// `GET /containers/{id}/top?ps_args=`: the host's `ps` with the client's arguments,
/// limited to the container's processes (Tasks.Pids), as dockerd does.
pub async fn top(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    if !Phase::of(&rec.state).has_live_task() {
        return Err(not_running(&rec));
    }
    let pids = engine.manager.tasks_pids(&rec.id).await?;
    let args = ctx
        .query
        .get("ps_args")
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("-ef");
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    // std's Command (fork+exec of ps) on a blocking thread: no tokio process feature
    // needed for one short-lived child.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ps")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .map_err(|e| EngineError::io("running ps", std::io::Error::other(e)))?
    .map_err(|e| EngineError::io("running ps (is procps installed?)", e))?;
    if !out.status.success() {
        return Err(EngineError::BadParameter(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let resp = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
    engine.publish_container("top", &rec.id, &[]);
    Ok(json(StatusCode::OK, &resp))
}

/// Mount points the runtime creates in the writable layer when the image lacks them.
/// dockerd makes these in a separate "-init" layer, so `docker diff` never lists
/// them; berth has no such layer, so they are left out here instead.
pub const MOUNT_POINTS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
    "/proc",
    "/sys",
    "/sbin/berth-init",
];

/// Drops the added mount points, and a directory reported changed only because
/// of them (`C /etc` when /etc/hosts was the one thing added there).
pub fn without_mount_points(changes: Vec<crate::manager::Change>) -> Vec<crate::manager::Change> {
    let is_mount_point =
        |c: &crate::manager::Change| c.kind == "A" && MOUNT_POINTS.contains(&c.path.as_str());
    let dropped: Vec<String> = changes
        .iter()
        .filter(|c| is_mount_point(c))
        .map(|c| c.path.clone())
        .collect();
    let kept: Vec<crate::manager::Change> =
        changes.into_iter().filter(|c| !is_mount_point(c)).collect();
    let has_other_child = |dir: &str| {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        kept.iter().any(|c| c.path.starts_with(&prefix))
    };
    kept.iter()
        .filter(|c| {
            let parent_of_dropped = dropped.iter().any(|d| {
                Path::new(d)
                    .parent()
                    .is_some_and(|p| p == Path::new(&c.path))
            });
            !(c.kind == "C" && parent_of_dropped && !has_other_child(&c.path))
        })
        .cloned()
        .collect()
}

/// `GET /containers/{id}/changes`: the writable layer's changes, Kind 0 = modified,
/// 1 = added, 2 = deleted.
pub async fn changes(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let changes = engine.manager.snapshots_changes(&rec.snapshot_key).await?;
    let mut out = vec![];
    for c in without_mount_points(changes) {
        let kind = match c.kind.as_str() {
            "C" => ChangeType::_0,
            "A" => ChangeType::_1,
            "D" => ChangeType::_2,
            other => {
                return Err(EngineError::io(
                    "reading the changes",
                    std::io::Error::other(format!(
                        "unknown change kind {other:?} from the manager"
                    )),
                ))
            }
        };
        out.push(FilesystemChange { path: c.path, kind });
    }
    Ok(json(StatusCode::OK, &out))
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
pub async fn export(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let mut chunks = engine.manager.snapshots_export(&rec.snapshot_key).await?;
    engine.publish_container("export", &rec.id, &[]);
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let id = rec.id.clone();
    tokio::spawn(async move {
        while let Some(item) = chunks.recv().await {
            match item {
                Ok(data) => {
                    if tx.send(data).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // The status line is gone already: cutting the stream short is
                    // the only way left to tell the client, which then sees a
                    // truncated tar.
                    tracing::warn!(container = %id, error = %e, "export failed part-way");
                    return;
                }
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

/// What the host contributes to a stats sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSample {
    /// All CPUs' time since boot in nanoseconds, as dockerd counts it.
    pub system_cpu_usage: u64,
    pub online_cpus: u64,
    /// Bytes of memory the machine has.
    pub mem_total: u64,
}

/// Reads /proc/stat and /proc/meminfo; what cannot be read stays 0.
pub fn host_sample() -> HostSample {
    let mut h = HostSample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        // USER_HZ is 100 on every Linux ABI Docker supports; dockerd assumes it too.
        const NS_PER_TICK: u64 = 1_000_000_000 / 100;
        for line in stat.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("cpu") => {
                    // user nice system idle iowait irq softirq, as dockerd sums them.
                    let ticks: u64 = f.take(7).filter_map(|v| v.parse::<u64>().ok()).sum();
                    h.system_cpu_usage = ticks.saturating_mul(NS_PER_TICK);
                }
                Some(c) if c.starts_with("cpu") => h.online_cpus += 1,
                _ => {}
            }
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        h.mem_total = mem
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
    }
    h
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn blkio_list(raw: &Value, key: &str) -> Value {
    match raw
        .get("blkio")
        .and_then(|b| b.get(key))
        .and_then(Value::as_array)
    {
        Some(entries) if !entries.is_empty() => Value::Array(
            entries
                .iter()
                .map(|e| {
                    json!({
                        "major": u(e, &["major"]),
                        "minor": u(e, &["minor"]),
                        "op": e.get("op").and_then(Value::as_str).unwrap_or(""),
                        "value": u(e, &["value"]),
                    })
                })
                .collect(),
        ),
        // dockerd writes null for the lists cgroup v2 does not have.
        _ => Value::Null,
    }
}

/// Docker's `cpu_stats` from runc's stats `data` and the host's counters.
fn cpu_stats(raw: &Value, host: &HostSample) -> Value {
    let percpu: Vec<u64> = raw
        .pointer("/cpu/usage/percpu")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let online = if host.online_cpus > 0 {
        host.online_cpus
    } else {
        percpu.len() as u64
    };
    let mut usage = json!({
        "total_usage": u(raw, &["cpu", "usage", "total"]),
        "usage_in_kernelmode": u(raw, &["cpu", "usage", "kernel"]),
        "usage_in_usermode": u(raw, &["cpu", "usage", "user"]),
    });
    if !percpu.is_empty() {
        usage["percpu_usage"] = json!(percpu);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": host.system_cpu_usage,
        "online_cpus": online,
        "throttling_data": {
            "periods": u(raw, &["cpu", "throttling", "periods"]),
            "throttled_periods": u(raw, &["cpu", "throttling", "throttledPeriods"]),
            "throttled_time": u(raw, &["cpu", "throttling", "throttledTime"]),
        },
    })
}

/// An empty `cpu_stats`, as dockerd sends for `precpu_stats` before a first sample.
fn zero_cpu_stats() -> Value {
    json!({
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// One sample in Docker's stats JSON (`types.StatsJSON`) from runc's stats `data`
/// object. `pre` is the previous sample's (read time, cpu_stats), if any.
pub fn docker_stats(
    rec: &ContainerRecord,
    raw: &Value,
    host: &HostSample,
    read: &str,
    pre: Option<&(String, Value)>,
) -> Value {
    let mut limit = u(raw, &["memory", "usage", "limit"]);
    // No limit reads as "max" (u64::MAX) or the page-rounded huge v1 default:
    // dockerd reports the machine's memory then.
    if host.mem_total > 0 && (limit == 0 || limit > host.mem_total) {
        limit = host.mem_total;
    }
    let mut memory = json!({
        "usage": u(raw, &["memory", "usage", "usage"]),
        "limit": limit,
    });
    if let Some(stats) = raw.pointer("/memory/raw").filter(|v| v.is_object()) {
        memory["stats"] = stats.clone();
    }
    let max = u(raw, &["memory", "usage", "max"]);
    if max > 0 {
        memory["max_usage"] = json!(max);
        memory["failcnt"] = json!(u(raw, &["memory", "usage", "failcnt"]));
    }
    let mut pids = json!({ "current": u(raw, &["pids", "current"]) });
    let pids_limit = u(raw, &["pids", "limit"]);
    if pids_limit > 0 {
        pids["limit"] = json!(pids_limit);
    }
    let (preread, precpu) = match pre {
        Some((t, c)) => (t.clone(), c.clone()),
        None => (ZERO_TIME.to_string(), zero_cpu_stats()),
    };
    json!({
        "name": rec.name,
        "id": rec.id,
        "read": read,
        "preread": preread,
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": blkio_list(raw, "ioServiceBytesRecursive"),
            "io_serviced_recursive": blkio_list(raw, "ioServicedRecursive"),
            "io_queue_recursive": blkio_list(raw, "ioQueueRecursive"),
            "io_service_time_recursive": blkio_list(raw, "ioServiceTimeRecursive"),
            "io_wait_time_recursive": blkio_list(raw, "ioWaitTimeRecursive"),
            "io_merged_recursive": blkio_list(raw, "ioMergedRecursive"),
            "io_time_recursive": blkio_list(raw, "ioTimeRecursive"),
            "sectors_recursive": blkio_list(raw, "sectorsRecursive"),
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats(raw, host),
        "precpu_stats": precpu,
        "memory_stats": memory,
    })
}

/// The stats of a container that is not running: zeros, as dockerd sends.
fn empty_stats(rec: &ContainerRecord) -> Value {
    json!({
        "name": rec.name,
        "id": rec.id,
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": zero_cpu_stats(),
        "precpu_stats": zero_cpu_stats(),
        "memory_stats": {},
    })
}

async fn sample(
    engine: &Engine,
    rec: &ContainerRecord,
    pre: Option<&(String, Value)>,
) -> Result<Value, EngineError> {
    let data = engine.manager.tasks_stats(&rec.id).await?;
    let raw: Value = serde_json::from_slice(&data)
        .map_err(|e| EngineError::io("reading the manager's stats", std::io::Error::other(e)))?;
    let host = tokio::task::spawn_blocking(host_sample)
        .await
        .unwrap_or_default();
    let mut v = docker_stats(rec, &raw, &host, &now_rfc3339(), pre);
    if let Some(n) = crate::network::view::stats(rec.state.pid.unwrap_or(0)) {
        v["networks"] = n;
    }
    Ok(v)
}

fn line(v: &Value) -> Bytes {
    let mut data = v.to_string().into_bytes();
    data.push(b'\n');
    Bytes::from(data)
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: Docker's stats JSON from the
/// container's cgroup (Tasks.Stats), one object per second while streaming.
pub async fn stats(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    // dockerd streams unless told `stream=0`.
    let stream = ctx.query.get("stream").is_none() || ctx.query.bool("stream");
    let one_shot = ctx.query.bool("one-shot");
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    if !Phase::of(&rec.state).has_live_task() {
        let _ = tx.send(line(&empty_stats(&rec))).await;
    } else if !stream {
        let mut first = sample(engine, &rec, None).await?;
        if !one_shot {
            // Two samples, so the CPU percentage the client computes from
            // cpu_stats - precpu_stats is not 0 (dockerd primes it the same way).
            tokio::time::sleep(STATS_INTERVAL).await;
            let pre = (
                first["read"].as_str().unwrap_or(ZERO_TIME).to_string(),
                first["cpu_stats"].take(),
            );
            first = match sample(engine, &rec, Some(&pre)).await {
                Ok(v) => v,
                // It stopped in between: the zeros dockerd sends for a stopped one.
                Err(_) => empty_stats(&rec),
            };
        }
        let _ = tx.send(line(&first)).await;
    } else {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut pre: Option<(String, Value)> = None;
            loop {
                let mut v = match sample(&engine, &rec, pre.as_ref()).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(container = %rec.id, error = %e, "stats stream ends");
                        return;
                    }
                };
                let this = v.clone();
                if tx.send(line(&v)).await.is_err() {
                    return;
                }
                pre = Some((
                    this["read"].as_str().unwrap_or(ZERO_TIME).to_string(),
                    v["cpu_stats"].take(),
                ));
                tokio::time::sleep(STATS_INTERVAL).await;
            }
        });
    }
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// A prune `until` value: a unix time, an RFC 3339 time, or a duration before now
/// (`24h`, `30m`, `10s`).
fn parse_until(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, EngineError> {
    let bad = || EngineError::BadParameter(format!("invalid until filter {v:?}"));
    // A unix time, maybe with a fraction (dropped).
    let whole = v.split_once('.').map_or(v, |(w, _)| w);
    if let Ok(secs) = whole.parse::<i64>() {
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
    Ok(now - d)
}

fn label_matches(rec: &ContainerRecord, filter: &str) -> bool {
    let labels: HashMap<String, String> = rec.config.labels.clone().unwrap_or_default();
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// `POST /containers/prune?filters=`: removes every container that is not running
/// (filters `until`, `label`, `label!`).
pub async fn prune(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let now = Utc::now();
    let mut until = None;
    let mut labels = vec![];
    let mut not_labels = vec![];
    for (k, v) in ctx.query.filters()? {
        match k.as_str() {
            "until" => until = Some(parse_until(&v, now)?),
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
    let mut reclaimed = 0i64;
    for rec in engine.store.list() {
        if Phase::of(&rec.state).is_running() {
            continue;
        }
        if let Some(until) = until {
            let created = DateTime::parse_from_rfc3339(&rec.created)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now);
            if created >= until {
                continue;
            }
        }
        if !labels.iter().all(|l| label_matches(&rec, l))
            || not_labels.iter().any(|l| label_matches(&rec, l))
        {
            continue;
        }
        // What the container wrote (its upper layer), measured before it goes.
        let size = match engine.manager.snapshots_info(&rec.snapshot_key).await {
            Ok(info) if !info.upper_dir.is_empty() => {
                let upper = std::path::PathBuf::from(info.upper_dir);
                tokio::task::spawn_blocking(move || super::volumes::dir_size(&upper))
                    .await
                    .unwrap_or(0)
            }
            _ => 0,
        };
        match lifecycle::remove(engine, &rec.id, false).await {
            Ok(()) => {
                deleted.push(rec.id.clone());
                reclaimed = reclaimed.saturating_add(size);
            }
            Err(e) => tracing::warn!(container = %rec.id, error = %e, "prune could not remove"),
        }
    }
    Ok(json(
        StatusCode::OK,
        &ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_is_filtered_by_pid_and_keeps_the_command_whole() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 08:00 ? 00:00:01 /sbin/init splash\n\
                   root 4242 4200 0 08:01 ? 00:00:00 sleep 1000\n\
                   root 4243 4242 0 08:01 ? 00:00:00 sh -c echo a  b\n";
        let r = parse_ps(out, &[4242, 4243]).unwrap();
        assert_eq!(r.titles.as_ref().unwrap().len(), 8);
        let p = r.processes.unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0][1], "4242");
        assert_eq!(p[0][7], "sleep 1000");
        assert_eq!(p[1][7], "sh -c echo a b");
        assert!(parse_ps("USER CMD\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn diff_leaves_out_the_runtimes_mount_points() {
        let ch = |kind: &str, path: &str| crate::manager::Change {
            kind: kind.into(),
            path: path.into(),
        };
        let got = without_mount_points(vec![
            ch("C", "/etc"),
            ch("A", "/etc/hostname"),
            ch("A", "/etc/hosts"),
            ch("A", "/test"),
            ch("D", "/tmp"),
        ]);
        assert_eq!(got, vec![ch("A", "/test"), ch("D", "/tmp")]);
        let got = without_mount_points(vec![
            ch("C", "/etc"),
            ch("A", "/etc/hosts"),
            ch("A", "/etc/motd"),
        ]);
        assert_eq!(got, vec![ch("C", "/etc"), ch("A", "/etc/motd")]);
    }

    #[test]
    fn update_changes_only_the_fields_sent() {
        let hc = HostConfig {
            memory: Some(100 << 20),
            cpu_shares: Some(512),
            ..HostConfig::default()
        };
        let body = json!({"Memory": 209715200, "CpuShares": 0, "MemorySwap": 0,
                          "RestartPolicy": {"Name": "always"}});
        let merged = merge_update(&hc, body.as_object().unwrap()).unwrap();
        assert_eq!(merged.memory, Some(200 << 20));
        assert_eq!(merged.cpu_shares, Some(512));
        assert_eq!(
            merged
                .restart_policy
                .and_then(|p| p.name)
                .map(|n| n.to_string()),
            Some("always".to_string())
        );
        let bad = json!({"Memory": "lots"});
        assert_eq!(
            merge_update(&hc, bad.as_object().unwrap())
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }

    #[test]
    fn stats_take_dockers_shape() {
        let rec = ContainerRecord {
            id: "abc".into(),
            name: "/web".into(),
            ..ContainerRecord::default()
        };
        let raw = json!({
            "cpu": {"usage": {"total": 5000, "percpu": [3000, 2000], "kernel": 10, "user": 20},
                    "throttling": {"periods": 3}},
            "memory": {"usage": {"limit": 104857600, "usage": 4096, "max": 8192, "failcnt": 1},
                       "raw": {"total_inactive_file": 100}},
            "pids": {"current": 2},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 7}]}
        });
        let host = HostSample {
            system_cpu_usage: 99,
            online_cpus: 2,
            mem_total: 1 << 30,
        };
        let v = docker_stats(&rec, &raw, &host, "t1", None);
        assert_eq!(v["memory_stats"]["usage"], 4096);
        assert_eq!(v["memory_stats"]["limit"], 104857600);
        assert_eq!(v["memory_stats"]["max_usage"], 8192);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 100);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 5000);
        assert_eq!(
            v["cpu_stats"]["cpu_usage"]["percpu_usage"],
            json!([3000, 2000])
        );
        assert_eq!(v["cpu_stats"]["system_cpu_usage"], 99);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["cpu_stats"]["throttling_data"]["periods"], 3);
        assert_eq!(v["pids_stats"], json!({"current": 2}));
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][0]["op"],
            "Read"
        );
        assert_eq!(v["blkio_stats"]["io_serviced_recursive"], Value::Null);
        assert_eq!(v["name"], "/web");
        assert_eq!(v["preread"], ZERO_TIME);
        // no limit: the machine's memory
        let raw = json!({"memory": {"usage": {"limit": u64::MAX, "usage": 1}}});
        let v = docker_stats(
            &rec,
            &raw,
            &host,
            "t2",
            Some(&("t1".into(), json!({"x": 1}))),
        );
        assert_eq!(v["memory_stats"]["limit"], 1u64 << 30);
        assert_eq!(v["precpu_stats"], json!({"x": 1}));
        assert_eq!(v["preread"], "t1");
    }

    #[test]
    fn until_forms() {
        let now = DateTime::parse_from_rfc3339("2024-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_until("24h", now).unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_until("1704067200", now).unwrap().timestamp(),
            1704067200
        );
        assert!(parse_until("soon", now).is_err());
    }
}
