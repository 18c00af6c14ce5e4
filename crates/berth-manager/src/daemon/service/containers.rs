//! `berth.manager.v1.Containers`: container records (see `core.rs`).

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::containers_server::Containers;
use tonic::{Request, Response};

use super::{Res, Svc};
use crate::daemon::core::container_pb;
use crate::daemon::error::DaemonError;

#[tonic::async_trait]
impl Containers for Svc {
    async fn create(&self, req: Request<pb::CreateContainerRequest>) -> Res<pb::Container> {
        let c = req
            .into_inner()
            .container
            .ok_or(DaemonError::Missing("container"))?;
        Ok(Response::new(self.d.create_container(c).await?))
    }

    async fn get(&self, req: Request<pb::GetContainerRequest>) -> Res<pb::Container> {
        let rec = self.d.container(&req.into_inner().id).await?;
        Ok(Response::new(container_pb(&rec)))
    }

    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Res<pb::ListContainersResponse> {
        let r = req.into_inner();
        let mut containers = self.d.list_containers(r.filters).await?;
        if r.omit_spec {
            for c in &mut containers {
                c.spec = Vec::new();
            }
        }
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn update(&self, req: Request<pb::UpdateContainerRequest>) -> Res<pb::Container> {
        let r = req.into_inner();
        let c = r.container.ok_or(DaemonError::Missing("container"))?;
        Ok(Response::new(
            self.d.update_container(c, r.update_mask).await?,
        ))
    }

    async fn delete(&self, req: Request<pb::DeleteContainerRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.d.delete_container(&r.id, r.keep_snapshot).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
