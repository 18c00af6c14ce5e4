//! `berth-runtime run [--detach] [--keep] ...`: create and start. In the
//! foreground the runtime stays: it is the subreaper of the container's init
//! (made so before forking, so that the init is reparented to it when the
//! intermediate exits), forwards signals to it, relays its terminal when there is
//! no console socket, exits with its exit code (128 + signal when it was
//! killed), and deletes the container afterwards unless --keep.

use crate::cli::{Cli, RunArgs};
use crate::process::{wait, ProcessError};
use crate::{logger, Container, Error};

pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<i32> {
    let foreground = !args.detach;
    if foreground {
        // --no-subreaper is accepted but cannot be honoured: waiting for the
        // init requires it to be our child.
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| ProcessError::Sys {
            what: "become a child subreaper",
            source,
        })?;
        // A signal sent to us once the container runs is for the container;
        // it must not kill us before wait_foreground forwards it.
        wait::block_forwarded()?;
    }
    let created = match Container::create(super::create::options(cli, &args.create, foreground)) {
        Ok(c) => c,
        // A missing or non-executable program: say so and exit like a shell.
        Err(e) if e.exit_code() != 1 => {
            logger::error(&e.to_string());
            return Ok(e.exit_code());
        }
        Err(e) => return Err(e.into()),
    };
    let c = created.container;
    if let Err(e) = c.start() {
        if let Err(d) = c.destroy() {
            logger::warn(&format!("cleaning up after a failed start: {d}"));
        }
        return Err(e.into());
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait::wait_foreground(
        nix::unistd::Pid::from_raw(c.state().init_process_pid),
        created.console_master,
    );
    if !args.keep {
        c.destroy()?;
    }
    Ok(code.map_err(Error::from)?)
}
