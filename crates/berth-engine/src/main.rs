//! berthd: the Docker Engine API on a unix socket.

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
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Read on SIGHUP: a log level or tracing filter that replaces --log-level until
    /// the next SIGHUP; without the file, --log-level applies again.
    #[arg(long, default_value = "/etc/berth/berthd-log-level")]
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

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// On SIGHUP, the filter in `file` if it exists, else `--log-level` again.
fn spawn_sighup_reload(handle: FilterHandle, file: PathBuf, flag: String) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let (source, text) = match std::fs::read_to_string(&file) {
                Ok(t) => (file.display().to_string(), t.trim().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ("--log-level".to_string(), flag.clone())
                }
                Err(e) => {
                    tracing::warn!(
                        "SIGHUP: reading {}: {e}; log level unchanged",
                        file.display()
                    );
                    continue;
                }
            };
            match tracing_subscriber::EnvFilter::try_new(&text) {
                Ok(f) => match handle.reload(f) {
                    Ok(()) => {
                        tracing::warn!(level = %text, from = %source, "SIGHUP: log level set")
                    }
                    Err(e) => tracing::warn!("SIGHUP: setting the log level: {e}"),
                },
                Err(e) => tracing::warn!("SIGHUP: {source} says {text:?}: {e}; unchanged"),
            }
        }
    });
    Ok(())
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Taken while this process has a single thread: taking it clears LISTEN_* from
    // the environment, which is not safe once other threads may read it.
    let inherited = server::systemd_listener_std()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(serve(args, inherited))
}

async fn serve(
    args: Args,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<()> {
    // Plain lines when stderr is not a terminal: journald keeps them as they are.
    let ansi = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("bad --log-level {:?}", args.log_level))?;
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init();
    }
    spawn_sighup_reload(reload, args.log_level_file.clone(), args.log_level.clone())?;

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
    // Exits, reconciles and restart policies from here on: see link.rs.
    engine.start_link();

    let (listener, owned_path) = match inherited {
        Some(l) => (
            tokio::net::UnixListener::from_std(l).context("serving the socket from systemd")?,
            None,
        ),
        None => {
            let path = server::parse_host(&args.host)?;
            (server::bind(&path)?, Some(path))
        }
    };
    let host = if owned_path.is_some() {
        args.host.clone()
    } else {
        "the socket systemd passed (LISTEN_FDS)".to_string()
    };
    tracing::info!(%host, manager = %args.manager, "berthd listening");
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("telling the service manager we are ready: {e}");
    }
    server::serve(listener, engine, shutdown_signal()).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // A socket systemd passed stays as it is: systemd queues connections on it until
    // berthd is back.
    if let Some(p) = owned_path {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("berthd stopped");
    Ok(())
}
