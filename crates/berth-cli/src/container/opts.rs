//! The flags of `run` and `create` and the `POST /containers/create` body they make,
//! in the shapes dockerd expects (docker's `cli/command/container/opts.go`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::network::NetworkFlags;

/// Flags shared by `run` and `create`.
#[derive(Debug, Args, Clone, Default)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach", value_parser = ["stdin", "stdout", "stderr"])]
    pub attach: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Add a host device to the container
    #[arg(long = "device")]
    pub device: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Networking flags (owned by crate::network).
    #[command(flatten)]
    pub network: NetworkFlags,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_parser = parse_duration)]
    pub health_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", allow_hyphen_values = true)]
    pub health_retries: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_parser = parse_duration)]
    pub health_timeout: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_parser = parse_duration)]
    pub health_start_period: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_parser = parse_duration)]
    pub health_start_interval: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight (relative device weight)
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long, value_parser = parse_nano_cpus)]
    pub cpus: Option<i64>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Kernel memory limit
    #[arg(long = "kernel-memory", value_parser = parse_ram)]
    pub kernel_memory: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long, value_parser = parse_ram)]
    pub memory: Option<i64>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_parser = parse_ram)]
    pub memory_reservation: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", default_value_t = -1, allow_hyphen_values = true)]
    pub memory_swappiness: i64,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// Container isolation technology
    #[arg(long)]
    pub isolation: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_parser = parse_ram)]
    pub shm_size: Option<i64>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing", value_parser = ["always", "missing", "never"])]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The image to run.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// go-units `RAMInBytes`: "100m", "1.5g", "64MiB", "512" (binary units).
pub fn parse_ram(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid size: '{s}'");
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: i64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    Ok((n * mult as f64) as i64)
}

fn parse_swap(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_ram(s)
}

/// `--cpus`: a decimal number of CPUs as nano-CPUs.
pub fn parse_nano_cpus(s: &str) -> Result<i64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("failed to parse {s} as a rational number"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("value is too precise or out of range: {s}"));
    }
    Ok((v * 1e9).round() as i64)
}

/// Go's `time.ParseDuration` ("1m30s", "500ms", "2h"), in nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    if s == "0" {
        return Ok(0);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration \"{s}\""))?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        rest = &rest[u_end..];
        total += n * mult;
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// docker's env files: `KEY=value` lines, `KEY` alone taken from this environment,
/// `#` comments and blank lines skipped.
fn read_kv_file(path: &str, from_env: bool) -> Result<Vec<String>> {
    let text =
        std::fs::read(path).with_context(|| format!("open {path}: no such file or directory"))?;
    let text =
        String::from_utf8(text).map_err(|_| anyhow::anyhow!("{path}: invalid utf8 bytes"))?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if k.is_empty() {
            bail!("invalid variable: {path}:{}: no variable name", i + 1);
        }
        if k.contains(char::is_whitespace) {
            bail!("variable '{k}' contains whitespaces");
        }
        match v {
            Some(v) => out.push(format!("{k}={v}")),
            None if from_env => match std::env::var(k) {
                Ok(v) => out.push(format!("{k}={v}")),
                Err(_) => out.push(k.to_string()),
            },
            None => out.push(k.to_string()),
        }
    }
    Ok(out)
}

/// `-e KEY` takes KEY's value from this environment (left alone when unset).
fn env_value(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_string(),
    }
}

fn kv_map(items: &[String], what: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for i in items {
        let (k, v) = i
            .split_once('=')
            .with_context(|| format!("invalid {what} format: {i}: expected key=value"))?;
        m.insert(k.to_string(), json!(v));
    }
    Ok(m)
}

fn parse_ulimit(s: &str) -> Result<Value> {
    let (name, vals) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |x: &str| {
        x.parse::<i64>()
            .with_context(|| format!("invalid ulimit argument: {s}"))
    };
    Ok(json!({"Name": name, "Soft": num(soft)?, "Hard": num(hard)?}))
}

