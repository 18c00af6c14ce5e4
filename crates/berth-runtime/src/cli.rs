//! runc's command line, as clap structs. Nothing here acts: `main.rs` dispatches
//! each subcommand to `commands::*`. Flag names and defaults follow runc because
//! Docker, containerd and podman call the runtime with exactly these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default directory for container state, one subdirectory per container.
pub const DEFAULT_ROOT: &str = "/run/berth/runtime";

/// `-h` of the binary, in runc's layout (NAME, USAGE, COMMANDS, GLOBAL OPTIONS).
/// Scripts written for runc read the second line, so it names runc's role.
const ROOT_HELP: &str = "\
NAME:
   {bin} - an implementation of runc - Open Container Initiative runtime

USAGE:
   {usage}

DESCRIPTION:
   berth's OCI runtime. It has runc's command line, so that containerd, Docker,
   podman and berth's own shim can drive it the way they drive runc.

COMMANDS:
{subcommands}

GLOBAL OPTIONS:
{options}
";

/// `-h` of every command, in runc's layout; the NAME line says which runc
/// command it stands for.
fn command_help(name: &str) -> String {
    format!(
        "\
NAME:
   berth-runtime {name} - {{about}} (as runc {name})

USAGE:
   {{usage}}

{{all-args}}
"
    )
}

/// The clap command with runc's help layout on the binary and every command.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .help_template(ROOT_HELP)
        .mut_subcommands(|c| {
            let help = command_help(c.get_name());
            c.help_template(help)
        })
}

/// The state root of a plain `create`, `run` or `exec` command line: one where
/// only global options come before the command. The runtime re-executes from
/// a sealed copy (selfexe) before it parses anything, so that clap builds its
/// commands once, in the copy. None when the line is not that plain; the
/// parsed command then decides (so this can only add a re-execution, never
/// skip one).
pub fn sealing_root(args: &[String]) -> Option<PathBuf> {
    const WITH_VALUE: [&str; 4] = ["--log", "--log-format", "--criu", "--rootless"];
    let mut root = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "create" | "run" | "exec" => {
                return Some(root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)))
            }
            "--root" => root = Some(PathBuf::from(it.next()?)),
            "--debug" | "--systemd-cgroup" => {}
            a if WITH_VALUE.contains(&a) => {
                it.next()?;
            }
            a => match a.strip_prefix("--root=") {
                Some(r) => root = Some(PathBuf::from(r)),
                None if WITH_VALUE
                    .iter()
                    .any(|w| a.strip_prefix(w).is_some_and(|v| v.starts_with('='))) => {}
                None => return None,
            },
        }
    }
    None
}

/// The first word of `args` (after the program name and the global options)
/// when it is not a command of `cmd` (`command()`): runc answers
/// `No help topic for 'WORD'`.
pub fn unknown_command(cmd: &clap::Command, args: &[String]) -> Option<String> {
    let with_value: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            return None;
        }
        if a.starts_with('-') {
            if !a.contains('=') && with_value.iter().any(|w| w == a) {
                it.next();
            }
            continue;
        }
        let known = a == "help" || cmd.get_subcommands().any(|c| c.get_name() == a);
        return (!known).then(|| a.clone());
    }
    None
}

#[derive(Debug, Parser)]
#[command(
    name = "berth-runtime",
    about = "berth's OCI runtime (runc-compatible command line)",
    disable_version_flag = true
)]
pub struct Cli {
    /// Root directory for storage of container state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write runtime errors and debug messages to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log: text or json (logrus-style lines, as containerd reads them).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility: `slice:prefix:name` cgroup paths are mapped onto
    /// cgroupfs (`/slice/prefix-name.scope`) without talking to systemd.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility with runc; rootless mode is detected, not asked for.
    #[arg(long, global = true, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// Accepted for compatibility with runc; checkpoint/restore is not supported.
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container: everything is prepared and the init waits for `start`.
    Create(CreateArgs),
    /// Release a created container's init to exec the user's process.
    Start(IdArg),
    /// Create and start a container; without --detach, wait for it and delete it.
    Run(RunArgs),
    /// Print the state of a container as the OCI spec's state JSON.
    State(IdArg),
    /// Send a signal to the container's init (or every process with --all).
    Kill(KillArgs),
    /// Delete a container's state, cgroup and process.
    Delete(DeleteArgs),
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List the containers under --root.
    List(ListArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Write a default config.json into the bundle.
    Spec(SpecArgs),
    /// Print the features this runtime supports, as JSON.
    Features,
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change the resources of a running container.
    #[command(allow_negative_numbers = true)]
    Update(UpdateArgs),
    /// Print container events (OOM kills, or stats with --stats) as JSON lines.
    Events(EventsArgs),
    /// Not supported: checkpoint/restore needs CRIU.
    Checkpoint(IdArg),
    /// Not supported: checkpoint/restore needs CRIU.
    Restore(IdArg),
}

#[derive(Debug, Args)]
pub struct IdArg {
    pub id: String,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Path to the bundle (the directory holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when the process has a terminal.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's host pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for ramdisk roots, where pivot_root fails).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (from fd 3 on) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Detach from the container's process.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground run only).
    #[arg(long)]
    pub keep: bool,
    /// Do not become a subreaper (accepted for runc compatibility).
    #[arg(long)]
    pub no_subreaper: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Send the signal to every process in the container, not just its init.
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    /// Signal name (TERM, SIGTERM) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment variables (KEY=VALUE), repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids, repeatable.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// A process.json (the spec's process object) instead of the command line.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Detach from the process; the runtime exits once it runs.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (no SELinux support).
    #[arg(long)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility (no AppArmor support).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Capabilities to add, repeatable.
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even when the container is paused.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run in an existing sub-cgroup of the container's:
    /// `[controller[,controller]:]path`, repeatable (one per controller).
    #[arg(long)]
    pub cgroup: Vec<String>,
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    pub id: String,
    /// Options passed to ps(1), e.g. `-o pid,ppid,comm`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Debug, Args, Default)]
pub struct UpdateArgs {
    /// resources.json (the spec's linux.resources object); `-` reads stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight); runc spells it --cpu-share.
    #[arg(long, visible_alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit in bytes (suffixes k, m, g accepted).
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events, e.g. 5s, 500ms.
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(line: &str) -> Option<PathBuf> {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        sealing_root(&args)
    }

    #[test]
    fn sealing_root_reads_only_plain_command_lines() {
        assert_eq!(root("rt run -b b id"), Some(PathBuf::from(DEFAULT_ROOT)));
        assert_eq!(root("rt --root /r create id"), Some(PathBuf::from("/r")));
        assert_eq!(
            root("rt --debug --log /l --log-format=json --root=/r exec id sh"),
            Some(PathBuf::from("/r"))
        );
        // Not create/run/exec, or not plain: the parsed command decides.
        assert_eq!(root("rt --root /r state id"), None);
        assert_eq!(root("rt --root"), None);
        assert_eq!(root("rt --unknown run id"), None);
        assert_eq!(root("rt -v"), None);
    }
}
