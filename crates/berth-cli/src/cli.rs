//! The command line: global options, every verb (docker's top-level shortcuts and
//! its management commands), `--help` grouped as docker groups it, and docker's exit
//! codes and messages for what the parser refuses (125 for flags, 1 for commands and
//! arguments).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::client::{pick_host, CliError, Client};
use crate::container::{
    self, AttachArgs, CommitArgs, ContainerCmd, Containers, CpArgs, CreateArgs, ExecArgs,
    ExportArgs, KillArgs, LogsArgs, OneContainer, PortArgs, PsArgs, RenameArgs, RmArgs, RunArgs,
    StartArgs, StatsArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::image::{
    self, HistoryArgs, ImageCmd, ImagesArgs, ImportArgs, LoadArgs, PullArgs, RmiArgs, SaveArgs,
    TagArgs,
};
use crate::registry::{LoginArgs, LogoutArgs, SearchArgs};
use crate::system::{EventsArgs, InfoArgs, SystemCmd, VersionArgs};

/// An error with the exit code it calls for (docker's `cli.StatusError`): the
/// message (if any) is printed as it is.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: i32,
    pub message: String,
}

/// Asks "Are you sure you want to continue? [y/N]" on the line after `warning` and
/// reads the answer from stdin, as docker does (anything but y or yes is no; so is
/// EOF).
pub fn confirm(warning: &str) -> Result<bool> {
    ask(&format!(
        "{warning}\nAre you sure you want to continue? [y/N] "
    ))
}

