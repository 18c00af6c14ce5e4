//! runc-style logging: `--log FILE` and `--log-format text|json`. containerd and
//! Docker read the last `"level":"error"` line of the JSON log to explain a failed
//! create, so the JSON form is logrus's: `{"level":..,"msg":..,"time":..}`.
//! Messages also go to stderr unless stderr is the log file itself.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cli::LogFormat;

#[derive(Debug)]
struct Config {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Set once by `main` before any command runs. Libraries that log through the
/// `log` facade (berth-cgroups) reach the same destination.
pub fn init(file: Option<PathBuf>, format: LogFormat, debug: bool) {
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
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let line = match cfg.format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": now}).to_string() + "\n"
        }
        LogFormat::Text => format!("time=\"{now}\" level={level} msg={msg:?}\n"),
    };
    if let Some(path) = &cfg.file {
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
    if level != "debug" || cfg.file.is_none() {
        // Callers that do not read the log file still see the error on stderr.
        let _ = writeln!(std::io::stderr(), "berth-runtime: {msg}");
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
