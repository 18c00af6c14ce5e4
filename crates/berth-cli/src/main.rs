//! The `berth` command.

fn main() {
    std::process::exit(berth_cli::cli::main());
}
