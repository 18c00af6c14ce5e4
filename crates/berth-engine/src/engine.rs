//! The engine's shared state: configuration, the container store, the manager seam,
//! exec instances, and the exit notifications that `wait` and the container monitors
//! share.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::{ContainerStateStatusEnum, ExecConfig};
use tokio::sync::broadcast;

use crate::error::EngineError;
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

/// Something that happened to a container, for `wait` and `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    Exited { id: String, code: i64 },
    Removed { id: String },
}

/// An exec instance (`docker exec`).
#[derive(Debug, Clone, Default)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: u32,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    pub config: EngineConfig,
    pub store: ContainerStore,
    pub manager: Arc<dyn Manager>,
    pub host: HostFacts,
    pub execs: Mutex<HashMap<String, ExecRecord>>,
    pub events: broadcast::Sender<ContainerEvent>,
    /// Docker's event stream (`GET /events`).
    pub event_hub: crate::events::EventHub,
    /// Networks, addresses, published ports (netavark underneath).
    pub networks: crate::network::Networks,
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
        let (events, _) = broadcast::channel(256);
        Ok(Engine {
            config,
            store,
            manager,
            host,
            execs: Mutex::new(HashMap::new()),
            events,
            event_hub: crate::events::EventHub::default(),
            networks,
        })
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

    /// Records a container's exit, publishes it, and removes the container when
    /// AutoRemove says so. Called by the monitor a start spawns.
    pub async fn container_exited(&self, id: &str, code: i64, oom: bool, finished_at: String) {
        let _ = self.manager.tasks_delete(id, true).await;
        crate::network::container::container_stopped(self, id).await;
        let rec = self.store.update(id, |r| {
            let st = &mut r.state;
            st.status = Some(ContainerStateStatusEnum::EXITED);
            st.running = Some(false);
            st.paused = Some(false);
            st.pid = Some(0);
            st.exit_code = Some(code);
            st.oom_killed = Some(oom);
            st.finished_at = Some(finished_at);
        });
        let _ = self.events.send(ContainerEvent::Exited {
            id: id.to_string(),
            code,
        });
        if let Ok(rec) = rec {
            if rec.host_config.auto_remove == Some(true) {
                if let Err(e) = self.remove_container(id).await {
                    tracing::warn!(container = id, error = %e, "auto-remove failed");
                }
            }
        }
    }

    /// Deletes the container everywhere (manager record and snapshot, engine files).
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        match self.manager.containers_delete(id, false).await {
            Ok(()) => {}
            Err(EngineError::Manager {
                code: tonic::Code::NotFound,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        crate::network::container::container_removed(self, id).await;
        self.store.remove(id)?;
        let _ = self
            .events
            .send(ContainerEvent::Removed { id: id.to_string() });
        Ok(())
    }

    /// Watches a started container until it exits (the manager's Wait), records it,
    /// and starts it again when its restart policy says so.
    pub fn spawn_monitor(self: &Arc<Self>, id: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.manager.tasks_wait(&id, "").await {
                Ok(exit) => {
                    let code = i64::from(exit.exit_status);
                    engine
                        .container_exited(&id, code, exit.oom_killed, exit.exited_at)
                        .await;
                    engine.apply_restart_policy(&id, code).await;
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "waiting for the container failed")
                }
            }
        });
    }

    /// Docker's restart policies after an exit: `always` and `unless-stopped` unless
    /// the user stopped it, `on-failure[:N]` for a non-zero code (at most N times).
    /// Restarts back off (100 ms doubling, at most 10 s), as dockerd's do, so a
    /// container that fails at once does not spin.
    async fn apply_restart_policy(self: &Arc<Self>, id: &str, code: i64) {
        use bollard_stubs::models::RestartPolicyNameEnum as P;
        let Ok(rec) = self.store.get(id) else {
            return; // removed (AutoRemove, or rm -f)
        };
        let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
        let max = policy.maximum_retry_count.unwrap_or(0);
        let restart = !rec.has_been_manually_stopped
            && match policy.name {
                Some(P::ALWAYS) | Some(P::UNLESS_STOPPED) => true,
                Some(P::ON_FAILURE) => code != 0 && (max <= 0 || rec.restart_count < max),
                _ => false,
            };
        if !restart {
            return;
        }
        let shift = u32::try_from(rec.restart_count.clamp(0, 7)).unwrap_or(7);
        let delay = Duration::from_millis(100u64 << shift).min(Duration::from_secs(10));
        tokio::time::sleep(delay).await;
        // The user may have stopped or removed it meanwhile.
        let Ok(rec) = self.store.get(id) else { return };
        if rec.has_been_manually_stopped || rec.state.running == Some(true) {
            return;
        }
        let _ = self.store.update(id, |r| r.restart_count += 1);
        let Ok(rec) = self.store.get(id) else { return };
        tracing::info!(container = %id, count = rec.restart_count, "restarting (restart policy)");
        if let Err(e) = crate::api::containers::start_container(self, &rec).await {
            tracing::warn!(container = %id, error = %e, "restart policy: starting again failed");
            return;
        }
        // A `stop` that came while it was starting found it not running yet: honour
        // it now (the monitor sees the flag and does not restart it again).
        if self
            .store
            .get(id)
            .is_ok_and(|r| r.has_been_manually_stopped)
        {
            let _ = self.manager.tasks_kill(id, "", 9, true).await;
        }
    }

    /// Live restore: watch again every container the store says is running; start
    /// the stopped ones whose policy is `always`, or `unless-stopped` when the user
    /// did not stop them (after a reboot, as dockerd does at start).
    pub fn restore(self: &Arc<Self>) {
        use bollard_stubs::models::RestartPolicyNameEnum as P;
        for rec in self.store.list() {
            if rec.state.running == Some(true) {
                tracing::info!(container = %rec.id, "restoring");
                self.spawn_monitor(rec.id.clone());
                crate::health::spawn(self, &rec.id);
                continue;
            }
            let name = rec.host_config.restart_policy.as_ref().and_then(|p| p.name);
            let start = match name {
                Some(P::ALWAYS) => rec.has_been_started_before,
                Some(P::UNLESS_STOPPED) => {
                    rec.has_been_started_before && !rec.has_been_manually_stopped
                }
                _ => false,
            };
            if start {
                let engine = self.clone();
                // `always` comes back at engine start even after a stop, and is
                // then armed again, as with dockerd.
                let _ = self
                    .store
                    .update(&rec.id, |r| r.has_been_manually_stopped = false);
                tokio::spawn(async move {
                    tracing::info!(container = %rec.id, "starting (restart policy, engine start)");
                    if let Err(e) = crate::api::containers::start_container(&engine, &rec).await {
                        tracing::warn!(container = %rec.id, error = %e, "restart policy: start failed");
                    }
                });
            }
        }
    }
}
