//! Issue 10, finding 4: host users could get into containers' files. An
//! unprivileged host user (65534) who knows a container's id (its cgroup path
//! shows it to everyone) can neither run a setuid-root program of its image
//! from the host-side rootfs nor read its environment anywhere; the shim's
//! command line does not show the id; the sockets keep their modes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use berth_testutil::require_root;

use crate::{ok, serial, stdout, Stack};

/// Runs `args` as uid/gid 65534 without supplementary groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn an_unprivileged_host_user_gets_nothing() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // Like /run and /var/lib: the roots' parents are open to everyone.
    std::fs::set_permissions(stack.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();

    // An image with a setuid-root program.
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    berth_testutil::busybox_rootfs(&rootfs).unwrap();
    std::fs::copy(rootfs.join("bin/busybox"), rootfs.join("bin/suid")).unwrap();
    std::fs::set_permissions(
        rootfs.join("bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    let tar = b.into_inner().unwrap();
    let (code, body) = crate::support::http(
        &stack.engine_socket(),
        "POST",
        "/v1.47/images/create?fromSrc=-&repo=suid&tag=latest",
        "application/x-tar",
        &tar,
    );
    assert_eq!(code, 200, "{body}");

    let secret = "DB_PASSWORD=berth-secret-4711";
    let id = ok(
        &stack,
        &["run", "-d", "-e", secret, "suid:latest", "sleep", "600"],
    );
    let task = stack.path("run/tasks").join(&id);
    let init_pid = std::fs::read_to_string(task.join("init.pid")).unwrap();

    // The setuid program, straight from the host-side rootfs.
    let suid = task.join("rootfs/bin/suid");
    assert!(
        suid.exists(),
        "the test needs the rootfs at {}",
        suid.display()
    );
    let out = as_nobody(&[&suid.to_string_lossy(), "id", "-u"]);
    assert!(
        !out.status.success(),
        "ran the setuid program: {}",
        stdout(&out)
    );
    assert_ne!(stdout(&out).trim(), "0");

    // The environment, wherever it is kept.
    for f in [
        task.join("config.json"),
        stack.path("run/runtime").join(&id).join("state.json"),
        stack
            .path("engine/containers")
            .join(&id)
            .join("config.v2.json"),
        Path::new("/proc").join(init_pid.trim()).join("environ"),
    ] {
        let out = as_nobody(&["cat", &f.to_string_lossy()]);
        assert!(!out.status.success(), "read {}", f.display());
        assert!(!stdout(&out).contains("berth-secret-4711"));
    }
    let out = as_nobody(&[
        "grep",
        "-r",
        "berth-secret-4711",
        &stack.path("").to_string_lossy(),
    ]);
    assert!(!stdout(&out).contains("berth-secret"), "{}", stdout(&out));

    // No command line names the container.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            assert!(
                !c.contains(&id),
                "pid {:?} shows the id: {c}",
                e.file_name()
            );
        }
    }

    // The directories and sockets.
    assert_eq!(mode(&task), 0o700);
    assert_eq!(mode(&task.join("config.json")), 0o600);
    assert_eq!(mode(&stack.path("run/runtime")), 0o700);
    assert_eq!(mode(&stack.path("engine")), 0o700);
    assert_eq!(mode(&stack.path("manager")), 0o700);
    assert_eq!(mode(&stack.engine_socket()), 0o660);
    assert_eq!(mode(&stack.manager_socket()), 0o600);
    assert_eq!(mode(&task.join("shim.sock")), 0o600);
    ok(&stack, &["rm", "-f", &id]);
}