/// Prints `prompt` on stderr and reads a yes or no from stdin.
pub fn ask(prompt: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// berth: run and manage containers through berthd, with docker's commands and flags.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    disable_help_subcommand = true,
    disable_version_flag = true,
    disable_help_flag = true,
    override_usage = "berth [OPTIONS] COMMAND"
)]
pub struct Cli {
    /// Location of client config files
    #[arg(long, global = true, hide = true, value_name = "string")]
    pub config: Option<PathBuf>,
    /// Name of the context to use to connect to the daemon (berth has one: "default")
    #[arg(short = 'c', long, value_name = "string", env = "DOCKER_CONTEXT")]
    pub context: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Daemon socket to connect to
    #[arg(short = 'H', long, global = true, hide = true, value_name = "string")]
    pub host: Option<String>,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long = "log-level", value_name = "string")]
    pub log_level: Option<String>,
    /// Print version information and quit
    #[arg(short = 'v', long)]
    pub version: bool,
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help, global = true, hide = true)]
    pub help: Option<bool>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Every verb.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    // Common commands.
    /// Create and run a new container from an image
    #[command(
        disable_help_flag = true,
        override_usage = "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]"
    )]
    Run(RunArgs),
    /// Execute a command in a running container
    #[command(override_usage = "berth exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
    Exec(ExecArgs),
    /// List containers
    #[command(override_usage = "berth ps [OPTIONS]")]
    Ps(PsArgs),
    /// Download an image from a registry
    #[command(override_usage = "berth pull [OPTIONS] NAME[:TAG|@DIGEST]")]
    Pull(PullArgs),
    /// Upload an image to a registry
    #[command(override_usage = "berth push [OPTIONS] NAME[:TAG]")]
    Push(PullArgs),
    /// List images
    #[command(override_usage = "berth images [OPTIONS] [REPOSITORY[:TAG]]")]
    Images(ImagesArgs),
    /// Authenticate to a registry
    #[command(override_usage = "berth login [OPTIONS] [SERVER]")]
    Login(LoginArgs),
    /// Log out from a registry
    #[command(override_usage = "berth logout [SERVER]")]
    Logout(LogoutArgs),
    /// Search a registry for images
    #[command(override_usage = "berth search [OPTIONS] TERM")]
    Search(SearchArgs),
    /// Show the berth version information
    #[command(override_usage = "berth version [OPTIONS]")]
    Version(VersionArgs),
    /// Display system-wide information
    #[command(override_usage = "berth info [OPTIONS]")]
    Info(InfoArgs),

    // Management commands.
    /// Manage builds
    #[command(subcommand, override_usage = "berth builder COMMAND")]
    Builder(crate::builder::BuilderCmd),
    /// Manage containers
    #[command(subcommand, override_usage = "berth container COMMAND")]
    Container(ContainerCmd),
    /// Manage contexts
    #[command(subcommand, override_usage = "berth context COMMAND")]
    Context(crate::context::ContextCmd),
    /// Manage images
    #[command(subcommand, override_usage = "berth image COMMAND")]
    Image(ImageCmd),
    /// Manage networks
    #[command(subcommand, override_usage = "berth network COMMAND")]
    Network(crate::network::NetworkCommand),
    /// Manage berth
    #[command(subcommand, override_usage = "berth system COMMAND")]
    System(SystemCmd),
    /// Manage volumes
    #[command(subcommand, override_usage = "berth volume COMMAND")]
    Volume(crate::volume::VolumeCmd),

    // Commands.
    /// Build an image from a Dockerfile
    #[command(override_usage = "berth build [OPTIONS] PATH | URL | -")]
    Build(crate::build::BuildOpts),
    /// Attach local standard input, output, and error streams to a running container
    #[command(override_usage = "berth attach [OPTIONS] CONTAINER")]
    Attach(AttachArgs),
    /// Create a new image from a container's changes
    #[command(override_usage = "berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
    Commit(CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    #[command(
        override_usage = "berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
    )]
    Cp(CpArgs),
    /// Create a new container
    #[command(
        disable_help_flag = true,
        override_usage = "berth create [OPTIONS] IMAGE [COMMAND] [ARG...]"
    )]
    Create(CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    #[command(override_usage = "berth diff CONTAINER")]
    Diff(OneContainer),
    /// Get real time events from the server
    #[command(override_usage = "berth events [OPTIONS]")]
    Events(EventsArgs),
    /// Export a container's filesystem as a tar archive
    #[command(override_usage = "berth export [OPTIONS] CONTAINER")]
    Export(ExportArgs),
    /// Show the history of an image
    #[command(override_usage = "berth history [OPTIONS] IMAGE")]
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    #[command(override_usage = "berth import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")]
    Import(ImportArgs),
    /// Return low-level information on berth objects
    #[command(override_usage = "berth inspect [OPTIONS] NAME|ID [NAME|ID...]")]
    Inspect(crate::inspect::InspectArgs),
    /// Kill one or more running containers
    #[command(override_usage = "berth kill [OPTIONS] CONTAINER [CONTAINER...]")]
    Kill(KillArgs),
    /// Load an image from a tar archive or STDIN
    #[command(override_usage = "berth load [OPTIONS]")]
    Load(LoadArgs),
    /// Fetch the logs of a container
    #[command(override_usage = "berth logs [OPTIONS] CONTAINER")]
    Logs(LogsArgs),
    /// Pause all processes within one or more containers
    #[command(override_usage = "berth pause CONTAINER [CONTAINER...]")]
    Pause(Containers),
    /// List port mappings or a specific mapping for the container
    #[command(override_usage = "berth port CONTAINER [PRIVATE_PORT[/PROTO]]")]
    Port(PortArgs),
    /// Rename a container
    #[command(override_usage = "berth rename CONTAINER NEW_NAME")]
    Rename(RenameArgs),
    /// Restart one or more containers
    #[command(override_usage = "berth restart [OPTIONS] CONTAINER [CONTAINER...]")]
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(override_usage = "berth rm [OPTIONS] CONTAINER [CONTAINER...]")]
    Rm(RmArgs),
    /// Remove one or more images
    #[command(override_usage = "berth rmi [OPTIONS] IMAGE [IMAGE...]")]
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    #[command(override_usage = "berth save [OPTIONS] IMAGE [IMAGE...]")]
    Save(SaveArgs),
    /// Start one or more stopped containers
    #[command(override_usage = "berth start [OPTIONS] CONTAINER [CONTAINER...]")]
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    #[command(override_usage = "berth stats [OPTIONS] [CONTAINER...]")]
    Stats(StatsArgs),
    /// Stop one or more running containers
    #[command(override_usage = "berth stop [OPTIONS] CONTAINER [CONTAINER...]")]
    Stop(StopArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(override_usage = "berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")]
    Tag(TagArgs),
    /// Display the running processes of a container
    #[command(override_usage = "berth top CONTAINER [ps OPTIONS]")]
    Top(TopArgs),
    /// Unpause all processes within one or more containers
    #[command(override_usage = "berth unpause CONTAINER [CONTAINER...]")]
    Unpause(Containers),
    /// Update configuration of one or more containers
    #[command(override_usage = "berth update [OPTIONS] CONTAINER [CONTAINER...]")]
    Update(UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    #[command(override_usage = "berth wait CONTAINER [CONTAINER...]")]
    Wait(Containers),
}