/// docker's `ParseRestartPolicy`: `name[:max-retries]`.
pub fn parse_restart(s: &str) -> Result<Option<Value>> {
    if s.is_empty() {
        return Ok(None);
    }
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => {
            let m: i64 = m.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid restart policy format: maximum retry count must be an integer"
                )
            })?;
            if n != "on-failure" {
                bail!("invalid restart policy format: maximum retry count can only be used with 'on-failure'");
            }
            (n, m)
        }
        None => (s, 0),
    };
    Ok(Some(json!({"Name": name, "MaximumRetryCount": max})))
}

fn parse_device(d: &str) -> Result<Value> {
    let parts: Vec<&str> = d.splitn(4, ':').collect();
    let valid_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
    let (src, mut dst, mut perms) = (parts[0], "", "rwm");
    match parts.len() {
        1 => {}
        2 => {
            if valid_mode(parts[1]) {
                perms = parts[1];
            } else {
                dst = parts[1];
            }
        }
        3 => {
            dst = parts[1];
            perms = parts[2];
        }
        _ => bail!("invalid device specification: {d}"),
    }
    if !valid_mode(perms) {
        bail!("invalid device mode: {perms}");
    }
    if dst.is_empty() {
        dst = src;
    }
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// `--device-read-bps /dev/sda:1mb` and friends: `[{Path, Rate}]`.
fn throttle(items: &[String], bytes: bool) -> Result<Vec<Value>> {
    items
        .iter()
        .map(|i| {
            let (path, rate) = i
                .split_once(':')
                .with_context(|| format!("bad format: {i}"))?;
            if !path.starts_with("/dev/") {
                bail!("bad format for device path: {path}");
            }
            let rate = if bytes {
                parse_ram(rate).map_err(|_| anyhow::anyhow!("invalid rate for device: {i}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb"))?
            } else {
                rate.parse::<i64>().map_err(|_| anyhow::anyhow!("invalid rate for device: {i}. The correct format is <device-path>:<number>. Number must be a positive integer"))?
            };
            Ok(json!({"Path": path, "Rate": rate}))
        })
        .collect()
}

fn weight_devices(items: &[String]) -> Result<Vec<Value>> {
    items
        .iter()
        .map(|i| {
            let (path, w) = i
                .split_once(':')
                .with_context(|| format!("bad format: {i}"))?;
            let w: u16 = w
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid weight for device: {i}"))?;
            if w != 0 && !(10..=1000).contains(&w) {
                bail!("invalid weight for device: {i}");
            }
            Ok(json!({"Path": path, "Weight": w}))
        })
        .collect()
}

/// docker's `--mount` syntax (CSV of key=value) as a `HostConfig.Mounts` entry.
pub fn parse_mount(spec: &str) -> Result<Value> {
    let mut m = json!({"Type": "volume"});
    let mut volume_opts = Map::new();
    let mut volume_labels = Map::new();
    let mut driver = Map::new();
    let mut driver_opts = Map::new();
    let mut bind_opts = Map::new();
    let mut tmpfs_opts = Map::new();
    for field in spec.split(',') {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let flag = |v: Option<&str>| -> Result<bool> {
            match v {
                None => Ok(true),
                Some("1" | "true" | "True" | "TRUE" | "t") => Ok(true),
                Some("0" | "false" | "False" | "FALSE" | "f") => Ok(false),
                Some(x) => bail!("invalid value for {key}: {x}"),
            }
        };
        match (key.as_str(), val) {
            ("readonly" | "ro", v) => m["ReadOnly"] = json!(flag(v)?),
            ("volume-nocopy", v) => {
                volume_opts.insert("NoCopy".into(), json!(flag(v)?));
            }
            ("bind-nonrecursive", v) => {
                bind_opts.insert("NonRecursive".into(), json!(flag(v)?));
            }
            (_, None) => bail!("invalid field '{field}' must be a key=value pair"),
            ("type", Some(v)) => m["Type"] = json!(v.to_ascii_lowercase()),
            ("source" | "src", Some(v)) => {
                let src = if v.starts_with('.') {
                    std::path::absolute(v)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| v.to_string())
                } else {
                    v.to_string()
                };
                m["Source"] = json!(src);
            }
            ("target" | "dst" | "destination", Some(v)) => m["Target"] = json!(v),
            ("consistency", Some(v)) => m["Consistency"] = json!(v.to_ascii_lowercase()),
            ("bind-propagation", Some(v)) => {
                bind_opts.insert("Propagation".into(), json!(v.to_ascii_lowercase()));
            }
            ("bind-recursive", Some(v)) => match v {
                "enabled" => {}
                "disabled" => {
                    bind_opts.insert("NonRecursive".into(), json!(true));
                }
                "writable" => {
                    bind_opts.insert("ReadOnlyNonRecursive".into(), json!(true));
                }
                "readonly" => {
                    bind_opts.insert("ReadOnlyForceRecursive".into(), json!(true));
                }
                _ => bail!("invalid value for {key}: {v} (must be \"enabled\", \"disabled\", \"writable\", or \"readonly\")"),
            },
            ("volume-subpath", Some(v)) => {
                volume_opts.insert("Subpath".into(), json!(v));
            }
            ("volume-label", Some(v)) => {
                let (k, x) = v.split_once('=').unwrap_or((v, ""));
                volume_labels.insert(k.into(), json!(x));
            }
            ("volume-driver", Some(v)) => {
                driver.insert("Name".into(), json!(v));
            }
            ("volume-opt", Some(v)) => {
                let (k, x) = v.split_once('=').unwrap_or((v, ""));
                driver_opts.insert(k.into(), json!(x));
            }
            ("tmpfs-size", Some(v)) => {
                let n = parse_ram(v).map_err(|_| anyhow::anyhow!("invalid value for {key}: {v}"))?;
                tmpfs_opts.insert("SizeBytes".into(), json!(n));
            }
            ("tmpfs-mode", Some(v)) => {
                let n = u32::from_str_radix(v, 8).map_err(|_| anyhow::anyhow!("invalid value for {key}: {v}"))?;
                tmpfs_opts.insert("Mode".into(), json!(n));
            }
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    if !driver_opts.is_empty() {
        driver.insert("Options".into(), Value::Object(driver_opts));
    }
    if !volume_labels.is_empty() {
        volume_opts.insert("Labels".into(), Value::Object(volume_labels));
    }
    if !driver.is_empty() {
        volume_opts.insert("DriverConfig".into(), Value::Object(driver));
    }
    let kind = m["Type"].as_str().unwrap_or("").to_string();
    if m["Target"].as_str().unwrap_or("").is_empty() {
        bail!("target is required");
    }
    if !volume_opts.is_empty() {
        if kind != "volume" {
            bail!("cannot mix 'volume-*' options with mount type '{kind}'");
        }
        m["VolumeOptions"] = Value::Object(volume_opts);
    }
    if !bind_opts.is_empty() {
        if kind != "bind" {
            bail!("cannot mix 'bind-*' options with mount type '{kind}'");
        }
        m["BindOptions"] = Value::Object(bind_opts);
    }
    if !tmpfs_opts.is_empty() {
        if kind != "tmpfs" {
            bail!("cannot mix 'tmpfs-*' options with mount type '{kind}'");
        }
        m["TmpfsOptions"] = Value::Object(tmpfs_opts);
    }
    if kind == "bind" && m["Source"].as_str().unwrap_or("").is_empty() {
        bail!("source is required when specifying bind mounts");
    }
    Ok(m)
}

/// `--security-opt`: `seccomp=FILE` is sent as the profile's JSON, as docker does;
/// `key:value` is the old syntax for `key=value`.
fn security_opts(items: &[String]) -> Result<Vec<String>> {
    let mut out = vec![];
    for o in items {
        if o == "no-new-privileges" {
            out.push(o.clone());
            continue;
        }
        if o == "systempaths=unconfined" {
            out.push(o.clone());
            continue;
        }
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .with_context(|| format!("Invalid --security-opt: {o:?}"))?;
        if k == "seccomp" && v != "unconfined" && v != "builtin" {
            let data = std::fs::read(v)
                .with_context(|| format!("opening seccomp profile ({v}) failed"))?;
            let profile: Value = serde_json::from_slice(&data)
                .with_context(|| format!("compacting json for seccomp profile ({v}) failed"))?;
            out.push(format!("seccomp={profile}"));
        } else {
            out.push(format!("{k}={v}"));
        }
    }
    Ok(out)
}

/// Whether a `-v` spec names a host path or a named volume (then it is a bind), or
/// only a container path (an anonymous volume: `Config.Volumes`).
fn volume_spec(spec: &str) -> (bool, String) {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() == 1 {
        return (false, spec.to_string());
    }
    let host = parts[0];
    if host.starts_with('.') {
        if let Ok(abs) = std::path::absolute(host) {
            return (true, format!("{}:{}", abs.display(), parts[1..].join(":")));
        }
    }
    (true, spec.to_string())
}

/// The `POST /containers/create` body for the flags.
pub fn create_body(o: &CreateFlags) -> Result<Value> {
    let mut env = vec![];
    for f in &o.env_file {
        env.extend(read_kv_file(f, true)?);
    }
    env.extend(o.env.iter().map(|e| env_value(e)));
    let mut labels = Map::new();
    let mut label_lines = vec![];
    for f in &o.label_file {
        label_lines.extend(read_kv_file(f, false)?);
    }
    label_lines.extend(o.label.iter().cloned());
    for l in &label_lines {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), json!(v));
    }
    let mut tmpfs = Map::new();
    for t in &o.tmpfs {
        let (d, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(d.to_string(), json!(opts));
    }
    let mut binds = vec![];
    let mut volumes = Map::new();
    for v in &o.volume {
        match volume_spec(v) {
            (true, b) => binds.push(b),
            (false, p) => {
                volumes.insert(p, json!({}));
            }
        }
    }
    let restart = parse_restart(&o.restart)?;
    if o.rm && restart.as_ref().is_some_and(|r| r["Name"] != "no") {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    if o.memory_swappiness != -1 && !(0..=100).contains(&o.memory_swappiness) {
        bail!(
            "invalid value: {}. Valid memory swappiness range is 0-100",
            o.memory_swappiness
        );
    }
    let ulimits = o
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    let devices = o
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let mounts = o
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    let log_config = {
        let opts = kv_map(&o.log_opt, "log-opt")?;
        if o.log_driver.as_deref() == Some("none") && !opts.is_empty() {
            bail!("invalid logging opts for driver none");
        }
        json!({"Type": o.log_driver.clone().unwrap_or_default(), "Config": opts})
    };
    let attach_all = o.attach.is_empty();
    let attach_stdin = o.interactive || o.attach.iter().any(|a| a == "stdin");
    let mut hc = json!({
        "Binds": binds,
        "ContainerIDFile": o.cidfile.clone().unwrap_or_default(),
        "LogConfig": log_config,
        "Privileged": o.privileged,
        "CapAdd": o.cap_add,
        "CapDrop": o.cap_drop,
        "ReadonlyRootfs": o.read_only,
        "Tmpfs": tmpfs,
        "SecurityOpt": security_opts(&o.security_opt)?,
        "Ulimits": ulimits,
        "AutoRemove": o.rm,
        "Dns": o.dns,
        "DnsOptions": o.dns_option,
        "DnsSearch": o.dns_search,
        "ExtraHosts": o.add_host.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>(),
        "GroupAdd": o.group_add,
        "VolumesFrom": o.volumes_from,
        "Devices": devices,
        "DeviceCgroupRules": o.device_cgroup_rule,
        "Mounts": mounts,
        "Sysctls": kv_map(&o.sysctl, "sysctl")?,
        "StorageOpt": kv_map(&o.storage_opt, "storage-opt")?,
        "Annotations": kv_map(&o.annotation, "annotation")?,
        "BlkioDeviceReadBps": throttle(&o.device_read_bps, true)?,
        "BlkioDeviceWriteBps": throttle(&o.device_write_bps, true)?,
        "BlkioDeviceReadIOps": throttle(&o.device_read_iops, false)?,
        "BlkioDeviceWriteIOps": throttle(&o.device_write_iops, false)?,
        "BlkioWeightDevice": weight_devices(&o.blkio_weight_device)?,
        "OomKillDisable": o.oom_kill_disable,
        "MemorySwappiness": o.memory_swappiness,
    });
    for (k, v) in [
        ("Memory", o.memory),
        ("MemorySwap", o.memory_swap),
        ("MemoryReservation", o.memory_reservation),
        ("KernelMemory", o.kernel_memory),
        ("NanoCpus", o.cpus),
        ("PidsLimit", o.pids_limit),
        ("CpuShares", o.cpu_shares),
        ("CpuPeriod", o.cpu_period),
        ("CpuQuota", o.cpu_quota),
        ("CpuRealtimePeriod", o.cpu_rt_period),
        ("CpuRealtimeRuntime", o.cpu_rt_runtime),
        ("ShmSize", o.shm_size),
        ("OomScoreAdj", o.oom_score_adj),
        ("BlkioWeight", o.blkio_weight.map(i64::from)),
    ] {
        if let Some(v) = v {
            hc[k] = json!(v);
        }
    }
    for (k, v) in [
        ("CpusetCpus", &o.cpuset_cpus),
        ("CpusetMems", &o.cpuset_mems),
        ("CgroupParent", &o.cgroup_parent),
        ("IpcMode", &o.ipc),
        ("PidMode", &o.pid),
        ("UTSMode", &o.uts),
        ("UsernsMode", &o.userns),
        ("CgroupnsMode", &o.cgroupns),
        ("Runtime", &o.runtime),
        ("Isolation", &o.isolation),
        ("VolumeDriver", &o.volume_driver),
    ] {
        if let Some(v) = v {
            hc[k] = json!(v);
        }
    }
    if let Some(r) = restart {
        hc["RestartPolicy"] = r;
    }
    if let Some(i) = o.init {
        hc["Init"] = json!(i);
    }
    let mut body = json!({
        "Image": o.image,
        "Env": env,
        "Labels": labels,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": o.interactive && attach_stdin,
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_all || o.attach.iter().any(|a| a == "stdout"),
        "AttachStderr": attach_all || o.attach.iter().any(|a| a == "stderr"),
        "HostConfig": hc,
    });
    if !volumes.is_empty() {
        body["Volumes"] = Value::Object(volumes);
    }
    if !o.command.is_empty() {
        body["Cmd"] = json!(o.command);
    }
    if let Some(e) = &o.entrypoint {
        body["Entrypoint"] = json!([e]);
    }
    for (k, v) in [
        ("WorkingDir", &o.workdir),
        ("User", &o.user),
        ("Hostname", &o.hostname),
        ("Domainname", &o.domainname),
        ("StopSignal", &o.stop_signal),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(t) = o.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    if let Some(h) = healthcheck(o)? {
        body["Healthcheck"] = h;
    }
    o.network.apply(&mut body)?;
    Ok(body)
}

fn healthcheck(o: &CreateFlags) -> Result<Option<Value>> {
    let any = o.health_cmd.is_some()
        || o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_start_period.is_some()
        || o.health_retries.is_some()
        || o.health_start_interval.is_some();
    if o.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if !any {
        return Ok(None);
    }
    let mut h = BTreeMap::new();
    if let Some(c) = &o.health_cmd {
        h.insert("Test", json!(["CMD-SHELL", c]));
    }
    for (name, k, v) in [
        ("interval", "Interval", o.health_interval),
        ("timeout", "Timeout", o.health_timeout),
        ("start-period", "StartPeriod", o.health_start_period),
        ("start-interval", "StartInterval", o.health_start_interval),
        ("retries", "Retries", o.health_retries),
    ] {
        if let Some(v) = v {
            if v < 0 {
                bail!("--health-{name} cannot be negative");
            }
            h.insert(k, json!(v));
        }
    }
    Ok(Some(json!(h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        o: CreateFlags,
    }

    fn body(args: &[&str]) -> Value {
        let mut v = vec!["create"];
        v.extend_from_slice(args);
        create_body(&T::try_parse_from(v).unwrap().o).unwrap()
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_ram("100m").unwrap(), 104857600);
        assert_eq!(parse_ram("1g").unwrap(), 1 << 30);
        assert_eq!(parse_ram("512").unwrap(), 512);
        assert_eq!(parse_ram("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_ram("1.5k").unwrap(), 1536);
        assert!(parse_ram("lots").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_nano_cpus("1.5").unwrap(), 1_500_000_000);
    }

    #[test]
    fn flags_become_dockerds_shapes() {
        let b = body(&[
            "--name",
            "x",
            "-e",
            "A=1",
            "-m",
            "100m",
            "--cpus",
            "0.5",
            "--dns",
            "1.1.1.1",
            "--add-host",
            "db:10.0.0.2",
            "--shm-size",
            "64m",
            "--cpuset-cpus",
            "0",
            "--cpu-shares",
            "512",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--group-add",
            "audio",
            "--device",
            "/dev/null:/dev/xnull:r",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "5",
            "--pid",
            "host",
            "--ipc",
            "private",
            "--uts",
            "host",
            "--userns",
            "host",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--health-cmd",
            "true",
            "--health-interval",
            "2s",
            "--runtime",
            "crun",
            "--oom-score-adj",
            "-500",
            "--blkio-weight",
            "300",
            "--device-read-bps",
            "/dev/sda:1mb",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--restart",
            "on-failure:3",
            "--init",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ]);
        let hc = &b["HostConfig"];
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(hc["Memory"], 104857600);
        assert_eq!(hc["NanoCpus"], 500000000);
        assert_eq!(hc["Dns"], json!(["1.1.1.1"]));
        assert_eq!(hc["ExtraHosts"], json!(["db:10.0.0.2"]));
        assert_eq!(hc["ShmSize"], 64 << 20);
        assert_eq!(hc["CpusetCpus"], "0");
        assert_eq!(hc["CpuShares"], 512);
        assert_eq!(hc["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(hc["GroupAdd"], json!(["audio"]));
        assert_eq!(
            hc["Devices"],
            json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "r"}])
        );
        assert_eq!(b["StopSignal"], "SIGUSR1");
        assert_eq!(b["StopTimeout"], 5);
        assert_eq!(
            (
                hc["PidMode"].as_str(),
                hc["IpcMode"].as_str(),
                hc["UTSMode"].as_str()
            ),
            (Some("host"), Some("private"), Some("host"))
        );
        assert_eq!(hc["UsernsMode"], "host");
        assert_eq!(
            hc["LogConfig"],
            json!({"Type": "json-file", "Config": {"max-size": "1m"}})
        );
        assert_eq!(
            b["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000i64})
        );
        assert_eq!(hc["Runtime"], "crun");
        assert_eq!(hc["OomScoreAdj"], -500);
        assert_eq!(hc["BlkioWeight"], 300);
        assert_eq!(
            hc["BlkioDeviceReadBps"],
            json!([{"Path": "/dev/sda", "Rate": 1048576}])
        );
        assert_eq!(
            hc["Mounts"],
            json!([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}}])
        );
        assert_eq!(
            hc["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(hc["Init"], true);
        assert_eq!(b["Cmd"], json!(["sh", "-c", "exit 3"]));
    }

    #[test]
    fn volumes_binds_and_conflicts() {
        let b = body(&["-v", "/data", "-v", "/h:/c:ro", "-v", "named:/n", "busybox"]);
        assert_eq!(b["Volumes"], json!({"/data": {}}));
        assert_eq!(b["HostConfig"]["Binds"], json!(["/h:/c:ro", "named:/n"]));
        let o = T::try_parse_from(["c", "--rm", "--restart", "always", "busybox"])
            .unwrap()
            .o;
        assert!(create_body(&o).is_err());
        assert!(parse_mount("type=bind,target=/x").is_err());
        assert!(parse_mount("type=volume,src=v,dst=/x,bind-propagation=rshared").is_err());
        assert_eq!(
            parse_mount("type=volume,src=v,dst=/x,volume-subpath=sub,ro").unwrap(),
            json!({"Type": "volume", "Source": "v", "Target": "/x", "ReadOnly": true, "VolumeOptions": {"Subpath": "sub"}})
        );
    }

    #[test]
    fn interactive_attaches_stdin_once() {
        let b = body(&["-i", "busybox"]);
        assert_eq!(
            (
                b["OpenStdin"].as_bool(),
                b["AttachStdin"].as_bool(),
                b["StdinOnce"].as_bool()
            ),
            (Some(true), Some(true), Some(true))
        );
        let b = body(&["-a", "stderr", "busybox"]);
        assert_eq!(
            (b["AttachStdout"].as_bool(), b["AttachStderr"].as_bool()),
            (Some(false), Some(true))
        );
    }
}
