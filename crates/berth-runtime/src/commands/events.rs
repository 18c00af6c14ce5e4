//! `berth-runtime events [--stats] [--interval D] ID`: JSON lines in runc's shape,
//! `{"type":"stats","id":..,"data":{..}}` and `{"type":"oom","id":..}`.

use std::time::Duration;

use anyhow::Context;

use crate::cgroups::CgroupManager;
use crate::cli::{Cli, EventsArgs};
use crate::state::{State, Status};

pub fn run(cli: &Cli, args: &EventsArgs) -> anyhow::Result<i32> {
    let state = State::load(&cli.root, &args.id)?;
    let interval = parse_duration(&args.interval)?;
    let cg = CgroupManager::from_paths(&state.cgroup_paths)?;
    if args.stats {
        print_stats(&args.id, &cg)?;
        return Ok(0);
    }
    let mut ooms = cg.oom_kill_count().unwrap_or(0);
    // The runtime is not a daemon and must not start threads: a simple loop that
    // ends when the container stops is all `events` needs.
    let step = interval.min(Duration::from_millis(200));
    let mut since_stats = Duration::ZERO;
    while state.status(&cli.root) != Status::Stopped {
        let now = cg.oom_kill_count().unwrap_or(ooms);
        if now > ooms {
            ooms = now;
            println!("{}", serde_json::json!({"type": "oom", "id": args.id}));
        }
        if since_stats >= interval {
            since_stats = Duration::ZERO;
            print_stats(&args.id, &cg)?;
        }
        std::thread::sleep(step);
        since_stats += step;
    }
    Ok(0)
}

fn print_stats(id: &str, cg: &CgroupManager) -> anyhow::Result<()> {
    let stats = cg.stats().context("reading cgroup stats")?;
    println!(
        "{}",
        serde_json::json!({"type": "stats", "id": id, "data": stats})
    );
    Ok(())
}

/// Go-style durations as runc takes them: `5s`, `500ms`, `1m`, `2h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("invalid duration {s:?} (use e.g. 5s or 500ms)");
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(bad());
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
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("xs").is_err());
    }
}