/// How `berth --help` groups the commands (as docker's does).
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Common Commands",
        &[
            "run", "exec", "ps", "pull", "push", "images", "login", "logout", "search", "version",
            "info",
        ],
    ),
    (
        "Management Commands",
        &[
            "builder",
            "container",
            "context",
            "image",
            "system",
            "volume",
        ],
    ),
    (
        "Commands",
        &[
            "attach", "commit", "cp", "create", "diff", "events", "export", "history", "import",
            "inspect", "kill", "load", "logs", "pause", "port", "rename", "restart", "rm", "rmi",
            "save", "start", "stats", "stop", "tag", "top", "unpause", "update", "wait",
        ],
    ),
];

const LEAF_TEMPLATE: &str = "\nUsage:  {usage}\n\n{about}\n\nOptions:\n{options}\n";
const GROUP_TEMPLATE: &str =
    "\nUsage:  {usage}\n\n{about}\n\nCommands:\n{commands}\nRun '{name} COMMAND --help' for more information on a command.\n";

/// The parser with docker-like help layouts on every command.
pub fn command() -> clap::Command {
    fn templated(cmd: clap::Command, path: &str) -> clap::Command {
        let cmd = cmd.mut_subcommands(|s| {
            let p = format!("{path} {}", s.get_name());
            templated(s, &p)
        });
        if cmd.has_subcommands() {
            // docker's listing: names padded to 12 columns, aliases left out.
            let mut names: Vec<(String, String)> = cmd
                .get_subcommands()
                .map(|s| {
                    let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
                    (s.get_name().to_string(), about)
                })
                .collect();
            names.sort();
            let listing: String = names
                .iter()
                .map(|(n, a)| format!("  {n:<11} {a}\n"))
                .collect();
            cmd.help_template(
                GROUP_TEMPLATE
                    .replace("{name}", path)
                    .replace("{commands}", &listing),
            )
            .subcommand_required(true)
            .arg_required_else_help(true)
        } else {
            cmd.help_template(LEAF_TEMPLATE)
        }
    }
    let root = Cli::command();
    root.mut_subcommands(|s| {
        let p = format!("berth {}", s.get_name());
        templated(s, &p)
    })
}

