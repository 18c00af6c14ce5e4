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
//!
//! The parser is written by hand ([`Args::parse_from`]): the shim runs once per
//! container, and clap (with tracing-subscriber, dropped at the same time) was a
//! quarter of its binary, whose size is about what it keeps resident.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One container's shim: drives the OCI runtime, owns the container's stdio, log
/// and exit status, and serves the berth.shim.v1 API on a unix socket.
#[derive(Debug, Clone)]
pub struct Args {
    /// The container id (as the runtime knows it).
    pub id: String,
    /// The task directory: the OCI bundle (config.json, rootfs/), where the shim
    /// also keeps shim.pid, shim.log, runtime.log and exit.json.
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc's command line): a path, or a name looked up
    /// in PATH.
    pub runtime: OsString,
    /// The runtime's state directory (its `--root`).
    pub runtime_root: PathBuf,
    /// The unix socket to serve (mode 0600) [default: <bundle>/shim.sock].
    pub socket: Option<PathBuf>,
    /// What the shim logs to <bundle>/shim.log (stderr with --foreground).
    pub log_level: LogLevel,
    /// Stay in the foreground (no fork, no new session), logging to stderr.
    pub foreground: bool,
}

/// The shim's `--help`.
pub const USAGE: &str = "\
One container's shim: drives the OCI runtime, owns the container's stdio, log
and exit status, and serves the berth.shim.v1 API on a unix socket.

Usage: berth-shim --id <ID> --bundle <BUNDLE> [OPTIONS]

