//! `runtime.v1.ImageService` over the manager's store: the same images the
//! manager's own API and berthd see, named by normalized references
//! (`docker.io/library/busybox:1.28`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use berth_cri_api::runtime::v1 as cri;
use berth_cri_api::runtime::v1::image_service_server::ImageService;
use berth_manager::registry::{Auth, PullOptions};
use berth_manager::{Image, Store, StoreError};
use tonic::{Request, Response, Status};

use super::Cri;
use crate::daemon::core::blocking;
use crate::daemon::error::DaemonError;

type Res<T> = Result<Response<T>, Status>;

/// The `User` of an image config as CRI shows it: a numeric user is a uid, a
/// name is a username (the group part is not CRI's business).
fn image_user(config: &[u8]) -> (Option<i64>, String) {
    let user = serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|v| {
            v.pointer("/config/User")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default();
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

fn image_cri(store: &Store, img: &Image) -> Result<cri::Image, DaemonError> {
    let config = store.image_config(img)?;
    let (uid, username) = image_user(&config);
    let id = img.id().to_string();
    Ok(cri::Image {
        id: id.clone(),
        repo_tags: img
            .names
            .iter()
            .filter(|n| !n.contains('@'))
            .cloned()
            .collect(),
        repo_digests: img.record.repo_digests.clone(),
        size: img.record.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: id,
            annotations: HashMap::new(),
        }),
        pinned: false,
    })
}

/// The image a spec names, or `None` when there is none.
fn find(store: &Store, reference: &str) -> Result<Option<Image>, DaemonError> {
    match store.image(reference) {
        Ok(img) => Ok(Some(img)),
        Err(StoreError::ImageNotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn spec_image(spec: Option<cri::ImageSpec>) -> Result<String, DaemonError> {
    match spec {
        Some(s) if !s.image.is_empty() => Ok(s.image),
        _ => Err(DaemonError::Missing("image")),
    }
}

/// Registry credentials from a CRI AuthConfig: username and password, or
/// `auth` (base64 of `user:password`, as in a docker config), or a token.
fn auth_from(a: Option<cri::AuthConfig>) -> Result<Auth, Status> {
    use base64::Engine as _;
    let Some(a) = a else {
        return Ok(Auth::default());
    };
    let mut auth = Auth {
        username: a.username,
        password: a.password,
        identity_token: if a.identity_token.is_empty() {
            a.registry_token
        } else {
            a.identity_token
        },
    };
    if auth.username.is_empty() && !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| Status::invalid_argument(format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| Status::invalid_argument("auth is not UTF-8 after base64"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth is not base64 of user:password"))?;
        auth.username = user.to_string();
        auth.password = pass.to_string();
    }
    Ok(auth)
}

/// Bytes and inodes used below `dir` (a missing directory uses nothing).
pub(super) fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            bytes = bytes.saturating_add(m.blocks().saturating_mul(512));
            inodes = inodes.saturating_add(1);
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

impl Cri {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.d.store)
    }

    /// Pull options for `reference`: the configured mirror of its registry and
    /// whether that is spoken to over plain HTTP.
    fn pull_options(&self, reference: &str, auth: Auth) -> Result<PullOptions, DaemonError> {
        let r = berth_manager::images::parse_reference(reference).map_err(StoreError::from)?;
        let registry = r.registry().to_string();
        let mirror = self.cfg.registry_mirrors.get(&registry).cloned();
        let target = mirror.clone().unwrap_or_else(|| registry.clone());
        Ok(PullOptions {
            auth,
            insecure: self.cfg.insecure_registries.contains(&target),
            mirror,
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Res<cri::ListImagesResponse> {
        let want = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let store = self.store();
        let images = blocking(move || {
            let all = match want {
                Some(r) => find(&store, &r)?.into_iter().collect(),
                None => store.images()?,
            };
            all.iter().map(|i| image_cri(&store, i)).collect()
        })
        .await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Res<cri::ImageStatusResponse> {
        let r = req.into_inner();
        let reference = spec_image(r.image)?;
        let store = self.store();
        let (image, info) = blocking(move || {
            let Some(img) = find(&store, &reference)? else {
                return Ok((None, HashMap::new()));
            };
            let mut info = HashMap::new();
            if r.verbose {
                let config: serde_json::Value =
                    serde_json::from_slice(&store.image_config(&img)?).unwrap_or_default();
                let verbose = serde_json::json!({
                    "imageSpec": config,
                    "manifestDigest": img.record.manifest_digest.to_string(),
                    "chainID": img.record.top_snapshot,
                });
                info.insert("info".to_string(), verbose.to_string());
            }
            Ok((Some(image_cri(&store, &img)?), info))
        })
        .await?;
        Ok(Response::new(cri::ImageStatusResponse { image, info }))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Res<cri::PullImageResponse> {
        let r = req.into_inner();
        let reference = spec_image(r.image)?;
        let opts = self.pull_options(&reference, auth_from(r.auth)?)?;
        let img = self
            .store()
            .pull(&reference, &opts)
            .await
            .map_err(DaemonError::from)?;
        tracing::info!(reference = %reference, id = %img.id(), "CRI: pulled");
        Ok(Response::new(cri::PullImageResponse {
            image_ref: img.id().to_string(),
        }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Res<cri::RemoveImageResponse> {
        let reference = spec_image(req.into_inner().image)?;
        let store = self.store();
        blocking(move || {
            // Removing an image that is not there succeeds (kubelet retries).
            let Some(img) = find(&store, &reference)? else {
                return Ok(());
            };
            // By id: every name goes with it, as containerd's CRI does.
            // Containers keep their snapshots (they hold them) until removed.
            store.delete_image(&img.id().to_string(), true)?;
            if let Err(e) = store.gc() {
                tracing::warn!("garbage collection after a CRI image removal: {e}");
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Res<cri::ImageFsInfoResponse> {
        let dir = self.d.store.root().join("snapshots");
        let timestamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let mount = dir.display().to_string();
        let (bytes, inodes) = blocking(move || Ok(usage(&dir))).await?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp,
                fs_id: Some(cri::FilesystemIdentifier { mountpoint: mount }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_uids_or_names() {
        assert_eq!(
            image_user(br#"{"config":{"User":"1002"}}"#),
            (Some(1002), String::new())
        );
        assert_eq!(
            image_user(br#"{"config":{"User":"1003:50"}}"#),
            (Some(1003), String::new())
        );
        assert_eq!(
            image_user(br#"{"config":{"User":"www-data:www-data"}}"#),
            (None, "www-data".to_string())
        );
        assert_eq!(image_user(br#"{"config":{}}"#), (None, String::new()));
        assert_eq!(image_user(b"not json"), (None, String::new()));
    }

    #[test]
    fn auth_comes_from_fields_or_base64() {
        let a = auth_from(Some(cri::AuthConfig {
            auth: "dXNlcjpwYTpzcw==".to_string(), // user:pa:ss
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("user", "pa:ss")
        );
        let a = auth_from(Some(cri::AuthConfig {
            registry_token: "tok".to_string(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(a.identity_token, "tok");
        assert!(auth_from(Some(cri::AuthConfig {
            auth: "!!".to_string(),
            ..Default::default()
        }))
        .is_err());
    }
}
