//! The container verbs that neither attach nor list: stop, kill, rm, restart, pause,
//! unpause, rename, update, top, diff, export, logs, port, stats, inspect, commit
//! and prune. Verbs over several containers report each failure and exit 1, as
//! docker's do.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{
    CommitArgs, Containers, ExportArgs, InspectArgs, KillArgs, LogsArgs, OneContainer, PortArgs,
    PruneArgs, RenameArgs, RmArgs, StatsArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::cli::{confirm, StatusError};
use crate::client::{enc, filters_query, Client};
use crate::format::{self, misc, tabwriter::TabWriter, units};
use crate::stream::{write_frame, Demux};

/// Runs `op` for each name: prints the name when it worked, the error when not;
/// fails with exit code 1 if any failed.
async fn each<F, Fut>(names: &[String], op: F) -> Result<i32>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in names {
        match op(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

fn stop_query(signal: &Option<String>, timeout: Option<i64>) -> String {
    let mut q = vec![];
    if let Some(t) = timeout {
        q.push(format!("t={t}"));
    }
    if let Some(s) = signal {
        q.push(format!("signal={}", enc(s)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub async fn stop(c: &Client, a: StopArgs) -> Result<i32> {
    let q = stop_query(&a.signal, a.timeout);
    let q = &q;
    each(&a.containers, |n| async move {
        c.json(
            Method::POST,
            &format!("/containers/{}/stop{q}", enc(&n)),
            None,
        )
        .await?;
        Ok(())
    })
    .await
}

pub async fn restart(c: &Client, a: StopArgs) -> Result<i32> {
    let q = stop_query(&a.signal, a.timeout);
    let q = &q;
    each(&a.containers, |n| async move {
        c.json(
            Method::POST,
            &format!("/containers/{}/restart{q}", enc(&n)),
            None,
        )
        .await?;
        Ok(())
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<i32> {
    let q = match &a.signal {
        Some(s) => format!("?signal={}", enc(s)),
        None => String::new(),
    };
    let q = &q;
    each(&a.containers, |n| async move {
        c.json(
            Method::POST,
            &format!("/containers/{}/kill{q}", enc(&n)),
            None,
        )
        .await?;
        Ok(())
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let q = format!(
        "?force={}&v={}&link={}",
        a.force as u8, a.volumes as u8, a.link as u8
    );
    let q = &q;
    each(&a.containers, |n| async move {
        c.json(Method::DELETE, &format!("/containers/{}{q}", enc(&n)), None)
            .await?;
        Ok(())
    })
    .await
}

pub async fn pause(c: &Client, a: Containers, pause: bool) -> Result<i32> {
    let verb = if pause { "pause" } else { "unpause" };
    each(&a.containers, |n| async move {
        c.json(
            Method::POST,
            &format!("/containers/{}/{verb}", enc(&n)),
            None,
        )
        .await?;
        Ok(())
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> Result<i32> {
    if a.new_name.trim().is_empty() {
        bail!("Error: Neither old nor new names may be empty");
    }
    if let Err(e) = c
        .json(
            Method::POST,
            &format!(
                "/containers/{}/rename?name={}",
                enc(&a.container),
                enc(&a.new_name)
            ),
            None,
        )
        .await
    {
        return Err(StatusError {
            code: 1,
            message: format!(
                "{e}\nError: failed to rename container named {}",
                a.container
            ),
        }
        .into());
    }
    Ok(0)
}

pub async fn update(c: &Client, a: UpdateArgs) -> Result<i32> {
    let mut body = json!({});
    for (k, v) in [
        ("Memory", a.memory),
        ("MemoryReservation", a.memory_reservation),
        ("CpuShares", a.cpu_shares),
        ("CpuPeriod", a.cpu_period),
        ("CpuQuota", a.cpu_quota),
        ("CpuRealtimePeriod", a.cpu_rt_period),
        ("CpuRealtimeRuntime", a.cpu_rt_runtime),
        ("PidsLimit", a.pids_limit),
        ("NanoCpus", a.cpus),
        ("BlkioWeight", a.blkio_weight.map(i64::from)),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(s) = &a.memory_swap {
        body["MemorySwap"] = json!(if s == "-1" {
            -1
        } else {
            super::opts::parse_ram(s).map_err(anyhow::Error::msg)?
        });
    }
    if let Some(v) = &a.cpuset_cpus {
        body["CpusetCpus"] = json!(v);
    }
    if let Some(v) = &a.cpuset_mems {
        body["CpusetMems"] = json!(v);
    }
    if let Some(r) = &a.restart {
        if let Some(p) = super::opts::parse_restart(r)? {
            body["RestartPolicy"] = p;
        }
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        bail!("you must provide one or more flags when using this command");
    }
    let body = &body;
    each(&a.containers, |n| async move {
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

pub async fn top(c: &Client, a: TopArgs) -> Result<i32> {
    let mut p = format!("/containers/{}/top", enc(&a.container));
    if !a.ps_args.is_empty() {
        p.push_str(&format!("?ps_args={}", enc(&a.ps_args.join(" "))));
    }
    let v = c.json(Method::GET, &p, None).await?;
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut tw = TabWriter::new(20, 3);
    tw.write(&strs(&v["Titles"]).join("\t"));
    tw.write("\n");
    for p in v["Processes"].as_array().into_iter().flatten() {
        tw.write(&strs(p).join("\t"));
        tw.write("\n");
    }
    print!("{}", tw.flush());
    Ok(0)
}

pub async fn diff(c: &Client, a: OneContainer) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/changes", enc(&a.container)),
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

/// Copies a streamed answer body to a file or stdout (refusing a terminal).
pub async fn save_body(
    resp: http::Response<hyper::body::Incoming>,
    output: Option<&str>,
) -> Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(path) if path != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("failed to save: {path}"))?,
        )),
        _ => Box::new(std::io::stdout().lock()),
    };
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.context("reading the archive")?.data_ref() {
            out.write_all(data).context("writing the archive")?;
        }
    }
    out.flush().context("writing the archive")?;
    Ok(())
}

pub async fn export(c: &Client, a: ExportArgs) -> Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c
        .send(
            Method::GET,
            &format!("/containers/{}/export", enc(&a.container)),
            None,
            false,
        )
        .await?;
    save_body(resp, a.output.as_deref()).await?;
    Ok(0)
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/json", enc(&a.container)),
            None,
        )
        .await?;
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let now = chrono::Utc::now();
    let mut q = format!(
        "stdout=1&stderr=1&follow={}&tail={}&timestamps={}&details={}",
        a.follow as u8,
        enc(&a.tail),
        a.timestamps as u8,
        a.details as u8
    );
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", crate::system::api_time(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push_str(&format!("&until={}", crate::system::api_time(u, now)?));
    }
    let resp = c
        .send(
            Method::GET,
            &format!("/containers/{}/logs?{q}", enc(&a.container)),
            None,
            false,
        )
        .await?;
    let mut body = resp.into_body();
    let mut demux = Demux::default();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if tty {
            let mut o = std::io::stdout().lock();
            o.write_all(data)?;
            o.flush()?;
        } else {
            demux.push(data, write_frame)?;
        }
    }
    Ok(0)
}

pub async fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/json", enc(&a.container)),
            None,
        )
        .await?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let host = |b: &Value| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let port = b["HostPort"].as_str().unwrap_or("");
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut out = vec![];
    match &a.port {
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            if port.parse::<u16>().is_err() {
                bail!("Error: invalid port ({port})");
            }
            let bindings = ports
                .get(&format!("{port}/{proto}"))
                .and_then(Value::as_array)
                .filter(|b| !b.is_empty())
                .with_context(|| {
                    format!("Error: No public port '{p}' published for {}", a.container)
                })?;
            out.extend(bindings.iter().map(host));
        }
        None => {
            for (from, bindings) in &ports {
                for b in bindings.as_array().into_iter().flatten() {
                    out.push(format!("{from} -> {}", host(b)));
                }
            }
        }
    }
    out.sort_by(|a, b| natural_cmp(a, b));
    for l in out {
        println!("{l}");
    }
    Ok(0)
}

/// Natural order ("80/tcp" before "443/tcp"): digit runs compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let mut n1 = String::new();
                while let Some(d) = x.peek().copied().filter(char::is_ascii_digit) {
                    n1.push(d);
                    x.next();
                }
                let mut n2 = String::new();
                while let Some(d) = y.peek().copied().filter(char::is_ascii_digit) {
                    n2.push(d);
                    y.next();
                }
                let o = n1.len().cmp(&n2.len()).then(n1.cmp(&n2));
                if o.is_ne() {
                    return o;
                }
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(&q);
                }
                x.next();
                y.next();
            }
        }
    }
}

