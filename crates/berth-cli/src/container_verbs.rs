//! Container verbs beyond the life cycle: restart, pause, unpause, top, diff, export,
//! stats, update and `container prune`. Kept apart from commands.rs so each group of
//! verbs lives in its own file; `Command` flattens them in.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::commands::parse_bytes;
use crate::format::{human_size, table};

/// The verbs, as top-level commands.
#[derive(Debug, Subcommand)]
pub enum ContainerVerb {
    /// Restart containers.
    Restart {
        #[arg(short = 't', long = "time")]
        time: Option<i64>,
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Pause all processes within containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Display the running processes of a container.
    Top {
        container: String,
        /// ps options (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Inspect changes to files or directories on a container's filesystem.
    Diff { container: String },
    /// Export a container's filesystem as a tar archive.
    Export {
        #[arg(short = 'o', long)]
        output: Option<String>,
        container: String,
    },
    /// Display a live stream of container resource usage statistics.
    Stats {
        #[arg(long = "no-stream")]
        no_stream: bool,
        #[arg(short = 'a', long)]
        all: bool,
        containers: Vec<String>,
    },
    /// Copy files between a container and the local filesystem (CONTAINER:PATH).
    Cp {
        /// Archive mode: keep the files' uid and gid.
        #[arg(short = 'a', long)]
        archive: bool,
        src: String,
        dest: String,
    },
    /// Update configuration of one or more containers.
    Update {
        #[arg(short = 'm', long)]
        memory: Option<String>,
        #[arg(long = "memory-swap")]
        memory_swap: Option<String>,
        #[arg(long = "memory-reservation")]
        memory_reservation: Option<String>,
        #[arg(long)]
        cpus: Option<f64>,
        #[arg(short = 'c', long = "cpu-shares")]
        cpu_shares: Option<i64>,
        #[arg(long = "cpu-period")]
        cpu_period: Option<i64>,
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        #[arg(long)]
        restart: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
}

/// `berth container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerGroup {
    /// Remove all stopped containers.
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

/// Runs each container through `op`; like docker, reports every failure on stderr,
/// prints the names that worked and exits 1 if any failed.
async fn each<F, Fut>(containers: &[String], op: F) -> Result<i32>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in containers {
        match op(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Docker's binary sizes for memory ("1.5MiB", "100MiB").
pub fn bytes_size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.4}")
        .parse::<f64>()
        .map(|v| {
            let s = format!("{v:.3}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}{}", units[i])
        })
        .unwrap_or_else(|_| format!("{v}{}", units[i]))
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0)
}

/// One row of `docker stats` from a stats object, computed the way the docker CLI
/// does (CPU from the cpu/precpu deltas, memory without the inactive page cache).
pub fn stats_row(s: &Value) -> Vec<String> {
    let id: String = s["id"].as_str().unwrap_or("").chars().take(12).collect();
    let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
    let cpu_delta =
        num(s, "/cpu_stats/cpu_usage/total_usage") - num(s, "/precpu_stats/cpu_usage/total_usage");
    let sys_delta =
        num(s, "/cpu_stats/system_cpu_usage") - num(s, "/precpu_stats/system_cpu_usage");
    let mut online = num(s, "/cpu_stats/online_cpus");
    if online == 0.0 {
        online = s
            .pointer("/cpu_stats/cpu_usage/percpu_usage")
            .and_then(Value::as_array)
            .map_or(0.0, |a| a.len() as f64);
    }
    let cpu = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mut mem = num(s, "/memory_stats/usage");
    let cache = s
        .pointer("/memory_stats/stats/total_inactive_file")
        .or_else(|| s.pointer("/memory_stats/stats/inactive_file"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if cache < mem {
        mem -= cache;
    }
    let limit = num(s, "/memory_stats/limit");
    let mem_pct = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut read, mut write) = (0.0, 0.0);
    for e in s
        .pointer("/blkio_stats/io_service_bytes_recursive")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().unwrap_or("").to_ascii_lowercase().as_str() {
            "read" => read += e["value"].as_f64().unwrap_or(0.0),
            "write" => write += e["value"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
        tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
    }
    vec![
        id,
        name.to_string(),
        format!("{cpu:.2}%"),
        format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        format!("{mem_pct:.2}%"),
        format!("{} / {}", human_size(rx as i64), human_size(tx as i64)),
        format!("{} / {}", human_size(read as i64), human_size(write as i64)),
        format!("{}", num(s, "/pids_stats/current") as u64),
    ]
}

const STATS_HEADERS: [&str; 8] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

/// Runs one verb; returns the process exit code.
pub async fn run(c: &Client, verb: ContainerVerb) -> Result<i32> {
    match verb {
        ContainerVerb::Restart {
            time,
            signal,
            containers,
        } => {
            let signal = &signal;
            each(&containers, |n| async move {
                let mut p = format!("/containers/{}/restart?", enc(&n));
                if let Some(t) = time {
                    p.push_str(&format!("t={t}&"));
                }
                if let Some(s) = signal {
                    p.push_str(&format!("signal={}", enc(s)));
                }
                c.json(Method::POST, &p, None).await?;
                Ok(())
            })
            .await
        }
        ContainerVerb::Pause { containers } => {
            each(&containers, |n| async move {
                c.json(
                    Method::POST,
                    &format!("/containers/{}/pause", enc(&n)),
                    None,
                )
                .await?;
                Ok(())
            })
            .await
        }
        ContainerVerb::Unpause { containers } => {
            each(&containers, |n| async move {
                c.json(
                    Method::POST,
                    &format!("/containers/{}/unpause", enc(&n)),
                    None,
                )
                .await?;
                Ok(())
            })
            .await
        }
        ContainerVerb::Top { container, ps_args } => {
            let mut p = format!("/containers/{}/top", enc(&container));
            if !ps_args.is_empty() {
                p.push_str(&format!("?ps_args={}", enc(&ps_args.join(" "))));
            }
            let v = c.json(Method::GET, &p, None).await?;
            let titles: Vec<&str> = v["Titles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let rows: Vec<Vec<String>> = v["Processes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    r.as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            print!("{}", table(&titles, &rows));
            Ok(0)
        }
        ContainerVerb::Diff { container } => {
            let v = c
                .json(
                    Method::GET,
                    &format!("/containers/{}/changes", enc(&container)),
                    None,
                )
                .await?;
            for ch in v.as_array().into_iter().flatten() {
                let kind = match ch["Kind"].as_i64() {
                    Some(0) => "C",
                    Some(1) => "A",
                    Some(2) => "D",
                    _ => "?",
                };
                println!("{kind} {}", ch["Path"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        ContainerVerb::Export { output, container } => {
            if output.is_none() && std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let resp = c
                .send(
                    Method::GET,
                    &format!("/containers/{}/export", enc(&container)),
                    None,
                    false,
                )
                .await?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("creating {path}"))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    out.write_all(data).context("writing the archive")?;
                }
            }
            out.flush().context("writing the archive")?;
            Ok(0)
        }
        ContainerVerb::Stats {
            no_stream,
            all,
            containers,
        } => {
            let names = if containers.is_empty() {
                let list = c
                    .json(
                        Method::GET,
                        &format!("/containers/json?all={}", all as u8),
                        None,
                    )
                    .await?;
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["Id"].as_str().map(str::to_string))
                    .collect()
            } else {
                containers
            };
            loop {
                let mut rows = vec![];
                for n in &names {
                    let s = c
                        .json(
                            Method::GET,
                            &format!("/containers/{}/stats?stream=0", enc(n)),
                            None,
                        )
                        .await?;
                    rows.push(stats_row(&s));
                }
                if !no_stream {
                    // Clear the screen between refreshes, as docker does.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", table(&STATS_HEADERS, &rows));
                std::io::stdout().flush()?;
                if no_stream {
                    return Ok(0);
                }
            }
        }
        ContainerVerb::Cp { archive, src, dest } => {
            match (split_container_path(&src), split_container_path(&dest)) {
                (Some((ctr, path)), None) => copy_from(c, ctr, path, &dest).await?,
                (None, Some((ctr, path))) => copy_to(c, &src, ctr, path, archive).await?,
                _ => bail!("copying between containers or between local paths is not supported: name one CONTAINER:PATH"),
            }
            Ok(0)
        }
        ContainerVerb::Update {
            memory,
            memory_swap,
            memory_reservation,
            cpus,
            cpu_shares,
            cpu_period,
            cpu_quota,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            restart,
            containers,
        } => {
            let mut body = json!({});
            let bytes = |s: &Option<String>| -> Result<Option<i64>> {
                match s.as_deref() {
                    None => Ok(None),
                    Some("-1") => Ok(Some(-1)),
                    Some(v) => parse_bytes(v).map(Some),
                }
            };
            for (k, v) in [
                ("Memory", bytes(&memory)?),
                ("MemorySwap", bytes(&memory_swap)?),
                ("MemoryReservation", bytes(&memory_reservation)?),
                ("CpuShares", cpu_shares),
                ("CpuPeriod", cpu_period),
                ("CpuQuota", cpu_quota),
                ("PidsLimit", pids_limit),
                ("NanoCpus", cpus.map(|c| (c * 1e9) as i64)),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(v) = cpuset_cpus {
                body["CpusetCpus"] = json!(v);
            }
            if let Some(v) = cpuset_mems {
                body["CpusetMems"] = json!(v);
            }
            if let Some(r) = restart {
                let (name, max) = match r.split_once(':') {
                    Some((n, m)) => (
                        n.to_string(),
                        m.parse::<i64>()
                            .with_context(|| format!("invalid restart policy {r:?}"))?,
                    ),
                    None => (r.clone(), 0),
                };
                body["RestartPolicy"] = json!({"Name": name, "MaximumRetryCount": max});
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!("you must provide one or more flags when using this command");
            }
            let body = &body;
            each(&containers, |n| async move {
                let v = c
                    .json(
                        Method::POST,
                        &format!("/containers/{}/update", enc(&n)),
                        Some(body.clone()),
                    )
                    .await?;
                for w in v["Warnings"].as_array().into_iter().flatten() {
                    eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
                }
                Ok(())
            })
            .await
        }
    }
}

/// `CONTAINER:PATH` as (container, path); a local path (absolute, relative with a
/// slash before any colon, or `-`) is `None`.
fn split_container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return None;
    }
    let (ctr, path) = arg.split_once(':')?;
    (!ctr.is_empty() && !ctr.contains('/')).then_some((ctr, path))
}

/// The path names of a tar entry, refusing anything that could climb out.
fn safe_rel(path: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => bail!("refusing the archive entry {}", path.display()),
        }
    }
    Ok(out)
}

/// `cp CONTAINER:SRC DEST`: the container's tar of SRC unpacked at DEST as docker
/// does: into DEST when it is a directory, else as DEST.
async fn copy_from(c: &Client, ctr: &str, path: &str, dest: &str) -> Result<()> {
    let resp = c
        .send(
            Method::GET,
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
            None,
            false,
        )
        .await?;
    let data = resp.into_body().collect().await?.to_bytes();
    if dest == "-" {
        std::io::stdout().write_all(&data)?;
        return Ok(());
    }
    let dest = std::path::Path::new(dest);
    let (base, rename) = if dest.is_dir() {
        (dest.to_path_buf(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            bail!("no such directory: {}", parent.display());
        }
        (
            parent.to_path_buf(),
            dest.file_name().map(|n| n.to_os_string()),
        )
    };
    let mut archive = tar::Archive::new(&data[..]);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = safe_rel(&entry.path()?)?;
        let rel = match &rename {
            // The archive's top entry is SRC's own name: it becomes DEST's.
            Some(name) => {
                let mut parts = rel.components();
                parts.next();
                let rest = parts.as_path();
                // join("") would add a trailing slash, making a file look like a dir.
                if rest.as_os_str().is_empty() {
                    std::path::PathBuf::from(name)
                } else {
                    std::path::Path::new(name).join(rest)
                }
            }
            None => rel,
        };
        let target = base.join(&rel);
        if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&target)
                .with_context(|| format!("replacing {}", target.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// `cp SRC CONTAINER:DEST`: SRC as a tar, unpacked by berthd into DEST when it is a
/// directory in the container, else into DEST's directory as DEST's name.
async fn copy_to(c: &Client, src: &str, ctr: &str, dest: &str, keep_ids: bool) -> Result<()> {
    let src_path = std::path::Path::new(src);
    let meta = std::fs::symlink_metadata(src_path).with_context(|| format!("cannot copy {src}"))?;
    let stat_path = format!("/containers/{}/archive?path={}", enc(ctr), enc(dest));
    let dest_is_dir = match c.send(Method::HEAD, &stat_path, None, false).await {
        Ok(resp) => resp
            .headers()
            .get("X-Docker-Container-Path-Stat")
            .and_then(|v| v.to_str().ok())
            .and_then(decode_stat)
            .is_some_and(|st| st["mode"].as_u64().unwrap_or(0) & (1 << 31) != 0),
        Err(crate::client::CliError::Api { status, .. }) if status == 404 => false,
        Err(e) => return Err(e.into()),
    };
    let (dir, name) = if dest_is_dir {
        let name = src_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| ".".into());
        (dest.to_string(), name)
    } else {
        let d = std::path::Path::new(dest);
        let dir = d
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        let name = d
            .file_name()
            .map(|n| n.to_os_string())
            .context("the destination names no file")?;
        (dir, name)
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(&name, src_path)?;
    } else {
        b.append_path_with_name(src_path, &name)?;
    }
    let data = b.into_inner()?;
    c.send_typed(
        Method::PUT,
        &format!(
            "/containers/{}/archive?path={}&noOverwriteDirNonDir=true&copyUIDGID={}",
            enc(ctr),
            enc(&dir),
            keep_ids as u8
        ),
        bytes::Bytes::from(data),
        "application/x-tar",
        false,
    )
    .await?;
    Ok(())
}

/// The `X-Docker-Container-Path-Stat` header's JSON (base64).
fn decode_stat(b64: &str) -> Option<Value> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = vec![];
    for ch in b64.bytes().filter(|b| *b != b'=') {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'a'..=b'z' => ch - b'a' + 26,
            b'0'..=b'9' => ch - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    serde_json::from_slice(&out).ok()
}

/// Runs `berth container ...`.
pub async fn run_group(c: &Client, group: ContainerGroup) -> Result<i32> {
    match group {
        ContainerGroup::Prune { force, filter } => {
            if !force {
                eprint!(
                    "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let mut filters: serde_json::Map<String, Value> = serde_json::Map::new();
            for f in &filter {
                let (k, v) = f
                    .split_once('=')
                    .with_context(|| format!("bad filter {f:?}: expected key=value"))?;
                let e = filters.entry(k.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(json!(v));
                }
            }
            let mut p = "/containers/prune".to_string();
            if !filters.is_empty() {
                p.push_str(&format!(
                    "?filters={}",
                    enc(&Value::Object(filters).to_string())
                ));
            }
            let v = c.json(Method::POST, &p, None).await?;
            let deleted: Vec<&str> = v["ContainersDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Containers:");
                for id in deleted {
                    println!("{id}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
            );
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_and_stat_headers() {
        assert_eq!(split_container_path("web:/etc"), Some(("web", "/etc")));
        assert_eq!(split_container_path("/tmp/a:b"), None);
        assert_eq!(split_container_path("./x:y"), None);
        assert_eq!(split_container_path("-"), None);
        assert_eq!(split_container_path("file"), None);
        // {"mode":2147484141} in base64
        let v = decode_stat("eyJtb2RlIjoyMTQ3NDg0MTQxfQ==").unwrap();
        assert_eq!(v["mode"], 2147484141u64);
        assert!(safe_rel(std::path::Path::new("../x")).is_err());
    }

    #[test]
    fn binary_sizes() {
        assert_eq!(bytes_size(104857600.0), "100MiB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(0.0), "0B");
    }

    #[test]
    fn stats_rows_compute_like_docker() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2097152, "limit": 104857600,
                             "stats": {"total_inactive_file": 1048576}},
            "pids_stats": {"current": 3},
        });
        let r = stats_row(&s);
        assert_eq!(r[0], "0123456789ab");
        assert_eq!(r[1], "web");
        assert_eq!(r[2], "40.00%");
        assert_eq!(r[3], "1MiB / 100MiB");
        assert_eq!(r[4], "1.00%");
        assert_eq!(r[7], "3");
    }
}
