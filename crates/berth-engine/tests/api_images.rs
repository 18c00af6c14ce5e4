//! berthd's image, volume, events and disk-usage endpoints over a real unix socket,
//! with the fake manager behind it: the shapes and status codes docker clients see.
//! (The harness is tests/fake_daemon, shared with tests/api.rs.)

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_daemon;

use std::path::Path;

use fake_daemon::{daemon, request};

#[tokio::test]
async fn images_list_inspect_history_tag_and_delete() {
    let d = daemon().await;
    let r = request(&d.sock, "GET", "/v1.41/images/json", None).await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list[0]["RepoTags"][0], "busybox:latest");
    assert_eq!(list[0]["VirtualSize"], list[0]["Size"]);
    let r = request(&d.sock, "GET", "/v1.47/images/busybox:latest/json", None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["Config"]["Cmd"][0], "sh");
    assert_eq!(v["GraphDriver"]["Name"], "overlay2");
    assert_eq!(v["RootFS"]["Type"], "layers");
    let r = request(&d.sock, "GET", "/v1.47/images/nope/json", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: nope");
    let r = request(&d.sock, "GET", "/v1.47/images/busybox:latest/history", None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()[0]["Id"].as_str().unwrap().starts_with("sha256:"));

    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/busybox:latest/tag?repo=me/box&tag=2",
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "GET", "/v1.47/images/me/box:2/json", None).await;
    assert_eq!(r.status, 200);
    let r = request(&d.sock, "POST", "/v1.47/images/busybox:latest/tag", None).await;
    assert_eq!(r.status, 400);
    let r = request(&d.sock, "DELETE", "/v1.47/images/me/box:2", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!([{"Untagged": "me/box:2"}]));
    let r = request(&d.sock, "DELETE", "/v1.47/images/me/box:2", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "GET",
        "/v1.47/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn import_answers_the_id_and_pull_streams_dockers_progress() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromSrc=-&repo=imp&tag=1&changes=CMD%20%5B%22echo%22%5D",
        Some("not really a tar"),
    )
    .await;
    assert_eq!(r.status, 200);
    let id = r.json()["status"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"));
    let v = request(&d.sock, "GET", "/v1.47/images/imp:1/json", None)
        .await
        .json();
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Config"]["Cmd"][0], "echo");

    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromImage=busybox&tag=latest",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], "Pulling from library/busybox");
    assert_eq!(lines[0]["id"], "latest");
    assert!(lines
        .iter()
        .any(|l| l["status"] == "Pull complete" && l["progressDetail"].is_object()));
    assert_eq!(
        lines.last().unwrap()["status"],
        "Status: Image is up to date for busybox:latest"
    );
    let r = request(&d.sock, "POST", "/v1.47/images/create?fromImage=nope", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromSrc=http://x/y.tar",
        None,
    )
    .await;
    assert_eq!(r.status, 501);
}

