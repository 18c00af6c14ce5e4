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
    }
}
