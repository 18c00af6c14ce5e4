//! The daemon's life: parse the command line, bind the socket (mode 0600) while
//! still single-threaded, open the store and the container database, recover the
//! tasks, serve every service until SIGTERM or SIGINT, then stop serving and leave
//! every container (and its shim) running.

use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_api::berth::manager::v1::containers_server::ContainersServer;
use berth_api::berth::manager::v1::content_server::ContentServer;
use berth_api::berth::manager::v1::events_server::EventsServer;
use berth_api::berth::manager::v1::images_server::ImagesServer;
use berth_api::berth::manager::v1::snapshots_server::SnapshotsServer;
use berth_api::berth::manager::v1::tasks_server::TasksServer;
use berth_api::berth::manager::v1::version_server::VersionServer;
use berth_api::MAX_MESSAGE;
use clap::Parser;
use nix::sys::stat::{umask, Mode};
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use super::config::{find_program, Args, CriConfig, FileConfig, LogLevel};
use super::containers::ContainerDb;
use super::core::{Daemon, Settings};
use super::cri::Cri;
use super::service::Svc;

/// How long in-flight calls get once the daemon decided to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let reload = init_logging(args.log_level);
    match run(args, reload) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

type FilterHandle = tracing_subscriber::reload::Handle<
    tracing_subscriber::filter::Targets,
    tracing_subscriber::Registry,
>;

/// Our own events at `level`, the libraries' (h2, hyper, tower) from warnings.
fn targets(level: tracing_subscriber::filter::LevelFilter) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    Targets::new()
        .with_target("berth_manager", level)
        .with_target("berth_shim", level)
        .with_default(LevelFilter::WARN.min(level))
}

