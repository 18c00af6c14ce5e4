//! A container as the runtime's commands see it: made by [`Container::create`]
//! or found again by [`Container::load`] from `<root>/<id>/state.json`, then
//! started, signalled, paused, updated, watched and deleted through its methods.
//!
//! Every rule about which status allows what lives here, with runc's answers
//! (runc's behaviour is the specification: its integration suite is the
//! measure). The command-line layer (`commands/*.rs`) only turns arguments into
//! these calls and prints their results.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::Serialize;

use crate::cgroups::{CgroupManager, Stats};
use crate::error::{Error, Result};
use crate::process::exec::ExecOptions;
use crate::process::parent::{self, CreateOptions};
use crate::state::{self, OciState, State, Status};
use crate::{hooks, logger};

/// How long `delete` and `kill` wait for a SIGKILLed init to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// One container under a state root.
#[derive(Debug, Clone)]
pub struct Container {
    root: PathBuf,
    state: State,
}

/// A container just created, with the pty master when the runtime itself
/// relays the terminal (a foreground `run` without a console socket).
#[derive(Debug)]
pub struct Created {
    pub container: Container,
    pub console_master: Option<OwnedFd>,
}

/// An event of `events`, in runc's shape: `{"type":"stats","id":..,"data":..}`
/// or `{"type":"oom","id":..}` (field order as runc writes them).
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

impl Container {
    /// Validate the bundle and create the container: its init waits on
    /// exec.fifo for [`Container::start`]. Nothing is left behind on failure.
    pub fn create(opts: CreateOptions) -> Result<Created> {
        let root = opts.root.clone();
        let prepared = parent::prepare(opts)?;
        let created = parent::create(prepared)?;
        Ok(Created {
            container: Container {
                root,
                state: created.state,
            },
            console_master: created.console_master,
        })
    }

