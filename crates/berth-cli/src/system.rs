//! `berth system ...` and `version`, `info`, `events`: the engine as a whole, printed
//! in docker's layouts (`version` through docker's own template, `info` line by line
//! as docker prints it) or through `--format`.

use std::borrow::Cow;
use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value as Json;

use crate::cli::{confirm, StatusError};
use crate::client::{filters_query, Client, CLIENT_API_VERSION};
use crate::container::FORMAT_HELP;
use crate::format::{self, misc, units};
use crate::template::{FuncMap, Map, Template, Value};

#[derive(Debug, Args, Clone)]
pub struct VersionArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct InfoArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DfArgs {
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args, Clone)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(
        long,
        help = "Format output using a custom template: 'json' or a Go template"
    )]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

/// `berth system ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SystemCmd {
    /// Show docker disk usage
    #[command(override_usage = "berth system df [OPTIONS]")]
    Df(DfArgs),
    /// Get real time events from the server
    #[command(override_usage = "berth system events [OPTIONS]")]
    Events(EventsArgs),
    /// Display system-wide information
    #[command(override_usage = "berth system info [OPTIONS]")]
    Info(InfoArgs),
    /// Remove unused data
    #[command(override_usage = "berth system prune [OPTIONS]")]
    Prune(SystemPruneArgs),
}

pub async fn run(c: &Client, cmd: SystemCmd) -> Result<i32> {
    match cmd {
        SystemCmd::Df(a) => df(c, a).await,
        SystemCmd::Events(a) => events(c, a).await,
        SystemCmd::Info(a) => info(c, a).await,
        SystemCmd::Prune(a) => prune(c, a).await,
    }
}

/// docker's version template (cli/command/system/version.go), run by our engine.
const VERSION_TEMPLATE: &str = r#"{{with .Client -}}
Client:{{if ne .Platform nil}}{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}{{end}}
 Version:	{{.Version}}
 API version:	{{.APIVersion}}{{if ne .APIVersion .DefaultAPIVersion}} (downgraded from {{.DefaultAPIVersion}}){{end}}
 Go version:	{{.GoVersion}}
 Git commit:	{{.GitCommit}}
 Built:	{{.BuildTime}}
 OS/Arch:	{{.Os}}/{{.Arch}}
 Context:	{{.Context}}
{{- end}}

{{- if ne .Server nil}}{{with .Server}}

Server:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 {{- range $component := .Components}}
 {{$component.Name}}:
  {{- if eq $component.Name "Engine" }}
  Version:	{{.Version}}
  API version:	{{index .Details "ApiVersion"}} (minimum version {{index .Details "MinAPIVersion"}})
  Go version:	{{index .Details "GoVersion"}}
  Git commit:	{{index .Details "GitCommit"}}
  Built:	{{index .Details "BuildTime"}}
  OS/Arch:	{{index .Details "Os"}}/{{index .Details "Arch"}}
  Experimental:	{{index .Details "Experimental"}}
  {{- else }}
  Version:	{{$component.Version}}
  {{- $detailsOrder := getDetailsOrder $component}}
  {{- range $key := $detailsOrder}}
  {{$key}}:	{{index $component.Details $key}}
   {{- end}}
  {{- end}}
 {{- end}}
 {{- end}}{{- end}}"#;

fn client_version(c: &Client) -> Value {
    let mut platform = Map::new();
    platform.insert("Name", "berth");
    let mut m = Map::new();
    m.insert("Platform", platform);
    m.insert("Version", env!("CARGO_PKG_VERSION"));
    let version = c.version();
    m.insert("ApiVersion", version.as_str());
    m.insert("DefaultAPIVersion", CLIENT_API_VERSION);
    m.insert(
        "GitCommit",
        option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
    );
    m.insert(
        "GoVersion",
        concat!("rust (berth ", env!("CARGO_PKG_VERSION"), ")"),
    );
    m.insert("Os", std::env::consts::OS);
    m.insert("Arch", go_arch());
    m.insert("BuildTime", "");
    m.insert("Context", "default");
    m.alias("APIVersion", "ApiVersion");
    Value::Map(m)
}