/// `berth --help`: docker's layout.
pub fn root_help() -> String {
    let cmd = Cli::command();
    let about = |name: &str| {
        cmd.find_subcommand(name)
            .and_then(|s| s.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let mut out = String::from(
        "Usage:  berth [OPTIONS] COMMAND\n\nA self-sufficient runtime for containers\n",
    );
    for (group, names) in GROUPS {
        out.push_str(&format!("\n{group}:\n"));
        for n in *names {
            out.push_str(&format!("  {n:<11} {}\n", about(n)));
        }
    }
    out.push_str(&format!(
        "\nGlobal Options:\n      --config string      Location of client config files (default\n                           {:?})\n",
        crate::config::dir().display().to_string()
    ));
    out.push_str(
        "  -c, --context string     Name of the context to use to connect to the\n                           daemon (berth has one: \"default\")\n  -D, --debug              Enable debug mode\n  -H, --host string        Daemon socket to connect to\n  -l, --log-level string   Set the logging level (\"debug\", \"info\",\n                           \"warn\", \"error\", \"fatal\") (default \"info\")\n  -v, --version            Print version information and quit\n\nRun 'berth COMMAND --help' for more information on a command.\n",
    );
    out
}

/// Management commands' own verbs that docs/cli.md describes in full (the others
/// are the top-level commands under another name).
const MANAGEMENT_ONLY: &[(&str, &[&str])] = &[
    ("builder", &["prune"]),
    ("container", &["ls", "prune"]),
    ("context", &["inspect", "ls", "show", "use"]),
    ("image", &["inspect", "ls", "prune"]),
    (
        "network",
        &[
            "connect",
            "create",
            "disconnect",
            "inspect",
            "ls",
            "prune",
            "rm",
        ],
    ),
    ("system", &["df", "prune"]),
    ("volume", &["create", "inspect", "ls", "prune", "rm"]),
];

fn reference_section(out: &mut String, cmd: &clap::Command, path: &str) {
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let usage = cmd
        .get_overridden_usage()
        .map(|u| u.to_string().replace(['\n', '\t'], " "))
        .unwrap_or_else(|| path.to_string());
    let usage = usage.split_whitespace().collect::<Vec<_>>().join(" ");
    out.push_str(&format!("### `{path}`\n\n{about}. `{usage}`\n\n"));
    let flags: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set() && a.get_id() != "help")
        .collect();
    if flags.is_empty() {
        return;
    }
    out.push_str("| flag | what it does |\n|---|---|\n");
    for a in flags {
        let name = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) => continue,
        };
        let help = a
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('|', "\\|");
        out.push_str(&format!("| `{name}` | {help} |\n"));
    }
    out.push('\n');
}

/// The commands and flags, as docs/cli.md lists them (a test keeps the two equal).
pub fn reference() -> String {
    let mut root = Cli::command();
    // Deferred flags (every command's: `#[command(defer = true)]`) exist only in a
    // built command.
    root.build();
    let mut out = String::new();
    for (group, names) in GROUPS {
        out.push_str(&format!("## {group}\n\n"));
        for n in *names {
            let Some(cmd) = root.find_subcommand(n) else {
                continue;
            };
            if cmd.has_subcommands() {
                let verbs: Vec<String> = cmd
                    .get_subcommands()
                    .map(|s| format!("`{}`", s.get_name()))
                    .collect();
                out.push_str(&format!(
                    "### `berth {n}`\n\n{}. Verbs: {}.\n\n",
                    cmd.get_about().map(|a| a.to_string()).unwrap_or_default(),
                    verbs.join(", ")
                ));
                if let Some((_, own)) = MANAGEMENT_ONLY.iter().find(|(m, _)| m == n) {
                    for v in *own {
                        if let Some(sub) = cmd.find_subcommand(v) {
                            reference_section(&mut out, sub, &format!("berth {n} {v}"));
                        }
                    }
                }
                continue;
            }
            reference_section(&mut out, cmd, &format!("berth {n}"));
        }
    }
    out
}

/// The command names the arguments reach (`["berth", "container", "ls"]`), for
/// error messages.
fn command_path(root: &clap::Command, args: &[String]) -> Vec<String> {
    let mut path = vec!["berth".to_string()];
    let mut cur = root;
    let mut i = 1;
    let takes_value = [
        "-H",
        "--host",
        "--config",
        "-c",
        "--context",
        "-l",
        "--log-level",
    ];
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') {
            if takes_value.contains(&a.as_str()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        match cur.find_subcommand(a) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                cur = sub;
                if !cur.has_subcommands() {
                    break;
                }
            }
            None => break,
        }
        i += 1;
    }
    path
}

