//! Where other parts of the engine join a container's life. Networking gets the
//! container's spec before its task is created (to set up the network namespace and
//! put its path in the spec), hears when its task is gone (to tear the network down
//! and free its host ports) and when it is removed (to give its addresses back);
//! health checks start with each run. All of these run under the container's
//! lifecycle lock, so a start and a remove of the same container never overlap.

use std::sync::Arc;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::engine::Engine;
use crate::error::EngineError;
pub use crate::network::container::PendingSetup;
use crate::store::ContainerRecord;

/// Before every task create (the first start, each restart): may change the spec,
/// and makes what the runtime needs to create the task (the network namespace, the
/// /etc files). What is left comes back, to be run by [`while_task_created`] alongside
/// the task's creation. An error fails the start; the container ends `exited` with
/// the error as its `State.Error`.
pub async fn before_task_create<'a>(
    engine: &'a Arc<Engine>,
    rec: &ContainerRecord,
    spec: &mut Spec,
) -> Result<Option<PendingSetup<'a>>, EngineError> {
    apply_namespace_modes(engine, rec, spec)?;
    crate::network::container::apply_to_spec(engine, rec, spec)?;
    let pending = crate::network::container::container_start(engine, rec).await;
    // A start that took a namespace from the pool (or could have): another is made.
    crate::network::pool::refill(engine);
    pending
}

/// The namespaces of `PidMode`/`IpcMode` `container:<name|id>` (that container
/// must be running, as with dockerd; for IPC it must be shareable, and its
/// /dev/shm is bound too), and a shareable container's own /dev/shm.
fn apply_namespace_modes(
    engine: &Engine,
    rec: &ContainerRecord,
    spec: &mut Spec,
) -> Result<(), EngineError> {
    use crate::spec::namespaces::{modes, Share};
    let own = modes(&rec.host_config)?;
    if own.ipc_shareable {
        let size = rec
            .host_config
            .shm_size
            .filter(|s| *s > 0)
            .unwrap_or(crate::spec::defaults::DEFAULT_SHM_SIZE);
        let dir = crate::spec::shm_dir(&engine.store.container_dir(&rec.id));
        super::shm::ensure(&dir, size)
            .map_err(|e| EngineError::io(format!("mounting {}", dir.display()), e))?;
    }
    let running = |kind: &str, name: &str| -> Result<(i64, ContainerRecord), EngineError> {
        let target = engine.store.get(name)?;
        if target.id == rec.id {
            return Err(EngineError::BadParameter(format!(
                "a container cannot join its own {kind} namespace"
            )));
        }
        match target.state.pid.filter(|p| *p > 0) {
            Some(pid) if target.state.running == Some(true) => Ok((pid, target)),
            _ => Err(EngineError::Conflict(format!(
                "cannot join {kind} of a non running container: {}",
                target.id
            ))),
        }
    };
    let mut joins = vec![];
    if let Share::Container(name) = &own.pid {
        joins.push((LinuxNamespaceType::Pid, "pid", running("PID", name)?.0));
    }
    if let Share::Container(name) = &own.ipc {
        let (pid, donor) = running("IPC", name)?;
        if !modes(&donor.host_config)?.ipc_shareable {
            return Err(EngineError::Conflict(
                "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                    .to_string(),
            ));
        }
        joins.push((LinuxNamespaceType::Ipc, "ipc", pid));
        let shm = crate::spec::shm_dir(&engine.store.container_dir(&donor.id));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        crate::spec::mounts::set_shm(&mut mounts, Some(&shm));
        spec.set_mounts(Some(mounts));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut list = linux.namespaces().clone().unwrap_or_default();
        for ns in &mut list {
            if let Some((_, name, pid)) = joins.iter().find(|(t, _, _)| *t == ns.typ()) {
                ns.set_path(Some(format!("/proc/{pid}/ns/{name}").into()));
            }
        }
        linux.set_namespaces(Some(list));
    }
    Ok(())
}

/// Alongside the task's creation, done before it starts: the network set up in the
/// namespace the task joined (netavark is the slow part of a start; the task's
/// creation is the other). An error fails the start as one of
/// [`before_task_create`]'s; what was set up is undone already.
pub async fn while_task_created(
    engine: &Arc<Engine>,
    id: &str,
    pending: Option<PendingSetup<'_>>,
) -> Result<(), EngineError> {
    match pending {
        Some(p) => crate::network::container::finish_start(engine, id, p).await,
        None => Ok(()),
    }
}

/// Whether the run holds host ports: its exit must free them before anyone hears
/// of it, so that a `run` that returned can be followed by one on the same port.
pub fn holds_host_ports(engine: &Arc<Engine>, id: &str) -> bool {
    engine
        .networks
        .live(id)
        .is_some_and(|l| !l.ports.is_empty())
}

/// After a run started: its health checks.
pub fn after_start(engine: &Arc<Engine>, id: &str) {
    crate::health::spawn(engine, id);
}

/// When a run's task is gone (exit, failed start): what the run held is released.
/// Errors are the hook's to log.
pub async fn after_task_gone(engine: &Arc<Engine>, id: &str) {
    crate::network::container::container_stopped(engine, id).await;
    super::shm::release(&crate::spec::shm_dir(&engine.store.container_dir(id)));
}

/// After the container's task and the manager's record are gone, before its engine
/// record is: whatever was prepared for it is released. Errors are the hook's to
/// log; a remove does not fail on them.
pub async fn after_remove(engine: &Arc<Engine>, rec: &ContainerRecord) {
    crate::network::container::container_removed(engine, &rec.id).await;
    // A run that ended while berthd was down left it mounted.
    super::shm::release(&crate::spec::shm_dir(&engine.store.container_dir(&rec.id)));
}