pub async fn stats(c: &Client, a: StatsArgs) -> Result<i32> {
    let source = match &a.format {
        Some(f) => f.clone(),
        None => crate::config::ConfigFile::load()
            .ok()
            .and_then(|cfg| cfg.format("statsFormat"))
            .unwrap_or_default(),
    };
    let fmt = if source.is_empty() || source == "table" {
        misc::STATS_TABLE.to_string()
    } else {
        source
    };
    let names: Vec<String> = if a.containers.is_empty() {
        let list = c
            .json(
                Method::GET,
                &format!("/containers/json?all={}", a.all as u8),
                None,
            )
            .await?;
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["Id"].as_str().map(str::to_string))
            .collect()
    } else {
        a.containers.clone()
    };
    let interactive = !a.no_stream && std::io::stdout().is_terminal();
    loop {
        let mut rows = vec![];
        let mut failed = None;
        for n in &names {
            match c
                .json(
                    Method::GET,
                    &format!("/containers/{}/stats?stream=0", enc(n)),
                    None,
                )
                .await
            {
                Ok(s) => rows.push(misc::stats_row(n, &s, !a.no_trunc)),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            if !a.containers.is_empty() {
                return Err(e.into());
            }
        }
        let out = format::write(&fmt, &misc::stats_header(), &rows)?;
        if interactive {
            // Clear the screen and go home between refreshes, as docker does.
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        std::io::stdout().flush()?;
        if a.no_stream {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// docker's inspect: each object as JSON (an array, indented four spaces, keys in the
/// engine's order), or through `-f`; objects that are not found are reported after.
pub async fn print_inspect(
    format: Option<&str>,
    found: Vec<crate::template::Value>,
    errors: Vec<String>,
) -> Result<i32> {
    let found: Vec<_> = found
        .into_iter()
        .map(crate::inspect::with_aliases)
        .collect();
    match format {
        // `-f json`: the objects as one compact JSON array.
        Some("json") => println!("{}", crate::template::Value::List(found).to_json()),
        Some(f) if !f.is_empty() => {
            let tmpl = crate::template::Template::parse(f)
                .map_err(|e| StatusError {
                    code: 64,
                    message: format!("template parsing error: {e}"),
                })?
                .missing_key_error();
            for v in &found {
                let out = tmpl
                    .execute(v)
                    .map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
                println!("{out}");
            }
        }
        _ => println!("{}", crate::template::Value::List(found).to_json_pretty()),
    }
    if errors.is_empty() {
        return Ok(0);
    }
    Err(StatusError {
        code: 1,
        message: errors.join("\n"),
    }
    .into())
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found = vec![];
    let mut errors = vec![];
    for n in &a.containers {
        match c
            .json_ordered(
                Method::GET,
                &format!("/containers/{}/json?size={}", enc(n), a.size as u8),
            )
            .await
        {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    print_inspect(a.format.as_deref(), found, errors).await
}

pub async fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
    let mut q = format!("container={}&pause={}", enc(&a.container), a.pause);
    if let Some(r) = &a.reference {
        let (repo, tag) = format::image::split_tag(r).unwrap_or((r, ""));
        q.push_str(&format!("&repo={}&tag={}", enc(repo), enc(tag)));
    }
    if let Some(au) = &a.author {
        q.push_str(&format!("&author={}", enc(au)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", enc(m)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let v = c.json(Method::POST, &format!("/commit?{q}"), None).await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let f = filters_query(&a.filter)?;
    let p = if f.is_empty() {
        "/containers/prune".to_string()
    } else {
        format!("/containers/prune?filters={f}")
    };
    let v = c.json(Method::POST, &p, None).await?;
    print_deleted("Deleted Containers:", &v["ContainersDeleted"]);
    println!(
        "Total reclaimed space: {}",
        units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

/// The "Deleted ...:" block of the prune verbs (nothing when nothing was deleted).
pub fn print_deleted(title: &str, list: &Value) {
    let items: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !items.is_empty() {
        println!("{title}");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_sort_naturally() {
        let mut v = vec![
            "8080/tcp -> 0.0.0.0:1",
            "80/tcp -> 0.0.0.0:2",
            "443/tcp -> :3",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec![
                "80/tcp -> 0.0.0.0:2",
                "443/tcp -> :3",
                "8080/tcp -> 0.0.0.0:1"
            ]
        );
    }
}
