//! `berth-shim`: parse the command line and run the shim (see the library docs).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = berth_shim::Args::parse();
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
