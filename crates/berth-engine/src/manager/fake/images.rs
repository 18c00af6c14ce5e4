//! The fake's image RPCs: enough bookkeeping on the in-memory image list for the
//! engine's handlers to be tested (tag, delete, import, commit); nothing is pulled or
//! pushed anywhere; the event stream carries the fake's task starts and exits.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{not_found, FakeManager};
use crate::error::EngineError;
use crate::manager::images::{
    Auth, CommitRequest, DeleteImageResponse, Envelope, ImageManager, LayerProgress, LoadUpdate,
    PruneImagesResponse, PullUpdate, PushUpdate, Updates,
};
use crate::manager::{Image, Manager};

/// `name` with `:latest` when it has no tag, as the manager stores names.
fn tagged(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn fake_id(n: usize) -> String {
    format!("sha256:{n:0>64}")
}

impl FakeManager {
    fn add(&self, mut img: Image, name: &str) -> Image {
        let mut st = self.lock();
        if !name.is_empty() {
            let name = tagged(name);
            for other in st.images.iter_mut() {
                other.names.retain(|n| *n != name);
            }
            img.names.push(name);
        }
        st.images.push(img.clone());
        img
    }

    fn next_id(&self) -> String {
        let n = self.lock().images.len() + 1000;
        fake_id(n)
    }
}

async fn drain(mut data: mpsc::Receiver<Bytes>) -> usize {
    let mut n = 0;
    while let Some(c) = data.recv().await {
        n += c.len();
    }
    n
}

fn one<T: Send + 'static>(items: Vec<Result<T, EngineError>>) -> Updates<T> {
    let (tx, rx) = mpsc::channel(items.len().max(1));
    for i in items {
        let _ = tx.try_send(i);
    }
    rx
}

#[async_trait]
impl ImageManager for FakeManager {
    async fn images_pull(
        &self,
        reference: &str,
        _: Auth,
    ) -> Result<Updates<PullUpdate>, EngineError> {
        let img = self.images_get(&tagged(reference)).await?;
        let layer = LayerProgress {
            digest: "sha256:feed".into(),
            status: "done".into(),
            current: 10,
            total: 10,
        };
        Ok(one(vec![
            Ok(PullUpdate::Layer(layer)),
            Ok(PullUpdate::Done(Box::new(img))),
        ]))
    }

    async fn images_push(
        &self,
        reference: &str,
        _: Auth,
    ) -> Result<Updates<PushUpdate>, EngineError> {
        self.images_get(&tagged(reference)).await?;
        Ok(one(vec![Ok(PushUpdate::Done { digest: fake_id(1) })]))
    }

    async fn images_import(
        &self,
        reference: &str,
        changes: Vec<String>,
        _message: &str,
        data: mpsc::Receiver<Bytes>,
    ) -> Result<Image, EngineError> {
        let size = drain(data).await;
        let cmd: Vec<serde_json::Value> = changes
            .iter()
            .filter_map(|c| c.strip_prefix("CMD "))
            .filter_map(|c| serde_json::from_str(c).ok())
            .collect();
        let config = serde_json::json!({"config": {"Cmd": cmd.first()}, "architecture": "amd64", "os": "linux"});
        let img = Image {
            id: self.next_id(),
            config: config.to_string().into_bytes(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            created: "2024-01-02T00:00:00Z".to_string(),
            ..Image::default()
        };
        Ok(self.add(img, reference))
    }

    async fn images_load(
        &self,
        data: mpsc::Receiver<Bytes>,
    ) -> Result<Updates<LoadUpdate>, EngineError> {
        drain(data).await;
        let img = Image {
            id: self.next_id(),
            config: b"{}".to_vec(),
            created: "2024-01-02T00:00:00Z".to_string(),
            ..Image::default()
        };
        let img = self.add(img, "loaded:latest");
        let archive_names = img.names.clone();
        Ok(one(vec![Ok(LoadUpdate::Image {
            image: Box::new(img),
            archive_names,
        })]))
    }

    async fn images_save(&self, references: Vec<String>) -> Result<Updates<Bytes>, EngineError> {
        for r in &references {
            self.images_get(r).await?;
        }
        Ok(one(vec![Ok(Bytes::from_static(b"fake archive"))]))
    }

    async fn images_tag(&self, source: &str, target: &str) -> Result<Image, EngineError> {
        let img = self.images_get(source).await?;
        let name = tagged(target);
        let mut st = self.lock();
        for other in st.images.iter_mut() {
            other.names.retain(|n| *n != name);
        }
        let found = st
            .images
            .iter_mut()
            .find(|i| i.id == img.id)
            .ok_or_else(|| not_found(&format!("image {source} not found")))?;
        found.names.push(name);
        Ok(found.clone())
    }

    async fn images_delete(
        &self,
        reference: &str,
        _force: bool,
        _: bool,
    ) -> Result<DeleteImageResponse, EngineError> {
        let img = self.images_get(reference).await?;
        let mut st = self.lock();
        let name = tagged(reference);
        let Some(pos) = st.images.iter().position(|i| i.id == img.id) else {
            return Err(not_found(&format!("image {reference} not found")));
        };
        if st.images[pos].names.contains(&name) && st.images[pos].names.len() > 1 {
            st.images[pos].names.retain(|n| *n != name);
            return Ok(DeleteImageResponse {
                untagged: vec![name],
                deleted: vec![],
            });
        }
        let removed = st.images.remove(pos);
        Ok(DeleteImageResponse {
            untagged: removed.names,
            deleted: vec![removed.id],
        })
    }

    async fn images_commit(&self, req: CommitRequest, _pause: bool) -> Result<Image, EngineError> {
        let c = self.containers_get(&req.container_id).await?;
        let base = self.images_get(&c.image).await?;
        let img = Image {
            id: self.next_id(),
            config: base.config,
            created: "2024-01-03T00:00:00Z".to_string(),
            ..Image::default()
        };
        Ok(self.add(img, &req.reference))
    }

    async fn images_prune(
        &self,
        _: bool,
        _: Vec<String>,
    ) -> Result<PruneImagesResponse, EngineError> {
        Ok(PruneImagesResponse::default())
    }

    async fn images_login(&self, _: &str, auth: Auth) -> Result<String, EngineError> {
        // The fake's registry knows one password.
        if auth.password == "wrong" {
            return Err(EngineError::Manager {
                code: tonic::Code::Unauthenticated,
                message: "login attempt to http://fake/v2/ failed with status: 401 Unauthorized"
                    .into(),
            });
        }
        Ok(String::new())
    }

    async fn events_subscribe(&self, _: Vec<String>) -> Result<Updates<Envelope>, EngineError> {
        // The task events the fake publishes (starts and exits), for as long as
        // someone reads them.
        let mut events = self.subscribe_events();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => {
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

#[async_trait]
impl crate::manager::build::BuildManager for FakeManager {
    async fn snapshots_prepare(&self, _: &str, _: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn snapshots_copy_in(
        &self,
        _: crate::manager::build::CopyIn,
        mut data: mpsc::Receiver<bytes::Bytes>,
    ) -> Result<(), EngineError> {
        while data.recv().await.is_some() {}
        Ok(())
    }
}
