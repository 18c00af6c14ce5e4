//! [`BuildManager`] over gRPC.

use async_trait::async_trait;
use berth_api::berth::manager::v1 as pb;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::images::from_channel;
use super::GrpcManager;
use crate::error::EngineError;
use crate::manager::build::{BuildManager, CopyIn};

#[async_trait]
impl BuildManager for GrpcManager {
    async fn snapshots_prepare(&self, key: &str, parent: &str) -> Result<(), EngineError> {
        self.snapshots()
            .prepare(pb::PrepareSnapshotRequest {
                key: key.to_string(),
                parent: parent.to_string(),
                labels: Default::default(),
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn snapshots_copy_in(
        &self,
        req: CopyIn,
        mut data: mpsc::Receiver<Bytes>,
    ) -> Result<(), EngineError> {
        let (tx, rx) = mpsc::channel(4);
        // The tar follows in messages of their own.
        let first = CopyIn {
            data: Vec::new(),
            ..req
        };
        tokio::spawn(async move {
            if tx.send(first).await.is_err() {
                return;
            }
            while let Some(chunk) = data.recv().await {
                let msg = pb::CopyInRequest {
                    data: chunk.to_vec(),
                    ..Default::default()
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        self.snapshots()
            .copy_in(from_channel(rx))
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }
}