fn find<'a>(root: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    let mut cur = root;
    for p in path.iter().skip(1) {
        match cur.find_subcommand(p) {
            Some(s) => cur = s,
            None => break,
        }
    }
    cur
}

fn usage_of(cmd: &clap::Command, path: &[String]) -> String {
    cmd.get_overridden_usage()
        .map(|u| u.to_string())
        .unwrap_or_else(|| path.join(" "))
}

/// A clap error as docker words it, with its exit code.
fn parse_error(root: &clap::Command, args: &[String], e: &clap::Error) -> (String, i32) {
    let path = command_path(root, args);
    let cmd = find(root, &path);
    let name = path.join(" ");
    let usage = usage_of(cmd, &path);
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        _ => String::new(),
    };
    let positionals: Vec<&clap::Arg> = cmd.get_positionals().collect();
    // docker's wording for each kind of arity, and whether it says "See" or "Run".
    let arity = || {
        let required = positionals.iter().filter(|p| p.is_required_set()).count();
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let many = positionals
            .last()
            .is_some_and(|p| p.get_num_args().is_some_and(|n| n.max_values() > 1));
        if many {
            (
                format!("requires at least {required} {}", plural(required)),
                "See",
            )
        } else if required == positionals.len() {
            (format!("requires {required} {}", plural(required)), "Run")
        } else {
            (
                format!(
                    "requires at least {required} and at most {} {}",
                    positionals.len(),
                    plural(positionals.len())
                ),
                "Run",
            )
        }
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = ctx(ContextKind::InvalidArg);
            if let Some(long) = arg.strip_prefix("--") {
                let flag = long.split('=').next().unwrap_or(long);
                (
                    format!("unknown flag: --{flag}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information"),
                    125,
                )
            } else if let Some(short) = arg.strip_prefix('-') {
                let c = short.chars().next().unwrap_or('?');
                let token = args
                    .iter()
                    .skip(1)
                    .find(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c))
                    .cloned()
                    .unwrap_or(arg.clone());
                (
                    format!("unknown shorthand flag: '{c}' in {token}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information"),
                    125,
                )
            } else {
                let (what, verb) = if positionals.is_empty() {
                    ("accepts no arguments".to_string(), "Run")
                } else {
                    arity()
                };
                (
                    format!("berth: '{name}' {what}\n\nUsage:  {usage}\n\n{verb} '{name} --help' for more information"),
                    1,
                )
            }
        }
        ErrorKind::InvalidSubcommand => {
            let sub = ctx(ContextKind::InvalidSubcommand);
            if path.len() == 1 {
                (
                    format!("berth: unknown command: berth {sub}\n\nRun 'berth --help' for more information"),
                    1,
                )
            } else {
                (
                    format!("berth: unknown command: {name} {sub}\n\nUsage:  {name}\n\nRun '{name} --help' for more information"),
                    1,
                )
            }
        }
        ErrorKind::MissingRequiredArgument | ErrorKind::TooFewValues => {
            let (what, verb) = arity();
            (
                format!("berth: '{name}' {what}\n\nUsage:  {usage}\n\n{verb} '{name} --help' for more information"),
                1,
            )
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let flag = ctx(ContextKind::InvalidArg);
            let value = ctx(ContextKind::InvalidValue);
            let reason = e.source().map(|s| s.to_string()).unwrap_or_else(|| {
                let valid = ctx(ContextKind::ValidValue);
                if valid.is_empty() {
                    "invalid value".into()
                } else {
                    format!("must be one of {valid}")
                }
            });
            let flag = flag.split(' ').next().unwrap_or(&flag).to_string();
            let shown = match cmd.get_arguments().find(|a| {
                a.get_long().is_some_and(|l| flag == format!("--{l}"))
                    || a.get_short().is_some_and(|s| flag == format!("-{s}"))
            }) {
                Some(a) => match (a.get_short(), a.get_long()) {
                    (Some(s), Some(l)) => format!("-{s}, --{l}"),
                    (None, Some(l)) => format!("--{l}"),
                    (Some(s), None) => format!("-{s}"),
                    _ => flag.clone(),
                },
                None => flag.clone(),
            };
            if flag.starts_with('-') {
                (
                    format!("invalid argument \"{value}\" for \"{shown}\" flag: {reason}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information"),
                    125,
                )
            } else {
                (
                    format!("berth: invalid argument \"{value}\": {reason}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information"),
                    125,
                )
            }
        }
        _ => {
            let msg = e.to_string();
            let msg = msg.trim_start_matches("error: ").trim_end();
            (
                format!("{msg}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information"),
                125,
            )
        }
    }
}

