//! Shared pieces of the runtime's integration tests: a private --root, the binary,
//! and a guard that deletes the container and its cgroup whatever happens.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_testutil::{Bundle, CgroupGuard};

/// A private runtime state root and the runtime binary.
pub struct Rt {
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Rt {
    pub fn new() -> Rt {
        become_subreaper();
        Rt {
            root: tempfile::Builder::new()
                .prefix("berth-test-root")
                .tempdir()
                .unwrap(),
            bin: berth_testutil::binary("berth-runtime"),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Run the runtime with `args`, stdin closed, capturing output. Output goes
    /// through files, not pipes: a created container inherits the runtime's stdio
    /// (as with runc), so a pipe would not reach end of file while it lives.
    pub fn run(&self, args: &[&str]) -> Output {
        output_of(self.cmd().args(args))
    }

    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["state", id]);
        assert!(out.status.success(), "state: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait (bounded) until the container reaches `want`.
    pub fn wait_status(&self, id: &str, want: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.status(id) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }
}

/// Run `cmd` (stdin closed) to its end, capturing its output through files.
pub fn output_of(cmd: &mut Command) -> Output {
    berth_testutil::output_through_files(cmd).unwrap()
}

/// Containers' inits are orphaned when the runtime's intermediate exits; as a
/// subreaper the test process inherits them and can reap them (PID 1 of this
/// machine does not), so no zombie outlives a test.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Reap `pid` if it is (now) our child; a no-op otherwise.
pub fn reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: waitpid on one pid with a valid status pointer; ECHILD is fine.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deletes the container (force) and removes its cgroup when dropped.
pub struct Container<'a> {
    pub rt: &'a Rt,
    pub id: String,
    pub bundle: Bundle,
    _cgroup: CgroupGuard,
}

impl<'a> Container<'a> {
    /// A busybox bundle for a fresh unique id; `edit` adjusts the config JSON.
    pub fn new(rt: &'a Rt, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Self {
        let id = berth_testutil::unique_name("berth-test");
        let mut bundle = Bundle::busybox(&id, args).unwrap();
        edit(&mut bundle.config);
        bundle.write().unwrap();
        let cg = CgroupGuard(bundle.cgroup());
        Container {
            rt,
            id,
            bundle,
            _cgroup: cg,
        }
    }

    pub fn bundle_path(&self) -> &Path {
        self.bundle.path()
    }

    pub fn create(&self) -> Output {
        self.rt.run(&[
            "create",
            "--bundle",
            self.bundle_path().to_str().unwrap(),
            &self.id,
        ])
    }

    pub fn pid(&self) -> i32 {
        self.rt.state(&self.id)["pid"].as_i64().unwrap_or(0) as i32
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let pid = std::fs::read(self.rt.state_dir(&self.id).join("state.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .and_then(|v| v["init_process_pid"].as_i64())
            .unwrap_or(0) as i32;
        let _ = self.rt.run(&["delete", "--force", &self.id]);
        reap(pid);
    }
}

/// Every cgroup directory for `relative` that exists in any hierarchy.
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|e| e.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for r in roots {
        let d = r.join(relative);
        if d.is_dir() {
            found.push(d);
        }
    }
    found
}

/// The file that holds the memory limit of cgroup `relative`, v1 or v2.
pub fn memory_limit_file(relative: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(relative)
        .join("memory.limit_in_bytes");
    if v1.exists() {
        v1
    } else {
        Path::new("/sys/fs/cgroup")
            .join(relative)
            .join("memory.max")
    }
}

/// Host mount points whose path mentions `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The path of `name` on PATH, if it is installed.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A tar of the busybox test rootfs (what `docker import` and `podman
/// import` take) at `dir/rootfs.tar`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    berth_testutil::busybox_rootfs(&rootfs).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the rootfs");
    tar
}

/// An OCI image archive (oci-layout, index.json, blobs) of the busybox test
/// rootfs named `name`, at `dir/image.tar`, for `ctr images import`: one
/// uncompressed layer, digests from sha256sum. Nothing is pulled.
pub fn busybox_oci_archive(dir: &Path, name: &str) -> PathBuf {
    let layer = busybox_tar(dir);
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let add = |path: &Path| -> (String, u64) {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        assert!(out.status.success(), "sha256sum");
        let digest = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let size = std::fs::metadata(path).unwrap().len();
        std::fs::copy(path, blobs.join(&digest)).unwrap();
        (digest, size)
    };
    let json_blob = |v: serde_json::Value, file: &str| {
        let p = dir.join(file);
        std::fs::write(&p, v.to_string()).unwrap();
        add(&p)
    };
    let (layer_digest, layer_size) = add(&layer);
    let (config_digest, config_size) = json_blob(
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
        }),
        "config.json",
    );
    let (manifest_digest, manifest_size) = json_blob(
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
        }),
        "manifest.json",
    );
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": "latest"}}]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the OCI layout");
    archive
}

/// Removes what engines leave under /sys/fs/cgroup for `relative` when
/// dropped: the cgroup in every hierarchy and, for controllers the host does
/// not mount (podman makes plain directories for every controller it knows
/// on the cgroup tmpfs), those directories, and a top-level directory that
/// did not exist before and is empty again.
pub struct EngineCgroups {
    relative: String,
    before: Vec<PathBuf>,
}

impl EngineCgroups {
    pub fn new(relative: &str) -> EngineCgroups {
        EngineCgroups {
            relative: relative.to_string(),
            before: top_level_cgroup_entries(),
        }
    }
}

fn top_level_cgroup_entries() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|e| e.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

impl Drop for EngineCgroups {
    fn drop(&mut self) {
        berth_testutil::remove_cgroup_everywhere(&self.relative);
        for top in top_level_cgroup_entries() {
            if is_mount_point(&top) {
                continue;
            }
            let _ = std::fs::remove_dir_all(top.join(&self.relative));
            if !self.before.contains(&top) {
                let _ = std::fs::remove_dir(&top);
            }
        }
    }
}