/// Go's name for this machine's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn details_order() -> FuncMap {
    let mut f = FuncMap::new();
    f.insert(
        "getDetailsOrder",
        std::sync::Arc::new(|a: &[Value]| {
            let mut keys: Vec<Value> = match a.first() {
                Some(Value::Map(m)) => match m.get("Details") {
                    Some(Value::Map(d)) => d
                        .sorted_keys()
                        .into_iter()
                        .map(|k| Value::Str(k.clone()))
                        .collect(),
                    _ => vec![],
                },
                _ => vec![],
            };
            keys.dedup_by(|x, y| x.as_str() == y.as_str());
            Ok(Value::List(keys))
        }),
    );
    f
}

pub async fn version(c: &Client, a: VersionArgs) -> Result<i32> {
    let src = match a.format.as_deref() {
        None | Some("") => VERSION_TEMPLATE,
        Some("json") => format::JSON_FORMAT,
        Some(f) => f,
    };
    let tmpl = Template::parse_with(src, details_order()).map_err(|e| StatusError {
        code: 64,
        message: format!("template parsing error: {e}"),
    })?;
    let server = c.json_ordered(Method::GET, "/version").await;
    let mut data = Map::new();
    data.insert("Client", client_version(c));
    let server_err = match server {
        Ok(mut s) => {
            ensure_engine_component(&mut s);
            if let Value::Map(m) = &mut s {
                m.alias("APIVersion", "ApiVersion");
            }
            data.insert("Server", s);
            None
        }
        Err(e) => {
            data.insert("Server", Value::Nil);
            Some(e)
        }
    };
    let (out, err) = tmpl.execute_partial(&Value::Map(data));
    let mut tw = format::tabwriter::TabWriter::new(20, 1);
    tw.write(&out);
    tw.write("\n");
    print!("{}", tw.flush());
    if let Some(e) = server_err {
        return Err(e.into());
    }
    if let Some(e) = err {
        return Err(anyhow::anyhow!("{e}"));
    }
    Ok(0)
}

/// docker adds an "Engine" component from the top-level fields when the engine lists
/// none.
fn ensure_engine_component(s: &mut Value) {
    let Value::Map(m) = s else { return };
    let has_engine = matches!(m.get("Components"), Some(Value::List(l))
        if l.iter().any(|c| matches!(c, Value::Map(cm) if cm.get("Name").and_then(Value::as_str) == Some("Engine"))));
    if has_engine {
        return;
    }
    let field = |k: &str| m.get(k).cloned().unwrap_or(Value::Str(String::new()));
    let mut details = Map::new();
    for (k, src) in [
        ("ApiVersion", "ApiVersion"),
        ("MinAPIVersion", "MinAPIVersion"),
        ("GitCommit", "GitCommit"),
        ("GoVersion", "GoVersion"),
        ("Os", "Os"),
        ("Arch", "Arch"),
        ("BuildTime", "BuildTime"),
    ] {
        details.insert(k, field(src));
    }
    details.insert(
        "Experimental",
        matches!(m.get("Experimental"), Some(Value::Bool(true))).to_string(),
    );
    let mut engine = Map::new();
    engine.insert("Name", "Engine");
    engine.insert("Version", field("Version"));
    engine.insert("Details", details);
    let mut comps = match m.get("Components") {
        Some(Value::List(l)) => l.clone(),
        _ => vec![],
    };
    comps.push(Value::Map(engine));
    m.insert("Components", Value::List(comps));
}

