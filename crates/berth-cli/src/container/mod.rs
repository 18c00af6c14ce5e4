//! `berth container ...` and its top-level shortcuts (`run`, `ps`, `stop`, ...): one
//! argument struct per verb, shared by both spellings, as docker's CLI shares them.

mod cp;
mod list;
mod ops;
pub mod opts;
pub mod run;

use anyhow::Result;
use clap::{ArgAction, Args, Subcommand};

use crate::client::Client;
pub use ops::{print_deleted, print_inspect, save_body};
pub use opts::CreateFlags;

/// What `--format` means, for the help texts.
pub const FORMAT_HELP: &str = "Format output using a custom template: 'table' (the default), 'table TEMPLATE', 'json', or a Go template";

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub create: CreateFlagsWithHelp,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub create: CreateFlagsWithHelp,
}

/// [`CreateFlags`] with `run`'s and `create`'s own `--help`. Its 86 flags are built
/// only for the command being parsed, as every command's are: each `Subcommand` enum
/// is `#[command(defer = true)]`, and building every command's flags on each start
/// of the CLI was most of its time (about 1.5 ms of every command, `run` included).
#[derive(Debug, Clone)]
pub struct CreateFlagsWithHelp(pub CreateFlags);

impl std::ops::Deref for CreateFlagsWithHelp {
    type Target = CreateFlags;
    fn deref(&self) -> &CreateFlags {
        &self.0
    }
}

impl std::ops::DerefMut for CreateFlagsWithHelp {
    fn deref_mut(&mut self) -> &mut CreateFlags {
        &mut self.0
    }
}

impl clap::FromArgMatches for CreateFlagsWithHelp {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        CreateFlags::from_arg_matches(m).map(CreateFlagsWithHelp)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

/// `-h` is `--hostname` here, so `--help` is this command's own, listed where it is
/// added. The command's flags are added when it is parsed, after its parent copied
/// the root's global (hidden) `--help` into it: that one is made this one rather
/// than added twice.
fn create_help(cmd: clap::Command) -> clap::Command {
    let place = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_global_set())
        .count();
    let help = move |a: clap::Arg| {
        a.long("help")
            .action(ArgAction::Help)
            .global(false)
            .hide(false)
            .display_order(place)
            .help("Print usage (-h is --hostname, as in docker)")
    };
    if cmd.get_arguments().any(|a| a.get_id() == "help") {
        cmd.mut_arg("help", help)
    } else {
        cmd.arg(help(clap::Arg::new("help")))
    }
}

/// The flags' structs carry doc comments, which clap takes for the about text of
/// the command they are added to; added when the command is parsed, they come after
/// the command's own.
fn keeping_about(cmd: clap::Command, add: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let cmd = add(cmd);
    let cmd = match about {
        Some(a) => cmd.about(a),
        None => cmd,
    };
    match long_about {
        Some(a) => cmd.long_about(a),
        None => cmd,
    }
}

impl Args for CreateFlagsWithHelp {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        keeping_about(create_help(cmd), CreateFlags::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        keeping_about(create_help(cmd), CreateFlags::augment_args_for_update)
    }
}

#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args, Clone)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args, Clone)]
pub struct Containers {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// ps options (default -ef)
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct OneContainer {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Args, Clone)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "SRC")]
    pub src: String,
    #[arg(value_name = "DEST")]
    pub dest: String,
}

