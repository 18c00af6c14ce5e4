//! Where other parts of the engine join a container's life. Networking plugs in
//! here: it gets the container's spec before its task is created (to make the
//! network namespace and put its path in the spec), and the container after it is
//! removed (to give its addresses and ports back). Both run under the container's
//! lifecycle lock, so a start and a remove of the same container never overlap.

use std::sync::Arc;

use oci_spec::runtime::Spec;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::store::ContainerRecord;

/// Before every task create (the first start, each restart): may change the spec.
/// An error fails the start; the container ends `exited` with the error as its
/// `State.Error`.
pub async fn before_task_create(
    _engine: &Arc<Engine>,
    _rec: &ContainerRecord,
    _spec: &mut Spec,
) -> Result<(), EngineError> {
    Ok(())
}

/// After the container's task and the manager's record are gone, before its engine
/// record is: whatever was prepared for it is released. Errors are the hook's to
/// log; a remove does not fail on them.
pub async fn after_remove(_engine: &Arc<Engine>, _rec: &ContainerRecord) {}
