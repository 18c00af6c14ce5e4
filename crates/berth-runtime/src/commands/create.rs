//! `berth-runtime create [--bundle B] [--pid-file P] [--console-socket S]
//! [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID`: validate the bundle,
//! then create the container; its init waits on exec.fifo until `start`.
//!
//! The container's stdio is this process's stdio (runc's pass-through mode): a
//! caller that reads our stdout through a pipe sees end of file only when the
//! container closes it too.

use crate::cli::{Cli, CreateArgs};
use crate::process::parent::CreateOptions;
use crate::Container;

pub fn run(cli: &Cli, args: &CreateArgs) -> anyhow::Result<i32> {
    Container::create(options(cli, args, false))?;
    Ok(0)
}

/// The options of `create` (and of `run`, which may relay a terminal itself).
pub fn options(cli: &Cli, args: &CreateArgs, relay_console: bool) -> CreateOptions {
    CreateOptions {
        id: args.id.clone(),
        root: cli.root.clone(),
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: args.preserve_fds,
        systemd_cgroup: cli.systemd_cgroup,
        relay_console,
    }
}