use std::error::Error as _;

/// Parses the arguments and runs the command; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args_os()
        .map(|a: OsString| a.to_string_lossy().into_owned())
        .collect();
    let mut root = command();
    // `berth`, `berth --help` and `berth help`: docker's grouped help.
    let wants_help = args.len() == 1
        || (args.len() == 2 && matches!(args[1].as_str(), "--help" | "-h" | "help"));
    if wants_help {
        print!("{}", root_help());
        return 0;
    }
    let matches = match root.try_get_matches_from_mut(&args) {
        Ok(m) => m,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                return 0;
            }
            _ => {
                let (msg, code) = parse_error(&root, &args, &e);
                eprintln!("{msg}");
                return code;
            }
        },
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    if cli.version {
        println!(
            "berth version {}, build {}",
            env!("CARGO_PKG_VERSION"),
            option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")
        );
        return 0;
    }
    let Some(command) = cli.command else {
        print!("{}", root_help());
        return 0;
    };
    if let Some(dir) = &cli.config {
        crate::config::set_dir(dir.clone());
    }
    if let Some(ctx) = cli
        .context
        .as_deref()
        .filter(|c| !c.is_empty() && *c != "default")
    {
        eprintln!("berth: context \"{ctx}\" does not exist: berth has one context, \"default\"");
        return 1;
    }
    let host = pick_host(cli.host.as_deref());
    let fail_code = match &command {
        Command::Run(_) | Command::Container(ContainerCmd::Run(_)) => 125,
        _ => 1,
    };
    // One thread: a command waits on the daemon, never on its own CPU, and worker
    // threads cost a start of their own on every command.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: starting: {e}");
            return 1;
        }
    };
    let result = rt.block_on(dispatch(&host, command));
    let code = match result {
        Ok(code) => code,
        Err(e) => report(&e, fail_code),
    };
    // Pending stdin reads (blocking threads) must not keep the process alive.
    rt.shutdown_background();
    code
}

