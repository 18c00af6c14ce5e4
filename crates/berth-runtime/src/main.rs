//! The `berth-runtime` binary: parse runc's command line and dispatch.

use std::process::ExitCode;

use berth_runtime::cli::{self, Cli, Command};
use berth_runtime::{commands, logger, selfexe};
use clap::FromArgMatches;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(root) = cli::sealing_root(&args) {
        // A failure here is reported below, where the logger is set up: the
        // parsed command tries again.
        let _ = selfexe::ensure_sealed(&root);
    }
    let cmd = cli::command();
    if let Some(word) = cli::unknown_command(&cmd, &args) {
        eprintln!("No help topic for '{word}'");
        return ExitCode::from(3);
    }
    let cli = match cmd
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logger::init(cli.log.clone(), cli.log_format, cli.debug);
    if cli.version {
        print!("{}", commands::features::version_text());
        return ExitCode::SUCCESS;
    }
    let Some(command) = &cli.command else {
        eprintln!("berth-runtime: no command given (see --help)");
        return ExitCode::from(2);
    };
    if matches!(
        command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        if let Err(e) = selfexe::ensure_sealed(&cli.root) {
            logger::error(&format!("re-executing from a sealed copy: {e}"));
            return ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Create(a) => commands::create::run(&cli, a),
        Command::Start(a) => commands::start::run(&cli, a),
        Command::Run(a) => commands::run::run(&cli, a),
        Command::Exec(a) => commands::exec::run(&cli, a),
        Command::State(a) => commands::state::run(&cli, a),
        Command::Kill(a) => commands::kill::run(&cli, a),
        Command::Delete(a) => commands::delete::run(&cli, a),
        Command::List(a) => commands::list::run(&cli, a),
        Command::Ps(a) => commands::ps::run(&cli, a),
        Command::Spec(a) => commands::spec::run(&cli, a),
        Command::Features => commands::features::run(&cli),
        Command::Pause(a) => commands::pause::pause(&cli, a),
        Command::Resume(a) => commands::pause::resume(&cli, a),
        Command::Update(a) => commands::update::run(&cli, a),
        Command::Events(a) => commands::events::run(&cli, a),
        Command::Checkpoint(_) | Command::Restore(_) => Err(anyhow::anyhow!(
            "checkpoint/restore is not supported by berth-runtime"
        )),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            logger::error(&logger::one_line(&*e));
            ExitCode::FAILURE
        }
    }
}
