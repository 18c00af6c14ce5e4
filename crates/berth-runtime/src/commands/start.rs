//! `berth-runtime start ID`: release a created container's init. Opening
//! exec.fifo for reading unblocks the init's open for writing; the byte it writes
//! says it is about to execve. The fifo is then removed (the container is now
//! "running") and the poststart hooks run.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cli::{Cli, IdArg};
use crate::logger;
use crate::state::{self, State, Status};

pub fn run(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    let state = State::load(&cli.root, &args.id)?;
    start_container(cli, &state)?;
    Ok(0)
}

/// Start a created container (shared with `run`).
pub fn start_container(cli: &Cli, state: &State) -> anyhow::Result<()> {
    let status = state.status(&cli.root);
    if status != Status::Created {
        anyhow::bail!("container {} is not in created state ({status})", state.id);
    }
    let fifo = state.dir(&cli.root).join(state::EXEC_FIFO);
    // Non-blocking: an init that died would otherwise leave us blocked forever
    // in open(2) or read(2); we poll and check that it is alive instead.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .with_context(|| format!("open {}", fifo.display()))?;
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll exec.fifo"),
        }
        let mut byte = [0u8; 1];
        match nix::unistd::read(f.as_fd(), &mut byte) {
            Ok(1..) => break,
            // A writer came and went without a byte: the init died.
            Ok(0)
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLHUP)) =>
            {
                anyhow::bail!(
                    "container {}: its init exited before it was started",
                    state.id
                )
            }
            Ok(0) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("read exec.fifo"),
        }
        if !state.init_alive() {
            anyhow::bail!(
                "container {}: its init exited before it was started",
                state.id
            );
        }
    }
    std::fs::remove_file(&fifo).with_context(|| format!("remove {}", fifo.display()))?;
    if let Some(list) = state
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        let mut oci = state.oci_state(&cli.root);
        oci.status = Status::Running;
        // The spec: a failing poststart hook is a warning; the container runs on.
        if let Err(e) = crate::hooks::run(&list, &oci) {
            logger::warn(&format!("poststart hook: {e}"));
        }
    }
    Ok(())
}
