//! The `berth` command.

use berth_cli::client::{pick_host, CliError, Client};
use berth_cli::commands::{self, Command};
use clap::Parser;

/// berth: run and manage containers through berthd (docker's verbs and flags).
#[derive(Debug, Parser)]
#[command(name = "berth", version, disable_help_subcommand = true)]
struct Cli {
    /// The engine's socket (unix://PATH); default BERTH_HOST, then DOCKER_HOST, then
    /// unix:///run/berth/berth.sock.
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

fn engine_error_code(cmd: &Command) -> i32 {
    // docker exits 125 when the engine refuses run/create; other verbs exit 1.
    match cmd {
        Command::Run { .. } | Command::Create(_) => 125,
        _ => 1,
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let host = pick_host(cli.host.as_deref());
    let fail_code = engine_error_code(&cli.command);
    let code = match Client::connect(&host).await {
        Err(e) => {
            eprintln!("berth: {e}");
            fail_code
        }
        Ok(client) => match commands::run(&client, cli.command).await {
            Ok(code) => code,
            Err(e) => {
                match e.downcast_ref::<CliError>() {
                    Some(CliError::Unreachable(_)) => eprintln!("berth: {e}"),
                    Some(_) => eprintln!("{e}"),
                    None => eprintln!("berth: {e:#}"),
                }
                fail_code
            }
        },
    };
    std::process::exit(code);
}
