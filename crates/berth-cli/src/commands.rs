//! The verbs, each over berthd's HTTP API. Exit codes follow docker's: the container's
//! code for `run`, `wait` and `start -a`; 125 when the engine refuses `run`/`create`;
//! 1 for other errors.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::{enc, CliError, Client};
use crate::format::{ago, render, table};

/// Flags shared by `run` and `create`.
#[derive(Debug, Args, Clone)]
pub struct CreateOpts {
    /// Print help (-h is --hostname, as in docker).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    #[arg(short = 'h', long = "hostname")]
    pub hostname: Option<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short = 'm', long = "memory")]
    pub memory: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub init: bool,
    #[arg(long)]
    pub privileged: bool,
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    #[arg(long = "read-only")]
    pub read_only: bool,
    #[arg(long)]
    pub tmpfs: Vec<String>,
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    #[arg(long)]
    pub ulimit: Vec<String>,
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub rm: bool,
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    #[command(flatten)]
    pub health: crate::health::HealthOpts,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the client and server versions.
    Version,
    /// Show system-wide information.
    Info,
    /// List containers.
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(short = 'l', long)]
        latest: bool,
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Show low-level information on containers or images.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Create a container.
    #[command(disable_help_flag = true)]
    Create(CreateOpts),
    /// Create and run a container.
    #[command(disable_help_flag = true)]
    Run {
        #[arg(short = 'd', long)]
        detach: bool,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Start containers.
    Start {
        #[arg(short = 'a', long)]
        attach: bool,
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers.
    Stop {
        #[arg(short = 't', long = "time")]
        time: Option<i64>,
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Kill containers.
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Fetch a container's logs.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Block until containers stop, then print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(short = 'u', long)]
        user: Option<String>,
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Attach to a running container.
    Attach { container: String },
    /// Build an image from a Dockerfile.
    Build(crate::build::BuildOpts),
    /// Manage the build cache.
    Builder {
        #[command(subcommand)]
        cmd: crate::build::BuilderCommand,
    },
    /// Images, volumes, events and disk usage (crate::images).
    #[command(flatten)]
    Images(crate::images::ImageCommand),
    #[command(flatten)]
    ContainerVerb(crate::container_verbs::ContainerVerb),
    /// Manage containers.
    Container {
        #[command(subcommand)]
        cmd: crate::container_verbs::ContainerGroup,
    },
}

/// What `ps --format` templates see, as docker's CLI presents a container:
/// `.Names` without the leading slash and comma-joined, `.ID` short, `.Command`
/// quoted; the API's own fields stay reachable too.
fn ps_context(x: &Value) -> Value {
    let mut v = x.clone();
    let names: Vec<&str> = x["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/'))
        .collect();
    let id = x["Id"].as_str().unwrap_or("");
    if let Some(o) = v.as_object_mut() {
        o.insert("Names".into(), json!(names.join(",")));
        o.insert("ID".into(), json!(id.chars().take(12).collect::<String>()));
        o.insert(
            "Command".into(),
            json!(format!("\"{}\"", x["Command"].as_str().unwrap_or(""))),
        );
    }
    v
}

/// Parses "100m", "1g", "512k", "1024" into bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('t') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size: {s:?}"))?;
    Ok((n * mult as f64) as i64)
}

fn parse_ulimit(s: &str) -> Result<Value> {
    let (name, vals) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit {s:?}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    Ok(json!({"Name": name, "Soft": soft.parse::<i64>()?, "Hard": hard.parse::<i64>()?}))
}

/// The `POST /containers/create` body for the flags.
pub fn create_body(o: &CreateOpts) -> Result<Value> {
    let mut env = vec![];
    for f in &o.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    for e in &o.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let mut labels = serde_json::Map::new();
    for l in &o.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), json!(v));
    }
    let mut tmpfs = serde_json::Map::new();
    for t in &o.tmpfs {
        let (d, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(d.to_string(), json!(opts));
    }
    let restart = o.restart.as_deref().map(|r| {
        let (name, max) = r.split_once(':').unwrap_or((r, "0"));
        json!({"Name": name, "MaximumRetryCount": max.parse::<i64>().unwrap_or(0)})
    });
    let ulimits = o
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    let attach_all = o.attach.is_empty();
    let mut hc = json!({
        "Binds": o.volume,
        "NetworkMode": o.network.clone().unwrap_or_else(|| "default".to_string()),
        "Privileged": o.privileged,
        "CapAdd": o.cap_add,
        "CapDrop": o.cap_drop,
        "ReadonlyRootfs": o.read_only,
        "Tmpfs": tmpfs,
        "SecurityOpt": o.security_opt,
        "Ulimits": ulimits,
        "AutoRemove": o.rm,
        "Init": o.init,
    });
    if let Some(m) = &o.memory {
        hc["Memory"] = json!(parse_bytes(m)?);
    }
    if let Some(m) = &o.memory_swap {
        hc["MemorySwap"] = json!(if m == "-1" { -1 } else { parse_bytes(m)? });
    }
    if let Some(c) = o.cpus {
        hc["NanoCpus"] = json!((c * 1e9) as i64);
    }
    if let Some(p) = o.pids_limit {
        hc["PidsLimit"] = json!(p);
    }
    if let Some(r) = restart {
        hc["RestartPolicy"] = r;
    }
    let mut body = json!({
        "Image": o.image,
        "Env": env,
        "Labels": labels,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": o.interactive,
        "AttachStdin": o.interactive,
        "AttachStdout": attach_all || o.attach.iter().any(|a| a == "stdout"),
        "AttachStderr": attach_all || o.attach.iter().any(|a| a == "stderr"),
        "HostConfig": hc,
    });
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
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(h) = crate::health::config(&o.health)? {
        body["Healthcheck"] = h;
    }
    Ok(body)
}

