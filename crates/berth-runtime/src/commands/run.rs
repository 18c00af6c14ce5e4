//! `berth-runtime run [--detach] [--keep] ...`: create and start. In the
//! foreground the runtime stays: it is the subreaper of the container's init
//! (made so before forking, so that the init is reparented to it when the
//! intermediate exits), forwards signals to it, relays its terminal when there is
//! no console socket, exits with its exit code (128 + signal when it was
//! killed), and deletes the container afterwards unless --keep.

use crate::cli::{Cli, RunArgs};
use crate::logger;
use crate::process::{parent, wait, ProcessError};

pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<i32> {
    let foreground = !args.detach;
    let opts = super::create::options(cli, &args.create, foreground);
    let prepared = parent::prepare(opts).map_err(super::create::one_line)?;
    if foreground {
        // --no-subreaper is accepted but cannot be honoured: waiting for the
        // init requires it to be our child.
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| ProcessError::Sys {
            what: "become a child subreaper",
            source,
        })?;
    }
    let created = match parent::create(prepared) {
        Ok(c) => c,
        Err(e) if e.exit_code() != 1 => {
            logger::error(&e.to_string());
            return Ok(e.exit_code());
        }
        Err(e) => return Err(super::create::one_line(e)),
    };
    let state = created.state;
    if let Err(e) = super::start::start_container(cli, &state) {
        if let Err(d) = super::delete::destroy(cli, &state) {
            logger::warn(&format!("cleaning up after a failed start: {d:#}"));
        }
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait::wait_foreground(
        nix::unistd::Pid::from_raw(state.init_process_pid),
        created.console_master,
    );
    if !args.keep {
        super::delete::destroy(cli, &state)?;
    }
    code.map_err(super::create::one_line)
}