#[derive(Debug, Args, Clone)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long, value_parser = opts::parse_nano_cpus)]
    pub cpus: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_parser = opts::parse_ram)]
    pub memory: Option<i64>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_parser = opts::parse_ram)]
    pub memory_reservation: Option<i64>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pause: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `berth container ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ContainerCmd {
    /// Attach local standard input, output, and error streams to a running container
    #[command(override_usage = "berth container attach [OPTIONS] CONTAINER")]
    Attach(AttachArgs),
    /// Create a new image from a container's changes
    #[command(override_usage = "berth container commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
    Commit(CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    #[command(
        override_usage = "berth container cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n        berth container cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
    )]
    Cp(CpArgs),
    /// Create a new container
    #[command(
        disable_help_flag = true,
        override_usage = "berth container create [OPTIONS] IMAGE [COMMAND] [ARG...]"
    )]
    Create(CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    #[command(override_usage = "berth container diff CONTAINER")]
    Diff(OneContainer),
    /// Execute a command in a running container
    #[command(override_usage = "berth container exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
    Exec(ExecArgs),
    /// Export a container's filesystem as a tar archive
    #[command(override_usage = "berth container export [OPTIONS] CONTAINER")]
    Export(ExportArgs),
    /// Display detailed information on one or more containers
    #[command(override_usage = "berth container inspect [OPTIONS] CONTAINER [CONTAINER...]")]
    Inspect(InspectArgs),
    /// Kill one or more running containers
    #[command(override_usage = "berth container kill [OPTIONS] CONTAINER [CONTAINER...]")]
    Kill(KillArgs),
    /// Fetch the logs of a container
    #[command(override_usage = "berth container logs [OPTIONS] CONTAINER")]
    Logs(LogsArgs),
    /// List containers
    #[command(visible_aliases = ["list", "ps"], override_usage = "berth container ls [OPTIONS]")]
    Ls(PsArgs),
    /// Pause all processes within one or more containers
    #[command(override_usage = "berth container pause CONTAINER [CONTAINER...]")]
    Pause(Containers),
    /// List port mappings or a specific mapping for the container
    #[command(override_usage = "berth container port CONTAINER [PRIVATE_PORT[/PROTO]]")]
    Port(PortArgs),
    /// Remove all stopped containers
    #[command(override_usage = "berth container prune [OPTIONS]")]
    Prune(PruneArgs),
    /// Rename a container
    #[command(override_usage = "berth container rename CONTAINER NEW_NAME")]
    Rename(RenameArgs),
    /// Restart one or more containers
    #[command(override_usage = "berth container restart [OPTIONS] CONTAINER [CONTAINER...]")]
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(
        visible_alias = "remove",
        override_usage = "berth container rm [OPTIONS] CONTAINER [CONTAINER...]"
    )]
    Rm(RmArgs),
    /// Create and run a new container from an image
    #[command(
        disable_help_flag = true,
        override_usage = "berth container run [OPTIONS] IMAGE [COMMAND] [ARG...]"
    )]
    Run(RunArgs),
    /// Start one or more stopped containers
    #[command(override_usage = "berth container start [OPTIONS] CONTAINER [CONTAINER...]")]
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    #[command(override_usage = "berth container stats [OPTIONS] [CONTAINER...]")]
    Stats(StatsArgs),
    /// Stop one or more running containers
    #[command(override_usage = "berth container stop [OPTIONS] CONTAINER [CONTAINER...]")]
    Stop(StopArgs),
    /// Display the running processes of a container
    #[command(override_usage = "berth container top CONTAINER [ps OPTIONS]")]
    Top(TopArgs),
    /// Unpause all processes within one or more containers
    #[command(override_usage = "berth container unpause CONTAINER [CONTAINER...]")]
    Unpause(Containers),
    /// Update configuration of one or more containers
    #[command(override_usage = "berth container update [OPTIONS] CONTAINER [CONTAINER...]")]
    Update(UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    #[command(override_usage = "berth container wait CONTAINER [CONTAINER...]")]
    Wait(Containers),
}

/// Runs one container verb; returns the exit code.
pub async fn run(c: &Client, cmd: ContainerCmd) -> Result<i32> {
    match cmd {
        ContainerCmd::Attach(a) => run::attach(c, a).await,
        ContainerCmd::Commit(a) => ops::commit(c, a).await,
        ContainerCmd::Cp(a) => cp::cp(c, a).await,
        ContainerCmd::Create(a) => run::create(c, a).await,
        ContainerCmd::Diff(a) => ops::diff(c, a).await,
        ContainerCmd::Exec(a) => run::exec(c, a).await,
        ContainerCmd::Export(a) => ops::export(c, a).await,
        ContainerCmd::Inspect(a) => ops::inspect(c, a).await,
        ContainerCmd::Kill(a) => ops::kill(c, a).await,
        ContainerCmd::Logs(a) => ops::logs(c, a).await,
        ContainerCmd::Ls(a) => list::ps(c, a).await,
        ContainerCmd::Pause(a) => ops::pause(c, a, true).await,
        ContainerCmd::Port(a) => ops::port(c, a).await,
        ContainerCmd::Prune(a) => ops::prune(c, a).await,
        ContainerCmd::Rename(a) => ops::rename(c, a).await,
        ContainerCmd::Restart(a) => ops::restart(c, a).await,
        ContainerCmd::Rm(a) => ops::rm(c, a).await,
        ContainerCmd::Run(a) => run::run(c, a).await,
        ContainerCmd::Start(a) => run::start(c, a).await,
        ContainerCmd::Stats(a) => ops::stats(c, a).await,
        ContainerCmd::Stop(a) => ops::stop(c, a).await,
        ContainerCmd::Top(a) => ops::top(c, a).await,
        ContainerCmd::Unpause(a) => ops::pause(c, a, false).await,
        ContainerCmd::Update(a) => ops::update(c, a).await,
        ContainerCmd::Wait(a) => run::wait(c, a).await,
    }
}
