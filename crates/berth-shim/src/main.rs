//! `berth-shim`: parse the command line and run the shim (see the library docs).

use berth_shim::cli::CliError;

fn main() -> std::process::ExitCode {
    let args = match berth_shim::Args::from_env() {
        Ok(a) => a,
        Err(CliError::Help) => {
            print!("{}", berth_shim::cli::USAGE);
            return std::process::ExitCode::SUCCESS;
        }
        Err(CliError::Version) => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("berth-shim: {e}\n\nFor more information, try '--help'.");
            return std::process::ExitCode::from(2);
        }
    };
    // Read once: the runtime and hooks the shim starts need not see them. The
    // process has one thread here.
    for var in [
        berth_shim::cli::ENV_ID,
        berth_shim::cli::ENV_BUNDLE,
        berth_shim::cli::ENV_SOCKET,
    ] {
        std::env::remove_var(var);
    }
    match berth_shim::server::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
