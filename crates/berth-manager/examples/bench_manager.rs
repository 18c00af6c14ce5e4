//! Benchmark client for berth-manager (scripts/bench-manager.sh runs it): COUNT
//! containers go through create, task create, start, wait, task delete and
//! container delete through the gRPC API, one after the other (`--mode
//! sequential`) or all at once (`--mode parallel`); prints the median and 90th
//! percentile of each step and the total wall time. `--rss N` instead starts N
//! sleeping containers and prints the resident memory of their shims and of the
//! manager. Not a test: nothing is asserted about time.
//!
//! The busybox test rootfs is imported as `berth-bench/busybox:latest` first if
//! the manager does not have it.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::containers_client::ContainersClient;
use berth_api::berth::manager::v1::images_client::ImagesClient;
use berth_api::berth::manager::v1::tasks_client::TasksClient;
use clap::{Parser, ValueEnum};
use tonic::transport::{Channel, Endpoint};

const IMAGE: &str = "berth-bench/busybox:latest";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sequential,
    Parallel,
}

#[derive(Debug, Parser)]
struct Args {
    /// The manager's socket.
    #[arg(long)]
    socket: PathBuf,
    /// Containers to create, start, wait for and delete.
    #[arg(long, default_value_t = 100)]
    count: usize,
    #[arg(long, value_enum, default_value_t = Mode::Sequential)]
    mode: Mode,
    /// Instead of the cycles: start this many sleeping containers and report the
    /// shims' and the manager's resident memory.
    #[arg(long)]
    rss: Option<usize>,
    /// Prefix of the container ids (also their cgroup: /berth-bench/<id>).
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[derive(Clone)]
struct Clients {
    images: ImagesClient<Channel>,
    containers: ContainersClient<Channel>,
    tasks: TasksClient<Channel>,
}

/// Durations of one container's steps.
#[derive(Debug, Default, Clone)]
struct Steps {
    create: Duration,
    task_create: Duration,
    start: Duration,
    wait: Duration,
    task_delete: Duration,
    delete: Duration,
    total: Duration,
}

fn spec(id: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut v = berth_testutil::bundle::default_config(id, args);
    v["linux"]["cgroupsPath"] = format!("/berth-bench/{id}").into();
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    v["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]);
    v["ociVersion"] = "1.0.2".into();
    Ok(serde_json::to_vec(&v)?)
}

async fn ensure_image(c: &mut Clients) -> anyhow::Result<()> {
    let have = c
        .images
        .get(pb::GetImageRequest {
            reference: IMAGE.into(),
        })
        .await;
    if have.is_ok() {
        return Ok(());
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench-rootfs")
        .tempdir()?;
    let rootfs = tmp.path().join("rootfs");
    berth_testutil::busybox_rootfs(&rootfs)?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs)?;
    let tar = b.into_inner()?;
    let mut msgs = vec![pb::ImportRequest {
        reference: IMAGE.into(),
        ..Default::default()
    }];
    msgs.extend(tar.chunks(1 << 20).map(|d| pb::ImportRequest {
        data: d.to_vec(),
        ..Default::default()
    }));
    c.images.import(tokio_stream::iter(msgs)).await?;
    Ok(())
}

async fn create(c: &mut Clients, id: &str, args: &[&str]) -> anyhow::Result<()> {
    c.containers
        .create(pb::CreateContainerRequest {
            container: Some(pb::Container {
                id: id.into(),
                image: IMAGE.into(),
                spec: spec(id, args)?,
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("creating container {id}"))?;
    Ok(())
}

async fn cycle(mut c: Clients, id: String) -> anyhow::Result<Steps> {
    let mut s = Steps::default();
    let t0 = Instant::now();
    let mut t = Instant::now();
    let mut lap = |d: &mut Duration| {
        *d = t.elapsed();
        t = Instant::now();
    };
    create(&mut c, &id, &["true"]).await?;
    lap(&mut s.create);
    c.tasks
        .create(pb::CreateTaskRequest {
            container_id: id.clone(),
            stdin: false,
            spec: Vec::new(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the task of {id}"))?;
    lap(&mut s.task_create);
    c.tasks
        .start(pb::StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .with_context(|| format!("starting {id}"))?;
    lap(&mut s.start);
    let exit = c
        .tasks
        .wait(pb::WaitRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await?
        .into_inner();
    if exit.exit_status != 0 {
        bail!("{id} exited with {}", exit.exit_status);
    }
    lap(&mut s.wait);
    c.tasks
        .delete(pb::DeleteTaskRequest {
            container_id: id.clone(),
            force: false,
        })
        .await?;
    lap(&mut s.task_delete);
    c.containers
        .delete(pb::DeleteContainerRequest {
            id: id.clone(),
            keep_snapshot: false,
        })
        .await?;
    lap(&mut s.delete);
    s.total = t0.elapsed();
    Ok(s)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A step's name and how to read its duration.
type Step = (&'static str, fn(&Steps) -> Duration);

fn report(all: &[Steps]) {
    println!("{:<12} {:>10} {:>10}", "step", "median_ms", "p90_ms");
    let steps: [Step; 7] = [
        ("create", |s| s.create),
        ("task_create", |s| s.task_create),
        ("start", |s| s.start),
        ("wait", |s| s.wait),
        ("task_delete", |s| s.task_delete),
        ("delete", |s| s.delete),
        ("cycle", |s| s.total),
    ];
    for (name, f) in steps {
        let mut v: Vec<Duration> = all.iter().map(f).collect();
        println!(
            "{:<12} {:>10.1} {:>10.1}",
            name,
            ms(percentile(&mut v, 0.5)),
            ms(percentile(&mut v, 0.9))
        );
    }
}

fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn manager_pid(socket: &std::path::Path) -> Option<u32> {
    let marker = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        let is_manager = cmd.split('\0').next()?.ends_with("berth-manager");
        (is_manager && cmd.split('\0').any(|a| a == marker)).then_some(pid)
    })
}

async fn rss(c: &mut Clients, args: &Args, n: usize) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..n).map(|i| format!("{}-rss-{i}", args.prefix)).collect();
    let mut shims = Vec::new();
    for id in &ids {
        create(c, id, &["sleep", "1000"]).await?;
        c.tasks
            .create(pb::CreateTaskRequest {
                container_id: id.clone(),
                stdin: false,
                spec: Vec::new(),
                ..Default::default()
            })
            .await?;
        c.tasks
            .start(pb::StartRequest {
                container_id: id.clone(),
                exec_id: String::new(),
            })
            .await?;
        let t = c
            .tasks
            .get(pb::GetTaskRequest {
                container_id: id.clone(),
            })
            .await?
            .into_inner();
        shims.push(t.shim_pid);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kb: Vec<u64> = shims.iter().map(|p| vm_rss_kb(*p)).collect();
    let avg = kb.iter().sum::<u64>() as f64 / kb.len().max(1) as f64;
    println!("shims: {n}, average VmRSS {:.1} MB", avg / 1024.0);
    if let Some(pid) = manager_pid(&args.socket) {
        println!(
            "manager VmRSS with {n} tasks: {:.1} MB",
            vm_rss_kb(pid) as f64 / 1024.0
        );
    }
    for id in &ids {
        c.tasks
            .delete(pb::DeleteTaskRequest {
                container_id: id.clone(),
                force: true,
            })
            .await?;
        c.containers
            .delete(pb::DeleteContainerRequest {
                id: id.clone(),
                keep_snapshot: false,
            })
            .await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Endpoint::from_shared(format!("unix://{}", args.socket.display()))?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.socket.display()))?;
    let mut c = Clients {
        images: ImagesClient::new(channel.clone()),
        containers: ContainersClient::new(channel.clone()),
        tasks: TasksClient::new(channel),
    };
    ensure_image(&mut c).await?;
    if let Some(n) = args.rss {
        return rss(&mut c, &args, n).await;
    }
    let ids: Vec<String> = (0..args.count)
        .map(|i| format!("{}-{i}", args.prefix))
        .collect();
    // One warm-up cycle: the image's layers in the page cache, the runtime's binary.
    cycle(c.clone(), format!("{}-warmup", args.prefix)).await?;
    let start = Instant::now();
    let all: Vec<Steps> = match args.mode {
        Mode::Sequential => {
            let mut v = Vec::new();
            for id in ids {
                v.push(cycle(c.clone(), id).await?);
            }
            v
        }
        Mode::Parallel => futures_util::future::join_all(ids.into_iter().map(|id| {
            let c = c.clone();
            tokio::spawn(cycle(c, id))
        }))
        .await
        .into_iter()
        .map(|r| r.context("a cycle panicked")?)
        .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let total = start.elapsed();
    println!(
        "mode={:?} count={} total_s={:.2}",
        args.mode,
        args.count,
        total.as_secs_f64()
    );
    report(&all);
    Ok(())
}
