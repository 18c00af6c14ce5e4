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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ansi = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .with_context(|| format!("bad --log-level {:?}", args.log_level))?,
        )
        .init();

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
    engine.start_event_feed();

    let (listener, owned_path) = match server::systemd_listener()? {
        Some(l) => (l, None),
        None => {
            let path = server::parse_host(&args.host)?;
            (server::bind(&path)?, Some(path))
        }
    };
    tracing::info!(host = %args.host, manager = %args.manager, "berthd listening");
    server::serve(listener, engine, shutdown_signal()).await;
    if let Some(p) = owned_path {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("berthd stopped");
    Ok(())
}