fn jstr(v: &Json, k: &str) -> String {
    match &v[k] {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Go's `fmt.Println` of a label and a value.
fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{label} {value}\n"));
}

fn line_non_empty(out: &mut String, label: &str, value: &str) {
    if !value.is_empty() {
        line(out, label, value);
    }
}

/// The `info` text, as docker's prettyPrintInfo lays it out.
pub fn info_text(i: &Json) -> String {
    let mut o = String::new();
    o.push_str("Client: berth\n");
    line(&mut o, " Version:   ", env!("CARGO_PKG_VERSION"));
    line(&mut o, " Context:   ", "default");
    line(&mut o, " Debug Mode:", "false");
    o.push('\n');
    o.push_str("Server:\n");
    line(&mut o, " Containers:", jstr(i, "Containers"));
    line(&mut o, "  Running:", jstr(i, "ContainersRunning"));
    line(&mut o, "  Paused:", jstr(i, "ContainersPaused"));
    line(&mut o, "  Stopped:", jstr(i, "ContainersStopped"));
    line(&mut o, " Images:", jstr(i, "Images"));
    line_non_empty(&mut o, " Server Version:", &jstr(i, "ServerVersion"));
    line_non_empty(&mut o, " Storage Driver:", &jstr(i, "Driver"));
    for pair in i["DriverStatus"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  {}: {}\n",
            pair[0].as_str().unwrap_or(""),
            pair[1].as_str().unwrap_or("")
        ));
    }
    for pair in i["SystemStatus"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            " {}: {}\n",
            pair[0].as_str().unwrap_or(""),
            pair[1].as_str().unwrap_or("")
        ));
    }
    line_non_empty(&mut o, " Logging Driver:", &jstr(i, "LoggingDriver"));
    line_non_empty(&mut o, " Cgroup Driver:", &jstr(i, "CgroupDriver"));
    line_non_empty(&mut o, " Cgroup Version:", &jstr(i, "CgroupVersion"));
    let join = |v: &Json| -> String {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };
    o.push_str(" Plugins:\n");
    line(&mut o, "  Volume:", join(&i["Plugins"]["Volume"]));
    line(&mut o, "  Network:", join(&i["Plugins"]["Network"]));
    if i["Plugins"]["Authorization"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        line(
            &mut o,
            "  Authorization:",
            join(&i["Plugins"]["Authorization"]),
        );
    }
    line(&mut o, "  Log:", join(&i["Plugins"]["Log"]));
    let swarm = i["Swarm"]["LocalNodeState"].as_str().unwrap_or("inactive");
    line(
        &mut o,
        " Swarm:",
        if swarm.is_empty() { "inactive" } else { swarm },
    );
    if let Some(rt) = i["Runtimes"].as_object().filter(|r| !r.is_empty()) {
        let mut names: Vec<&String> = rt.keys().collect();
        names.sort();
        line(
            &mut o,
            " Runtimes:",
            names
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
        line(&mut o, " Default Runtime:", jstr(i, "DefaultRuntime"));
    }
    if jstr(i, "OSType") == "linux" {
        line(&mut o, " Init Binary:", jstr(i, "InitBinary"));
        line(
            &mut o,
            " containerd version:",
            i["ContainerdCommit"]["ID"].as_str().unwrap_or(""),
        );
        line(
            &mut o,
            " runc version:",
            i["RuncCommit"]["ID"].as_str().unwrap_or(""),
        );
        line(
            &mut o,
            " init version:",
            i["InitCommit"]["ID"].as_str().unwrap_or(""),
        );
        let sec: Vec<&str> = i["SecurityOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        if !sec.is_empty() {
            o.push_str(" Security Options:\n");
            for s in sec {
                let mut name = "";
                let mut profile = None;
                for kv in s.split(',') {
                    match kv.split_once('=') {
                        Some(("name", n)) => name = n,
                        Some(("profile", p)) => profile = Some(p),
                        _ => {}
                    }
                }
                o.push_str(&format!("  {name}\n"));
                if let Some(p) = profile {
                    line(&mut o, "   Profile:", p);
                }
            }
        }
    }
    line_non_empty(&mut o, " Kernel Version:", &jstr(i, "KernelVersion"));
    line_non_empty(&mut o, " Operating System:", &jstr(i, "OperatingSystem"));
    line_non_empty(&mut o, " OSType:", &jstr(i, "OSType"));
    line_non_empty(&mut o, " Architecture:", &jstr(i, "Architecture"));
    line(&mut o, " CPUs:", jstr(i, "NCPU"));
    line(
        &mut o,
        " Total Memory:",
        units::bytes_size(i["MemTotal"].as_f64().unwrap_or(0.0)),
    );
    line_non_empty(&mut o, " Name:", &jstr(i, "Name"));
    line_non_empty(&mut o, " ID:", &jstr(i, "ID"));
    line(&mut o, " Docker Root Dir:", jstr(i, "DockerRootDir"));
    line(
        &mut o,
        " Debug Mode:",
        i["Debug"].as_bool().unwrap_or(false),
    );
    line_non_empty(&mut o, " HTTP Proxy:", &jstr(i, "HttpProxy"));
    line_non_empty(&mut o, " HTTPS Proxy:", &jstr(i, "HttpsProxy"));
    line_non_empty(&mut o, " No Proxy:", &jstr(i, "NoProxy"));
    line_non_empty(&mut o, " Username:", &jstr(i, "Username"));
    if let Some(l) = i["Labels"].as_array().filter(|l| !l.is_empty()) {
        o.push_str(" Labels:\n");
        for x in l {
            o.push_str(&format!("  {}\n", x.as_str().unwrap_or("")));
        }
    }
    line(
        &mut o,
        " Experimental:",
        i["ExperimentalBuild"].as_bool().unwrap_or(false),
    );
    let reg = &i["RegistryConfig"];
    let insecure_cidrs: Vec<&str> = reg["InsecureRegistryCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    let index = reg["IndexConfigs"].as_object();
    if !insecure_cidrs.is_empty() || index.is_some_and(|x| !x.is_empty()) {
        o.push_str(" Insecure Registries:\n");
        for (name, cfg) in index.into_iter().flatten() {
            if cfg["Secure"] == Json::Bool(false) {
                o.push_str(&format!("  {name}\n"));
            }
        }
        for c in insecure_cidrs {
            o.push_str(&format!("  {c}\n"));
        }
    }
    if let Some(m) = reg["Mirrors"].as_array().filter(|m| !m.is_empty()) {
        o.push_str(" Registry Mirrors:\n");
        for x in m {
            o.push_str(&format!("  {}\n", x.as_str().unwrap_or("")));
        }
    }
    line(
        &mut o,
        " Live Restore Enabled:",
        i["LiveRestoreEnabled"].as_bool().unwrap_or(false),
    );
    o.push('\n');
    o
}

pub async fn info(c: &Client, a: InfoArgs) -> Result<i32> {
    let raw = c.json_ordered(Method::GET, "/info").await?;
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let f = if f == "json" { format::JSON_FORMAT } else { f };
        let tmpl = Template::parse(f).map_err(|e| StatusError {
            code: 64,
            message: format!("template parsing error: {e}"),
        })?;
        let mut data = match raw {
            Value::Map(m) => m,
            _ => Map::new(),
        };
        // docker's clientInfo: the client's version fields, its plugins and warnings.
        let mut client = Map::new();
        client.insert("Debug", false);
        if let Value::Map(v) = client_version(c) {
            for k in [
                "Version",
                "DefaultAPIVersion",
                "GitCommit",
                "GoVersion",
                "Os",
                "Arch",
                "BuildTime",
                "Context",
            ] {
                client.insert(k, v.get(k).cloned().unwrap_or_default());
            }
        }
        client.insert("Plugins", Value::List(vec![]));
        client.insert("Warnings", Value::Nil);
        data.insert("ClientInfo", client);
        let (out, err) = tmpl.execute_partial(&Value::Map(data));
        println!("{out}");
        if let Some(e) = err {
            bail!("{e}");
        }
        return Ok(0);
    }
    let i: Json = serde_json::from_str(&raw.to_json())?;
    print!("{}", info_text(&i));
    for w in i["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", w.as_str().unwrap_or_default());
    }
    Ok(0)
}

