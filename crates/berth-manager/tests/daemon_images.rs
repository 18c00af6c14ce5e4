//! The storage services through the daemon: images (import, list with filters,
//! get, tag, save, delete, load, commit), content (info, read), snapshots
//! (prepare, info, usage, changes, export, remove), and container records (list
//! filters, update).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use berth_api::berth::manager::v1 as pb;
use daemon_common::*;
use sha2::{Digest as _, Sha256};
use tonic::Code;

async fn collect_chunks(mut s: tonic::Streaming<pb::DataChunk>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.message().await.unwrap() {
        out.extend(c.data);
    }
    out
}

fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn images_content_and_snapshots_through_the_daemon() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    let img = stack.import_busybox().await;
    let mut c = stack.clients().await;
    assert!(img.id.starts_with("sha256:"));
    assert_eq!(img.layers.len(), 1);
    assert!(!img.top_snapshot.is_empty());
    let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], img.layers[0].diff_id);

    // List and filters.
    let images_client = c.images.clone();
    let list = |filters: Vec<&str>| {
        let mut images = images_client.clone();
        let filters: Vec<String> = filters.into_iter().map(String::from).collect();
        async move {
            images
                .list(pb::ListImagesRequest { filters })
                .await
                .map(|r| r.into_inner().images)
        }
    };
    assert_eq!(list(vec![]).await.unwrap().len(), 1);
    assert_eq!(
        list(vec!["reference=berth-test/busy*"])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(list(vec!["reference=alpine*"]).await.unwrap().len(), 0);
    assert_eq!(list(vec!["dangling=true"]).await.unwrap().len(), 0);
    assert_eq!(
        list(vec!["colour=blue"]).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Tag, get by the new name and by id prefix.
    let tagged = c
        .images
        .tag(pb::TagRequest {
            source: BUSYBOX.into(),
            target: "berth-test/other:1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.id, img.id);
    assert_eq!(tagged.names.len(), 2);
    let by_prefix = c
        .images
        .get(pb::GetImageRequest {
            reference: img.id[7..19].to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_prefix.id, img.id);

    // Content: the layer blob hashes to its digest, ranges work.
    let layer = &img.layers[0];
    let mut content = berth_api::berth::manager::v1::content_client::ContentClient::new(
        tonic::transport::Endpoint::from_shared(format!("unix://{}", stack.socket.display()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let ci = content
        .info(pb::ContentInfoRequest {
            digest: layer.digest.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ci.size, layer.size);
    let blob = collect_chunks(
        content
            .read(pb::ReadContentRequest {
                digest: layer.digest.clone(),
                offset: 0,
                size: 0,
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&blob))),
        layer.digest
    );
    let part = collect_chunks(
        content
            .read(pb::ReadContentRequest {
                digest: layer.digest.clone(),
                offset: 10,
                size: 100,
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(part, blob[10..110]);
    assert_eq!(
        content
            .info(pb::ContentInfoRequest {
                digest: "sha256:nope".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    // Save, delete, load back.
    let saved = collect_chunks(
        c.images
            .save(pb::SaveRequest {
                references: vec![BUSYBOX.into()],
                format: String::new(),
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert!(tar_names(&saved).iter().any(|n| n == "manifest.json"));
    let del = c
        .images
        .delete(pb::DeleteImageRequest {
            reference: img.id.clone(),
            force: true,
            no_prune: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, vec![img.id.clone()]);
    assert_eq!(del.untagged.len(), 2);
    assert!(list(vec![]).await.unwrap().is_empty());
    let chunks: Vec<pb::DataChunk> = saved
        .chunks(64 * 1024)
        .map(|d| pb::DataChunk { data: d.to_vec() })
        .collect();
    let mut progress = c
        .images
        .load(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    let mut loaded = Vec::new();
    while let Some(p) = progress.message().await.unwrap() {
        loaded.extend(p.image);
    }
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.id);
    assert!(loaded[0]
        .names
        .iter()
        .any(|n| n.ends_with("berth-test/busybox:latest")));

    // Snapshots on the image's top layer.
    let key = berth_testutil::unique_name("berth-test-snap");
    let mounts = c
        .snapshots
        .prepare(pb::PrepareSnapshotRequest {
            key: key.clone(),
            parent: img.top_snapshot.clone(),
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].r#type, "overlay");
    let si = c
        .snapshots
        .info(pb::SnapshotKey { key: key.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(si.kind, "active");
    assert_eq!(si.parent, img.top_snapshot);
    std::fs::write(std::path::Path::new(&si.upper_dir).join("added"), b"x").unwrap();
    let changes = c
        .snapshots
        .changes(pb::SnapshotKey { key: key.clone() })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert!(
        changes
            .iter()
            .any(|ch| ch.kind == "A" && ch.path == "/added"),
        "{changes:?}"
    );
    let usage = c
        .snapshots
        .usage(pb::SnapshotKey { key: key.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(usage.inodes >= 1);
    let exported = collect_chunks(
        c.snapshots
            .export(pb::SnapshotKey { key: key.clone() })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let names = tar_names(&exported);
    assert!(names
        .iter()
        .any(|n| n.trim_start_matches("./") == "bin/busybox"));
    assert!(names.iter().any(|n| n.trim_start_matches("./") == "added"));
    c.snapshots
        .remove(pb::SnapshotKey { key: key.clone() })
        .await
        .unwrap();
    assert_eq!(
        c.snapshots
            .info(pb::SnapshotKey { key })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(stack.mounts(), Vec::<String>::new());

    // A container's changes committed as an image.
    let id = berth_testutil::unique_name("berth-test-commit");
    stack
        .run(&mut c, &id, &["sh", "-c", "echo hi > /hello.txt"])
        .await;
    c.tasks
        .wait(pb::WaitRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    c.tasks
        .delete(pb::DeleteTaskRequest {
            container_id: id.clone(),
            force: false,
        })
        .await
        .unwrap();
    let changes = c
        .snapshots
        .changes(pb::SnapshotKey { key: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert!(
        changes
            .iter()
            .any(|ch| ch.kind == "A" && ch.path == "/hello.txt"),
        "{changes:?}"
    );
    let committed = c
        .images
        .commit(pb::CommitRequest {
            container_id: id.clone(),
            reference: "berth-test/committed:1".into(),
            comment: "from a test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(committed.layers.len(), 2);
    assert!(committed
        .names
        .iter()
        .any(|n| n.ends_with("berth-test/committed:1")));

    // Container records: labels, filters, update.
    let mut rec = c
        .containers
        .get(pb::GetContainerRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rec.snapshot_key, id);
    rec.labels.insert("role".into(), "test".into());
    let updated = c
        .containers
        .update(pb::UpdateContainerRequest {
            container: Some(rec.clone()),
            update_mask: vec!["labels".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.labels.get("role").map(String::as_str), Some("test"));
    let containers_client = c.containers.clone();
    let filtered = |f: &str| {
        let mut cc = containers_client.clone();
        let f = f.to_string();
        async move {
            cc.list(pb::ListContainersRequest {
                filters: vec![f],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .containers
            .len()
        }
    };
    assert_eq!(filtered("label=role=test").await, 1);
    assert_eq!(filtered("label=role=other").await, 0);
    assert_eq!(filtered(&format!("id={}", &id[..12])).await, 1);
    assert_eq!(filtered(&format!("image={BUSYBOX}")).await, 1);
    assert_eq!(
        c.containers
            .update(pb::UpdateContainerRequest {
                container: Some(rec),
                update_mask: vec!["snapshot_key".into()],
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    c.containers
        .delete(pb::DeleteContainerRequest {
            id: id.clone(),
            keep_snapshot: false,
        })
        .await
        .unwrap();
    assert_eq!(
        c.snapshots
            .info(pb::SnapshotKey { key: id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // An image a container uses cannot go without force.
    let id = berth_testutil::unique_name("berth-test-inuse");
    stack.create_container(&mut c, &id, &["true"]).await;
    let e = c
        .images
        .delete(pb::DeleteImageRequest {
            reference: img.id.clone(),
            force: false,
            no_prune: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    c.containers
        .delete(pb::DeleteContainerRequest {
            id,
            keep_snapshot: false,
        })
        .await
        .unwrap();
}
