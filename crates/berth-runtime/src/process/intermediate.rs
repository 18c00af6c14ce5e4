//! The intermediate process (`berth:[1:INTER]`): it enters or creates the
//! container's namespaces and forks the init into them. See `process/mod.rs` for
//! why it exists.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::LinuxNamespaceType;

use super::channel::{Channel, ChildFailure};
use super::parent::Prepared;
use super::{fork_child, init, ProcessError};
use crate::namespaces;

/// Run the intermediate's steps; the return value is its exit code.
pub(super) fn run(p: &Prepared, to_parent: &Channel, init_channel: &Channel, fifo: RawFd) -> i32 {
    match steps(p, to_parent, init_channel, fifo) {
        Ok(()) => 0,
        Err(f) => {
            to_parent.failed(f);
            1
        }
    }
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ChildFailure {
    move |e| ChildFailure::setup(format!("{what}: {e}"))
}

fn steps(
    p: &Prepared,
    to_parent: &Channel,
    init_channel: &Channel,
    fifo: RawFd,
) -> Result<(), ChildFailure> {
    // runc's words for this stage, which scripts written for runc grep for.
    crate::logger::debug("nsexec container setup: the intermediate enters the namespaces");
    // If the runtime dies, nobody would write our maps or collect our child.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(fail("set the parent death signal"))?;

    // The cgroup first: a new cgroup namespace is rooted where we are when it
    // is created, and every process forked from now on starts in the cgroup.
    let cgroup_paths: BTreeMap<String, PathBuf> = to_parent.wait_for_cgroup().map_err(received)?;
    join_v1_cgroups(p)?;

    let mut in_userns = false;
    for j in &p.plan.joined {
        namespaces::join(j.typ, &j.fd).map_err(ChildFailure::setup)?;
        if j.typ == LinuxNamespaceType::User {
            in_userns = true;
        }
    }
    if p.plan.is_new(LinuxNamespaceType::User) {
        namespaces::unshare(CloneFlags::CLONE_NEWUSER).map_err(ChildFailure::setup)?;
        to_parent
            .user_ns_created()
            .map_err(fail("ask for the uid/gid maps"))?;
        to_parent.wait_for_mappings().map_err(received)?;
        in_userns = true;
    }
    if in_userns {
        become_root()?;
    }

    namespaces::unshare(p.plan.unshare_flags()).map_err(ChildFailure::setup)?;
    if p.plan.is_new(LinuxNamespaceType::Time) {
        write_time_offsets(p)?;
    }

    // The overlay's mount fd stays with us: ours must be the last copy,
    // closed as we exit (see selfexe::release), and the container must never
    // hold it. The init closes its copy first thing, then its end of this
    // gate, and we leave only after that.
    let gate = if crate::selfexe::holds_mount() {
        Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(fail("make the init's gate"))?,
        )
    } else {
        None
    };
    let gate_fds = gate.as_ref().map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()));
    let init_pid = fork_child(c"berth:[2:INIT]", || {
        crate::selfexe::release();
        if let Some((r, w)) = gate_fds {
            super::close_inherited(r);
            super::close_inherited(w);
        }
        super::close_inherited(to_parent.raw_fd());
        init::run(
            p,
            init_channel,
            &cgroup_paths,
            fifo,
            in_userns,
            &init::RootView::host(p),
        )
    })
    .map_err(|e: ProcessError| ChildFailure::setup(format!("fork the init: {e}")))?;
    to_parent
        .child_pid(init_pid.as_raw())
        .map_err(fail("report the init's pid"))?;
    if let Some((r, w)) = gate {
        drop(w);
        // End of file once the init has closed its end (or died).
        let mut byte = [0u8; 1];
        while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(&r, &mut byte) {}
    }
    Ok(())
}

/// Join the container's v1 hierarchies by writing "0" to each `tasks` file.
/// The caller is single-threaded, so moving this thread moves the process, and
/// a thread that moves itself costs no RCU grace period (see self_join_files).
/// Done before any uid change: the files belong to the host's root.
pub(super) fn join_v1_cgroups(p: &Prepared) -> Result<(), ChildFailure> {
    if let Some(cg) = &p.cgroup {
        for tasks in cg.self_join_files() {
            std::fs::write(&tasks, b"0").map_err(|e| {
                ChildFailure::setup(format!("join cgroup {}: {e}", tasks.display()))
            })?;
        }
    }
    Ok(())
}

pub(super) fn received(r: super::channel::Received) -> ChildFailure {
    match r {
        super::channel::Received::Failure(f) => f,
        super::channel::Received::Channel(e) => {
            ChildFailure::setup(format!("runtime channel: {e}"))
        }
    }
}

/// Become uid and gid 0 of the user namespace we are in (files the init creates
/// must have an owner mapped in it), drop the host's supplementary groups, and
/// stay dumpable so that our /proc files stay ours to write (oom_score_adj,
/// timens_offsets) after the uid change.
pub(super) fn become_root() -> Result<(), ChildFailure> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(fail("become gid 0 in the user namespace"))?;
    // Refused when setgroups is denied (rootless); there are no host groups to
    // drop in that case.
    let _ = nix::unistd::setgroups(&[]);
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(fail("become uid 0 in the user namespace"))?;
    nix::sys::prctl::set_dumpable(true).map_err(fail("set dumpable"))?;
    Ok(())
}

/// Write linux.timeOffsets for the new time namespace (before any process is in
/// it, as the kernel requires).
fn write_time_offsets(p: &Prepared) -> Result<(), ChildFailure> {
    let Some(offsets) = p
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in &offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write("/proc/self/timens_offsets", text.as_bytes())
        .map_err(fail("write /proc/self/timens_offsets"))
}
