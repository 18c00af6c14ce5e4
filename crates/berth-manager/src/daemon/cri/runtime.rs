//! `runtime.v1.RuntimeService`: Version, Status, pod sandboxes
//! ([`super::sandbox`]) and containers ([`super::containers`]); what is not
//! served answers `Unimplemented` (see docs/cri.md).

use berth_cri_api::runtime::v1 as cri;
use berth_cri_api::runtime::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::Cri;

/// The CRI version this server speaks.
const CRI_API_VERSION: &str = "v1";
/// What `Version` names the runtime.
const RUNTIME_NAME: &str = "berth";

type Res<T> = Result<Response<T>, Status>;

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not implemented by berth's CRI server yet (see docs/cri.md)"
    ))
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.to_string(),
        status: ok,
        reason: if ok {
            String::new()
        } else {
            reason.to_string()
        },
        message: if ok {
            String::new()
        } else {
            message.to_string()
        },
    }
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _req: Request<cri::VersionRequest>) -> Res<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            // The kubelet runtime API version ("0.1.0" in every CRI runtime).
            version: "0.1.0".to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: CRI_API_VERSION.to_string(),
        }))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Res<cri::StatusResponse> {
        let verbose = req.into_inner().verbose;
        let runtime_ready = condition("RuntimeReady", true, "", "");
        let network = super::cni::load(&self.cfg.cni_conf_dir);
        let network_ready = condition(
            "NetworkReady",
            network.is_ok(),
            "NetworkPluginNotReady",
            &network
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        );
        let mut info = std::collections::HashMap::new();
        if verbose {
            let config = serde_json::json!({
                "runtime": self.d.settings.default_runtime.to_string_lossy(),
                "runtimeVersion": self.d.settings.runtime_version,
                "registryMirrors": self.cfg.registry_mirrors,
                "insecureRegistries": self.cfg.insecure_registries,
                "cniConfDir": self.cfg.cni_conf_dir,
                "cniBinDirs": self.cfg.cni_bin_dirs,
                "cniNetwork": network.as_ref().ok().map(|n| n.file.display().to_string()),
            });
            info.insert("config".to_string(), config.to_string());
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Res<cri::RunPodSandboxResponse> {
        let pod_sandbox_id = self.pod_run(req.into_inner()).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Res<cri::StopPodSandboxResponse> {
        self.pod_stop(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Res<cri::RemovePodSandboxResponse> {
        self.pod_remove(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Res<cri::PodSandboxStatusResponse> {
        let r = req.into_inner();
        let rec = self.find_sandbox(&r.pod_sandbox_id).await?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", r.pod_sandbox_id))
        })?;
        Ok(Response::new(Cri::sandbox_status(&rec, r.verbose)))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Res<cri::ListPodSandboxResponse> {
        let items = self.pod_list(req.into_inner().filter).await?;
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Res<cri::CreateContainerResponse> {
        let container_id = self.container_create(req.into_inner()).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Res<cri::StartContainerResponse> {
        self.container_start(&req.into_inner().container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Res<cri::StopContainerResponse> {
        let r = req.into_inner();
        self.container_stop(&r.container_id, r.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Res<cri::RemoveContainerResponse> {
        self.container_remove(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Res<cri::ListContainersResponse> {
        let containers = self.container_list(req.into_inner().filter).await?;
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Res<cri::ContainerStatusResponse> {
        let r = req.into_inner();
        Ok(Response::new(
            self.container_status(&r.container_id, r.verbose).await?,
        ))
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Res<cri::UpdateContainerResourcesResponse> {
        let r = req.into_inner();
        self.container_update(&r.container_id, r.linux).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Res<cri::ReopenContainerLogResponse> {
        self.container_reopen_log(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Res<cri::ExecSyncResponse> {
        Ok(Response::new(
            self.container_exec_sync(req.into_inner()).await?,
        ))
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> Res<cri::ExecResponse> {
        Ok(Response::new(self.stream_exec(req.into_inner()).await?))
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> Res<cri::AttachResponse> {
        Ok(Response::new(self.stream_attach(req.into_inner()).await?))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Res<cri::PortForwardResponse> {
        Ok(Response::new(
            self.stream_port_forward(req.into_inner()).await?,
        ))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Res<cri::ContainerStatsResponse> {
        let stats = self.container_stats(&req.into_inner().container_id).await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Res<cri::ListContainerStatsResponse> {
        let stats = self.container_stats_list(req.into_inner().filter).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Res<cri::PodSandboxStatsResponse> {
        let stats = self.pod_stats(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Res<cri::ListPodSandboxStatsResponse> {
        let stats = self.pod_stats_list(req.into_inner().filter).await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Res<cri::UpdateRuntimeConfigResponse> {
        // kubelet sends the pod CIDR here; the CNI config owns it, as with
        // containerd's default CNI setup.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<cri::CheckpointContainerRequest>,
    ) -> Res<cri::CheckpointContainerResponse> {
        Err(not_yet("CheckpointContainer"))
    }

    type GetContainerEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>,
    >;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        Err(not_yet("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Res<cri::ListMetricDescriptorsResponse> {
        Err(not_yet("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Res<cri::ListPodSandboxMetricsResponse> {
        Err(not_yet("ListPodSandboxMetrics"))
    }
}
