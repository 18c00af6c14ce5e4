//! berthd's logging (a module of the binary, not of the library): one line per
//! event on stderr, colours only on a terminal, and a level that SIGHUP reloads.
//!
//! The level comes from `--log-level` (or `BERTH_LOG_LEVEL`), unless the level file
//! (`--log-level-file`, default `/etc/berth/berthd.log-level`) exists and holds a
//! filter: the file wins, at start and on every SIGHUP. A running process cannot see
//! a changed flag or environment, so the file is what an operator edits; removing it
//! and sending SIGHUP goes back to the flag.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// What SIGHUP needs to change the filter of the running subscriber.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter from the command line or the environment.
    flag: String,
    file: Option<PathBuf>,
}

impl LogControl {
    /// Installs the global subscriber. A bad `flag` is an error; a bad or unreadable
    /// level file is reported and the flag used, so a typo there never stops the
    /// daemon from (re)starting.
    pub fn init(flag: &str, file: Option<PathBuf>) -> anyhow::Result<LogControl> {
        let from_flag =
            EnvFilter::try_new(flag).with_context(|| format!("bad --log-level {flag:?}"))?;
        let control = LogControl {
            handle: {
                let (layer, handle) = reload::Layer::new(from_flag);
                tracing_subscriber::registry()
                    .with(layer)
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_writer(std::io::stderr)
                            .with_ansi(std::io::stderr().is_terminal()),
                    )
                    .try_init()
                    .context("installing the log subscriber")?;
                handle
            },
            flag: flag.to_string(),
            file,
        };
        if control.file_level().is_some() {
            control.reload();
        }
        Ok(control)
    }

    /// The trimmed contents of the level file, when it exists and is not empty.
    fn file_level(&self) -> Option<Result<String, std::io::Error>> {
        let path = self.file.as_ref()?;
        match std::fs::read_to_string(path) {
            Ok(s) if s.trim().is_empty() => None,
            Ok(s) => Some(Ok(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Applies the level file, or the flag when there is none. On a bad file the
    /// current filter stays and the error is logged.
    pub fn reload(&self) {
        let (source, level) = match self.file_level() {
            Some(Ok(level)) => (self.file_display(), level),
            Some(Err(e)) => {
                tracing::error!(file = %self.file_display(), error = %e, "reading the log level; keeping the current one");
                return;
            }
            None => ("--log-level".to_string(), self.flag.clone()),
        };
        let filter = match EnvFilter::try_new(&level) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(%source, %level, error = %e, "bad log level; keeping the current one");
                return;
            }
        };
        match self.handle.reload(filter) {
            Ok(()) => tracing::info!(%source, %level, "log level set"),
            Err(e) => tracing::error!(error = %e, "changing the log level"),
        }
    }

    fn file_display(&self) -> String {
        self.file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}
