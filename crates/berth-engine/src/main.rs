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
    /// Connections served at once; past it a new one is answered 503 and closed.
    #[arg(long, default_value_t = server::MAX_CONNECTIONS)]
    max_connections: usize,
    /// The config file (dockerd's daemon.json keys for networks: bridge, bip,
    /// fixed-cidr, default-address-pools, mtu, host-gateway-ip); flags win.
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// The default network's bridge device.
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// The default bridge's address and prefix, e.g. 172.18.0.1/16 (default: the
    /// first /16 of the address pools no route of this host uses).
    #[arg(long)]
    bip: Option<String>,
    /// Give containers on the default bridge addresses from this part of its subnet.
    #[arg(long)]
    fixed_cidr: Option<String>,
    /// Where networks get subnets from, `base=CIDR,size=N` (repeatable).
    #[arg(long = "default-address-pool")]
    default_address_pool: Vec<String>,
    /// The MTU of the default bridge.
    #[arg(long)]
    mtu: Option<u32>,
    /// What `--add-host NAME:host-gateway` resolves to (default: the default
    /// bridge's gateway).
    #[arg(long)]
    host_gateway_ip: Option<String>,
    /// The netavark binary.
    #[arg(long, default_value = berth_engine::network::netavark::NETAVARK_BIN)]
    netavark: PathBuf,
    /// The aardvark-dns binary netavark starts.
    #[arg(long, default_value = berth_engine::network::netavark::AARDVARK_BIN)]
    aardvark_dns: PathBuf,
    /// Do not serve: tear down every network a berthd with this --exec-root set up
    /// (veths, iptables rules, DNS entries, namespaces), then exit. For
    /// `uninstall.sh --purge` and test scripts, with the engine stopped.
    #[arg(long)]
    teardown_networks: bool,
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
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(berth_engine::network::proxy::SUBCOMMAND) {
        // A published port's userland proxy (started by berthd itself; see
        // network::proxy): no runtime, no logging, one thread per connection.
        return berth_engine::network::proxy::child_main(&argv[2..])
            .context("berthd userland-proxy");
    }
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

fn backend(args: &Args) -> berth_engine::network::netavark::Netavark {
    berth_engine::network::netavark::Netavark {
        netavark: args.netavark.clone(),
        aardvark: args.aardvark_dns.clone(),
        config_dir: berth_engine::network::config_dir(&args.exec_root),
        lock_file: PathBuf::from(berth_engine::network::netavark::LOCK_FILE),
    }
}

async fn teardown_networks(args: &Args) -> anyhow::Result<()> {
    let errors = berth_engine::network::teardown_all(&args.exec_root, &backend(args)).await;
    for e in &errors {
        eprintln!("berthd: {e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} network teardown steps failed", errors.len())
    }
}

async fn serve(
    args: Args,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<()> {
    if args.teardown_networks {
        return teardown_networks(&args).await;
    }
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

    // Root's alone: container configs (their environment), logs, volumes.
    for dir in [&args.data_root, &args.exec_root] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
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
    let net_flags = berth_engine::network::config::NetworkFlags {
        bridge: args.bridge.clone(),
        bip: args.bip.clone(),
        fixed_cidr: args.fixed_cidr.clone(),
        pools: args.default_address_pool.clone(),
        mtu: args.mtu,
        host_gateway_ip: args.host_gateway_ip.clone(),
    };
    let net_options = berth_engine::network::config::options(&net_flags, Some(&args.config_file))
        .context("network settings")?;
    let backend = Arc::new(backend(&args));
    let engine = Arc::new(
        Engine::with_networks(config, manager, HostFacts::probe(), net_options, backend)
            .context("opening the container store and networks")?,
    );
    // Before anything starts a container: what a crash left set up is undone.
    berth_engine::network::container::restore(&engine).await;
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
    let limits = server::Limits {
        max_connections: args.max_connections.max(1),
        ..server::Limits::default()
    };
    let networks = engine.clone();
    server::serve_with(listener, engine, limits, shutdown_signal()).await;
    // What was made in advance goes; what containers hold stays (live restore).
    networks.networks.shutdown().await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // A socket systemd passed stays as it is: systemd queues connections on it until
    // berthd is back.
    if let Some(p) = owned_path {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("berthd stopped");
    Ok(())
}