/// Copies a hijacked stream to stdout/stderr (demultiplexed without a TTY) and stdin
/// to it when `stdin` is set; returns when the output ends.
pub async fn pump_stdio<S>(stream: S, tty: bool, stdin: bool) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let input = tokio::spawn(async move {
        if stdin {
            let mut inp = tokio::io::stdin();
            let _ = tokio::io::copy(&mut inp, &mut wr).await;
        }
        // Half-close: the container sees EOF on its stdin.
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = vec![];
    loop {
        let n = rd
            .read(&mut buf)
            .await
            .context("reading from the container")?;
        if n == 0 {
            break;
        }
        if tty {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 8 {
            let len = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]) as usize;
            if pending.len() < 8 + len {
                break;
            }
            let payload = &pending[8..8 + len];
            if pending[0] == 2 {
                let mut e = std::io::stderr().lock();
                e.write_all(payload)?;
                e.flush()?;
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(payload)?;
                o.flush()?;
            }
            pending.drain(..8 + len);
        }
    }
    input.abort();
    Ok(())
}

/// Forwards this terminal's size to the container's (or exec's) pty: once now and
/// on every SIGWINCH, until dropped. `path` is `/containers/<id>` or `/exec/<id>`.
/// Does nothing when stdout is not a terminal.
struct WindowSize(Option<tokio::task::JoinHandle<()>>);

impl WindowSize {
    fn forward(c: &Client, path: String, on: bool) -> WindowSize {
        if !on || !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
            return WindowSize(None);
        }
        let c = c.clone();
        WindowSize(Some(tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            loop {
                if let Some((rows, cols)) = terminal_size() {
                    // A failed resize (the process just exited) is not worth a word.
                    let _ = c
                        .send(
                            Method::POST,
                            &format!("{path}/resize?h={rows}&w={cols}"),
                            None,
                            false,
                        )
                        .await;
                }
                if winch.recv().await.is_none() {
                    return;
                }
            }
        })))
    }
}

impl Drop for WindowSize {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// Rows and columns of the terminal on stdout.
fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass, which lives
    // for the whole call; fd 1 is only read.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts the terminal in raw mode while alive (for `-it`).
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enable(on: bool) -> RawTerminal {
        use nix::sys::termios;
        if !on || !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            return RawTerminal(None);
        }
        let Ok(orig) = termios::tcgetattr(std::io::stdin()) else {
            return RawTerminal(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(orig))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

async fn wait_code(c: &Client, id: &str, condition: &str) -> Result<i64> {
    let v = c
        .json(
            Method::POST,
            &format!("/containers/{}/wait?condition={condition}", enc(id)),
            None,
        )
        .await?;
    Ok(v["StatusCode"].as_i64().unwrap_or(0))
}

async fn create(c: &Client, o: &CreateOpts) -> Result<String> {
    let body = create_body(o)?;
    let path = match &o.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_string(),
    };
    let v = match c.json(Method::POST, &path, Some(body.clone())).await {
        Err(CliError::Api { status, message })
            if status == 404 && message.starts_with("No such image") =>
        {
            eprintln!("Unable to find image '{}' locally", o.image);
            pull(c, &o.image).await?;
            c.json(Method::POST, &path, Some(body)).await?
        }
        other => other?,
    };
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    v["Id"]
        .as_str()
        .map(str::to_string)
        .context("berthd gave no container id")
}

async fn pull(c: &Client, image: &str) -> Result<()> {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create?fromImage={}&tag={}", enc(name), enc(tag)),
            None,
            false,
        )
        .await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        if let Some(e) = v["error"].as_str() {
            bail!("{e}");
        }
        if let Some(s) = v["status"].as_str() {
            match v["id"].as_str() {
                Some(id) => eprintln!("{id}: {s}"),
                None => eprintln!("{s}"),
            }
        }
    }
    Ok(())
}

