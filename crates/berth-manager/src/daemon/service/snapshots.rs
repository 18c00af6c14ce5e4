//! `berth.manager.v1.Snapshots`: the overlay snapshotter, as the store offers it.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::snapshots_server::Snapshots;
use berth_manager::snapshots::Mount;
use berth_manager::store::CopyInOptions;
use berth_manager::{Store, StoreError};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Res, Svc};
use crate::daemon::core::blocking;
use crate::daemon::error::DaemonError;
use crate::daemon::stream::{self, ChannelWriter};

fn mounts_pb(m: Vec<Mount>) -> pb::MountsResponse {
    pb::MountsResponse {
        mounts: m
            .into_iter()
            .map(|m| pb::Mount {
                r#type: m.kind,
                source: m.source,
                target: m.target,
                options: m.options,
            })
            .collect(),
    }
}

fn key(k: &str) -> Result<(), DaemonError> {
    if k.is_empty() {
        return Err(DaemonError::Missing("snapshot key"));
    }
    Ok(())
}

impl Svc {
    /// Run `f` on the store in a blocking thread, snapshot errors mapped.
    async fn snap<T, F>(&self, f: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.d.store);
        blocking(move || f(&store).map_err(DaemonError::from)).await
    }
}

#[tonic::async_trait]
impl Snapshots for Svc {
    async fn prepare(&self, req: Request<pb::PrepareSnapshotRequest>) -> Res<pb::MountsResponse> {
        let r = req.into_inner();
        key(&r.key)?;
        let m = self
            .snap(move |s| {
                let parent = (!r.parent.is_empty()).then_some(r.parent.as_str());
                let labels: BTreeMap<_, _> = r.labels.into_iter().collect();
                Ok(s.snapshotter().prepare(&r.key, parent, labels)?)
            })
            .await?;
        Ok(Response::new(mounts_pb(m)))
    }

    async fn view(&self, req: Request<pb::PrepareSnapshotRequest>) -> Res<pb::MountsResponse> {
        let r = req.into_inner();
        key(&r.key)?;
        let m = self
            .snap(move |s| {
                let parent = (!r.parent.is_empty()).then_some(r.parent.as_str());
                let labels: BTreeMap<_, _> = r.labels.into_iter().collect();
                Ok(s.snapshotter().view(&r.key, parent, labels)?)
            })
            .await?;
        Ok(Response::new(mounts_pb(m)))
    }

    async fn mounts(&self, req: Request<pb::SnapshotKey>) -> Res<pb::MountsResponse> {
        let k = req.into_inner().key;
        key(&k)?;
        let m = self.snap(move |s| Ok(s.snapshotter().mounts(&k)?)).await?;
        Ok(Response::new(mounts_pb(m)))
    }

    async fn commit(&self, req: Request<pb::CommitSnapshotRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        key(&r.key)?;
        if r.name.is_empty() {
            return Err(DaemonError::Missing("snapshot name").into());
        }
        self.snap(move |s| Ok(s.snapshotter().commit(&r.name, &r.key, None)?))
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn remove(&self, req: Request<pb::SnapshotKey>) -> Res<pb::Empty> {
        let k = req.into_inner().key;
        key(&k)?;
        self.snap(move |s| Ok(s.snapshotter().remove(&k)?)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn info(&self, req: Request<pb::SnapshotKey>) -> Res<pb::SnapshotInfo> {
        let k = req.into_inner().key;
        key(&k)?;
        let i = {
            let k = k.clone();
            self.snap(move |s| s.snapshot_info(&k)).await?
        };
        // While a task has the snapshot mounted, its merged view is that mount: the
        // bundle's rootfs, where the shim mounted it.
        let owner = i
            .labels
            .get(berth_manager::snapshots::CONTAINER_LABEL)
            .map(String::as_str);
        let merged_dir = match self.d.mounted_rootfs(&k, owner).await {
            Some(rootfs) => rootfs.to_string_lossy().into_owned(),
            None => i.merged_dir,
        };
        Ok(Response::new(pb::SnapshotInfo {
            key: i.key,
            parent: i.parent.unwrap_or_default(),
            kind: i.kind.as_str().to_string(),
            lower_dir: i.lower_dir,
            upper_dir: i.upper_dir,
            work_dir: i.work_dir,
            merged_dir,
            labels: i.labels.into_iter().collect(),
        }))
    }

    async fn usage(&self, req: Request<pb::SnapshotKey>) -> Res<pb::SnapshotUsage> {
        let k = req.into_inner().key;
        key(&k)?;
        let u = self.snap(move |s| Ok(s.snapshotter().usage(&k)?)).await?;
        Ok(Response::new(pb::SnapshotUsage {
            size: i64::try_from(u.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
            apparent_size: i64::try_from(u.apparent).unwrap_or(i64::MAX),
        }))
    }

    async fn changes(&self, req: Request<pb::SnapshotKey>) -> Res<pb::ChangesResponse> {
        let k = req.into_inner().key;
        key(&k)?;
        let c = self.snap(move |s| s.changes(&k)).await?;
        Ok(Response::new(pb::ChangesResponse {
            changes: c
                .into_iter()
                .map(|c| pb::Change {
                    kind: c.kind.as_str().to_string(),
                    path: c.path,
                })
                .collect(),
        }))
    }

    async fn copy_in(&self, req: Request<Streaming<pb::CopyInRequest>>) -> Res<pb::Empty> {
        let mut incoming = req.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or(DaemonError::Missing("first copy-in message"))?;
        key(&first.key)?;
        // Mounting a snapshot a running task has mounted too would share its upper
        // directory between two overlays.
        let users = self.d.list_containers(Vec::new()).await?;
        if let Some(c) = users
            .iter()
            .find(|c| c.snapshot_key == first.key && self.d.task_opt(&c.id).is_some())
        {
            return Err(DaemonError::ContainerHasTask(c.id.clone()).into());
        }
        let opts = CopyInOptions {
            dest: first.dest.clone(),
            dest_is_file: first.dest_is_file,
            uid: first.uid,
            gid: first.gid,
        };
        let k = first.key.clone();
        let reader = stream::reader(first.data, incoming, |m: pb::CopyInRequest| m.data);
        self.snap(move |s| s.copy_in(&k, &opts, reader)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    type ExportStream = ReceiverStream<Result<pb::DataChunk, Status>>;

    async fn export(&self, req: Request<pb::SnapshotKey>) -> Res<Self::ExportStream> {
        let k = req.into_inner().key;
        key(&k)?;
        // Check first, so a missing snapshot is an error status, not a cut stream.
        let k2 = k.clone();
        self.snap(move |s| Ok(s.snapshotter().record(&k2)?)).await?;
        let (tx, out) = stream::answer();
        let store = Arc::clone(&self.d.store);
        tokio::task::spawn_blocking(move || {
            let w = ChannelWriter::new(tx.clone(), |data| pb::DataChunk { data });
            match store.export(&k, w) {
                Ok(w) => {
                    let _ = w.finish();
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(DaemonError::from(e).into()));
                }
            }
        });
        Ok(Response::new(out))
    }
}