/// One line per event on stderr; colours only on a terminal (journald keeps plain
/// lines). The filter can be swapped at run time (SIGHUP).
fn init_logging(level: LogLevel) -> FilterHandle {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let level = level
        .as_str()
        .parse::<LevelFilter>()
        .unwrap_or(LevelFilter::INFO);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(targets(level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .with_writer(std::io::stderr),
        )
        .init();
    handle
}

/// SIGHUP: the level in `file` if it exists, else the command line's again.
fn reload_log_level(handle: &FilterHandle, file: &Path, flag: LogLevel) {
    use tracing_subscriber::filter::LevelFilter;
    let (source, text) = match std::fs::read_to_string(file) {
        Ok(t) => (file.display().to_string(), t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ("--log-level".to_string(), flag.as_str().to_string())
        }
        Err(e) => {
            tracing::warn!(
                "SIGHUP: reading {}: {e}; log level unchanged",
                file.display()
            );
            return;
        }
    };
    match text.parse::<LevelFilter>() {
        Ok(level) => match handle.reload(targets(level)) {
            Ok(()) => tracing::warn!(level = %level, from = %source, "SIGHUP: log level set"),
            Err(e) => tracing::warn!("SIGHUP: setting the log level: {e}"),
        },
        Err(_) => tracing::warn!(
            "SIGHUP: {source} says {text:?}, not a log level (error, warn, info, debug, trace); unchanged"
        ),
    }
}

/// Create `path` with `mode`, and give an existing one that mode too (a tree
/// left by an older version may be more open).
fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn run(args: Args, reload: FilterHandle) -> anyhow::Result<()> {
    let root = std::path::absolute(&args.root).context("--root")?;
    let state = std::path::absolute(&args.state).context("--state")?;
    let address = std::path::absolute(&args.address).context("--address")?;
    make_dir(&root, 0o700)?;
    make_dir(&state.join("tasks"), 0o711)?;
    make_dir(&state.join("runtime"), 0o700)?;
    if let Some(parent) = address.parent() {
        make_dir(parent, 0o711)?;
    }
    let file = FileConfig::load(&args.config)?;
    let cri = match CriConfig::resolve(&args, &file) {
        Some(mut c) => {
            c.address = std::path::absolute(&c.address).context("the CRI address")?;
            if let Some(parent) = c.address.parent() {
                make_dir(parent, 0o711)?;
            }
            Some(c)
        }
        None => None,
    };
    // Before any thread exists: the umask that makes the sockets 0600 from the
    // start is process-wide.
    let listener = bind(&address)?;
    let cri = match cri {
        Some(c) => match bind(&c.address) {
            Ok(l) => Some((c, l)),
            Err(e) => {
                let _ = std::fs::remove_file(&address);
                return Err(e.context("the CRI socket"));
            }
        },
        None => None,
    };
    let cri_address = cri.as_ref().map(|(c, _)| c.address.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-manager")
        .build()
        .context("starting the event loop")?;
    let result = rt.block_on(serve(args, root, state, &address, listener, cri, reload));
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_file(&address);
    if let Some(a) = cri_address {
        let _ = std::fs::remove_file(a);
    }
    result
}

/// Bind the socket with mode 0600, refusing one another manager serves.
fn bind(address: &Path) -> anyhow::Result<UnixListener> {
    if address.exists() {
        // A manager killed a moment ago still accepts until its exit closes its
        // descriptors: only one that keeps accepting for a while is serving.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while UnixStream::connect(address).is_ok() {
            if std::time::Instant::now() >= deadline {
                bail!("another berth-manager serves {}", address.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(address)
            .with_context(|| format!("removing the stale socket {}", address.display()))?;
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(address);
    umask(old);
    let listener = listener.with_context(|| format!("binding {}", address.display()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", address.display()))?;
    listener
        .set_nonblocking(true)
        .context("making the socket non-blocking")?;
    Ok(listener)
}

/// The first line of `<runtime> --version`, or "" when it cannot be run.
async fn runtime_version(runtime: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::process::Command::new(runtime)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match out {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        _ => String::new(),
    }
}

async fn serve(
    args: Args,
    root: PathBuf,
    state: PathBuf,
    address: &Path,
    listener: UnixListener,
    cri: Option<(CriConfig, UnixListener)>,
    reload: FilterHandle,
) -> anyhow::Result<()> {
    let shim = match args.shim.clone() {
        Some(p) => std::path::absolute(&p).context("--shim")?,
        None => find_program("berth-shim".as_ref()).unwrap_or_else(|| {
            tracing::warn!(
                "berth-shim not found next to berth-manager or in PATH: tasks cannot be created"
            );
            PathBuf::from("berth-shim")
        }),
    };
    let runtime_version = match find_program(&args.runtime) {
        Some(p) => runtime_version(&p).await,
        None => {
            tracing::warn!(runtime = %args.runtime.to_string_lossy(), "the default OCI runtime was not found");
            String::new()
        }
    };
    let store_root = root.clone();
    let store = tokio::task::spawn_blocking(move || berth_manager::Store::open(&store_root))
        .await?
        .with_context(|| format!("opening the store in {}", root.display()))?;
    let db_path = root.join("containers.redb");
    let db = tokio::task::spawn_blocking(move || ContainerDb::open(&db_path)).await??;
    let settings = Settings {
        tasks_dir: state.join("tasks"),
        runtime_root: state.join("runtime"),
        default_runtime: args.runtime.clone(),
        shim,
        log_level: args.log_level,
        runtime_version,
    };
    let daemon = Arc::new(Daemon::new(Arc::new(store), db, settings));
    daemon.recover().await.context("recovering the tasks")?;

    let svc = Svc {
        d: Arc::clone(&daemon),
    };
    let incoming = UnixListenerStream::new(
        tokio::net::UnixListener::from_std(listener).context("serving the socket")?,
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    macro_rules! service {
        ($server:ident) => {
            $server::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        };
    }
    let server = tonic::transport::Server::builder()
        .add_service(service!(VersionServer))
        .add_service(service!(ImagesServer))
        .add_service(service!(ContentServer))
        .add_service(service!(SnapshotsServer))
        .add_service(service!(ContainersServer))
        .add_service(service!(TasksServer))
        .add_service(service!(EventsServer))
        .serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(server);

    // The CRI server stops with the main one; until then a failure of it is the
    // daemon's failure too (kubelet would be left without a runtime).
    let cri_server = match cri {
        Some((cfg, l)) => {
            let cri_address = cfg.address.clone();
            let cri = Cri::new(Arc::clone(&daemon), cfg, state.join("cri"))?;
            cri.recover().await;
            let (runtime, image) = cri.services();
            let incoming = super::cri::authority::incoming(
                tokio::net::UnixListener::from_std(l).context("serving the CRI socket")?,
            );
            let mut stop = stop_tx.subscribe();
            tracing::info!(address = %cri_address.display(), "serving CRI");
            futures_util::future::Either::Left(
                tonic::transport::Server::builder()
                    .add_service(runtime)
                    .add_service(image)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }),
            )
        }
        // No CRI socket: a stand-in that stops when the servers are told to, as a
        // real one would with nothing in flight.
        None => {
            let mut stop = stop_tx.subscribe();
            futures_util::future::Either::Right(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok::<(), tonic::transport::Error>(())
            })
        }
    };
    tokio::pin!(cri_server);

    let mut sigterm = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    tracing::info!(address = %address.display(), pid = std::process::id(), "serving");
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("telling the service manager we are ready: {e}");
    }
    let mut sighup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    loop {
        tokio::select! {
            r = &mut server => return r.context("serving"),
            r = &mut cri_server => return r.context("serving CRI"),
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping; containers keep running");
                break;
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping; containers keep running");
                break;
            }
            _ = sighup.recv() => reload_log_level(&reload, &args.log_level_file, args.log_level),
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    daemon.events.close();
    match tokio::time::timeout(STOP_GRACE, &mut server).await {
        Ok(r) => r.context("serving")?,
        Err(_) => tracing::info!("calls still in flight after {STOP_GRACE:?}; stopping anyway"),
    }
    if tokio::time::timeout(STOP_GRACE, &mut cri_server)
        .await
        .is_err()
    {
        tracing::info!("CRI calls still in flight after {STOP_GRACE:?}; stopping anyway");
    }
    Ok(())
}
