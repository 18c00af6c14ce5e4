//! `berth.manager.v1.Tasks`: each call goes to the task's shim (see
//! `lifecycle.rs`); Attach proxies the two streams.

use std::pin::Pin;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::tasks_server::Tasks;
use berth_shim_contract::pb as shimpb;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Res, Svc};
use crate::daemon::error::DaemonError;
use crate::daemon::lifecycle::StartNow;

/// Stdin messages queued towards the shim.
const STDIN_QUEUE: usize = 16;

fn empty() -> Res<pb::Empty> {
    Ok(Response::new(pb::Empty {}))
}

#[tonic::async_trait]
impl Tasks for Svc {
    async fn create(&self, req: Request<pb::CreateTaskRequest>) -> Res<pb::CreateTaskResponse> {
        let r = req.into_inner();
        let spec = (!r.spec.is_empty()).then_some(r.spec.as_slice());
        let start = r.start.then_some(StartNow {
            attaches: r.attaches,
        });
        let created = self
            .d
            .create_task(&r.container_id, r.stdin, spec, start)
            .await?;
        Ok(Response::new(pb::CreateTaskResponse {
            pid: created.pid,
            started: created.started,
        }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Res<pb::StartResponse> {
        let r = req.into_inner();
        let pid = self.d.start_task(&r.container_id, &r.exec_id).await?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.d
            .kill_task(&r.container_id, &r.exec_id, r.signal, r.all)
            .await?;
        empty()
    }

    async fn delete(&self, req: Request<pb::DeleteTaskRequest>) -> Res<pb::ExitStatus> {
        let r = req.into_inner();
        let exit = self.d.delete_task(&r.container_id, r.force).await?;
        Ok(Response::new(exit.to_pb()))
    }

    async fn wait(&self, req: Request<pb::WaitRequest>) -> Res<pb::ExitStatus> {
        let r = req.into_inner();
        Ok(Response::new(
            self.d.wait_task(&r.container_id, &r.exec_id).await?,
        ))
    }

    async fn get(&self, req: Request<pb::GetTaskRequest>) -> Res<pb::Task> {
        Ok(Response::new(
            self.d.get_task(&req.into_inner().container_id).await?,
        ))
    }

    async fn list(&self, _: Request<pb::ListTasksRequest>) -> Res<pb::ListTasksResponse> {
        Ok(Response::new(pb::ListTasksResponse {
            tasks: self.d.list_tasks().await,
        }))
    }

    async fn exec(&self, req: Request<pb::ExecProcessRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        if r.exec_id.is_empty() {
            return Err(DaemonError::Missing("exec_id").into());
        }
        self.d
            .exec(&r.container_id, &r.exec_id, r.process, r.stdin)
            .await?;
        empty()
    }

    async fn delete_process(&self, req: Request<pb::DeleteProcessRequest>) -> Res<pb::ExitStatus> {
        let r = req.into_inner();
        Ok(Response::new(
            self.d.delete_process(&r.container_id, &r.exec_id).await?,
        ))
    }

    async fn pids(&self, req: Request<pb::PidsRequest>) -> Res<pb::PidsResponse> {
        let pids = self.d.pids(&req.into_inner().container_id).await?;
        Ok(Response::new(pb::PidsResponse { pids }))
    }

    async fn pause(&self, req: Request<pb::TaskId>) -> Res<pb::Empty> {
        self.d.pause(&req.into_inner().container_id, true).await?;
        empty()
    }

    async fn resume(&self, req: Request<pb::TaskId>) -> Res<pb::Empty> {
        self.d.pause(&req.into_inner().container_id, false).await?;
        empty()
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.d
            .resize_pty(&r.container_id, &r.exec_id, r.width, r.height)
            .await?;
        empty()
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.d.close_io(&r.container_id, &r.exec_id).await?;
        empty()
    }

    async fn stats(&self, req: Request<pb::TaskId>) -> Res<pb::StatsResponse> {
        let stats = self.d.stats(&req.into_inner().container_id).await?;
        Ok(Response::new(pb::StatsResponse { stats }))
    }

    async fn update(&self, req: Request<pb::UpdateTaskRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.d.update_task(&r.container_id, r.resources).await?;
        empty()
    }

    type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::AttachResponse, Status>> + Send>>;

    async fn attach(&self, req: Request<Streaming<pb::AttachRequest>>) -> Res<Self::AttachStream> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or(DaemonError::AttachNoContainer)?;
        if first.container_id.is_empty() {
            return Err(DaemonError::AttachNoContainer.into());
        }
        let task = self.d.task(&first.container_id)?;
        let mut client = task.client().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(STDIN_QUEUE);
        let to_shim = |m: pb::AttachRequest| shimpb::AttachRequest {
            exec_id: m.exec_id,
            stdin: m.stdin,
            close_stdin: m.close_stdin,
        };
        // The first message names the process for the shim as it does for us.
        let _ = tx.send(to_shim(first)).await;
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if tx.send(to_shim(m)).await.is_err() {
                    return;
                }
            }
        });
        let outbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(|status| DaemonError::Shim {
                id: task.id.clone(),
                status,
            })?
            .into_inner();
        let mapped = outbound.map(|r| {
            r.map(|a| pb::AttachResponse {
                stream: match shimpb::Stream::try_from(a.stream) {
                    Ok(shimpb::Stream::Stderr) => pb::StdStream::Stderr as i32,
                    _ => pb::StdStream::Stdout as i32,
                },
                data: a.data,
            })
        });
        Ok(Response::new(Box::pin(mapped)))
    }
}
