//! `--health-*` and `--no-healthcheck` of `run`/`create`, as the Healthcheck object
//! of the create body (durations in nanoseconds, as docker sends them).

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

/// The health check flags.
#[derive(Debug, Default, Clone, Args)]
pub struct HealthOpts {
    /// Command to run to check health.
    #[arg(long = "health-cmd")]
    pub cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long = "health-interval")]
    pub interval: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long = "health-retries")]
    pub retries: Option<i64>,
    /// Start period for the container to initialize before counting retries.
    #[arg(long = "health-start-period")]
    pub start_period: Option<String>,
    /// Time between checks during the start period.
    #[arg(long = "health-start-interval")]
    pub start_interval: Option<String>,
    /// Maximum time to allow one check to run.
    #[arg(long = "health-timeout")]
    pub timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub disable: bool,
}

/// A Go duration ("30s", "1m30s", "500ms") in nanoseconds.
pub fn duration(s: &str) -> Result<i64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("invalid duration {s:?}");
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("invalid duration {s:?}: missing or unknown unit"),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

/// The Healthcheck object, or None when no flag was given.
pub fn config(o: &HealthOpts) -> Result<Option<Value>> {
    let any = o.cmd.is_some()
        || o.interval.is_some()
        || o.retries.is_some()
        || o.start_period.is_some()
        || o.start_interval.is_some()
        || o.timeout.is_some();
    if o.disable {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if !any {
        return Ok(None);
    }
    let mut h = json!({});
    if let Some(c) = &o.cmd {
        h["Test"] = json!(["CMD-SHELL", c]);
    }
    for (k, v) in [
        ("Interval", &o.interval),
        ("Timeout", &o.timeout),
        ("StartPeriod", &o.start_period),
        ("StartInterval", &o.start_interval),
    ] {
        if let Some(v) = v {
            let d = duration(v)?;
            if d < 0 {
                bail!("--health-* durations cannot be negative");
            }
            h[k] = json!(d);
        }
    }
    if let Some(r) = o.retries {
        if r < 0 {
            bail!("--health-retries cannot be negative");
        }
        h["Retries"] = json!(r);
    }
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_to_config() {
        assert_eq!(duration("1m30s").unwrap(), 90_000_000_000);
        assert!(duration("5").is_err());
        let h = config(&HealthOpts {
            cmd: Some("true".into()),
            interval: Some("1s".into()),
            retries: Some(2),
            ..HealthOpts::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(h["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(h["Interval"], json!(1_000_000_000i64));
        assert_eq!(h["Retries"], json!(2));
        let none = config(&HealthOpts {
            disable: true,
            ..HealthOpts::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(none["Test"], json!(["NONE"]));
        assert!(config(&HealthOpts::default()).unwrap().is_none());
    }
}
