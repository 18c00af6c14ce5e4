//! `berth.manager.v1.Images`: thin adapters over the store's image functions, with
//! the blocking ones on tokio's blocking threads and progress streamed back.

use std::sync::Arc;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use berth_api::berth::manager::v1::images_server::Images;
use berth_manager::archive::SaveFormat;
use berth_manager::images::{LayerProgress, PlatformSpec, ProgressFn};
use berth_manager::import::ImportOptions;
use berth_manager::registry::{Auth, PullOptions, PushOptions};
use berth_manager::store::CommitOptions;
use berth_manager::{Image, Store, StoreError};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Res, Svc};
use crate::daemon::core::{blocking, label_matches};
use crate::daemon::error::DaemonError;
use crate::daemon::stream::{self, ChannelWriter};

/// An image as the API shows it (reads its config blob).
pub fn image_pb(store: &Store, img: &Image) -> Result<pb::Image, DaemonError> {
    let config = store.image_config(img)?;
    let r = &img.record;
    Ok(pb::Image {
        id: r.id.to_string(),
        names: img.names.clone(),
        repo_digests: r.repo_digests.clone(),
        manifest_digest: r.manifest_digest.to_string(),
        config,
        layers: r
            .layers
            .iter()
            .map(|l| pb::Layer {
                digest: l.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                size: i64::try_from(l.size).unwrap_or(i64::MAX),
                media_type: l.media_type.clone(),
            })
            .collect(),
        size: i64::try_from(r.size).unwrap_or(i64::MAX),
        created: r.created.clone(),
        labels: r.labels.clone().into_iter().collect(),
        top_snapshot: r.top_snapshot.clone(),
        parent: r.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
    })
}

fn layer_pb(p: LayerProgress) -> pb::LayerProgress {
    pb::LayerProgress {
        digest: p.digest,
        status: p.status.as_str().to_string(),
        current: i64::try_from(p.current).unwrap_or(i64::MAX),
        total: i64::try_from(p.total).unwrap_or(i64::MAX),
    }
}

fn auth(a: Option<pb::Auth>) -> Auth {
    let a = a.unwrap_or_default();
    Auth {
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    }
}

/// A progress callback that forwards to an answer stream; progress is advisory,
/// so it is dropped rather than waited for when the client reads slowly.
fn progress<T: Send + 'static>(
    tx: &tokio::sync::mpsc::Sender<Result<T, Status>>,
    wrap: fn(pb::LayerProgress) -> T,
) -> ProgressFn {
    let tx = tx.clone();
    Arc::new(move |p: LayerProgress| {
        let _ = tx.try_send(Ok(wrap(layer_pb(p))));
    })
}

/// `*` and `?` glob matching (for `reference=` filters).
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Apply `key=value` image filters.
fn filter_images(
    store: &Store,
    all: Vec<Image>,
    filters: &[String],
) -> Result<Vec<Image>, DaemonError> {
    let created = |img: &Image| {
        chrono::DateTime::parse_from_rfc3339(&img.record.created)
            .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
            .unwrap_or(0)
    };
    let mut out = all;
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            return Err(DaemonError::BadFilter(f.clone()));
        };
        match k {
            "reference" => out.retain(|img| {
                img.names.iter().any(|n| {
                    glob(v, n)
                        || glob(v, &berth_manager::images::familiar(n))
                        || n.rsplit_once(':').is_some_and(|(repo, _)| {
                            glob(v, &berth_manager::images::familiar(repo))
                        })
                })
            }),
            "dangling" => {
                let want = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(DaemonError::BadFilter(f.clone())),
                };
                // An untagged image with children is intermediate, not dangling.
                let children = store.child_counts()?;
                out.retain(|img| {
                    let dangling = img.names.is_empty()
                        && children.get(&img.record.id).copied().unwrap_or(0) == 0;
                    dangling == want
                });
            }
            "label" => out.retain(|img| label_matches(&img.record.labels, v)),
            "before" | "since" => {
                let pivot = store.image(v)?;
                let t = created(&pivot);
                out.retain(|img| {
                    if k == "before" {
                        created(img) < t
                    } else {
                        created(img) > t
                    }
                });
            }
            _ => return Err(DaemonError::BadFilter(f.clone())),
        }
    }
    Ok(out)
}