Options:
      --id <ID>                  The container id (as the runtime knows it) [env: BERTH_SHIM_ID]
      --bundle <BUNDLE>          The task directory: the OCI bundle, where the shim also keeps
                                 shim.pid, shim.log, runtime.log and exit.json [env: BERTH_SHIM_BUNDLE]
      --runtime <RUNTIME>        The OCI runtime binary (runc's command line): a path, or a
                                 name looked up in PATH [default: berth-runtime]
      --runtime-root <DIR>       The runtime's state directory (its --root) [default: /run/berth/runtime]
      --socket <SOCKET>          The unix socket to serve (mode 0600) [env: BERTH_SHIM_SOCKET]
                                 [default: <bundle>/shim.sock]
      --log-level <LEVEL>        What the shim logs to <bundle>/shim.log (stderr with
                                 --foreground) [default: info] [possible values: error, warn,
                                 info, debug, trace]
      --foreground               Stay in the foreground (no fork, no new session), logging to stderr
  -h, --help                     Print help
  -V, --version                  Print version
";

/// What a command line asks for besides running a shim, or why it is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("help")]
    Help,
    #[error("version")]
    Version,
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("the argument {0} is required")]
    Required(&'static str),
    #[error("invalid value {value:?} for {flag}: {why}")]
    Invalid {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl std::str::FromStr for LogLevel {
    type Err = ();
    fn from_str(s: &str) -> Result<LogLevel, ()> {
        Ok(match s {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return Err(()),
        })
    }
}

impl Args {
    /// The arguments of this process (its command line, then the environment for
    /// `--id`, `--bundle` and `--socket`).
    pub fn from_env() -> Result<Args, CliError> {
        Args::parse_from(std::env::args_os().skip(1), |k| std::env::var_os(k))
    }

    /// Parse a command line (without the program name); `env` looks up the
    /// variables that may carry `--id`, `--bundle` and `--socket`. Flags take their
    /// value as the next argument or after `=`.
    pub fn parse_from(
        argv: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Args, CliError> {
        const FLAGS: [&str; 6] = [
            "--id",
            "--bundle",
            "--runtime",
            "--runtime-root",
            "--socket",
            "--log-level",
        ];
        let mut values: [Option<OsString>; 6] = Default::default();
        let mut foreground = false;
        let mut argv = argv.into_iter();
        while let Some(arg) = argv.next() {
            let bytes = arg.as_bytes();
            match bytes {
                b"-h" | b"--help" => return Err(CliError::Help),
                b"-V" | b"--version" => return Err(CliError::Version),
                b"--foreground" => {
                    foreground = true;
                    continue;
                }
                _ => {}
            }
            let (name, inline) = match bytes.iter().position(|b| *b == b'=') {
                Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
                None => (bytes, None),
            };
            let Some(i) = FLAGS.iter().position(|f| f.as_bytes() == name) else {
                return Err(CliError::Unexpected(arg.to_string_lossy().into_owned()));
            };
            let value = match inline {
                Some(v) => OsStr::from_bytes(v).to_os_string(),
                None => argv.next().ok_or(CliError::MissingValue(FLAGS[i]))?,
            };
            values[i] = Some(value);
        }
        let [id, bundle, runtime, runtime_root, socket, log_level] = values;
        let id = id
            .or_else(|| env(ENV_ID))
            .ok_or(CliError::Required("--id"))?;
        let id = id.into_string().map_err(|v| CliError::Invalid {
            flag: "--id",
            value: v.to_string_lossy().into_owned(),
            why: "not UTF-8",
        })?;
        let bundle = bundle
            .or_else(|| env(ENV_BUNDLE))
            .ok_or(CliError::Required("--bundle"))?;
        let log_level = match log_level {
            None => LogLevel::Info,
            Some(l) => {
                l.to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| CliError::Invalid {
                        flag: "--log-level",
                        value: l.to_string_lossy().into_owned(),
                        why: "use error, warn, info, debug or trace",
                    })?
            }
        };
        Ok(Args {
            id,
            bundle: bundle.into(),
            runtime: runtime.unwrap_or_else(|| "berth-runtime".into()),
            runtime_root: runtime_root.map_or_else(|| "/run/berth/runtime".into(), PathBuf::from),
            socket: socket.or_else(|| env(ENV_SOCKET)).map(PathBuf::from),
            log_level,
            foreground,
        })
    }

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
        let b = Args::parse_from(a.to_args(), |_| None).unwrap();
        assert_eq!(b.id, "c1");
        assert_eq!(b.runtime, OsString::from("runc"));
        assert_eq!(
            b.socket_path(),
            PathBuf::from("/run/berth/tasks/c1/shim.sock")
        );
        assert_eq!(b.log_level, LogLevel::Debug);
        assert!(!b.foreground);
    }

    #[test]
    fn the_environment_names_the_container() {
        let a = Args::new("c2", "/run/berth/tasks/c2");
        let (argv, env) = a.to_args_and_env();
        let b = Args::parse_from(argv, |k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        assert_eq!(b.id, "c2");
        assert_eq!(b.bundle, PathBuf::from("/run/berth/tasks/c2"));
        assert_eq!(b.socket_path(), a.socket_path());
        // The command line wins over the environment.
        let b = Args::parse_from(
            [
                "--id=x".into(),
                "--bundle".into(),
                "/b".into(),
                "--foreground".into(),
            ],
            |_| Some("env".into()),
        )
        .unwrap();
        assert_eq!((b.id.as_str(), b.foreground), ("x", true));
        assert_eq!(b.socket, Some(PathBuf::from("env")));
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let parse = |v: &[&str]| Args::parse_from(v.iter().map(OsString::from), |_| None);
        assert_eq!(
            parse(&["--bundle", "/b"]).unwrap_err(),
            CliError::Required("--id")
        );
        assert_eq!(
            parse(&["--id"]).unwrap_err(),
            CliError::MissingValue("--id")
        );
        assert!(matches!(parse(&["--nope"]), Err(CliError::Unexpected(_))));
        assert!(matches!(
            parse(&["--id", "a", "--bundle", "/b", "--log-level", "loud"]),
            Err(CliError::Invalid { .. })
        ));
        assert_eq!(parse(&["--help"]).unwrap_err(), CliError::Help);
    }
}