pub async fn df(c: &Client, a: DfArgs) -> Result<i32> {
    let v = c.json(Method::GET, "/system/df", None).await?;
    let source = a.format.clone().unwrap_or_else(|| "table".into());
    if !a.verbose {
        let fmt = if source == "table" {
            misc::DF_TABLE.to_string()
        } else {
            source
        };
        print!(
            "{}",
            format::write(&fmt, &misc::df_header(), &misc::df_rows(&v))?
        );
        return Ok(0);
    }
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    // Decoded from text: a summary borrows the parts it decodes only when shown.
    let containers_text = v["Containers"].to_string();
    let containers = if v["Containers"].is_null() {
        vec![]
    } else {
        format::container::decode_list(&containers_text)
            .context("reading the containers of the disk usage")?
    };
    if source != "table" {
        // A template over the whole usage, as docker's `-v --format` does.
        let f = if source == "json" {
            format::JSON_FORMAT.to_string()
        } else {
            source
        };
        let whole = format::container::Show::new(false);
        let mut data = Map::new();
        data.insert(
            "Images",
            Value::List(
                list("Images")
                    .iter()
                    .map(|i| df_image_row(i, false))
                    .collect(),
            ),
        );
        data.insert(
            "Containers",
            Value::List(
                containers
                    .iter()
                    .map(|x| format::container::row(x, &whole, &format::Fields::all()))
                    .collect(),
            ),
        );
        data.insert(
            "Volumes",
            Value::List(list("Volumes").iter().map(misc::volume_row).collect()),
        );
        data.insert(
            "BuildCache",
            Value::List(
                list("BuildCache")
                    .iter()
                    .map(|b| misc::build_cache_row(b, false))
                    .collect(),
            ),
        );
        println!(
            "{}",
            format::parse(&f)?
                .execute(&Value::Map(data))
                .map_err(format::FormatError)?
        );
        return Ok(0);
    }
    let mut out = String::from("Images space usage:\n\n");
    let rows: Vec<Value> = list("Images")
        .iter()
        .map(|i| df_image_row(i, true))
        .collect();
    out.push_str(&format::write(
        misc::DF_IMAGES_TABLE,
        &format::image::header(),
        &rows,
    )?);
    out.push_str("\nContainers space usage:\n\n");
    let show = format::container::Show::new(true);
    out.push_str(&format::write_each(
        misc::DF_CONTAINERS_TABLE,
        &format::container::header(),
        &containers,
        |x, f| Cow::Owned(format::container::row(x, &show, f)),
    )?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    let rows: Vec<Value> = list("Volumes").iter().map(misc::volume_row).collect();
    out.push_str(&format::write(
        misc::DF_VOLUMES_TABLE,
        &misc::volume_header(),
        &rows,
    )?);
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        units::human_size(v["BuilderSize"].as_f64().unwrap_or(0.0))
    ));
    let rows: Vec<Value> = list("BuildCache")
        .iter()
        .map(|b| misc::build_cache_row(b, true))
        .collect();
    out.push_str(&format::write(
        misc::DF_BUILD_TABLE,
        &misc::build_cache_header(),
        &rows,
    )?);
    print!("{out}");
    Ok(0)
}

