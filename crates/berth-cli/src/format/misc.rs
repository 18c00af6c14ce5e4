//! docker's smaller formatters: volumes, `system df` (summary and `-v`), `stats`
//! and `history`, each with its default table, header names and fields.

use serde_json::Value as Json;

use super::units::{
    bytes_size, ellipsis, human_duration, human_size, human_size_prec, size3, truncate_id,
};
use crate::template::{Map, Value};

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn labels_joined(v: &Json) -> String {
    let mut l: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
        .collect();
    l.sort();
    l.join(",")
}

// ---- volumes

pub const VOLUME_TABLE: &str = "table {{.Driver}}\t{{.Name}}";

pub fn volume_format(source: &str, quiet: bool) -> String {
    match (source, quiet) {
        ("table" | "", true) => "{{.Name}}".into(),
        ("table" | "", false) => VOLUME_TABLE.into(),
        ("raw", true) => "name: {{.Name}}".into(),
        ("raw", false) => "name: {{.Name}}\\ndriver: {{.Driver}}\\n".into(),
        (custom, _) => custom.into(),
    }
}

pub fn volume_header() -> Map {
    super::header(&[
        ("ID", "ID"),
        ("Name", "VOLUME NAME"),
        ("Group", "GROUP"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("Availability", "AVAILABILITY"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Links", "LINKS"),
        ("Size", "SIZE"),
        ("Status", "STATUS"),
    ])
}

pub fn volume_row(v: &Json) -> Value {
    let mut m = Map::structure("*formatter.volumeContext");
    let usage = &v["UsageData"];
    m.insert("Availability", "N/A");
    m.insert("Driver", s(v, "Driver"));
    m.insert("Group", "N/A");
    m.insert("Labels", labels_joined(&v["Labels"]));
    m.insert(
        "Links",
        if usage.is_object() {
            usage["RefCount"].as_i64().unwrap_or(0).to_string()
        } else {
            "N/A".into()
        },
    );
    m.insert("Mountpoint", s(v, "Mountpoint"));
    m.insert("Name", s(v, "Name"));
    m.insert("Scope", s(v, "Scope"));
    m.insert(
        "Size",
        if usage.is_object() {
            human_size(usage["Size"].as_i64().unwrap_or(0) as f64)
        } else {
            "N/A".into()
        },
    );
    m.insert("Status", "N/A");
    let labels = v["Labels"].clone();
    m.insert(
        "Label",
        Value::Func(std::sync::Arc::new(move |a: &[Value]| {
            let name = a.first().and_then(Value::as_str).unwrap_or("");
            Ok(Value::Str(labels[name].as_str().unwrap_or("").to_string()))
        })),
    );
    Value::Map(m)
}

// ---- networks

pub const NETWORK_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

pub fn network_format(source: &str, quiet: bool) -> String {
    match (source, quiet) {
        ("table" | "", true) => "{{.ID}}".into(),
        ("table" | "", false) => NETWORK_TABLE.into(),
        ("raw", true) => "network_id: {{.ID}}".into(),
        ("raw", false) => {
            "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n"
                .into()
        }
        (custom, _) => custom.into(),
    }
}

pub fn network_header() -> Map {
    super::header(&[
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ])
}

/// docker's networkContext.
pub fn network_row(n: &Json, trunc: bool) -> Value {
    let mut m = Map::structure("*formatter.networkContext");
    let id = s(n, "Id");
    m.insert(
        "ID",
        if trunc {
            truncate_id(id)
        } else {
            id.to_string()
        },
    );
    m.insert("Name", s(n, "Name"));
    m.insert("Driver", s(n, "Driver"));
    m.insert("Scope", s(n, "Scope"));
    m.insert(
        "IPv6",
        n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
    );
    m.insert(
        "Internal",
        n["Internal"].as_bool().unwrap_or(false).to_string(),
    );
    m.insert("Labels", labels_joined(&n["Labels"]));
    m.insert("CreatedAt", s(n, "Created"));
    let labels = n["Labels"].clone();
    m.insert(
        "Label",
        Value::Func(std::sync::Arc::new(move |a: &[Value]| {
            let name = a.first().and_then(Value::as_str).unwrap_or("");
            Ok(Value::Str(labels[name].as_str().unwrap_or("").to_string()))
        })),
    );
    Value::Map(m)
}

// ---- system df

pub const DF_TABLE: &str =
    "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
pub const DF_IMAGES_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
pub const DF_CONTAINERS_TABLE: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
pub const DF_VOLUMES_TABLE: &str = "table {{.Name}}\t{{.Links}}\t{{.Size}}";
pub const DF_BUILD_TABLE: &str = "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}";

pub fn df_header() -> Map {
    super::header(&[
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ])
}

fn with_pct(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            human_size(reclaimable as f64),
            reclaimable * 100 / total
        )
    } else {
        human_size(reclaimable as f64)
    }
}