    /// The container `id` under the state root `root`.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        Ok(Container {
            root: root.to_path_buf(),
            state: State::load(root, id)?,
        })
    }

    /// Every container under `root`, sorted by id; one deleted meanwhile is
    /// left out.
    pub fn list(root: &Path) -> Result<Vec<Container>> {
        Ok(state::list_ids(root)?
            .into_iter()
            .filter_map(|id| Container::load(root, &id).ok())
            .collect())
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// What state.json records.
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn status(&self) -> Status {
        self.state.status(&self.root)
    }

    /// The spec's state object (what `state` prints and hooks read).
    pub fn oci_state(&self) -> OciState {
        self.state.oci_state(&self.root)
    }

    fn cgroup(&self) -> Result<CgroupManager> {
        Ok(CgroupManager::from_paths(&self.state.cgroup_paths)?)
    }

    /// Release a created container's init: opening exec.fifo for reading
    /// unblocks its open for writing; the byte it writes says it is about to
    /// execve. The fifo is then removed (the container is "running") and the
    /// poststart hooks run; a failing one is only a warning (the spec's rule).
    pub fn start(&self) -> Result<()> {
        match self.status() {
            Status::Created => {}
            Status::Stopped => return Err(Error::StartStopped),
            Status::Running | Status::Paused => return Err(Error::AlreadyRunning),
            status => {
                return Err(Error::NotCreated {
                    id: self.id().to_string(),
                    status,
                })
            }
        }
        let fifo = self.state.dir(&self.root).join(state::EXEC_FIFO);
        // Non-blocking: an init that died would otherwise leave us blocked
        // forever in open(2) or read(2); we poll and check it is alive instead.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|source| Error::Io {
                action: "open",
                path: fifo.clone(),
                source,
            })?;
        let gone = || Error::InitGone {
            id: self.id().to_string(),
        };
        loop {
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(source) => {
                    return Err(Error::Sys {
                        what: "poll exec.fifo",
                        source,
                    })
                }
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
                    return Err(gone())
                }
                Ok(0) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(source) => {
                    return Err(Error::Sys {
                        what: "read exec.fifo",
                        source,
                    })
                }
            }
            if !self.state.init_alive() {
                return Err(gone());
            }
        }
        std::fs::remove_file(&fifo).map_err(|source| Error::Io {
            action: "remove",
            path: fifo.clone(),
            source,
        })?;
        if let Some(list) = self
            .state
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
        {
            let mut oci = self.oci_state();
            oci.status = Status::Running;
            if let Err(e) = hooks::run(&list, &oci) {
                logger::warn(&format!("poststart hook: {e}"));
            }
        }
        Ok(())
    }

    /// Send `signal` (None: signal 0, a liveness probe) to the init, or with
    /// `all` to every process of the container's cgroup. As runc: signalling
    /// the init of a stopped container fails, `all` on one succeeds; SIGKILL
    /// to a paused container thaws it so that the kill takes effect.
    pub fn kill(&self, signal: Option<Signal>, all: bool) -> Result<()> {
        let status = self.status();
        if all {
            if status == Status::Stopped && self.cgroup().map(|c| !c.exists()).unwrap_or(true) {
                return Ok(());
            }
            return self.signal_all(signal);
        }
        if status == Status::Stopped {
            return Err(Error::NotRunning {
                id: self.id().to_string(),
            });
        }
        let pid = self.state.init_process_pid;
        kill(Pid::from_raw(pid), signal).map_err(|source| Error::Kill {
            signal: signal_name(signal),
            pid,
            source,
        })?;
        if status == Status::Paused && signal == Some(Signal::SIGKILL) {
            let _ = self.cgroup().map(|c| c.thaw());
        }
        Ok(())
    }

    /// Signal every process in the cgroup. It is frozen while the pids are
    /// read and signalled so that a fork cannot slip a new process past us,
    /// then thawed (unless it was paused) so that the signal is delivered; a
    /// SIGKILL always thaws, or the processes could not die.
    fn signal_all(&self, signal: Option<Signal>) -> Result<()> {
        let cg = self.cgroup()?;
        let was_frozen = cg.is_frozen().unwrap_or(false);
        let froze = !was_frozen && cg.freeze().is_ok();
        let result = cg.pids().map_err(Error::from).and_then(|pids| {
            for pid in pids {
                match kill(Pid::from_raw(pid), signal) {
                    // A process that exited meanwhile is not an error.
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(source) => {
                        return Err(Error::Kill {
                            signal: signal_name(signal),
                            pid,
                            source,
                        })
                    }
                }
            }
            Ok(())
        });
        if froze || (was_frozen && signal == Some(Signal::SIGKILL)) {
            let _ = cg.thaw();
        }
        result
    }

    /// Delete the container: refused while it runs unless `force`, which kills
    /// it first (runc's rules: a created container is deleted without force).
    pub fn delete(&self, force: bool) -> Result<()> {
        match self.status() {
            Status::Stopped | Status::Created => {}
            status if !force => {
                return Err(Error::NotStopped {
                    id: self.id().to_string(),
                    status,
                })
            }
            _ => {}
        }
        self.destroy()
    }

    /// Kill whatever is left of the container, remove its cgroup (with any
    /// sub-cgroups its processes made) and its state, run the poststop hooks.
    pub fn destroy(&self) -> Result<()> {
        let cg = self.cgroup().ok();
        if self.state.init_alive() {
            if cg.is_some() {
                let _ = self.signal_all(Some(Signal::SIGKILL));
            }
            let _ = kill(Pid::from_raw(self.state.init_process_pid), Signal::SIGKILL);
            self.wait_gone(KILL_WAIT)?;
        }
        if let Some(cg) = &cg {
            // Without a pid namespace, processes may outlive the init: kill
            // them too (the cgroup cannot be removed while they live).
            if let Ok(pids) = cg.pids() {
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            cg.remove()?;
        }
        let mut oci = self.oci_state();
        oci.status = Status::Stopped;
        if let Some(h) = self
            .state
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststop().clone())
        {
            // Poststop failures are logged, not fatal: the container is gone
            // either way, and every hook still runs.
            for e in hooks::run_all(&h, &oci) {
                logger::warn(&format!("poststop hook: {e}"));
            }
        }
        let dir = self.state.dir(&self.root);
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
            action: "remove",
            path: dir.clone(),
            source,
        })
    }

    /// Wait until the init is gone (or a zombie nobody of ours will reap),
    /// with a pidfd so that no polling is needed on current kernels.
    fn wait_gone(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let pid = self.state.init_process_pid;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            let fd = fd as i32;
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: pfd is a valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            // SAFETY: fd was returned by pidfd_open above and is closed once.
            unsafe { libc::close(fd) };
        }
        while self.state.init_alive() {
            if Instant::now() >= deadline {
                return Err(Error::WouldNotDie {
                    id: self.id().to_string(),
                    pid,
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Freeze every process of the container.
    pub fn pause(&self) -> Result<()> {
        match self.status() {
            Status::Running | Status::Created => {}
            _ => {
                return Err(Error::NotRunning {
                    id: self.id().to_string(),
                })
            }
        }
        Ok(self.cgroup()?.freeze()?)
    }

    /// Thaw a paused container.
    pub fn resume(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Paused {
            return Err(Error::NotPaused {
                id: self.id().to_string(),
                status,
            });
        }
        Ok(self.cgroup()?.thaw()?)
    }

    /// Apply the limits `delta` sets to the cgroup and record the result in
    /// state.json, so that a later `update` or `events` sees what is in force.
    pub fn update(&mut self, delta: &LinuxResources) -> Result<()> {
        if self.status() == Status::Stopped {
            return Err(Error::NotRunning {
                id: self.id().to_string(),
            });
        }
        self.cgroup()?.apply(delta)?;
        let mut linux = self.state.config.linux().clone().unwrap_or_default();
        let merged = merge_resources(linux.resources().clone().unwrap_or_default(), delta);
        linux.set_resources(Some(merged));
        self.state.config.set_linux(Some(linux));
        self.state.save(&self.root)?;
        Ok(())
    }

    /// The resources in force (the config's, with every update applied).
    pub fn resources(&self) -> LinuxResources {
        self.state
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default()
    }

    /// Usage of the container's cgroup, in runc's `events --stats` shape.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.cgroup()?.stats()?)
    }

    /// Every pid in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup()?.pids()?)
    }

    /// Report events until the container stops: OOM kills as they happen,
    /// stats every `interval`. The runtime is not a daemon and starts no
    /// thread, so this is one loop that polls the OOM count between stats.
    pub fn events(
        &self,
        interval: Duration,
        mut emit: impl FnMut(&Event<'_>) -> Result<()>,
    ) -> Result<()> {
        if self.status() == Status::Stopped {
            return Err(Error::NotRunning {
                id: self.id().to_string(),
            });
        }
        let cg = self.cgroup()?;
        let mut ooms = cg.oom_kill_count().unwrap_or(0);
        let step = interval.min(Duration::from_millis(100));
        let mut next_stats = Instant::now() + interval;
        while self.status() != Status::Stopped {
            let now = cg.oom_kill_count().unwrap_or(ooms);
            if now > ooms {
                ooms = now;
                emit(&Event {
                    kind: "oom",
                    id: self.id(),
                    data: None,
                })?;
            }
            if Instant::now() >= next_stats {
                next_stats += interval;
                match cg.stats() {
                    Ok(s) => emit(&Event {
                        kind: "stats",
                        id: self.id(),
                        data: Some(s),
                    })?,
                    // The cgroup goes away with the container.
                    Err(e) => logger::debug(&format!("stats: {e}")),
                }
            }
            std::thread::sleep(step.min(next_stats.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    /// One stats event (`events --stats`).
    pub fn stats_event(&self) -> Result<Event<'_>> {
        if self.status() == Status::Stopped {
            return Err(Error::NotRunning {
                id: self.id().to_string(),
            });
        }
        Ok(Event {
            kind: "stats",
            id: self.id(),
            data: Some(self.stats()?),
        })
    }

    /// Run a new process in the container; returns its exit code (0 once it
    /// runs, with `detach`).
    pub fn exec(&self, opts: ExecOptions) -> Result<i32> {
        Ok(crate::process::exec::exec(opts)?)
    }
}

fn signal_name(signal: Option<Signal>) -> String {
    signal.map_or_else(|| "signal 0".to_string(), |s| s.to_string())
}

/// Overlay the values set in `delta` onto `base`.
pub fn merge_resources(mut base: LinuxResources, delta: &LinuxResources) -> LinuxResources {
    if let Some(d) = delta.memory() {
        let mut m = (*base.memory()).unwrap_or_default();
        if d.limit().is_some() {
            m.set_limit(d.limit());
        }
        if d.reservation().is_some() {
            m.set_reservation(d.reservation());
        }
        if d.swap().is_some() {
            m.set_swap(d.swap());
        }
        if d.kernel().is_some() {
            m.set_kernel(d.kernel());
        }
        if d.kernel_tcp().is_some() {
            m.set_kernel_tcp(d.kernel_tcp());
        }
        if d.swappiness().is_some() {
            m.set_swappiness(d.swappiness());
        }
        if d.disable_oom_killer().is_some() {
            m.set_disable_oom_killer(d.disable_oom_killer());
        }
        base.set_memory(Some(m));
    }
    if let Some(d) = delta.cpu() {
        let mut c = base.cpu().clone().unwrap_or_default();
        if d.shares().is_some() {
            c.set_shares(d.shares());
        }
        if d.quota().is_some() {
            c.set_quota(d.quota());
        }
        if d.period().is_some() {
            c.set_period(d.period());
        }
        if d.cpus().is_some() {
            c.set_cpus(d.cpus().clone());
        }
        if d.mems().is_some() {
            c.set_mems(d.mems().clone());
        }
        if d.realtime_period().is_some() {
            c.set_realtime_period(d.realtime_period());
        }
        if d.realtime_runtime().is_some() {
            c.set_realtime_runtime(d.realtime_runtime());
        }
        if d.burst().is_some() {
            c.set_burst(d.burst());
        }
        if d.idle().is_some() {
            c.set_idle(d.idle());
        }
        base.set_cpu(Some(c));
    }
    if delta.pids().is_some() {
        base.set_pids(*delta.pids());
    }
    if delta.block_io().is_some() {
        base.set_block_io(delta.block_io().clone());
    }
    if delta.hugepage_limits().is_some() {
        base.set_hugepage_limits(delta.hugepage_limits().clone());
    }
    if delta.network().is_some() {
        base.set_network(delta.network().clone());
    }
    if delta.devices().is_some() {
        base.set_devices(delta.devices().clone());
    }
    if let Some(u) = delta.unified() {
        let mut all = base.unified().clone().unwrap_or_default();
        all.extend(u.iter().map(|(k, v)| (k.clone(), v.clone())));
        base.set_unified(Some(all));
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxMemory;

    #[test]
    fn merge_keeps_untouched_fields() {
        let mut base = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_limit(Some(100));
        m.set_reservation(Some(50));
        base.set_memory(Some(m));
        let delta: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":200},"pids":{"limit":10}}"#).unwrap();
        let merged = merge_resources(base, &delta);
        let mem = merged.memory().unwrap();
        assert_eq!(mem.limit(), Some(200));
        assert_eq!(mem.reservation(), Some(50));
        assert_eq!(merged.pids().unwrap().limit(), 10);
    }

    #[test]
    fn events_have_runc_field_order() {
        let e = Event {
            kind: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let s = Event {
            kind: "stats",
            id: "c1",
            data: Some(Stats::default()),
        };
        assert!(serde_json::to_string(&s)
            .unwrap()
            .starts_with(r#"{"type":"stats","id":"c1","data":{"#));
    }
}
