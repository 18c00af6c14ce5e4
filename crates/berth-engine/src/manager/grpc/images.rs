//! [`ImageManager`] over gRPC: the `Images` streams and `Events.Subscribe`. Server
//! streams are pumped into channels by a task each, so the handlers read them like
//! any other receiver; the task ends when the stream does or the reader goes away.

use async_trait::async_trait;
use berth_api::berth::manager::v1 as pb;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::Streaming;

use super::GrpcManager;
use crate::error::EngineError;
use crate::manager::images::{
    Auth, CommitRequest, DeleteImageResponse, Envelope, ImageManager, LoadUpdate,
    PruneImagesResponse, PullUpdate, PushUpdate, Updates,
};
use crate::manager::Image;

/// Messages buffered between a manager stream and its reader.
const QUEUE: usize = 64;

/// A request stream fed by a channel.
pub(super) fn from_channel<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

impl GrpcManager {
    /// Copies a server stream into a channel, converting each message.
    fn pump<M, T>(&self, mut s: Streaming<M>, convert: fn(M) -> T) -> Updates<T>
    where
        M: Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        let socket = self.socket.clone();
        tokio::spawn(async move {
            while let Some(item) = s.next().await {
                let item = item.map(convert).map_err(|status| {
                    if status.code() == tonic::Code::Unavailable && status.metadata().is_empty() {
                        EngineError::ManagerUnavailable {
                            socket: socket.clone(),
                            reason: status.message().to_string(),
                        }
                    } else {
                        EngineError::from(status)
                    }
                });
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

#[async_trait]
impl ImageManager for GrpcManager {
    async fn images_pull(
        &self,
        reference: &str,
        auth: Auth,
    ) -> Result<Updates<PullUpdate>, EngineError> {
        let s = self
            .images()
            .pull(pb::PullRequest {
                reference: reference.to_string(),
                auth: Some(auth),
                insecure: false,
                platform: String::new(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(self.pump(s, |m: pb::PullProgress| match m.image {
            Some(i) => PullUpdate::Done(Box::new(i)),
            None => PullUpdate::Layer(m.layer.unwrap_or_default()),
        }))
    }

    async fn images_push(
        &self,
        reference: &str,
        auth: Auth,
    ) -> Result<Updates<PushUpdate>, EngineError> {
        let s = self
            .images()
            .push(pb::PushRequest {
                reference: reference.to_string(),
                auth: Some(auth),
                insecure: false,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(self.pump(s, |m: pb::PushProgress| match m.layer {
            Some(l) if m.digest.is_empty() => PushUpdate::Layer(l),
            _ => PushUpdate::Done { digest: m.digest },
        }))
    }

    async fn images_import(
        &self,
        reference: &str,
        changes: Vec<String>,
        message: &str,
        mut data: mpsc::Receiver<Bytes>,
    ) -> Result<Image, EngineError> {
        let (tx, rx) = mpsc::channel(4);
        let first = pb::ImportRequest {
            reference: reference.to_string(),
            changes,
            message: message.to_string(),
            data: Vec::new(),
        };
        // The first message is the metadata; the body's chunks follow as it arrives.
        tokio::spawn(async move {
            if tx.send(first).await.is_err() {
                return;
            }
            while let Some(chunk) = data.recv().await {
                let msg = pb::ImportRequest {
                    data: chunk.to_vec(),
                    ..Default::default()
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(self
            .images()
            .import(from_channel(rx))
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn images_load(
        &self,
        mut data: mpsc::Receiver<Bytes>,
    ) -> Result<Updates<LoadUpdate>, EngineError> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(chunk) = data.recv().await {
                if tx
                    .send(pb::DataChunk {
                        data: chunk.to_vec(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let s = self
            .images()
            .load(from_channel(rx))
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(self.pump(s, |m: pb::LoadProgress| match m.image {
            Some(i) => LoadUpdate::Image {
                image: Box::new(i),
                archive_names: m.archive_names,
            },
            None => LoadUpdate::Layer(m.layer.unwrap_or_default()),
        }))
    }

    async fn images_save(&self, references: Vec<String>) -> Result<Updates<Bytes>, EngineError> {
        let s = self
            .images()
            .save(pb::SaveRequest {
                references,
                format: "docker".to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(self.pump(s, |m: pb::DataChunk| Bytes::from(m.data)))
    }

    async fn images_tag(&self, source: &str, target: &str) -> Result<Image, EngineError> {
        Ok(self
            .images()
            .tag(pb::TagRequest {
                source: source.to_string(),
                target: target.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn images_delete(
        &self,
        reference: &str,
        force: bool,
        no_prune: bool,
    ) -> Result<DeleteImageResponse, EngineError> {
        Ok(self
            .images()
            .delete(pb::DeleteImageRequest {
                reference: reference.to_string(),
                force,
                no_prune,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn images_commit(&self, req: CommitRequest, pause: bool) -> Result<Image, EngineError> {
        let task = pb::TaskId {
            container_id: req.container_id.clone(),
        };
        let paused = pause
            && self
                .tasks()
                .pause(task.clone())
                .await
                .map_err(|s| self.error(s))
                .is_ok();
        let result = self.commit_rpc(req).await;
        if paused {
            // Thawed whatever the commit did: a container left frozen is worse than a
            // failed commit.
            if let Err(status) = self.tasks().resume(task).await {
                tracing::warn!(error = %status.message(), "resuming a container after commit");
            }
        }
        result
    }

    async fn images_prune(
        &self,
        all: bool,
        filters: Vec<String>,
    ) -> Result<PruneImagesResponse, EngineError> {
        Ok(self
            .images()
            .prune(pb::PruneImagesRequest { all, filters })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn images_login(&self, server: &str, auth: Auth) -> Result<String, EngineError> {
        Ok(self
            .images()
            .login(pb::LoginRequest {
                server: server.to_string(),
                auth: Some(auth),
                insecure: false,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner()
            .identity_token)
    }

    async fn events_subscribe(
        &self,
        filters: Vec<String>,
    ) -> Result<Updates<Envelope>, EngineError> {
        let s = self
            .events()
            .subscribe(pb::SubscribeRequest { filters })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(self.pump(s, |e| e))
    }
}

impl GrpcManager {
    /// `Images.Commit` itself.
    async fn commit_rpc(&self, req: CommitRequest) -> Result<Image, EngineError> {
        Ok(self
            .images()
            .commit(req)
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }
}
