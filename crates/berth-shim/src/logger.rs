//! The shim's log: one line per event on stderr (the task directory's shim.log
//! once daemonized), `<RFC 3339 time> <LEVEL> <message> key=value...`. A
//! subscriber of its own rather than tracing-subscriber's: the shim logs a few
//! lines in its life, has no spans, and runs once per container, where the code
//! of tracing-subscriber's registry and formatter stays resident in every shim.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Install the logger: the shim's own events at `level`, other crates' only from
/// warnings.
pub fn init(level: &str) {
    let max = level.parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    let _ = tracing::subscriber::set_global_default(Logger { max });
}

struct Logger {
    max: LevelFilter,
}

impl Logger {
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        let level = *meta.level();
        if self.max < level {
            return false;
        }
        meta.target().starts_with("berth_shim") || level <= Level::WARN
    }
}

/// Writes the message first, then the other fields as `key=value`.
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Logger {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.wants(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    // No spans in the shim: every one is the same inert id.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let now = crate::time::rfc3339(std::time::SystemTime::now(), 6);
        let mut line = Line(format!("{now} {:>5} ", event.metadata().level()));
        event.record(&mut line);
        line.0.push('\n');
        // One write per line: lines of concurrent writers never interleave.
        let _ = std::io::stderr().lock().write_all(line.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
