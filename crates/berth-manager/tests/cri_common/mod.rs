//! What the CRI tests share: a manager with CRI on whose pods sit on a CNI bridge of
//! the test's own, the crictl built by `scripts/critest.sh`, and the veths on a
//! bridge (to see that a pod's went).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::daemon_common::{runtime_under_test, Stack};

/// The CNI network's name in the stack's conflist (host-local keeps its leases
/// under `<dir>/ipam/<name>`).
pub const CNI_NETWORK: &str = "berth-test-pods";

/// crictl: `BERTH_CRICTL`, else the one `CRITEST_BUILD_ONLY=1 scripts/critest.sh`
/// built into target/cri-tools.
pub fn crictl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_CRICTL") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cri-tools/crictl");
    p.exists().then_some(p)
}

/// The interfaces enslaved to `bridge`, one `ip -o link` line each.
pub fn veths_on(bridge: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A manager with CRI on, its pods on the CNI bridge `bridge` with `subnet`
/// (bridge, host-local, portmap, loopback from /usr/lib/cni).
pub async fn start_cri_stack(bridge: &str, subnet: &str) -> Stack {
    Stack::start_with(&runtime_under_test(), |s| {
        let conf_dir = s.dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0", "name": CNI_NETWORK,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "dataDir": s.dir.path().join("ipam"),
                          "ranges": [[{"subnet": subnet}]]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        });
        std::fs::write(conf_dir.join("10-pods.conflist"), conflist.to_string()).unwrap();
        s.extra_args = vec![
            "--cri".to_string(),
            "--cri-address".to_string(),
            s.dir.path().join("cri.sock").display().to_string(),
            "--cni-conf-dir".to_string(),
            conf_dir.display().to_string(),
            "--cni-bin-dir".to_string(),
            "/usr/lib/cni".to_string(),
        ];
    })
    .await
}