#[tokio::test]
async fn commit_answers_id_and_save_is_a_tar() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/containers/create?name=c1",
        Some(r#"{"Image":"busybox"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/commit?container=c1&repo=snap&tag=1",
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["Id"].as_str().unwrap().starts_with("sha256:"));
    let r = request(&d.sock, "GET", "/v1.47/images/snap:1/json", None).await;
    assert_eq!(r.status, 200);
    let r = request(&d.sock, "POST", "/v1.47/commit?container=nope", None).await;
    assert_eq!(r.status, 404);

    let r = request(
        &d.sock,
        "GET",
        "/v1.47/images/get?names=busybox:latest&names=snap:1",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/x-tar"));
    let r = request(&d.sock, "GET", "/v1.47/images/nope/get", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/load?quiet=1",
        Some("archive"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Loaded image: loaded:latest"));
}

#[tokio::test]
async fn auth_answers_login_succeeded_or_dockers_401() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/auth",
        Some(r#"{"username":"alice","password":"s3cret","serveraddress":"127.0.0.1:5000"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Status"], "Login Succeeded");
    assert_eq!(r.json()["IdentityToken"], "");
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/auth",
        Some(r#"{"username":"alice","password":"wrong","serveraddress":"127.0.0.1:5000"}"#),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("login attempt to "));
    let r = request(&d.sock, "POST", "/v1.47/auth", Some("{not json")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn volumes_create_list_inspect_remove_and_prune() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"data","Labels":{"a":"b"}}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert!(v["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with("volumes/data/_data"));
    assert!(Path::new(v["Mountpoint"].as_str().unwrap()).is_dir());
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"../x"}"#),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Driver":"nfs"}"#),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = request(&d.sock, "POST", "/v1.47/volumes/create", Some("{}")).await;
    assert_eq!(r.status, 201);
    let anon = r.json()["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);

    let l = request(
        &d.sock,
        "GET",
        "/v1.47/volumes?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D",
        None,
    )
    .await
    .json();
    assert_eq!(l["Volumes"].as_array().unwrap().len(), 1);
    assert_eq!(l["Volumes"][0]["Labels"]["a"], "b");
    let r = request(&d.sock, "GET", "/v1.47/volumes/data", None).await;
    assert_eq!(r.status, 200);
    // `docker inspect data` asks for a network of that name first.
    let r = request(&d.sock, "GET", "/v1.47/networks/data", None).await;
    assert_eq!(r.status, 404);
    let r = request(&d.sock, "GET", "/v1.47/volumes/nope", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "get nope: no such volume");
    // A decoded slash or a dot-dot never reaches outside the volumes directory.
    std::fs::create_dir_all(d._dir.path().join("outside/_data")).unwrap();
    for name in ["..", "..%2F..%2Foutside", "data%2F..%2F..%2F..%2Foutside"] {
        let r = request(&d.sock, "DELETE", &format!("/v1.47/volumes/{name}"), None).await;
        assert_eq!(r.status, 404, "{name}");
        let r = request(&d.sock, "GET", &format!("/v1.47/volumes/{name}"), None).await;
        assert_eq!(r.status, 404, "{name}");
    }
    assert!(d._dir.path().join("outside/_data").is_dir());

    // In use by a container: 409.
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/containers/create?name=user",
        Some(r#"{"Image":"busybox","HostConfig":{"Binds":["data:/data"]}}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "DELETE", "/v1.47/volumes/data", None).await;
    assert_eq!(r.status, 409);
    let r = request(&d.sock, "DELETE", "/v1.47/containers/user", None).await;
    assert_eq!(r.status, 204);

    // API 1.42+: prune takes anonymous volumes only, unless all=true.
    let p = request(&d.sock, "POST", "/v1.47/volumes/prune", None)
        .await
        .json();
    assert_eq!(p["VolumesDeleted"], serde_json::json!([anon]));
    let p = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
        None,
    )
    .await
    .json();
    assert_eq!(p["VolumesDeleted"], serde_json::json!(["data"]));
    let l = request(&d.sock, "GET", "/v1.47/volumes", None).await.json();
    assert_eq!(l["Volumes"], serde_json::json!([]));
}

#[tokio::test]
async fn events_since_until_and_system_df() {
    let d = daemon().await;
    let since = chrono::Utc::now().timestamp() - 1;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"ev"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "DELETE", "/v1.47/volumes/ev", None).await;
    assert_eq!(r.status, 204);
    let until = chrono::Utc::now().timestamp() + 1;
    let r = request(
        &d.sock,
        "GET",
        &format!("/v1.47/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "destroy"]);
    assert_eq!(events[0]["Type"], "volume");
    assert_eq!(events[0]["Actor"]["ID"], "ev");
    assert!(events[0]["timeNano"].as_i64().unwrap() >= since * 1_000_000_000);
    let r = request(&d.sock, "GET", "/v1.47/events?since=yesterday", None).await;
    assert_eq!(r.status, 400);

    let df = request(&d.sock, "GET", "/v1.47/system/df", None).await;
    assert_eq!(df.status, 200);
    let df = df.json();
    assert_eq!(df["Images"].as_array().unwrap().len(), 1);
    // It shares no layer: 0, so the docker CLI counts it as used by its containers
    // (-1, "not computed", made every image 100% reclaimable).
    assert_eq!(df["Images"][0]["SharedSize"], 0);
    assert_eq!(df["BuildCache"], serde_json::json!([]));
    assert!(df["Volumes"].is_array() && df["Containers"].is_array());
}