/// Prints an error as docker does and gives its exit code.
fn report(e: &anyhow::Error, fail_code: i32) -> i32 {
    if output_closed(e) {
        // `berth logs | head`: the reader went away. docker dies of SIGPIPE
        // quietly; the same code, and no message on a terminal that asked for none.
        return 141;
    }
    if let Some(s) = e.downcast_ref::<StatusError>() {
        if !s.message.is_empty() {
            eprintln!("{}", s.message);
        }
        return s.code;
    }
    match e.downcast_ref::<CliError>() {
        Some(CliError::Unreachable(_)) => {
            if fail_code == 125 {
                eprintln!("berth: {e}\n\nRun 'berth run --help' for more information");
            } else {
                eprintln!("berth: {e}");
            }
            fail_code
        }
        Some(_) => {
            eprintln!("{e}");
            1
        }
        None => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// Whether `e` is our own output's reader going away (EPIPE on a write that did
/// not go to the daemon: an error of the connection to it is hyper's).
fn output_closed(e: &anyhow::Error) -> bool {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken
        && !e
            .chain()
            .any(|c| c.downcast_ref::<hyper::Error>().is_some())
}

async fn dispatch(host: &str, command: Command) -> Result<i32> {
    // Commands that never need the engine.
    match command {
        Command::Logout(a) => crate::registry::logout(a).await,
        Command::Context(a) => crate::context::run(host, a),
        // The client's part is printed even when the engine cannot be reached.
        Command::Version(a) => match Client::connect(host).await {
            Ok(c) => crate::system::version(&c, a).await,
            Err(CliError::Unreachable(_)) => crate::system::version(&Client::new(host)?, a).await,
            Err(e) => Err(e.into()),
        },
        // No ping first: the API version is settled by the first request (see
        // `client`).
        command => run_command(&Client::new(host)?, command).await,
    }
}

async fn run_command(c: &Client, command: Command) -> Result<i32> {
    use crate::container::ContainerCmd as C;
    match command {
        Command::Run(a) => container::run(c, C::Run(a)).await,
        Command::Exec(a) => container::run(c, C::Exec(a)).await,
        Command::Ps(a) => container::run(c, C::Ls(a)).await,
        Command::Pull(a) => image::pull_cmd(c, a).await,
        Command::Push(a) => image::push_cmd(c, a).await,
        Command::Images(a) => image::images(c, a).await,
        Command::Login(a) => crate::registry::login(c, a).await,
        Command::Logout(a) => crate::registry::logout(a).await,
        Command::Search(a) => crate::registry::search(c, a).await,
        Command::Version(a) => crate::system::version(c, a).await,
        Command::Info(a) => crate::system::info(c, a).await,
        Command::Builder(a) => crate::builder::run(c, a).await,
        Command::Container(a) => container::run(c, a).await,
        Command::Context(a) => crate::context::run("", a),
        Command::Image(a) => image::run(c, a).await,
        Command::System(a) => crate::system::run(c, a).await,
        Command::Volume(a) => crate::volume::run(c, a).await,
        Command::Build(a) => crate::build::build(c, &a).await,
        Command::Network(a) => crate::network::run(c, a).await,
        Command::Attach(a) => container::run(c, C::Attach(a)).await,
        Command::Commit(a) => container::run(c, C::Commit(a)).await,
        Command::Cp(a) => container::run(c, C::Cp(a)).await,
        Command::Create(a) => container::run(c, C::Create(a)).await,
        Command::Diff(a) => container::run(c, C::Diff(a)).await,
        Command::Events(a) => crate::system::events(c, a).await,
        Command::Export(a) => container::run(c, C::Export(a)).await,
        Command::History(a) => image::history(c, a).await,
        Command::Import(a) => image::import(c, a).await,
        Command::Inspect(a) => crate::inspect::inspect(c, a).await,
        Command::Kill(a) => container::run(c, C::Kill(a)).await,
        Command::Load(a) => image::load(c, a).await,
        Command::Logs(a) => container::run(c, C::Logs(a)).await,
        Command::Pause(a) => container::run(c, C::Pause(a)).await,
        Command::Port(a) => container::run(c, C::Port(a)).await,
        Command::Rename(a) => container::run(c, C::Rename(a)).await,
        Command::Restart(a) => container::run(c, C::Restart(a)).await,
        Command::Rm(a) => container::run(c, C::Rm(a)).await,
        Command::Rmi(a) => image::rmi(c, a).await,
        Command::Save(a) => image::save(c, a).await,
        Command::Start(a) => container::run(c, C::Start(a)).await,
        Command::Stats(a) => container::run(c, C::Stats(a)).await,
        Command::Stop(a) => container::run(c, C::Stop(a)).await,
        Command::Tag(a) => image::tag(c, a).await,
        Command::Top(a) => container::run(c, C::Top(a)).await,
        Command::Unpause(a) => container::run(c, C::Unpause(a)).await,
        Command::Update(a) => container::run(c, C::Update(a)).await,
        Command::Wait(a) => container::run(c, C::Wait(a)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: &[&str]) -> (String, i32) {
        let mut root = command();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let e = root.try_get_matches_from_mut(&args).unwrap_err();
        parse_error(&root, &args, &e)
    }

    #[test]
    fn the_parser_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn parse_errors_read_like_dockers() {
        assert_eq!(
            err(&["berth", "ps", "--x"]),
            ("unknown flag: --x\n\nUsage:  berth ps [OPTIONS]\n\nRun 'berth ps --help' for more information".into(), 125)
        );
        assert_eq!(
            err(&["berth", "ps", "-z"]).0,
            "unknown shorthand flag: 'z' in -z\n\nUsage:  berth ps [OPTIONS]\n\nRun 'berth ps --help' for more information"
        );
        assert_eq!(
            err(&["berth", "foo"]),
            (
                "berth: unknown command: berth foo\n\nRun 'berth --help' for more information"
                    .into(),
                1
            )
        );
        assert_eq!(
            err(&["berth", "wait"]),
            ("berth: 'berth wait' requires at least 1 argument\n\nUsage:  berth wait CONTAINER [CONTAINER...]\n\nSee 'berth wait --help' for more information".into(), 1)
        );
        assert_eq!(err(&["berth", "ps", "a"]).1, 1);
        assert!(err(&["berth", "ps", "a"])
            .0
            .starts_with("berth: 'berth ps' accepts no arguments"));
        assert_eq!(err(&["berth", "container", "foo"]).1, 1);
        assert!(err(&["berth", "container", "foo"])
            .0
            .starts_with("berth: unknown command: berth container foo"));
        let (m, code) = err(&["berth", "run", "-m", "abc", "busybox"]);
        assert_eq!(code, 125);
        assert!(
            m.starts_with(
                "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'"
            ),
            "{m}"
        );
        assert!(err(&["berth", "rename", "a"])
            .0
            .starts_with("berth: 'berth rename' requires 2 arguments\n\nUsage:  berth rename CONTAINER NEW_NAME\n\nRun 'berth rename --help'"));
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let m = command()
            .try_get_matches_from(["berth", "run", "-it", "--rm", "busybox", "ls", "-l", "--x"])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Some(Command::Run(r)) = cli.command else {
            panic!()
        };
        assert!(r.create.interactive && r.create.tty && r.create.rm);
        assert_eq!(r.create.command, vec!["ls", "-l", "--x"]);
        assert!(r.sig_proxy);
        let m = command()
            .try_get_matches_from(["berth", "run", "--sig-proxy=false", "-d", "busybox"])
            .unwrap();
        let Some(Command::Run(r)) = Cli::from_arg_matches(&m).unwrap().command else {
            panic!()
        };
        assert!(!r.sig_proxy && r.detach);
    }

    /// docs/cli.md's reference part is generated from the parser; rewrite it with
    /// `BERTH_UPDATE_DOCS=1 cargo test -p berth-cli --lib docs_list_every_command`.
    #[test]
    fn docs_list_every_command_and_flag() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (start, end) = (
            "<!-- reference: generated -->\n",
            "<!-- end of reference -->",
        );
        let want = reference();
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            panic!("docs/cli.md has no generated reference section");
        };
        let have = &doc[a + start.len()..b];
        if have != want {
            if std::env::var_os("BERTH_UPDATE_DOCS").is_some() {
                let new = format!("{}{start}{want}{}", &doc[..a], &doc[b..]);
                std::fs::write(&path, new).unwrap();
                return;
            }
            panic!("docs/cli.md is out of date: run BERTH_UPDATE_DOCS=1 cargo test -p berth-cli --lib docs_list_every_command");
        }
    }

    #[test]
    fn help_groups_like_docker() {
        let h = root_help();
        assert!(h.contains(
            "\nCommon Commands:\n  run         Create and run a new container from an image\n"
        ));
        assert!(h.contains("\nManagement Commands:\n  builder     Manage builds\n"));
        assert!(h.contains(
            "  wait        Block until one or more containers stop, then print their exit codes\n"
        ));
        assert!(h.contains("\nGlobal Options:\n"));
    }
}