fn df_row(kind: &str, total: usize, active: usize, size: String, reclaimable: String) -> Value {
    let mut m = Map::structure("*formatter.diskUsageContext");
    m.insert("Active", active.to_string());
    m.insert("Reclaimable", reclaimable);
    m.insert("Size", size);
    m.insert("TotalCount", total.to_string());
    m.insert("Type", kind);
    Value::Map(m)
}

/// The four summary rows of `system df` from `GET /system/df`.
pub fn df_rows(df: &Json) -> Vec<Value> {
    let list = |k: &str| df[k].as_array().cloned().unwrap_or_default();
    let (images, containers, volumes, build) = (
        list("Images"),
        list("Containers"),
        list("Volumes"),
        list("BuildCache"),
    );
    let n = |v: &Json, k: &str| v[k].as_i64().unwrap_or(0);
    let layers = df["LayersSize"]
        .as_i64()
        .unwrap_or_else(|| images.iter().map(|i| n(i, "Size")).sum());
    let img_used: i64 = images
        .iter()
        .filter(|i| {
            n(i, "Containers") != 0
                && n(i, "Size") != -1
                && i["SharedSize"].as_i64().unwrap_or(0) != -1
        })
        .map(|i| n(i, "Size") - i["SharedSize"].as_i64().unwrap_or(0))
        .sum();
    let active_state = |c: &Json| matches!(s(c, "State"), "running" | "paused" | "restarting");
    let ctr_size: i64 = containers.iter().map(|c| n(c, "SizeRw")).sum();
    let ctr_reclaim: i64 = containers
        .iter()
        .filter(|c| !active_state(c))
        .map(|c| n(c, "SizeRw"))
        .sum();
    let vol_size = |v: &Json| v["UsageData"]["Size"].as_i64().unwrap_or(-1);
    let vol_total: i64 = volumes.iter().map(vol_size).filter(|x| *x != -1).sum();
    let vol_reclaim: i64 = volumes
        .iter()
        .filter(|v| vol_size(v) != -1 && v["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(vol_size)
        .sum();
    let build_size = df["BuilderSize"].as_i64().unwrap_or(0);
    let build_reclaim: i64 = build
        .iter()
        .filter(|b| {
            !b["InUse"].as_bool().unwrap_or(false) && !b["Shared"].as_bool().unwrap_or(false)
        })
        .map(|b| n(b, "Size"))
        .sum();
    vec![
        df_row(
            "Images",
            images.len(),
            images.iter().filter(|i| n(i, "Containers") > 0).count(),
            human_size(layers as f64),
            with_pct(layers - img_used, layers),
        ),
        df_row(
            "Containers",
            containers.len(),
            containers.iter().filter(|c| active_state(c)).count(),
            human_size(ctr_size as f64),
            with_pct(ctr_reclaim, ctr_size),
        ),
        df_row(
            "Local Volumes",
            volumes.len(),
            volumes
                .iter()
                .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
                .count(),
            human_size(vol_total as f64),
            with_pct(vol_reclaim, vol_total),
        ),
        df_row(
            "Build Cache",
            build.len(),
            build
                .iter()
                .filter(|b| b["InUse"].as_bool().unwrap_or(false))
                .count(),
            human_size(build_size as f64),
            human_size(build_reclaim as f64),
        ),
    ]
}

pub fn build_cache_header() -> Map {
    super::header(&[
        ("ID", "CACHE ID"),
        ("CacheType", "CACHE TYPE"),
        ("Size", "SIZE"),
        ("CreatedSince", "CREATED"),
        ("LastUsedSince", "LAST USED"),
        ("UsageCount", "USAGE"),
        ("Shared", "SHARED"),
    ])
}

pub fn build_cache_row(b: &Json, trunc: bool) -> Value {
    let mut m = Map::structure("*formatter.buildCacheContext");
    let id = s(b, "ID");
    let when = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(s(b, k))
            .map(|t| super::units::since(t.timestamp()))
            .unwrap_or_default()
    };
    m.insert("CacheType", s(b, "Type"));
    m.insert("CreatedSince", when("CreatedAt"));
    m.insert(
        "ID",
        if trunc {
            id.chars().take(12).collect()
        } else {
            id.to_string()
        },
    );
    m.insert("LastUsedSince", when("LastUsedAt"));
    m.insert("Shared", b["Shared"].as_bool().unwrap_or(false).to_string());
    m.insert("Size", human_size(b["Size"].as_i64().unwrap_or(0) as f64));
    m.insert(
        "UsageCount",
        b["UsageCount"].as_i64().unwrap_or(0).to_string(),
    );
    Value::Map(m)
}

// ---- stats

pub const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub fn stats_header() -> Map {
    super::header(&[
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("ID", "CONTAINER ID"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ])
}

fn num(v: &Json, path: &str) -> f64 {
    v.pointer(path).and_then(Json::as_f64).unwrap_or(0.0)
}

/// One `stats` row from a stats object (`stream=0`, which carries `precpu_stats`),
/// computed as the docker CLI computes it. `container` is what the user named.
pub fn stats_row(container: &str, st: &Json, trunc: bool) -> Value {
    let cpu_delta = num(st, "/cpu_stats/cpu_usage/total_usage")
        - num(st, "/precpu_stats/cpu_usage/total_usage");
    let sys_delta =
        num(st, "/cpu_stats/system_cpu_usage") - num(st, "/precpu_stats/system_cpu_usage");
    let mut online = num(st, "/cpu_stats/online_cpus");
    if online == 0.0 {
        online = st
            .pointer("/cpu_stats/cpu_usage/percpu_usage")
            .and_then(Json::as_array)
            .map_or(0.0, |a| a.len() as f64);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let usage = num(st, "/memory_stats/usage");
    let stat = |k: &str| {
        st.pointer(&format!("/memory_stats/stats/{k}"))
            .and_then(Json::as_f64)
    };
    let mem = match (stat("total_inactive_file"), stat("inactive_file")) {
        (Some(v), _) if v < usage => usage - v,
        (_, Some(v)) if v < usage => usage - v,
        (None, None) if usage > 0.0 => usage,
        _ => usage,
    };
    let limit = num(st, "/memory_stats/limit");
    let mem_pct = if limit != 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut read, mut write) = (0.0, 0.0);
    for e in st
        .pointer("/blkio_stats/io_service_bytes_recursive")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        match s(e, "op").chars().next() {
            Some('r' | 'R') => read += e["value"].as_f64().unwrap_or(0.0),
            Some('w' | 'W') => write += e["value"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in st["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
        tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
    }
    let name = s(st, "name");
    let id = s(st, "id");
    let mut m = Map::structure("*container.statsContext");
    m.insert(
        "BlockIO",
        format!(
            "{} / {}",
            human_size_prec(read, 3),
            human_size_prec(write, 3)
        ),
    );
    m.insert("CPUPerc", format!("{cpu:.2}%"));
    m.insert("Container", container);
    m.insert(
        "ID",
        if trunc {
            truncate_id(id)
        } else {
            id.to_string()
        },
    );
    m.insert("MemPerc", format!("{mem_pct:.2}%"));
    m.insert(
        "MemUsage",
        format!("{} / {}", bytes_size(mem), bytes_size(limit)),
    );
    m.insert(
        "Name",
        if name.len() > 1 {
            name[1..].to_string()
        } else {
            "--".into()
        },
    );
    m.insert(
        "NetIO",
        format!("{} / {}", human_size_prec(rx, 3), human_size_prec(tx, 3)),
    );
    m.insert("PIDs", (num(st, "/pids_stats/current") as u64).to_string());
    Value::Map(m)
}

// ---- history

pub const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
pub const HISTORY_TABLE_NON_HUMAN: &str =
    "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

pub fn history_header() -> Map {
    super::header(&[
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ])
}

pub fn history_row(h: &Json, trunc: bool, human: bool) -> Value {
    let created = h["Created"].as_i64().unwrap_or(0);
    let created_at = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default();
    // 2000-01-01: older "dates" are placeholders.
    let since = if !human {
        created_at.clone()
    } else if created <= 946_684_800 {
        "N/A".into()
    } else {
        let now = chrono::Utc::now().timestamp();
        format!("{} ago", human_duration((now - created) as f64))
    };
    let by = s(h, "CreatedBy").replace('\t', " ");
    let id = s(h, "Id");
    let size = h["Size"].as_i64().unwrap_or(0);
    let mut m = Map::structure("*image.historyContext");
    m.insert("Comment", s(h, "Comment"));
    m.insert("CreatedAt", created_at);
    m.insert("CreatedBy", if trunc { ellipsis(&by, 45) } else { by });
    m.insert("CreatedSince", since);
    m.insert(
        "ID",
        if trunc && id != "<missing>" {
            truncate_id(id)
        } else {
            id.to_string()
        },
    );
    m.insert("Size", if human { size3(size) } else { size.to_string() });
    Value::Map(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_rows_compute_like_docker() {
        let st = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2097152, "limit": 104857600, "stats": {"total_inactive_file": 1048576}},
            "pids_stats": {"current": 3},
        });
        let r = stats_row("web", &st, true);
        let out = crate::template::render(
            "{{.ID}}|{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.PIDs}}",
            &r,
        )
        .unwrap();
        assert_eq!(out, "0123456789ab|web|40.00%|1MiB / 100MiB|1.00%|0B / 0B|3");
    }

    #[test]
    fn df_summary() {
        let df = json!({
            "LayersSize": 2_000_000,
            "Images": [{"Size": 2_000_000, "SharedSize": 0, "Containers": 1}],
            "Containers": [{"State": "running", "SizeRw": 10}, {"State": "exited", "SizeRw": 30}],
            "Volumes": [{"UsageData": {"Size": 100, "RefCount": 0}}],
            "BuildCache": []
        });
        let out = super::super::write(DF_TABLE, &df_header(), &df_rows(&df)).unwrap();
        assert_eq!(
            out,
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          1         1         2MB       0B (0%)\n\
             Containers      2         1         40B       30B (75%)\n\
             Local Volumes   1         0         100B      100B (100%)\n\
             Build Cache     0         0         0B        0B\n"
        );
    }
}
