//! The engine's shared state: configuration, the container store, the manager seam,
//! exec instances, the containers' lifecycle locks, and the notifications of exits
//! and removals that `wait`, `stop` and `kill` listen to. What changes a container's
//! state is in [`crate::lifecycle`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::error::EngineError;
use crate::lifecycle::exec::ExecRecord;
use crate::lifecycle::Locks;
use crate::manager::Manager;
use crate::spec::{HostFacts, SpecError, VolumeResolver};
use crate::store::ContainerStore;

/// berthd's configuration (its flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `--data-root`: containers/, volumes/.
    pub data_root: PathBuf,
    /// `--exec-root`: runtime files of the engine.
    pub exec_root: PathBuf,
    /// `--manager`: the manager's socket (for messages).
    pub manager_socket: String,
    /// The berth-init binary mounted by `--init`.
    pub init_path: PathBuf,
}

/// Something that happened to a container, sent after it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    /// A run ended (or a start failed); `restarting` when the restart policy
    /// starts it again.
    Exited {
        id: String,
        code: i64,
        restarting: bool,
    },
    Removed {
        id: String,
    },
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    pub config: EngineConfig,
    pub store: ContainerStore,
    pub manager: Arc<dyn Manager>,
    pub host: HostFacts,
    pub execs: Mutex<HashMap<String, ExecRecord>>,
    /// One lock per container, held by every change of its state.
    pub locks: Locks,
    /// Exits and removals, for `wait`, `stop`, `kill` and `rm`.
    pub events: broadcast::Sender<ContainerEvent>,
    /// Docker's event stream (`GET /events`).
    pub event_hub: crate::events::EventHub,
    /// Networks, addresses, published ports (netavark underneath).
    pub networks: crate::network::Networks,
    /// Something was missed (an exit not recorded, a stopped task not deleted): the
    /// link reconciles at its next tick instead of waiting for its slow net.
    pub reconcile_wanted: std::sync::atomic::AtomicBool,
    /// When this berthd began: containers of the manager made before it by a create
    /// that never recorded them are an earlier berthd's leftovers.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Those leftovers were looked for (once per berthd: only an earlier one can
    /// have left any).
    pub unrecorded_dropped: std::sync::atomic::AtomicBool,
    /// The manager's half of removals that have already answered (see
    /// `lifecycle::remove_locked`): each holds a read guard while it deletes the
    /// task and the manager's container, and what asks the manager which
    /// containers use an image (image removal and prune) takes the write guard
    /// first, so that it never finds a container already gone here.
    pub manager_deletes: Arc<tokio::sync::RwLock<()>>,
    /// Containers removed here whose manager container could not be deleted then
    /// (the manager was down): every reconcile tries again. A berthd that stops
    /// before it succeeds leaves them to its successor's `drop_unrecorded`.
    pub manager_deletes_failed: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The container list's rows as last encoded (see `api::list_rows`).
    pub list_rows: crate::api::list_rows::ListRows,
}

/// Named volumes under `<data-root>/volumes/<name>/_data`, created on first use.
#[derive(Debug)]
pub struct LocalVolumes {
    pub root: PathBuf,
}

impl VolumeResolver for LocalVolumes {
    fn resolve(&self, name: &str) -> Result<PathBuf, SpecError> {
        if !crate::store::valid_name(name) || name.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        let dir = self.root.join(name).join("_data");
        std::fs::create_dir_all(&dir).map_err(|e| {
            SpecError::Invalid(format!("creating volume {name} at {}: {e}", dir.display()))
        })?;
        Ok(dir)
    }
}

impl Engine {
    /// Opens the store under the data root, with a network backend that touches
    /// nothing (the API tests, which run without root and without netavark).
    pub fn new(
        config: EngineConfig,
        manager: Arc<dyn Manager>,
        host: HostFacts,
    ) -> Result<Engine, EngineError> {
        Engine::with_networks(
            config,
            manager,
            host,
            crate::network::NetworkOptions::default(),
            Arc::new(crate::network::netavark::FakeBackend::default()),
        )
    }

    /// Opens the store and the networks under the data and exec roots.
    pub fn with_networks(
        config: EngineConfig,
        manager: Arc<dyn Manager>,
        host: HostFacts,
        net_options: crate::network::NetworkOptions,
        backend: Arc<dyn crate::network::netavark::Backend>,
    ) -> Result<Engine, EngineError> {
        let store = ContainerStore::open(&config.data_root.join("containers"))?;
        let networks = crate::network::Networks::open(
            &config.data_root,
            &config.exec_root,
            net_options,
            backend,
        )?;
        // The journal lives in the exec root; berthd makes it, tests may not have.
        let _ = std::fs::create_dir_all(&config.exec_root);
        let (events, _) = broadcast::channel(256);
        let event_hub =
            crate::events::EventHub::open(&config.exec_root.join(crate::events::JOURNAL));
        Ok(Engine {
            config,
            store,
            manager,
            host,
            execs: Mutex::new(HashMap::new()),
            locks: Locks::default(),
            events,
            event_hub,
            networks,
            reconcile_wanted: std::sync::atomic::AtomicBool::new(false),
            started_at: chrono::Utc::now(),
            unrecorded_dropped: std::sync::atomic::AtomicBool::new(false),
            manager_deletes: Arc::default(),
            manager_deletes_failed: std::sync::Mutex::default(),
            list_rows: crate::api::list_rows::ListRows::default(),
        })
    }

    /// Returns once every removal that has answered has deleted its manager
    /// container too: what follows may ask the manager which containers use an
    /// image.
    pub async fn removals_settled(&self) {
        drop(self.manager_deletes.write().await);
    }

    /// Asks the link for a reconcile with the manager at its next tick.
    pub fn want_reconcile(&self) {
        self.reconcile_wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts what runs beside the API for the engine's life: the link to the
    /// manager ([`crate::link`]), which delivers exits and, once it first reaches
    /// the manager, applies the restart policies of berthd's start.
    pub fn start_link(self: &Arc<Self>) {
        crate::lifecycle::exit::publish_pending(self);
        crate::link::spawn(self);
    }

    /// The volume resolver for specs.
    pub fn volumes(&self) -> LocalVolumes {
        LocalVolumes {
            root: self.config.data_root.join("volumes"),
        }
    }

    /// Locks the exec table.
    pub fn execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecRecord>> {
        match self.execs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
