//! The shim's command line. The manager starts one shim per container with
//!
//! ```text
//! berth-shim --id <ID> --bundle <state>/tasks/<ID> [--runtime <path|name>]
//!            [--runtime-root <dir>] [--socket <path>] [--log-level <level>] [--foreground]
//! ```
//!
//! and waits for the command to exit: it exits 0 once the daemonized shim serves its
//! socket, or non-zero with the reason on stderr. [`Args::to_args`] builds that
//! command line. The manager passes what names the container (`--id`,
//! `--bundle`, `--socket`) in the environment instead ([`Args::to_args_and_env`]):
//! a command line is readable by every user of the host, an environment only by
//! root.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// One container's shim: drives the OCI runtime, owns the container's stdio, log
/// and exit status, and serves the berth.shim.v1 API on a unix socket.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth-shim", version)]
pub struct Args {
    /// The container id (as the runtime knows it).
    #[arg(long, env = ENV_ID)]
    pub id: String,
    /// The task directory: the OCI bundle (config.json, rootfs/), where the shim
    /// also keeps shim.pid, shim.log, runtime.log and exit.json.
    #[arg(long, env = ENV_BUNDLE)]
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc's command line): a path, or a name looked up
    /// in PATH.
    #[arg(long, default_value = "berth-runtime")]
    pub runtime: OsString,
    /// The runtime's state directory (its `--root`).
    #[arg(long, default_value = "/run/berth/runtime")]
    pub runtime_root: PathBuf,
    /// The unix socket to serve (mode 0600) [default: <bundle>/shim.sock].
    #[arg(long, env = ENV_SOCKET)]
    pub socket: Option<PathBuf>,
    /// What the shim logs to <bundle>/shim.log (stderr with --foreground).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Stay in the foreground (no fork, no new session), logging to stderr.
    #[arg(long)]
    pub foreground: bool,
}

/// The environment variables that may carry `--id`, `--bundle` and `--socket`.
pub const ENV_ID: &str = "BERTH_SHIM_ID";
pub const ENV_BUNDLE: &str = "BERTH_SHIM_BUNDLE";
pub const ENV_SOCKET: &str = "BERTH_SHIM_SOCKET";

/// Whether process `pid` was started as the shim of task directory `bundle`:
/// its command line or its environment (as started: later changes do not show
/// in /proc) names it. Reading the environment takes root, as the manager is.
pub fn started_for(pid: u32, bundle: &std::path::Path) -> bool {
    let bundle = bundle.as_os_str().as_encoded_bytes();
    let in_cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == bundle));
    in_cmdline
        || std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| {
            e.split(|b| *b == 0).any(|var| {
                var.strip_prefix(ENV_BUNDLE.as_bytes())
                    .and_then(|v| v.strip_prefix(b"="))
                    == Some(bundle)
            })
        })
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
}

impl Args {
    /// Arguments for a shim serving container `id` in task directory `bundle`,
    /// with the defaults for everything else.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> Args {
        Args {
            id: id.into(),
            bundle: bundle.into(),
            runtime: "berth-runtime".into(),
            runtime_root: "/run/berth/runtime".into(),
            socket: None,
            log_level: LogLevel::Info,
            foreground: false,
        }
    }

    /// The socket the shim serves.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.bundle.join(crate::layout::SHIM_SOCK))
    }

    /// The command line (without the program name) and the environment that
    /// start a shim with these arguments, nothing naming the container on the
    /// command line.
    pub fn to_args_and_env(&self) -> (Vec<OsString>, Vec<(&'static str, OsString)>) {
        let mut args: Vec<OsString> = vec![
            "--runtime".into(),
            self.runtime.clone(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--log-level".into(),
            self.log_level.as_str().into(),
        ];
        if self.foreground {
            args.push("--foreground".into());
        }
        let env = vec![
            (ENV_ID, self.id.clone().into()),
            (ENV_BUNDLE, self.bundle.clone().into()),
            (ENV_SOCKET, self.socket_path().into()),
        ];
        (args, env)
    }

    /// The command line (without the program name) that starts a shim with these
    /// arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--runtime".into(),
            self.runtime.clone(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--socket".into(),
            self.socket_path().into(),
            "--log-level".into(),
            self.log_level.as_str().into(),
        ];
        if self.foreground {
            v.push("--foreground".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_naming_the_container_is_on_the_command_line() {
        let a = Args::new("c0ffee", "/run/berth/tasks/c0ffee");
        let (argv, env) = a.to_args_and_env();
        assert!(argv.iter().all(|x| !x.to_string_lossy().contains("c0ffee")));
        assert_eq!(env[0], (ENV_ID, OsString::from("c0ffee")));
        assert_eq!(
            env[2].1,
            OsString::from("/run/berth/tasks/c0ffee/shim.sock")
        );
    }

    #[test]
    fn to_args_round_trips_through_the_parser() {
        let mut a = Args::new("c1", "/run/berth/tasks/c1");
        a.runtime = "runc".into();
        a.log_level = LogLevel::Debug;
        let mut argv: Vec<OsString> = vec!["berth-shim".into()];
        argv.extend(a.to_args());
        let b = Args::try_parse_from(argv).unwrap();
        assert_eq!(b.id, "c1");
        assert_eq!(b.runtime, OsString::from("runc"));
        assert_eq!(
            b.socket_path(),
            PathBuf::from("/run/berth/tasks/c1/shim.sock")
        );
        assert_eq!(b.log_level, LogLevel::Debug);
        assert!(!b.foreground);
    }
}