fn image_event(img: &pb::Image) -> pb::ImageEvent {
    pb::ImageEvent {
        name: img.names.first().cloned().unwrap_or_default(),
        id: img.id.clone(),
    }
}

/// Whether the image a reference names exists already (create vs update events).
fn exists(store: &Store, reference: &str) -> bool {
    store.image(reference).is_ok()
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

impl Svc {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.d.store)
    }

    /// Publish a create (new name) or update event for `img`.
    fn published(&self, img: &pb::Image, existed: bool) {
        let e = image_event(img);
        self.d.events.publish(if existed {
            Event::ImageUpdate(e)
        } else {
            Event::ImageCreate(e)
        });
    }
}

async fn image_pb_async(store: Arc<Store>, img: Image) -> Result<pb::Image, DaemonError> {
    blocking(move || image_pb(&store, &img)).await
}

#[tonic::async_trait]
impl Images for Svc {
    async fn list(&self, req: Request<pb::ListImagesRequest>) -> Res<pb::ListImagesResponse> {
        let filters = req.into_inner().filters;
        let store = self.store();
        let images = blocking(move || {
            let all = store.images()?;
            filter_images(&store, all, &filters)?
                .iter()
                .map(|i| image_pb(&store, i))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    async fn get(&self, req: Request<pb::GetImageRequest>) -> Res<pb::Image> {
        let reference = req.into_inner().reference;
        if reference.is_empty() {
            return Err(DaemonError::Missing("reference").into());
        }
        let store = self.store();
        let img = blocking(move || {
            let img = store.image(&reference)?;
            image_pb(&store, &img)
        })
        .await?;
        Ok(Response::new(img))
    }

    type PullStream = Stream<pb::PullProgress>;

    async fn pull(&self, req: Request<pb::PullRequest>) -> Res<Self::PullStream> {
        let r = req.into_inner();
        if r.reference.is_empty() {
            return Err(DaemonError::Missing("reference").into());
        }
        let platform = r
            .platform
            .parse::<PlatformSpec>()
            .map_err(|e| DaemonError::Store(e.into()))?;
        let (tx, out) = stream::answer();
        let opts = PullOptions {
            auth: auth(r.auth),
            insecure: r.insecure,
            platform: Some(platform),
            progress: Some(progress(&tx, |l| pb::PullProgress {
                layer: Some(l),
                image: None,
            })),
            max_concurrent: 0,
            mirror: None,
        };
        let store = self.store();
        let svc = self.clone();
        tokio::spawn(async move {
            let s = Arc::clone(&store);
            let reference = r.reference.clone();
            let existed = blocking(move || Ok(exists(&s, &reference)))
                .await
                .unwrap_or(false);
            let result = match store.pull(&r.reference, &opts).await {
                Ok(img) => image_pb_async(store, img).await,
                Err(e) => Err(e.into()),
            };
            drop(opts);
            match result {
                Ok(img) => {
                    svc.published(&img, existed);
                    let _ = tx
                        .send(Ok(pb::PullProgress {
                            layer: None,
                            image: Some(img),
                        }))
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        Ok(Response::new(out))
    }

    type PushStream = Stream<pb::PushProgress>;

    async fn push(&self, req: Request<pb::PushRequest>) -> Res<Self::PushStream> {
        let r = req.into_inner();
        if r.reference.is_empty() {
            return Err(DaemonError::Missing("reference").into());
        }
        let (tx, out) = stream::answer();
        let opts = PushOptions {
            auth: auth(r.auth),
            insecure: r.insecure,
            progress: Some(progress(&tx, |l| pb::PushProgress {
                layer: Some(l),
                digest: String::new(),
            })),
        };
        let store = self.store();
        tokio::spawn(async move {
            let result = store.push(&r.reference, &opts).await;
            drop(opts);
            let msg = match result {
                Ok(d) => Ok(pb::PushProgress {
                    layer: None,
                    digest: d.to_string(),
                }),
                Err(e) => Err(DaemonError::from(e).into()),
            };
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(out))
    }

    async fn import(&self, req: Request<Streaming<pb::ImportRequest>>) -> Res<pb::Image> {
        let mut incoming = req.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or(DaemonError::Missing("first import message"))?;
        let opts = ImportOptions {
            reference: (!first.reference.is_empty()).then(|| first.reference.clone()),
            changes: first.changes,
            message: first.message,
        };
        let reader = stream::reader(first.data, incoming, |m: pb::ImportRequest| m.data);
        let store = self.store();
        let img = blocking(move || {
            let img = store.import(reader, &opts)?;
            image_pb(&store, &img)
        })
        .await?;
        tracing::info!(id = %img.id, names = ?img.names, "image imported");
        self.published(&img, false);
        Ok(Response::new(img))
    }

    type LoadStream = Stream<pb::LoadProgress>;

    async fn load(&self, req: Request<Streaming<pb::DataChunk>>) -> Res<Self::LoadStream> {
        let reader = stream::reader(Vec::new(), req.into_inner(), |m: pb::DataChunk| m.data);
        let (tx, out) = stream::answer();
        let store = self.store();
        let svc = self.clone();
        tokio::spawn(async move {
            let p = progress(&tx, |l| pb::LoadProgress {
                layer: Some(l),
                image: None,
                archive_names: Vec::new(),
            });
            let result = blocking(move || {
                let images = store.load_named(reader, Some(p))?;
                images
                    .into_iter()
                    .map(|l| Ok((image_pb(&store, &l.image)?, l.archive_names)))
                    .collect::<Result<Vec<_>, DaemonError>>()
            })
            .await;
            match result {
                Ok(images) => {
                    for (img, archive_names) in images {
                        svc.published(&img, false);
                        if tx
                            .send(Ok(pb::LoadProgress {
                                layer: None,
                                image: Some(img),
                                archive_names,
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        Ok(Response::new(out))
    }

    type SaveStream = Stream<pb::DataChunk>;

    async fn save(&self, req: Request<pb::SaveRequest>) -> Res<Self::SaveStream> {
        let r = req.into_inner();
        if r.references.is_empty() {
            return Err(DaemonError::Missing("reference").into());
        }
        let format: SaveFormat = r
            .format
            .parse()
            .map_err(|e| DaemonError::Store(StoreError::Archive(e)))?;
        // Check the names first, so a bad one is an error status, not a cut stream.
        {
            let store = self.store();
            let refs = r.references.clone();
            blocking(move || {
                for reference in &refs {
                    store.image(reference)?;
                }
                Ok(())
            })
            .await?;
        }
        let (tx, out) = stream::answer();
        let store = self.store();
        tokio::task::spawn_blocking(move || {
            let w = ChannelWriter::new(tx.clone(), |data| pb::DataChunk { data });
            match store.save(&r.references, format, w) {
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

    async fn tag(&self, req: Request<pb::TagRequest>) -> Res<pb::Image> {
        let r = req.into_inner();
        if r.source.is_empty() || r.target.is_empty() {
            return Err(DaemonError::Missing("source and target").into());
        }
        let store = self.store();
        let target = r.target.clone();
        let img = blocking(move || {
            let img = store.tag(&r.source, &r.target)?;
            image_pb(&store, &img)
        })
        .await?;
        let name = berth_manager::images::normalize(&target).unwrap_or(target);
        self.d.events.publish(Event::ImageCreate(pb::ImageEvent {
            name,
            id: img.id.clone(),
        }));
        Ok(Response::new(img))
    }

    async fn delete(&self, req: Request<pb::DeleteImageRequest>) -> Res<pb::DeleteImageResponse> {
        let r = req.into_inner();
        if r.reference.is_empty() {
            return Err(DaemonError::Missing("reference").into());
        }
        let store = self.store();
        let (untagged, deleted) = blocking(move || {
            let parent = store
                .image(&r.reference)
                .ok()
                .and_then(|i| i.record.parent.clone());
            let (untagged, mut deleted) = store.delete_image(&r.reference, r.force)?;
            if !r.no_prune && !deleted.is_empty() {
                deleted.extend(store.prune_parents(parent)?);
                if let Err(e) = store.gc() {
                    tracing::warn!("garbage collection after an image delete: {e}");
                }
            }
            Ok((untagged, deleted))
        })
        .await?;
        for name in &untagged {
            self.d.events.publish(Event::ImageDelete(pb::ImageEvent {
                name: name.clone(),
                id: deleted.first().cloned().unwrap_or_default(),
            }));
        }
        if untagged.is_empty() {
            for id in &deleted {
                self.d.events.publish(Event::ImageDelete(pb::ImageEvent {
                    name: String::new(),
                    id: id.clone(),
                }));
            }
        }
        Ok(Response::new(pb::DeleteImageResponse { untagged, deleted }))
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Res<pb::Image> {
        let r = req.into_inner();
        // A container's changes on its image, or (no container) a config-only step on
        // `parent`.
        let (key, base, spec) = if r.container_id.is_empty() {
            (None, r.parent.clone(), String::new())
        } else {
            let c = self.d.container(&r.container_id).await?;
            if c.snapshot_key.is_empty() {
                return Err(DaemonError::Store(StoreError::NotWritable(c.snapshot_key)).into());
            }
            let base = if c.image.is_empty() {
                r.parent.clone()
            } else {
                c.image.clone()
            };
            (Some(c.snapshot_key), base, c.spec)
        };
        let config = if r.config.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice::<serde_json::Value>(&r.config).map_err(|source| {
                    DaemonError::BadJson {
                        what: "config",
                        source,
                    }
                })?,
            )
        };
        let created_by = if !r.created_by.is_empty() {
            r.created_by
        } else {
            serde_json::from_str::<serde_json::Value>(&spec)
                .ok()
                .and_then(|s| {
                    s.pointer("/process/args")
                        .and_then(|a| a.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                })
                .unwrap_or_default()
        };
        let opts = CommitOptions {
            reference: (!r.reference.is_empty()).then(|| r.reference.clone()),
            author: r.author,
            comment: r.comment,
            created_by,
            changes: r.changes,
            config,
            exclude: r.exclude,
        };
        let store = self.store();
        let img = blocking(move || {
            let base = (!base.is_empty()).then_some(base.as_str());
            let img = store.commit_step(key.as_deref(), base, &opts)?;
            image_pb(&store, &img)
        })
        .await?;
        self.published(&img, false);
        Ok(Response::new(img))
    }

    async fn prune(&self, req: Request<pb::PruneImagesRequest>) -> Res<pb::PruneImagesResponse> {
        let r = req.into_inner();
        let containers = self.d.list_containers(Vec::new()).await?;
        let store = self.store();
        let (deleted, reclaimed) = blocking(move || {
            // Images that containers were made from stay, whatever their snapshots.
            let mut used = std::collections::HashSet::new();
            for c in &containers {
                if let Ok(img) = store.image(&c.image) {
                    used.insert(img.record.id.to_string());
                }
            }
            let candidates = filter_images(&store, store.images()?, &r.filters)?;
            let children = store.child_counts()?;
            let mut deleted = Vec::new();
            for img in candidates {
                let id = img.record.id.to_string();
                if used.contains(&id) || (!r.all && !img.names.is_empty()) {
                    continue;
                }
                // An untagged image with children is a build's intermediate image: it
                // goes with the last of its children, as with dockerd.
                if img.names.is_empty() && children.get(&img.record.id).copied().unwrap_or(0) > 0 {
                    continue;
                }
                if deleted.contains(&id) {
                    continue;
                }
                match store.delete_image(&id, false) {
                    Ok((_, d)) => {
                        if !d.is_empty() {
                            deleted.extend(d);
                            deleted.extend(store.prune_parents(img.record.parent.clone())?);
                        }
                    }
                    Err(StoreError::ImageInUse { .. })
                    | Err(StoreError::HasChildren(_))
                    | Err(StoreError::ImageNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let report = store.gc()?;
            Ok((deleted, report.bytes_reclaimed))
        })
        .await?;
        for id in &deleted {
            self.d.events.publish(Event::ImageDelete(pb::ImageEvent {
                name: String::new(),
                id: id.clone(),
            }));
        }
        Ok(Response::new(pb::PruneImagesResponse {
            deleted,
            space_reclaimed: i64::try_from(reclaimed).unwrap_or(i64::MAX),
        }))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Res<pb::LoginResponse> {
        let r = req.into_inner();
        let identity_token = berth_manager::registry::login(&r.server, &auth(r.auth), r.insecure)
            .await
            .map_err(DaemonError::Store)?;
        Ok(Response::new(pb::LoginResponse { identity_token }))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("busybox*", "busybox:latest"));
        assert!(glob("*box", "busybox"));
        assert!(glob("b?sy*", "busybox"));
        assert!(!glob("alpine*", "busybox"));
        assert!(glob("*", ""));
        assert!(!glob("a", ""));
    }
}
