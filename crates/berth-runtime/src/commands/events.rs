//! `berth-runtime events [--stats] [--interval D] ID`: JSON lines in runc's shape,
//! `{"type":"stats","id":..,"data":{..}}` and `{"type":"oom","id":..}`.

use std::io::Write;
use std::time::Duration;

use crate::cli::{Cli, EventsArgs};
use crate::container::Event;
use crate::{Container, Error};

pub fn run(cli: &Cli, args: &EventsArgs) -> anyhow::Result<i32> {
    let interval = parse_duration(&args.interval)?;
    let c = Container::load(&cli.root, &args.id)?;
    let print = |e: &Event<'_>| -> Result<(), Error> {
        let line = serde_json::to_string(e).map_err(|source| Error::Json {
            what: "event".into(),
            source,
        })?;
        let mut out = std::io::stdout().lock();
        // A reader that went away ends the command, as it would runc's.
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|source| Error::Io {
                action: "write the event to",
                path: "stdout".into(),
                source,
            })
    };
    if args.stats {
        print(&c.stats_event()?)?;
        return Ok(0);
    }
    c.events(interval, print)?;
    Ok(0)
}

/// Go-style durations as runc takes them: `5s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("invalid duration {s:?} (use e.g. 5s or 500ms)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut secs = 0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        secs += match unit {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        rest = next;
    }
    if secs <= 0.0 || !secs.is_finite() {
        anyhow::bail!("duration interval must be greater than 0");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("").is_err());
    }
}
