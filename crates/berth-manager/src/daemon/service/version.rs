//! `berth.manager.v1.Version`: version and health.

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::version_server::Version;
use tonic::{Request, Response};

use super::{Res, Svc};

#[tonic::async_trait]
impl Version for Svc {
    async fn version(&self, _: Request<pb::Empty>) -> Res<pb::VersionResponse> {
        let s = &self.d.settings;
        let runtime = s.default_runtime.to_string_lossy();
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION")
                .unwrap_or_default()
                .to_string(),
            runtime: if s.runtime_version.is_empty() {
                runtime.into_owned()
            } else {
                format!("{runtime} ({})", s.runtime_version)
            },
        }))
    }

    async fn health(&self, _: Request<pb::Empty>) -> Res<pb::HealthResponse> {
        Ok(Response::new(pb::HealthResponse {
            status: "serving".to_string(),
        }))
    }
}
