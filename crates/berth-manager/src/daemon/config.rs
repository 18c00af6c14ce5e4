//! The daemon's command line, and where the programs it starts (berth-shim, the
//! OCI runtime) are found.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};

/// berth-manager: content store, images, snapshots, containers and tasks, served
/// over gRPC on a unix socket. Containers keep running when it stops.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth-manager", version)]
pub struct Args {
    /// The unix socket to serve (mode 0600).
    #[arg(long, default_value = "/run/berth/manager.sock")]
    pub address: PathBuf,
    /// Where images, snapshots and metadata live.
    #[arg(long, default_value = "/var/lib/berth/manager")]
    pub root: PathBuf,
    /// The run directory: tasks/<id>/ (bundles and shim sockets) and runtime/ (the
    /// OCI runtime's state).
    #[arg(long, default_value = "/run/berth")]
    pub state: PathBuf,
    /// The default OCI runtime (runc's command line): a path, or a name looked up
    /// next to berth-manager, then in PATH. runc and crun work too.
    #[arg(long, default_value = "berth-runtime")]
    pub runtime: OsString,
    /// The berth-shim binary [default: next to berth-manager, else in PATH].
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// What to log (to stderr, one line per event).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Read on SIGHUP: a log level (error, warn, info, debug, trace) that replaces
    /// --log-level until the next SIGHUP; without the file, --log-level applies again.
    #[arg(long, default_value = "/etc/berth/manager-log-level")]
    pub log_level_file: PathBuf,
    /// The config file (JSON; see docs/cri.md). A missing file means defaults.
    #[arg(long, default_value = "/etc/berth/manager.json")]
    pub config: PathBuf,
    /// Serve Kubernetes' CRI (also `"cri": {"enabled": true}` in the config file).
    #[arg(long)]
    pub cri: bool,
    /// The CRI socket [default: the config file's cri.address, else /run/berth/cri.sock].
    #[arg(long)]
    pub cri_address: Option<PathBuf>,
    /// The CNI configuration directory for pods [default: /etc/cni/net.d].
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// A CNI plugin directory (repeatable) [default: /opt/cni/bin /usr/lib/cni].
    #[arg(long)]
    pub cni_bin_dir: Vec<PathBuf>,
}

/// Where the CRI socket is when nothing says otherwise.
pub const DEFAULT_CRI_ADDRESS: &str = "/run/berth/cri.sock";

/// The config file. Unknown keys are refused, so that a typo is not silently a
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub cri: CriFileConfig,
}

/// The `"cri"` section of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriFileConfig {
    pub enabled: bool,
    pub address: Option<PathBuf>,
    /// Registry host (`docker.io`, `gcr.io`) -> the `host[:port]` of a registry to
    /// pull its repositories from instead (containerd's `registry.mirrors`).
    pub registry_mirrors: std::collections::BTreeMap<String, String>,
    /// Registries (`host[:port]`) spoken to over plain HTTP; localhost always is.
    pub insecure_registries: Vec<String>,
    /// Where the CNI network configuration is [default: /etc/cni/net.d].
    pub cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are [default: /opt/cni/bin, then /usr/lib/cni].
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The address the streaming server (Exec, Attach, PortForward) listens on
    /// [default: 127.0.0.1] (containerd's `stream_server_address`).
    pub stream_address: Option<std::net::IpAddr>,
    /// Its TCP port [default: 0, one the kernel picks] (containerd's
    /// `stream_server_port`).
    pub stream_port: Option<u16>,
}

impl FileConfig {
    /// Read `path`; a missing file is the defaults, anything unreadable an error.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        use anyhow::Context;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading the config file {}", path.display())),
        }
    }
}

/// What the CRI server is told, from the flags over the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriConfig {
    pub address: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub registry_mirrors: std::collections::BTreeMap<String, String>,
    pub insecure_registries: Vec<String>,
    pub stream_address: std::net::IpAddr,
    pub stream_port: u16,
}

