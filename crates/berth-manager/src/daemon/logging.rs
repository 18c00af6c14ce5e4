//! The daemon's logging: one line per event on stderr, colours only on a terminal,
//! and a level that SIGHUP reloads.
//!
//! The level comes from `--log-level` (or `BERTH_LOG_LEVEL`), unless the level file
//! (`--log-level-file`, default `/etc/berth/berth-manager.log-level`) exists and is
//! not empty: the file wins, at start and on every SIGHUP. A running process cannot
//! see a changed flag or environment, so the file is what an operator edits;
//! removing it and sending SIGHUP goes back to the flag. The file holds a level
//! (`debug`), which applies to our own crates with the libraries (h2, hyper, tower)
//! kept at warnings, or a target list (`berth_manager=trace,h2=debug,warn`).

use std::io::IsTerminal;
use std::path::PathBuf;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, Registry};

use super::config::LogLevel;

/// What SIGHUP needs to change the filter of the running subscriber.
pub struct LogControl {
    handle: Option<reload::Handle<Targets, Registry>>,
    flag: LogLevel,
    file: PathBuf,
}

/// A level word means our crates at that level and the libraries at warnings at
/// most; anything else is a `Targets` list.
fn parse(spec: &str) -> Result<Targets, String> {
    if let Ok(level) = spec.parse::<LevelFilter>() {
        return Ok(Targets::new()
            .with_target("berth_manager", level)
            .with_target("berth_shim", level)
            .with_default(LevelFilter::WARN.min(level)));
    }
    spec.parse::<Targets>().map_err(|e| e.to_string())
}

impl LogControl {
    /// Installs the global subscriber. A bad or unreadable level file is reported
    /// and the flag used, so a typo there never stops the daemon from (re)starting.
    pub fn init(flag: LogLevel, file: PathBuf) -> LogControl {
        let initial = parse(flag.as_str()).unwrap_or_else(|_| Targets::new());
        let (layer, handle) = reload::Layer::new(initial);
        let installed = tracing_subscriber::registry()
            .with(layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init();
        let control = LogControl {
            // Only in a process that already has a subscriber (never the daemon's
            // own): there is nothing of ours to reload then.
            handle: installed.is_ok().then_some(handle),
            flag,
            file,
        };
        if control.file_level().is_some() {
            control.reload();
        }
        control
    }

    /// The trimmed contents of the level file, when it exists and is not empty.
    fn file_level(&self) -> Option<std::io::Result<String>> {
        match std::fs::read_to_string(&self.file) {
            Ok(s) if s.trim().is_empty() => None,
            Ok(s) => Some(Ok(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Applies the level file, or the flag when there is none. On a bad file the
    /// current filter stays and the error is logged.
    pub fn reload(&self) {
        let Some(handle) = &self.handle else { return };
        let file = self.file.display();
        let (source, level) = match self.file_level() {
            Some(Ok(level)) => (file.to_string(), level),
            Some(Err(e)) => {
                tracing::error!(%file, error = %e, "reading the log level; keeping the current one");
                return;
            }
            None => ("--log-level".to_string(), self.flag.as_str().to_string()),
        };
        let filter = match parse(&level) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(%source, %level, error = %e, "bad log level; keeping the current one");
                return;
            }
        };
        match handle.reload(filter) {
            Ok(()) => tracing::info!(%source, %level, "log level set"),
            Err(e) => tracing::error!(error = %e, "changing the log level"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_lists_parse() {
        assert!(parse("debug").is_ok());
        assert!(parse("berth_manager=trace,h2=debug,warn").is_ok());
        assert!(parse("berth_manager=loud").is_err());
    }
}
