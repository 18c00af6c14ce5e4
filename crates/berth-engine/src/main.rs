//! berthd: the Docker Engine API on a unix socket.
//!
//! Started by systemd (berthd.socket, berthd.service) it takes the socket systemd
//! holds (`LISTEN_FDS`, fd 3) and reports READY=1 once it serves; started by hand
//! it binds `-H` itself. SIGHUP reloads the log level (see [`logging`]).

mod logging;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::manager::grpc::GrpcManager;
use berth_engine::server;
use berth_engine::spec::HostFacts;
use clap::Parser;

/// berthd: the Docker Engine API (1.47) for berth, on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "berthd", version)]
struct Args {
    /// Where to listen (only unix://PATH).
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/berth/berth.sock"
    )]
    host: String,
    /// The berth-manager socket.
    #[arg(long, default_value = "/run/berth/manager.sock")]
    manager: String,
    /// Persistent state: containers, volumes.
    #[arg(long, default_value = "/var/lib/berth/engine")]
    data_root: PathBuf,
    /// Runtime state.
    #[arg(long, default_value = "/run/berth/engine")]
    exec_root: PathBuf,
    /// error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, env = "BERTH_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// A file holding a log level that overrides --log-level when it exists; it is
    /// read again on SIGHUP.
    #[arg(long, default_value = "/etc/berth/berthd.log-level")]
    log_level_file: PathBuf,
    /// The berth-init binary that --init mounts (default: next to berthd, else on PATH).
    #[arg(long)]
    init_path: Option<PathBuf>,
}

fn find_init() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-init")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("/usr/local/bin/berth-init"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// SIGHUP: read the log level again (SIGHUP's default action would end the daemon).
fn reload_on_sighup(log: logging::LogControl) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log.reload();
        }
    });
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log = match logging::LogControl::init(&args.log_level, Some(args.log_level_file.clone())) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(args, log) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args, log: logging::LogControl) -> anyhow::Result<()> {
    // Taken while this process has one thread: it edits the environment
    // (LISTEN_*), which is not safe once other threads may read it.
    let inherited = server::take_systemd_socket()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(serve(args, log, inherited))
}

async fn serve(
    args: Args,
    log: logging::LogControl,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<()> {
    reload_on_sighup(log)?;
    for dir in [&args.data_root, &args.exec_root] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let config = EngineConfig {
        data_root: args.data_root.clone(),
        exec_root: args.exec_root.clone(),
        manager_socket: args.manager.clone(),
        init_path: args.init_path.clone().unwrap_or_else(find_init),
    };
    // Dialled lazily: berthd serves (and says the manager is unreachable) even while
    // berth-manager is not up yet, and reconnects after it restarts.
    let manager = Arc::new(
        GrpcManager::new(&args.manager)
            .with_context(|| format!("bad --manager {:?}", args.manager))?,
    );
    let engine = Arc::new(
        Engine::new(config, manager, HostFacts::probe()).context("opening the container store")?,
    );
    engine.restore();

    let (listener, owned_path, host) = match inherited {
        Some(l) => (
            tokio::net::UnixListener::from_std(l).context("serving the socket from systemd")?,
            None,
            "fd 3 (systemd)".to_string(),
        ),
        None => {
            let path = server::parse_host(&args.host)?;
            (server::bind(&path)?, Some(path), args.host.clone())
        }
    };
    tracing::info!(%host, manager = %args.manager, pid = std::process::id(), "berthd listening");
    // Type=notify: systemd starts units ordered after berthd.service only now.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("telling the service manager we are ready: {e}");
    }
    server::serve(listener, engine, shutdown_signal()).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // A socket systemd owns stays: it queues connections until berthd is back.
    if let Some(p) = owned_path {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("berthd stopped");
    Ok(())
}
