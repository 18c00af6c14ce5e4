//! `berth.manager.v1.Content`: read access to the blob store.

use std::io::{Read, Seek, SeekFrom};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::content_server::Content;
use berth_manager::{Digest, StoreError};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Res, Svc};
use crate::daemon::core::blocking;
use crate::daemon::error::DaemonError;
use crate::daemon::stream::{self, CHUNK};

fn digest(s: &str) -> Result<Digest, DaemonError> {
    s.parse::<Digest>()
        .map_err(|_| DaemonError::BadDigest(s.to_string()))
}

#[tonic::async_trait]
impl Content for Svc {
    async fn info(&self, req: Request<pb::ContentInfoRequest>) -> Res<pb::ContentInfo> {
        let d = digest(&req.into_inner().digest)?;
        let store = std::sync::Arc::clone(&self.d.store);
        let info = blocking(move || {
            store
                .content()
                .info(&d)
                .map_err(|e| DaemonError::Store(e.into()))
        })
        .await?;
        let created: chrono::DateTime<chrono::Utc> = info.created.into();
        Ok(Response::new(pb::ContentInfo {
            digest: info.digest.to_string(),
            size: i64::try_from(info.size).unwrap_or(i64::MAX),
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }))
    }

    type ReadStream = ReceiverStream<Result<pb::DataChunk, Status>>;

    async fn read(&self, req: Request<pb::ReadContentRequest>) -> Res<Self::ReadStream> {
        let r = req.into_inner();
        let d = digest(&r.digest)?;
        let (Ok(offset), Ok(size)) = (u64::try_from(r.offset), u64::try_from(r.size)) else {
            return Err(DaemonError::Missing("non-negative offset and size").into());
        };
        let store = std::sync::Arc::clone(&self.d.store);
        // Open before answering, so a missing blob is a NotFound status.
        let mut file = blocking(move || {
            let mut f = store
                .content()
                .open_blob(&d)
                .map_err(|e| DaemonError::Store(StoreError::from(e)))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| DaemonError::io("seeking in blob", d.to_string(), e))?;
            Ok(f)
        })
        .await?;
        let (tx, out) = stream::answer();
        tokio::task::spawn_blocking(move || {
            let mut left = if size == 0 { u64::MAX } else { size };
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                match file.read(&mut buf[..want]) {
                    Ok(0) => return,
                    Ok(n) => {
                        left -= n as u64;
                        let chunk = pb::DataChunk {
                            data: buf[..n].to_vec(),
                        };
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .blocking_send(Err(Status::internal(format!("reading the blob: {e}"))));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(out))
    }
}
