//! `berth-manager`: the manager daemon. Parses the command line and runs the daemon
//! (see [`daemon`]): content, images, snapshots, containers and tasks over gRPC on a
//! unix socket.

mod daemon;

fn main() -> std::process::ExitCode {
    daemon::main()
}