impl CriConfig {
    /// `None` when CRI is off (neither the flag nor the file enables it).
    pub fn resolve(args: &Args, file: &FileConfig) -> Option<CriConfig> {
        if !args.cri && !file.cri.enabled {
            return None;
        }
        Some(CriConfig {
            address: args
                .cri_address
                .clone()
                .or_else(|| file.cri.address.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CRI_ADDRESS)),
            cni_conf_dir: args
                .cni_conf_dir
                .clone()
                .or_else(|| file.cri.cni_conf_dir.clone())
                .unwrap_or_else(|| PathBuf::from("/etc/cni/net.d")),
            cni_bin_dirs: if !args.cni_bin_dir.is_empty() {
                args.cni_bin_dir.clone()
            } else if !file.cri.cni_bin_dirs.is_empty() {
                file.cri.cni_bin_dirs.clone()
            } else {
                vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
            },
            registry_mirrors: file.cri.registry_mirrors.clone(),
            insecure_registries: file.cri.insecure_registries.clone(),
            stream_address: file
                .cri
                .stream_address
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            stream_port: file.cri.stream_port.unwrap_or(0),
        })
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    pub fn to_shim(self) -> berth_shim_contract::cli::LogLevel {
        use berth_shim_contract::cli::LogLevel as S;
        match self {
            LogLevel::Error => S::Error,
            LogLevel::Warn => S::Warn,
            LogLevel::Info => S::Info,
            LogLevel::Debug => S::Debug,
            LogLevel::Trace => S::Trace,
        }
    }
}

/// Find a program: a name with a '/' is a path (made absolute); a bare name is
/// looked up next to our own executable, then in PATH.
pub fn find_program(name: &OsStr) -> Option<PathBuf> {
    let path = Path::new(name);
    if name.is_empty() {
        return None;
    }
    if name.as_encoded_bytes().contains(&b'/') {
        return is_executable(path)
            .then(|| std::path::absolute(path).ok())
            .flatten();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(path)));
    if let Some(p) = beside.filter(|p| is_executable(p)) {
        return Some(p);
    }
    let dirs = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&dirs)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(path))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_path_or_name() {
        assert!(find_program(OsStr::new("sh")).is_some());
        assert!(find_program(OsStr::new("/bin/sh")).is_some());
        assert!(find_program(OsStr::new("./no-such-program")).is_none());
        assert!(find_program(OsStr::new("no-such-program-berth")).is_none());
        assert!(find_program(OsStr::new("")).is_none());
    }

    #[test]
    fn defaults_match_the_design() {
        let a = Args::try_parse_from(["berth-manager"]).unwrap();
        assert_eq!(a.address, PathBuf::from("/run/berth/manager.sock"));
        assert_eq!(a.root, PathBuf::from("/var/lib/berth/manager"));
        assert_eq!(a.state, PathBuf::from("/run/berth"));
        assert_eq!(a.runtime, OsString::from("berth-runtime"));
        assert_eq!(a.log_level, LogLevel::Info);
        assert_eq!(CriConfig::resolve(&a, &FileConfig::default()), None);
    }

    #[test]
    fn cri_is_enabled_by_flag_or_file_and_the_flag_wins() {
        let a = Args::try_parse_from(["berth-manager", "--cri"]).unwrap();
        let c = CriConfig::resolve(&a, &FileConfig::default()).unwrap();
        assert_eq!(c.address, PathBuf::from(DEFAULT_CRI_ADDRESS));
        assert_eq!(c.stream_address.to_string(), "127.0.0.1");
        assert_eq!(c.stream_port, 0);

        let file: FileConfig = serde_json::from_str(
            r#"{"cri": {"enabled": true, "address": "/tmp/x.sock",
                "registry_mirrors": {"docker.io": "127.0.0.1:5000"}}}"#,
        )
        .unwrap();
        let a = Args::try_parse_from(["berth-manager"]).unwrap();
        let c = CriConfig::resolve(&a, &file).unwrap();
        assert_eq!(c.address, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.registry_mirrors["docker.io"], "127.0.0.1:5000");
        let streams: FileConfig =
            serde_json::from_str(r#"{"cri": {"stream_address": "::1", "stream_port": 10010}}"#)
                .unwrap();
        let c = CriConfig::resolve(
            &Args::try_parse_from(["berth-manager", "--cri"]).unwrap(),
            &streams,
        )
        .unwrap();
        assert_eq!(c.stream_address.to_string(), "::1");
        assert_eq!(c.stream_port, 10010);
        assert!(serde_json::from_str::<FileConfig>(r#"{"cri": {"stream_port": 70000}}"#).is_err());
        assert!(serde_json::from_str::<FileConfig>(r#"{"cri": {"stream_address": "x"}}"#).is_err());
        let a = Args::try_parse_from(["berth-manager", "--cri-address", "/tmp/y.sock"]).unwrap();
        assert_eq!(
            CriConfig::resolve(&a, &file).unwrap().address,
            PathBuf::from("/tmp/y.sock")
        );
    }

    #[test]
    fn config_files_are_strict_and_may_be_absent() {
        assert!(serde_json::from_str::<FileConfig>(r#"{"cri": {"enabeld": true}}"#).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            FileConfig::load(&dir.path().join("none.json")).unwrap(),
            FileConfig::default()
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        assert!(FileConfig::load(&bad).is_err());
    }
}