fn df_image_row(i: &Json, trunc: bool) -> Value {
    let tag = i["RepoTags"][0].as_str().unwrap_or("<none>:<none>");
    let (repo, t) = format::image::split_tag(tag).unwrap_or((tag, "<none>"));
    format::image::row(i, trunc, &format::image::familiar_name(repo), t, "")
}

/// A `--since`/`--until` value as the API's `seconds.nanoseconds`: unix seconds stay
/// as they are, RFC 3339 times are converted, durations (`10m`, `1h30m`) count back
/// from now.
pub fn api_time(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
        return Ok(s.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    let nanos = crate::container::opts::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("bad time {s:?}: expected a timestamp or a duration"))?;
    let t = now - chrono::Duration::nanoseconds(nanos);
    Ok(format!(
        "{}.{:09}",
        t.timestamp(),
        t.timestamp_subsec_nanos()
    ))
}

/// docker's event line: local time with nanoseconds, type, action, actor, attributes.
pub fn event_line(v: &Json) -> String {
    let nanos = v["timeNano"].as_i64().unwrap_or(0);
    let t = chrono::DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    )
    .unwrap_or_default()
    .with_timezone(&chrono::Local);
    let mut ts = t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
    if ts.ends_with("+00:00") {
        ts.truncate(ts.len() - 6);
        ts.push('Z');
    }
    let mut attrs: Vec<String> = v["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
        .collect();
    attrs.sort();
    let mut s = format!(
        "{ts} {} {} {}",
        v["Type"].as_str().unwrap_or(""),
        v["Action"].as_str().unwrap_or(""),
        v["Actor"]["ID"].as_str().unwrap_or("")
    );
    if !attrs.is_empty() {
        s.push_str(&format!(" ({})", attrs.join(", ")));
    }
    s
}