/// Runs one verb; returns the process exit code.
pub async fn run(c: &Client, cmd: Command) -> Result<i32> {
    match cmd {
        Command::ContainerVerb(v) => return crate::container_verbs::run(c, v).await,
        Command::Container { cmd } => return crate::container_verbs::run_group(c, cmd).await,
        Command::Version => {
            let v = c.json(Method::GET, "/version", None).await?;
            println!(
                "Client:\n Version:     {}\n API version: {}",
                env!("CARGO_PKG_VERSION"),
                c.version
            );
            println!(
                "\nServer:\n Engine:\n  Version:     {}\n  API version: {} (minimum version {})\n  OS/Arch:     {}/{}\n  Kernel:      {}",
                v["Version"].as_str().unwrap_or(""),
                v["ApiVersion"].as_str().unwrap_or(""),
                v["MinAPIVersion"].as_str().unwrap_or(""),
                v["Os"].as_str().unwrap_or(""),
                v["Arch"].as_str().unwrap_or(""),
                v["KernelVersion"].as_str().unwrap_or("")
            );
            for comp in v["Components"].as_array().into_iter().flatten().skip(1) {
                println!(
                    " {}:\n  Version:     {}",
                    comp["Name"].as_str().unwrap_or(""),
                    comp["Version"].as_str().unwrap_or("")
                );
            }
        }
        Command::Info => {
            let i = c.json(Method::GET, "/info", None).await?;
            println!("Server:");
            for (label, key) in [
                ("Containers", "Containers"),
                (" Running", "ContainersRunning"),
                (" Paused", "ContainersPaused"),
                (" Stopped", "ContainersStopped"),
                ("Images", "Images"),
                ("Server Version", "ServerVersion"),
                ("Storage Driver", "Driver"),
                ("Logging Driver", "LoggingDriver"),
                ("Cgroup Driver", "CgroupDriver"),
                ("Cgroup Version", "CgroupVersion"),
                ("Default Runtime", "DefaultRuntime"),
                ("Init Binary", "InitBinary"),
                ("Kernel Version", "KernelVersion"),
                ("Operating System", "OperatingSystem"),
                ("Architecture", "Architecture"),
                ("CPUs", "NCPU"),
                ("Total Memory", "MemTotal"),
                ("Name", "Name"),
                ("Docker Root Dir", "DockerRootDir"),
                ("Live Restore Enabled", "LiveRestoreEnabled"),
            ] {
                let v = &i[key];
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!(" {label}: {s}");
            }
            for w in i["Warnings"].as_array().into_iter().flatten() {
                eprintln!("{}", w.as_str().unwrap_or_default());
            }
        }
        Command::Ps {
            all,
            quiet,
            latest,
            filter,
            format,
        } => {
            let mut filters: serde_json::Map<String, Value> = serde_json::Map::new();
            for f in &filter {
                let (k, v) = f
                    .split_once('=')
                    .with_context(|| format!("bad filter {f:?}: expected key=value"))?;
                let e = filters.entry(k.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(json!(v));
                }
            }
            let mut path = format!("/containers/json?all={}", if all { 1 } else { 0 });
            if latest {
                path.push_str("&limit=1");
            }
            if !filters.is_empty() {
                path.push_str(&format!(
                    "&filters={}",
                    enc(&Value::Object(filters).to_string())
                ));
            }
            let list = c.json(Method::GET, &path, None).await?;
            let items = list.as_array().cloned().unwrap_or_default();
            if quiet {
                for x in &items {
                    println!(
                        "{}",
                        &x["Id"].as_str().unwrap_or("")
                            [..12.min(x["Id"].as_str().unwrap_or("").len())]
                    );
                }
            } else if let Some(f) = format {
                for x in &items {
                    if f == "json" {
                        println!("{x}");
                    } else {
                        println!("{}", render(&f, &ps_context(x))?);
                    }
                }
            } else {
                let now = chrono::Utc::now().timestamp();
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|x| {
                        let id = x["Id"].as_str().unwrap_or("");
                        let names: Vec<String> = x["Names"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| {
                                n.as_str().map(|s| s.trim_start_matches('/').to_string())
                            })
                            .collect();
                        let mut cmd = x["Command"].as_str().unwrap_or("").to_string();
                        if cmd.chars().count() > 20 {
                            cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
                        }
                        vec![
                            id.chars().take(12).collect(),
                            x["Image"].as_str().unwrap_or("").to_string(),
                            format!("\"{cmd}\""),
                            ago(now - x["Created"].as_i64().unwrap_or(now)),
                            x["Status"].as_str().unwrap_or("").to_string(),
                            String::new(),
                            names.join(","),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "CONTAINER ID",
                            "IMAGE",
                            "COMMAND",
                            "CREATED",
                            "STATUS",
                            "PORTS",
                            "NAMES"
                        ],
                        &rows
                    )
                );
            }
        }
        Command::Images(cmd) => return crate::images::run(c, cmd).await,
        Command::Build(o) => return crate::build::build(c, &o).await,
        Command::Builder { cmd } => return crate::build::builder(c, &cmd).await,
        Command::Inspect { format, names } => {
            let mut out = vec![];
            let mut missing = None;
            for n in &names {
                let mut found = None;
                for kind in ["containers", "images"] {
                    match c
                        .json(Method::GET, &format!("/{kind}/{}/json", enc(n)), None)
                        .await
                    {
                        Ok(v) => {
                            found = Some(v);
                            break;
                        }
                        Err(CliError::Api { status, .. }) if status == 404 || status == 501 => {
                            continue
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                match found {
                    Some(v) => out.push(v),
                    None => missing = Some(n.clone()),
                }
            }
            match &format {
                Some(f) => {
                    for v in &out {
                        println!("{}", render(f, v)?);
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
            }
            if let Some(m) = missing {
                eprintln!("Error: No such object: {m}");
                return Ok(1);
            }
        }
        Command::Create(o) => {
            let id = create(c, &o).await?;
            println!("{id}");
        }
        Command::Run { detach, opts } => {
            let id = create(c, &opts).await?;
            if detach {
                c.json(Method::POST, &format!("/containers/{id}/start"), None)
                    .await?;
                println!("{id}");
                return Ok(0);
            }
            let q = format!(
                "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
                if opts.interactive { "&stdin=1" } else { "" }
            );
            let stream = c.hijack(&q, None).await?;
            let condition = if opts.rm { "removed" } else { "next-exit" };
            let waiter = {
                let c = c.clone();
                let id = id.clone();
                let condition = condition.to_string();
                tokio::spawn(async move { wait_code(&c, &id, &condition).await })
            };
            c.json(Method::POST, &format!("/containers/{id}/start"), None)
                .await?;
            let _size = WindowSize::forward(c, format!("/containers/{id}"), opts.tty);
            let _raw = RawTerminal::enable(opts.tty && opts.interactive);
            pump_stdio(stream, opts.tty, opts.interactive).await?;
            let code = waiter.await.context("waiting for the container")??;
            return Ok(code as i32);
        }
        Command::Start {
            attach,
            interactive,
            containers,
        } => {
            for n in &containers {
                if attach {
                    let v = c
                        .json(Method::GET, &format!("/containers/{}/json", enc(n)), None)
                        .await?;
                    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
                    let q = format!(
                        "/containers/{}/attach?stream=1&stdout=1&stderr=1{}",
                        enc(n),
                        if interactive { "&stdin=1" } else { "" }
                    );
                    let stream = c.hijack(&q, None).await?;
                    c.json(Method::POST, &format!("/containers/{}/start", enc(n)), None)
                        .await?;
                    let _raw = RawTerminal::enable(tty && interactive);
                    pump_stdio(stream, tty, interactive).await?;
                    return Ok(wait_code(c, n, "not-running").await? as i32);
                }
                c.json(Method::POST, &format!("/containers/{}/start", enc(n)), None)
                    .await?;
                println!("{n}");
            }
        }
        Command::Stop {
            time,
            signal,
            containers,
        } => {
            for n in &containers {
                let mut p = format!("/containers/{}/stop?", enc(n));
                if let Some(t) = time {
                    p.push_str(&format!("t={t}&"));
                }
                if let Some(s) = &signal {
                    p.push_str(&format!("signal={}", enc(s)));
                }
                c.json(Method::POST, &p, None).await?;
                println!("{n}");
            }
        }
        Command::Kill { signal, containers } => {
            for n in &containers {
                c.json(
                    Method::POST,
                    &format!("/containers/{}/kill?signal={}", enc(n), enc(&signal)),
                    None,
                )
                .await?;
                println!("{n}");
            }
        }
        Command::Rm {
            force,
            volumes,
            containers,
        } => {
            for n in &containers {
                c.json(
                    Method::DELETE,
                    &format!(
                        "/containers/{}?force={}&v={}",
                        enc(n),
                        force as u8,
                        volumes as u8
                    ),
                    None,
                )
                .await?;
                println!("{n}");
            }
        }
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let v = c
                .json(
                    Method::GET,
                    &format!("/containers/{}/json", enc(&container)),
                    None,
                )
                .await?;
            let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
            let resp = c
                .send(
                    Method::GET,
                    &format!(
                        "/containers/{}/logs?stdout=1&stderr=1&follow={}&tail={}&timestamps={}",
                        enc(&container),
                        follow as u8,
                        enc(&tail),
                        timestamps as u8
                    ),
                    None,
                    false,
                )
                .await?;
            let mut body = resp.into_body();
            let mut pending: Vec<u8> = vec![];
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                if tty {
                    std::io::stdout().write_all(data)?;
                    continue;
                }
                pending.extend_from_slice(data);
                while pending.len() >= 8 {
                    let len = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]])
                        as usize;
                    if pending.len() < 8 + len {
                        break;
                    }
                    if pending[0] == 2 {
                        std::io::stderr().write_all(&pending[8..8 + len])?;
                    } else {
                        std::io::stdout().write_all(&pending[8..8 + len])?;
                    }
                    pending.drain(..8 + len);
                }
            }
        }
        Command::Wait { containers } => {
            let mut last = 0;
            for n in &containers {
                last = wait_code(c, n, "not-running").await?;
                println!("{last}");
            }
            return Ok(last as i32);
        }
        Command::Rename {
            container,
            new_name,
        } => {
            c.json(
                Method::POST,
                &format!(
                    "/containers/{}/rename?name={}",
                    enc(&container),
                    enc(&new_name)
                ),
                None,
            )
            .await?;
        }
        Command::Exec {
            interactive,
            tty,
            detach,
            user,
            workdir,
            env,
            container,
            command,
        } => {
            let mut body = json!({
                "AttachStdin": interactive && !detach,
                "AttachStdout": !detach,
                "AttachStderr": !detach,
                "Tty": tty,
                "Env": env,
                "Cmd": command,
            });
            if let Some(u) = user {
                body["User"] = json!(u);
            }
            if let Some(w) = workdir {
                body["WorkingDir"] = json!(w);
            }
            let v = c
                .json(
                    Method::POST,
                    &format!("/containers/{}/exec", enc(&container)),
                    Some(body),
                )
                .await?;
            let eid = v["Id"]
                .as_str()
                .context("berthd gave no exec id")?
                .to_string();
            let start = json!({"Detach": detach, "Tty": tty});
            if detach {
                c.json(Method::POST, &format!("/exec/{eid}/start"), Some(start))
                    .await?;
                return Ok(0);
            }
            let stream = c.hijack(&format!("/exec/{eid}/start"), Some(start)).await?;
            let _size = WindowSize::forward(c, format!("/exec/{eid}"), tty);
            let _raw = RawTerminal::enable(tty && interactive);
            pump_stdio(stream, tty, interactive).await?;
            drop(_raw);
            let mut code = 0;
            for _ in 0..100 {
                let i = c
                    .json(Method::GET, &format!("/exec/{eid}/json"), None)
                    .await?;
                if i["Running"] != json!(true) {
                    code = i["ExitCode"].as_i64().unwrap_or(0);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            return Ok(code as i32);
        }
        Command::Attach { container } => {
            let v = c
                .json(
                    Method::GET,
                    &format!("/containers/{}/json", enc(&container)),
                    None,
                )
                .await?;
            let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
            let open_stdin = v["Config"]["OpenStdin"].as_bool().unwrap_or(false);
            let q = format!(
                "/containers/{}/attach?stream=1&stdout=1&stderr=1{}",
                enc(&container),
                if open_stdin { "&stdin=1" } else { "" }
            );
            let stream = c.hijack(&q, None).await?;
            let _raw = RawTerminal::enable(tty && open_stdin);
            pump_stdio(stream, tty, open_stdin).await?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("100m").unwrap(), 104857600);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert!(parse_bytes("lots").is_err());
    }
}
