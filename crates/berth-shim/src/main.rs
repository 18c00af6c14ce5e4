//! `berth-shim`: parse the command line and run the shim (see the library docs).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = berth_shim::Args::parse();
    match berth_shim::server::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