pub async fn events(c: &Client, a: EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let mut q = vec![];
    if let Some(s) = &a.since {
        q.push(format!("since={}", api_time(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push(format!("until={}", api_time(u, now)?));
    }
    let f = filters_query(&a.filter)?;
    if !f.is_empty() {
        q.push(format!("filters={f}"));
    }
    let tmpl = match a.format.as_deref() {
        Some(f) if !f.is_empty() => Some(format::parse(f).map_err(|e| StatusError {
            code: 64,
            message: e.to_string(),
        })?),
        _ => None,
    };
    let resp = c
        .send(
            Method::GET,
            &format!("/events?{}", q.join("&")),
            None,
            false,
        )
        .await?;
    crate::pull::each_line(resp.into_body(), |l| {
        match &tmpl {
            Some(t) => {
                let v = Value::from_json(l).context("reading an event")?;
                println!("{}", t.execute(&v).map_err(format::FormatError)?);
            }
            None => {
                let v: Json = serde_json::from_slice(l).unwrap_or(Json::Null);
                println!("{}", event_line(&v));
            }
        }
        std::io::stdout().flush().ok();
        Ok(())
    })
    .await?;
    Ok(0)
}

pub async fn prune(c: &Client, a: SystemPruneArgs) -> Result<i32> {
    let mut warn = String::from("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n");
    if a.volumes {
        warn.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    if a.all {
        warn.push_str("  - all images without at least one container associated to them\n");
    } else {
        warn.push_str("  - all dangling images\n");
    }
    warn.push_str(if a.all {
        "  - all build cache\n"
    } else {
        "  - unused build cache\n"
    });
    if !a.force && !confirm(&warn)? {
        return Ok(0);
    }
    let f = filters_query(&a.filter)?;
    let fq = if f.is_empty() {
        String::new()
    } else {
        format!("?filters={f}")
    };
    let mut total = 0f64;
    let v = c
        .json(Method::POST, &format!("/containers/prune{fq}"), None)
        .await?;
    crate::container::print_deleted("Deleted Containers:", &v["ContainersDeleted"]);
    total += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    // Networks are pruned when the engine has them.
    if let Ok(v) = c
        .json(Method::POST, &format!("/networks/prune{fq}"), None)
        .await
    {
        crate::container::print_deleted("Deleted Networks:", &v["NetworksDeleted"]);
    }
    if a.volumes {
        let v = c
            .json(Method::POST, &format!("/volumes/prune{fq}"), None)
            .await?;
        crate::container::print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
        total += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    }
    let mut img_filter = a.filter.clone();
    if a.all {
        img_filter.push("dangling=false".into());
    }
    let iq = filters_query(&img_filter)?;
    let v = c
        .json(Method::POST, &format!("/images/prune?filters={iq}"), None)
        .await?;
    crate::image::print_deleted_images(&v["ImagesDeleted"]);
    total += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    if let Ok(v) = c
        .json(Method::POST, &format!("/build/prune{fq}"), None)
        .await
    {
        crate::container::print_deleted("Deleted build cache objects:", &v["CachesDeleted"]);
        total += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    }
    println!("Total reclaimed space: {}", units::human_size(total));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_for_the_api() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(api_time("1700000000", now).unwrap(), "1700000000");
        assert_eq!(
            api_time("2024-01-01T00:00:00Z", now).unwrap(),
            "1704067200.000000000"
        );
        assert_eq!(api_time("10m", now).unwrap(), "1704067200.000000000");
        assert_eq!(api_time("1m30s", now).unwrap(), "1704067710.000000000");
        assert!(api_time("5x", now).is_err());
    }

    #[test]
    fn the_version_template_runs() {
        let tmpl = Template::parse_with(VERSION_TEMPLATE, details_order()).unwrap();
        let mut server: Value = Value::from_json(
            br#"{"Platform":{"Name":"berth"},"Components":[{"Name":"Engine","Version":"0.1.0","Details":{"ApiVersion":"1.47","MinAPIVersion":"1.24","Os":"linux","Arch":"amd64","GoVersion":"","GitCommit":"x","BuildTime":"","Experimental":"false"}},{"Name":"runtime","Version":"1","Details":{"b":"2","a":"1"}}],"Version":"0.1.0"}"#,
        )
        .unwrap();
        ensure_engine_component(&mut server);
        let mut client = Map::new();
        let mut p = Map::new();
        p.insert("Name", "berth");
        client.insert("Platform", p);
        for (k, v) in [
            ("Version", "0.1.0"),
            ("APIVersion", "1.47"),
            ("DefaultAPIVersion", "1.47"),
            ("GoVersion", ""),
            ("GitCommit", "g"),
            ("BuildTime", ""),
            ("Os", "linux"),
            ("Arch", "amd64"),
            ("Context", "default"),
        ] {
            client.insert(k, v);
        }
        let mut d = Map::new();
        d.insert("Client", client);
        d.insert("Server", server);
        let out = tmpl.execute(&Value::Map(d)).unwrap();
        let mut tw = format::tabwriter::TabWriter::new(20, 1);
        tw.write(&out);
        let text = tw.flush();
        assert!(
            text.starts_with(
                "Client: berth\n Version:           0.1.0\n API version:       1.47\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nServer: berth\n Engine:\n  Version:          0.1.0\n  API version:      1.47 (minimum version 1.24)\n"), "{text}");
        assert!(
            text.contains(
                " runtime:\n  Version:          1\n  a:                1\n  b:                2"
            ),
            "{text}"
        );
    }

    #[test]
    fn info_in_dockers_layout() {
        let i = json!({"Containers": 2, "ContainersRunning": 1, "ContainersPaused": 0, "ContainersStopped": 1,
            "Images": 3, "ServerVersion": "0.1.0", "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Runtimes": {"runc": {}, "berth-runtime": {}}, "DefaultRuntime": "berth-runtime", "OSType": "linux",
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"], "MemTotal": 25_276_772_352u64,
            "NCPU": 2, "Name": "vm", "LiveRestoreEnabled": true, "Swarm": {"LocalNodeState": "inactive"}});
        let t = info_text(&i);
        assert!(
            t.contains(
                "Server:\n Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 3\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(" Storage Driver: overlay2\n  Backing Filesystem: extfs\n"),
            "{t}"
        );
        assert!(
            t.contains(" Runtimes: berth-runtime runc\n Default Runtime: berth-runtime\n"),
            "{t}"
        );
        assert!(
            t.contains(" Security Options:\n  seccomp\n   Profile: builtin\n  cgroupns\n"),
            "{t}"
        );
        assert!(t.contains(" Total Memory: 23.54GiB\n"), "{t}");
        assert!(t.ends_with(" Live Restore Enabled: true\n\n"), "{t}");
    }

    #[test]
    fn event_lines() {
        let v = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}}, "timeNano": 1_700_000_000_123_456_789i64});
        let l = event_line(&v);
        assert!(
            l.ends_with(" container start abc (image=busybox, name=web)"),
            "{l}"
        );
    }
}
