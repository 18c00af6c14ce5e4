//! runc-style logging: `--log FILE` and `--log-format text|json`. containerd and
//! Docker read the last `"level":"error"` line of the JSON log to explain a failed
//! create, so the JSON form is logrus's: `{"level":..,"msg":..,"time":..}`.
//! Messages also go to stderr unless stderr is the log file itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cli::LogFormat;

#[cfg(test)]
mod tests {
    #[test]
    fn errno_words_as_go() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(super::errno_text(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(libc::EBUSY);
        assert_eq!(super::errno_text(&e), "device or resource busy");
    }
}

#[derive(Debug)]
struct Config {
    /// The `--log` file, opened once (append, close-on-exec) so that the
    /// runtime's children can still write to it after pivot_root.
    file: Option<File>,
    format: LogFormat,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Set once by `main` before any command runs. Libraries that log through the
/// `log` facade (berth-cgroups) reach the same destination. A log file that
/// cannot be opened is reported on stderr and logging goes there instead.
pub fn init(file: Option<PathBuf>, format: LogFormat, debug: bool) {
    let file = file.and_then(|path| {
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("berth-runtime: open log file {}: {e}", path.display());
                None
            }
        }
    });
    let _ = CONFIG.set(Config {
        file,
        format,
        debug,
    });
    if log::set_logger(&FACADE).is_ok() {
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
}

/// Routes `log` records into the runc-style log.
struct Facade;

static FACADE: Facade = Facade;

impl log::Log for Facade {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            _ => "debug",
        };
        write(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// One line in logrus's text or JSON shape (what runc writes and what
/// containerd parses).
fn format_line(format: LogFormat, level: &str, msg: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": now}).to_string() + "\n"
        }
        LogFormat::Text => format!("time=\"{now}\" level={level} msg={msg:?}\n"),
    }
}

fn write(level: &str, msg: &str) {
    let Some(cfg) = CONFIG.get() else {
        // Library use without `init` (tests, other crates): warnings and errors only.
        if level != "debug" {
            eprintln!("{msg}");
        }
        return;
    };
    if level == "debug" && !cfg.debug {
        return;
    }
    // One write(2) per line: the runtime and its children append to the same
    // file and their lines must not interleave.
    match (&cfg.file, level) {
        (Some(f), _) => {
            let _ = (&*f).write_all(format_line(cfg.format, level, msg).as_bytes());
        }
        // Without a log file, debug lines go to stderr in the log format, as
        // runc's do; errors stay one readable line.
        (None, "debug") => {
            let _ = std::io::stderr().write_all(format_line(cfg.format, level, msg).as_bytes());
        }
        (None, _) => {}
    }
    if level != "debug" {
        // Callers that do not read the log file still see the error on stderr.
        let _ = writeln!(std::io::stderr(), "berth-runtime: {msg}");
    }
}

/// Whether `--debug` was given (callers skip building costly messages).
pub fn debug_enabled() -> bool {
    CONFIG.get().is_some_and(|c| c.debug)
}

/// An error and its causes on one line, leaving out a cause whose text the
/// message already carries (thiserror messages often embed their source).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

/// An OS error as Go (and so runc) words it: "no such file or directory",
/// without Rust's "(os error N)"; scripts written for runc match these words.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let desc = nix::errno::Errno::from_raw(n).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn debug(msg: &str) {
    write("debug", msg);
}
