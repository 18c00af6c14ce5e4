//! Kubernetes' CRI on the manager's CRI socket: off unless enabled, Version and
//! Status, and the ImageService (pull through a registry mirror, with basic auth
//! given as CRI `auth`; status, list with a filter, filesystem info, remove) against
//! a local docker-registry holding the busybox test image.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod daemon_common;

use std::path::Path;

use berth_api::berth::manager::v1 as pb;
use berth_cri_api::runtime::v1 as cri;
use berth_cri_api::runtime::v1::image_service_client::ImageServiceClient;
use berth_cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use common::registry::TestRegistry;
use daemon_common::*;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

async fn cri_channel(socket: &Path) -> Channel {
    Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Put the busybox test rootfs (with `USER 1002`) into `reg` as `repo:tag`, through
/// the manager's own API, and forget it locally so that a CRI pull really pulls.
async fn seed_registry(stack: &Stack, reg: &TestRegistry, repo: &str, auth: Option<pb::Auth>) {
    let mut c = stack.clients().await;
    let name = format!("{}/{repo}", reg.addr());
    let mut msgs = vec![pb::ImportRequest {
        reference: name.clone(),
        changes: vec!["USER 1002".to_string()],
        message: String::new(),
        data: vec![],
    }];
    for chunk in busybox_tar().chunks(1 << 20) {
        msgs.push(pb::ImportRequest {
            data: chunk.to_vec(),
            ..Default::default()
        });
    }
    let img = c
        .images
        .import(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let mut push = c
        .images
        .push(pb::PushRequest {
            reference: name.clone(),
            auth,
            insecure: false,
        })
        .await
        .unwrap()
        .into_inner();
    while push.message().await.unwrap().is_some() {}
    c.images
        .delete(pb::DeleteImageRequest {
            reference: img.id,
            force: true,
            no_prune: false,
        })
        .await
        .unwrap();
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_is_off_unless_enabled() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    assert!(!stack.dir.path().join("cri.sock").exists());
    // The manager read no config file but its own (absent) one.
    assert!(!stack.config.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_version_status_and_images_through_a_mirror() {
    berth_testutil::require_root!();
    let regdir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start(regdir.path(), None);
    let addr = reg.addr();
    let stack = Stack::start_with(&runtime_under_test(), |s| {
        // Enabled by the config file, and docker.io served by the local registry.
        let config = serde_json::json!({"cri": {
            "enabled": true,
            "address": s.dir.path().join("cri.sock"),
            "registry_mirrors": {"docker.io": addr},
        }});
        std::fs::write(&s.config, config.to_string()).unwrap();
    })
    .await;
    seed_registry(&stack, &reg, "library/busybox:1.28", None).await;

    let channel = cri_channel(&stack.dir.path().join("cri.sock")).await;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut img = ImageServiceClient::new(channel);

    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    let st = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    assert!(conds.iter().any(|c| c.r#type == "RuntimeReady" && c.status));
    assert!(st.info.contains_key("config"));

    // Not there yet: no image, and no error.
    let none = img
        .image_status(cri::ImageStatusRequest {
            image: spec("busybox:1.28"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.image.is_none());

    let pulled = img
        .pull_image(cri::PullImageRequest {
            image: spec("busybox:1.28"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"));

    let status = img
        .image_status(cri::ImageStatusRequest {
            image: spec("docker.io/library/busybox:1.28"),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let i = status.image.unwrap();
    assert_eq!(i.id, pulled.image_ref);
    assert_eq!(i.repo_tags, vec!["docker.io/library/busybox:1.28"]);
    assert!(i.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
    assert_eq!(i.uid.unwrap().value, 1002);
    assert!(i.size > 0);
    assert!(status.info["info"].contains("imageSpec"));
    // By id too.
    let by_id = img
        .image_status(cri::ImageStatusRequest {
            image: spec(&pulled.image_ref),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.image.unwrap().id, pulled.image_ref);

    let all = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(all.iter().any(|i| i.id == pulled.image_ref));
    let filtered = img
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec("busybox:1.28"),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let nothing = img
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec("busybox:no-such-tag"),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(nothing.is_empty());

    let fs = img
        .image_fs_info(cri::ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner()
        .image_filesystems;
    assert_eq!(fs.len(), 1);
    assert!(fs[0].used_bytes.as_ref().unwrap().value > 0);
    assert!(fs[0].inodes_used.as_ref().unwrap().value > 0);

    // The manager's own API sees the same image.
    let mut c = stack.clients().await;
    let same = c
        .images
        .get(pb::GetImageRequest {
            reference: "busybox:1.28".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.id, pulled.image_ref);

    // A tag the mirror lacks is an error naming the reference; nothing is left.
    let err = img
        .pull_image(cri::PullImageRequest {
            image: spec("busybox:no-such-tag"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("no-such-tag"), "{err:?}");
    let err = img
        .pull_image(cri::PullImageRequest {
            image: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    img.remove_image(cri::RemoveImageRequest {
        image: spec("busybox:1.28"),
    })
    .await
    .unwrap();
    let gone = img
        .image_status(cri::ImageStatusRequest {
            image: spec("busybox:1.28"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.image.is_none());
    // Removing it again succeeds, as kubelet expects.
    img.remove_image(cri::RemoveImageRequest {
        image: spec("busybox:1.28"),
    })
    .await
    .unwrap();
    // A container without a config is a bad request, with nothing left of it.
    let err = rt
        .create_container(cri::CreateContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_pull_with_auth_from_the_request() {
    berth_testutil::require_root!();
    let regdir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start(regdir.path(), Some(("kube", "s3cret")));
    let stack = Stack::start_with(&runtime_under_test(), |s| {
        let sock = s.dir.path().join("cri.sock");
        s.extra_args = vec![
            "--cri".to_string(),
            "--cri-address".to_string(),
            sock.display().to_string(),
        ];
    })
    .await;
    let auth = pb::Auth {
        username: "kube".to_string(),
        password: "s3cret".to_string(),
        ..Default::default()
    };
    seed_registry(&stack, &reg, "private/busybox:1", Some(auth)).await;
    let mut img = ImageServiceClient::new(cri_channel(&stack.dir.path().join("cri.sock")).await);
    let reference = format!("{}/private/busybox:1", reg.addr());

    let denied = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reference),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(denied.code(), Code::Ok);

    // base64("kube:s3cret"), as kubelet passes a docker config's auth.
    let pulled = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reference),
            auth: Some(cri::AuthConfig {
                auth: "a3ViZTpzM2NyZXQ=".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"));
    let bad = img
        .pull_image(cri::PullImageRequest {
            image: spec(&reference),
            auth: Some(cri::AuthConfig {
                auth: "not base64!".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}
