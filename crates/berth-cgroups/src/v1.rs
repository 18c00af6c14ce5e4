//! The cgroup v1 backend: one directory per mounted hierarchy (co-mounted
//! controllers share one), plus, on a hybrid host, the same path in the cgroup2
//! hierarchy so that the process is placed there too, as runc does. No limit is
//! written to the hybrid cgroup2 directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use crate::files::{self, FsError};
use crate::resources::{self, ResourceError};
use crate::stats::{self, BlkioEntry, MemoryEntry, Stats};
use crate::CgroupError;

/// One container's cgroup on a v1 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Cgroup {
    /// Controller (or `name=X`) → the cgroup's directory in that hierarchy.
    dirs: BTreeMap<String, PathBuf>,
    /// The same cgroup in the cgroup2 hierarchy of a hybrid host.
    unified: Option<PathBuf>,
}

impl V1Cgroup {
    /// The cgroup `relative` in each of `hierarchies` (controller → mount point).
    pub fn new(
        hierarchies: &BTreeMap<String, PathBuf>,
        unified: Option<&Path>,
        relative: &Path,
    ) -> Self {
        V1Cgroup {
            dirs: hierarchies
                .iter()
                .map(|(c, mnt)| (c.clone(), mnt.join(relative)))
                .collect(),
            unified: unified.map(|u| u.join(relative)),
        }
    }

    /// Rebuild from recorded directories ("" is the hybrid cgroup2 one).
    pub fn from_dirs(paths: &BTreeMap<String, PathBuf>) -> Self {
        let mut dirs = paths.clone();
        let unified = dirs.remove("");
        V1Cgroup { dirs, unified }
    }

    /// Controller → directory, "" for the hybrid cgroup2 directory.
    pub fn paths(&self) -> BTreeMap<String, PathBuf> {
        let mut p = self.dirs.clone();
        if let Some(u) = &self.unified {
            p.insert(String::new(), u.clone());
        }
        p
    }

    /// Each distinct directory once (co-mounted controllers share one).
    fn all_dirs(&self) -> Vec<&Path> {
        let set: BTreeSet<&Path> = self
            .dirs
            .values()
            .map(PathBuf::as_path)
            .chain(self.unified.as_deref())
            .collect();
        set.into_iter().collect()
    }

    fn dir(&self, controller: &'static str, what: &'static str) -> Result<&Path, CgroupError> {
        self.dirs
            .get(controller)
            .map(PathBuf::as_path)
            .ok_or(CgroupError::NotMounted { controller, what })
    }

    /// `mkdir -p` in every hierarchy, then give new cpuset levels their parent's
    /// CPUs and memory nodes: an empty cpuset refuses tasks with ENOSPC.
    pub fn create(&self) -> Result<(), CgroupError> {
        for dir in self.all_dirs() {
            files::mkdir_all(dir)?;
        }
        if let Some(dir) = self.dirs.get("cpuset") {
            fill_cpuset(dir)?;
        }
        Ok(())
    }

    /// Write every limit the spec sets; what it leaves unset is not touched, so
    /// that `update` can pass only what changes.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        validate(r)?;
        if let Some(m) = r.memory() {
            self.apply_memory(m)?;
        }
        if let Some(c) = r.cpu() {
            self.apply_cpu(c)?;
        }
        if let Some(p) = r.pids() {
            files::write(
                self.dir("pids", "a pids limit")?,
                "pids.max",
                &resources::pids_max(p.limit()),
            )?;
        }
        if let Some(devices) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            let dir = self.dir("devices", "device rules")?;
            // Each write(2) is one rule; the two files stay open for the
            // whole list (a spec has a dozen rules, on every create).
            let mut open = files::RuleFiles::new(dir);
            for d in devices {
                let (allow, rule) = resources::device_rule(d)?;
                let file = if allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                open.write(file, &rule)?;
            }
            // No eBPF device program on the cgroup2 directory of a hybrid host:
            // the devices controller above already enforces every rule for
            // every process of the container (they all live in this v1
            // hierarchy too), and loading and verifying a program costs
            // 0.5-1.3 ms per create. runc and crun do the same (they attach
            // one only when the devices controller is not a v1 one). A
            // container made by an older berth, which attached one, has it
            // replaced so that an update never leaves stale rules behind.
            if let Some(unified) = self.unified.as_deref() {
                let attached = crate::bpf::attached_device_programs(unified)
                    .map(|p| !p.is_empty())
                    .unwrap_or(false);
                if attached {
                    if let Err(e) = crate::attach_device_filter(unified, devices) {
                        log::debug!("cgroups: device program on {}: {e}", unified.display());
                    }
                }
            }
        }
        if let Some(b) = r.block_io() {
            self.apply_blkio(b)?;
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            let dir = self.dir("hugetlb", "hugepage limits")?;
            for l in limits {
                let size = resources::hugepage_size(l.page_size())?;
                let value = l.limit().to_string();
                files::write(dir, &format!("hugetlb.{size}.limit_in_bytes"), &value)?;
                let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
                if files::exists(dir, &rsvd) {
                    files::write(dir, &rsvd, &value)?;
                }
            }
        }
        if let Some(n) = r.network() {
            self.apply_network(n)?;
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            let dir = self.dir("rdma", "RDMA limits")?;
            for (dev, limits) in rdma {
                if let Some(line) = resources::rdma_line(dev, limits)? {
                    files::write(dir, "rdma.max", &line)?;
                }
            }
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<(), CgroupError> {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            log::debug!(
                "cgroups: kernel memory limits are ignored (the kernel no longer enforces them)"
            );
        }
        let (limit, swap) = resources::v1_memory_and_swap(m.limit(), m.swap())?;
        let reservation = m.reservation().filter(|v| *v != 0);
        if limit.is_none()
            && swap.is_none()
            && reservation.is_none()
            && m.swappiness().is_none()
            && m.disable_oom_killer().is_none()
        {
            return Ok(());
        }
        let dir = self.dir("memory", "memory limits")?;
        const LIMIT: &str = "memory.limit_in_bytes";
        const MEMSW: &str = "memory.memsw.limit_in_bytes";
        let swap = if files::exists(dir, MEMSW) {
            swap
        } else {
            if swap.is_some() {
                log::debug!("cgroups: swap accounting is off; the memory+swap limit is ignored");
            }
            None
        };
        match (limit, swap) {
            (Some(limit), Some(swap)) => {
                // The kernel keeps memory <= memory+swap at every step: raise
                // memory+swap before memory, lower memory before memory+swap.
                let current = files::read_u64(dir, LIMIT)?;
                let swap_first = swap == -1 || u64::try_from(swap).is_ok_and(|s| s > current);
                if swap_first {
                    files::write(dir, MEMSW, &swap.to_string())?;
                    files::write(dir, LIMIT, &limit.to_string())?;
                } else {
                    files::write(dir, LIMIT, &limit.to_string())?;
                    files::write(dir, MEMSW, &swap.to_string())?;
                }
            }
            (Some(limit), None) => files::write(dir, LIMIT, &limit.to_string())?,
            (None, Some(swap)) => files::write(dir, MEMSW, &swap.to_string())?,
            (None, None) => {}
        }
        if let Some(r) = reservation {
            files::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(s) = m.swappiness() {
            files::write(dir, "memory.swappiness", &s.to_string())?;
        }
        if let Some(disable) = m.disable_oom_killer() {
            files::write(dir, "memory.oom_control", if disable { "1" } else { "0" })?;
        }
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = c.shares().filter(|v| *v != 0);
        let quota = c.quota().filter(|v| *v != 0);
        let period = c.period().filter(|v| *v != 0);
        let rt_period = c.realtime_period().filter(|v| *v != 0);
        let rt_runtime = c.realtime_runtime().filter(|v| *v != 0);
        let any = shares.is_some()
            || quota.is_some()
            || period.is_some()
            || rt_period.is_some()
            || rt_runtime.is_some()
            || c.burst().is_some()
            || c.idle().is_some();
        if any {
            let dir = self.dir("cpu", "CPU limits")?;
            // Realtime bandwidth first: a task already running SCHED_RR cannot join
            // a cgroup that has none.
            write_pair(
                dir,
                ("cpu.rt_period_us", rt_period.map(|v| v.to_string())),
                ("cpu.rt_runtime_us", rt_runtime.map(|v| v.to_string())),
            )?;
            if let Some(s) = shares {
                files::write(dir, "cpu.shares", &s.to_string())?;
                // The kernel clamps shares silently; say so instead.
                let applied = files::read_u64(dir, "cpu.shares")?;
                if applied != s {
                    return Err(ResourceError::SharesOutOfRange {
                        requested: s,
                        applied,
                    }
                    .into());
                }
            }
            write_pair(
                dir,
                ("cpu.cfs_period_us", period.map(|v| v.to_string())),
                ("cpu.cfs_quota_us", quota.map(|v| v.to_string())),
            )?;
            if let Some(b) = c.burst() {
                files::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                files::write(dir, "cpu.idle", &i.to_string())?;
            }
        }
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.dir("cpuset", "a cpuset")?;
            if let Some(cpus) = cpus {
                files::write(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = mems {
                files::write(dir, "cpuset.mems", mems)?;
            }
        }
        Ok(())
    }

    fn apply_blkio(&self, b: &LinuxBlockIo) -> Result<(), CgroupError> {
        let weight = b.weight().filter(|w| *w != 0);
        let leaf = b.leaf_weight().filter(|w| *w != 0);
        let devices = b.weight_device().as_deref().unwrap_or_default();
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        let any_throttle = throttles
            .iter()
            .any(|(_, l)| l.as_ref().is_some_and(|l| !l.is_empty()));
        if weight.is_none() && leaf.is_none() && devices.is_empty() && !any_throttle {
            return Ok(());
        }
        let dir = self.dir("blkio", "block I/O limits")?;
        // Kernels without CFQ (5.0+) offer BFQ's weight files instead.
        let (weight_file, weight_device_file) = if files::exists(dir, "blkio.weight") {
            ("blkio.weight", "blkio.weight_device")
        } else {
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        };
        let leaf_unsupported = ResourceError::Unsupported {
            what: "a blkio leaf weight",
            version: "v1 without the CFQ scheduler",
        };
        if let Some(w) = weight {
            files::write(dir, weight_file, &w.to_string())?;
        }
        if let Some(w) = leaf {
            if !files::exists(dir, "blkio.leaf_weight") {
                return Err(leaf_unsupported.into());
            }
            files::write(dir, "blkio.leaf_weight", &w.to_string())?;
        }
        for d in devices {
            if let Some(w) = d.weight() {
                let line = format!("{}:{} {w}", d.major(), d.minor());
                files::write(dir, weight_device_file, &line)?;
            }
            if let Some(w) = d.leaf_weight() {
                if !files::exists(dir, "blkio.leaf_weight_device") {
                    return Err(ResourceError::Unsupported {
                        what: "a blkio leaf weight",
                        version: "v1 without the CFQ scheduler",
                    }
                    .into());
                }
                let line = format!("{}:{} {w}", d.major(), d.minor());
                files::write(dir, "blkio.leaf_weight_device", &line)?;
            }
        }
        for (file, list) in throttles {
            for t in list.as_deref().unwrap_or_default() {
                let line = format!("{}:{} {}", t.major(), t.minor(), t.rate());
                files::write(dir, file, &line)?;
            }
        }
        Ok(())
    }

    fn apply_network(&self, n: &LinuxNetwork) -> Result<(), CgroupError> {
        if let Some(id) = n.class_id() {
            match self.dirs.get("net_cls") {
                Some(dir) => files::write(dir, "net_cls.classid", &id.to_string())?,
                None => log::debug!("cgroups: net_cls is not mounted; the class id is ignored"),
            }
        }
        if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            match self.dirs.get("net_prio") {
                Some(dir) => {
                    for p in prios {
                        let line = format!("{} {}", p.name(), p.priority());
                        files::write(dir, "net_prio.ifpriomap", &line)?;
                    }
                }
                None => log::debug!("cgroups: net_prio is not mounted; priorities are ignored"),
            }
        }
        Ok(())
    }

    /// Move `pid` into the cgroup in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.all_dirs() {
            files::write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The `tasks` file of every v1 hierarchy (not the unified one).
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        let dirs: BTreeSet<&PathBuf> = self.dirs.values().collect();
        dirs.into_iter().map(|d| d.join("tasks")).collect()
    }

    /// The cgroup2 directory a process can be cloned into (hybrid layouts).
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Remove the cgroup (and any child cgroups) from every hierarchy. Each
    /// hierarchy is tried even if another fails; the first failure is returned.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        let deadline = std::time::Instant::now() + files::REMOVE_TIMEOUT;
        for dir in self.all_dirs() {
            if let Err(e) = files::remove_tree(dir, deadline) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), |e| Err(e.into()))
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        match (&self.dirs.get("freezer"), &self.unified) {
            (Some(dir), _) => freeze_v1(dir),
            (None, Some(u)) if files::exists(u, "cgroup.freeze") => crate::v2::freeze_dir(u),
            _ => Err(CgroupError::NotMounted {
                controller: "freezer",
                what: "freezing",
            }),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match (&self.dirs.get("freezer"), &self.unified) {
            (Some(dir), _) => Ok(files::write(dir, "freezer.state", "THAWED")?),
            (None, Some(u)) if files::exists(u, "cgroup.freeze") => crate::v2::thaw_dir(u),
            _ => Err(CgroupError::NotMounted {
                controller: "freezer",
                what: "thawing",
            }),
        }
    }

    /// Whether this cgroup itself was frozen (not merely one of its ancestors).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match (&self.dirs.get("freezer"), &self.unified) {
            (Some(dir), _) => {
                let state = files::read(dir, "freezer.state")?;
                if state.trim() != "FROZEN" {
                    return Ok(false);
                }
                let own = files::read_optional(dir, "freezer.self_freezing")?;
                Ok(own.is_none_or(|s| s.trim() != "0"))
            }
            (None, Some(u)) => crate::v2::is_frozen_dir(u),
            _ => Ok(false),
        }
    }

    /// Every pid in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        // Any hierarchy holds every process; prefer those where nothing else
        // (a systemd or a sibling tool) is likely to have added sub-cgroups.
        const PREFERRED: &[&str] = &["pids", "freezer", "devices", "memory", "cpu", "cpuacct"];
        let dir = PREFERRED
            .iter()
            .find_map(|c| self.dirs.get(*c))
            .or_else(|| self.dirs.values().next())
            .or(self.unified.as_ref())
            .ok_or(CgroupError::NoPaths)?;
        Ok(files::pids_recursive(dir)?)
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let dir = self.dir("memory", "counting OOM kills")?;
        let text = files::read(dir, "memory.oom_control")?;
        Ok(stats::parse_keyed(&text)
            .get("oom_kill")
            .copied()
            .unwrap_or(0))
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        if !self.all_dirs().iter().any(|d| d.is_dir()) {
            let path = self
                .all_dirs()
                .first()
                .map(|d| d.to_path_buf())
                .unwrap_or_default();
            return Err(CgroupError::Missing { path });
        }
        let mut s = Stats::default();
        if let Some(dir) = self.dirs.get("cpuacct") {
            cpuacct_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.dirs.get("cpu") {
            if let Some(text) = files::read_optional(dir, "cpu.stat")? {
                let m = stats::parse_keyed(&text);
                s.cpu.throttling.periods = m.get("nr_periods").copied().unwrap_or(0);
                s.cpu.throttling.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
                s.cpu.throttling.throttled_time = m.get("throttled_time").copied().unwrap_or(0);
            }
        }
        if let Some(dir) = self.dirs.get("cpuset") {
            cpuset_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.dirs.get("memory") {
            if let Some(text) = files::read_optional(dir, "memory.stat")? {
                s.memory.raw = stats::parse_keyed(&text);
            }
            s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
            s.memory.usage = memory_entry(dir, "memory")?;
            s.memory.swap = memory_entry(dir, "memory.memsw")?;
            s.memory.kernel = memory_entry(dir, "memory.kmem")?;
            s.memory.kernel_tcp = memory_entry(dir, "memory.kmem.tcp")?;
        }
        if let Some(dir) = self.dirs.get("pids") {
            s.pids.current = files::read_u64_optional(dir, "pids.current")?.unwrap_or(0);
            s.pids.limit = match files::read_u64_optional(dir, "pids.max")? {
                Some(u64::MAX) | None => 0,
                Some(v) => v,
            };
        }
        if let Some(dir) = self.dirs.get("blkio") {
            blkio_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.dirs.get("hugetlb") {
            for size in stats::hugetlb_sizes(dir) {
                let get = |f: &str| files::read_u64_optional(dir, &format!("hugetlb.{size}.{f}"));
                let entry = stats::Hugetlb {
                    usage: get("usage_in_bytes")?.unwrap_or(0),
                    max: get("max_usage_in_bytes")?.unwrap_or(0),
                    failcnt: get("failcnt")?.unwrap_or(0),
                };
                s.hugetlb.insert(size, entry);
            }
        }
        Ok(s)
    }
}

/// Checks that need no kernel, done before anything is written so that a bad
/// spec leaves the cgroup as it was.
fn validate(r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        resources::v1_memory_and_swap(m.limit(), m.swap())?;
        if let Some(s) = m.swappiness().filter(|s| *s > 100) {
            return Err(ResourceError::Swappiness(s).into());
        }
    }
    for d in r.devices().as_deref().unwrap_or_default() {
        resources::device_rule(d)?;
    }
    for l in r.hugepage_limits().as_deref().unwrap_or_default() {
        resources::hugepage_size(l.page_size())?;
    }
    if let Some(rdma) = r.rdma() {
        for (dev, limits) in rdma {
            resources::rdma_line(dev, limits)?;
        }
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        let mut keys: Vec<&str> = u.keys().map(String::as_str).collect();
        keys.sort();
        return Err(ResourceError::UnifiedOnV1(keys.join(", ")).into());
    }
    Ok(())
}

/// Write a (period, amount) pair such as cfs period and quota. Writing the
/// period first is right unless the old amount does not fit the new period, which
/// the kernel refuses with EINVAL: then the amount goes first.
fn write_pair(
    dir: &Path,
    first: (&str, Option<String>),
    second: (&str, Option<String>),
) -> Result<(), FsError> {
    let mut retry_first = None;
    if let Some(v) = &first.1 {
        match files::write(dir, first.0, v) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EINVAL) && second.1.is_some() => {
                retry_first = Some(v)
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(v) = &second.1 {
        files::write(dir, second.0, v)?;
    }
    if let Some(v) = retry_first {
        files::write(dir, first.0, v)?;
    }
    Ok(())
}

/// Copy the nearest non-empty ancestor's cpuset.cpus/mems down to every empty
/// level up to `dir`.
fn fill_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let mut chain = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let (Some(cpus), Some(mems)) = (
            files::read_optional(d, "cpuset.cpus")?,
            files::read_optional(d, "cpuset.mems")?,
        ) else {
            // Above the hierarchy root: nothing to copy from.
            return Ok(());
        };
        if !cpus.trim().is_empty() && !mems.trim().is_empty() {
            break;
        }
        chain.push(d);
        cur = d.parent();
    }
    for d in chain.into_iter().rev() {
        let Some(parent) = d.parent() else {
            continue;
        };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read(d, file)?.trim().is_empty() {
                let value = files::read(parent, file)?;
                let value = value.trim();
                if !value.is_empty() {
                    files::write(d, file, value)?;
                }
            }
        }
    }
    Ok(())
}

/// Freeze through the v1 freezer. A cgroup whose processes keep forking can
/// stay FREEZING; writing FROZEN again (and now and then thawing to let it settle)
/// gets it there, and if it never does it is thawed back rather than left
/// half-frozen.
fn freeze_v1(dir: &Path) -> Result<(), CgroupError> {
    const ATTEMPTS: u32 = 1000;
    let mut state = String::new();
    for i in 0..ATTEMPTS {
        if i % 50 == 49 {
            files::write(dir, "freezer.state", "THAWED")?;
            std::thread::sleep(Duration::from_millis(10));
        }
        files::write(dir, "freezer.state", "FROZEN")?;
        state = files::read(dir, "freezer.state")?.trim().to_string();
        match state.as_str() {
            "FROZEN" => return Ok(()),
            "FREEZING" => {
                if i % 25 == 24 {
                    std::thread::sleep(Duration::from_micros(10));
                }
            }
            _ => break,
        }
    }
    let _ = files::write(dir, "freezer.state", "THAWED");
    Err(CgroupError::FreezeFailed {
        path: dir.join("freezer.state"),
        state,
    })
}

/// `prefix.{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes}`; zeros
/// when the files are absent (no swap accounting, no kmem).
fn memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, FsError> {
    let get = |f: &str| files::read_u64_optional(dir, &format!("{prefix}.{f}"));
    Ok(MemoryEntry {
        limit: get("limit_in_bytes")?.unwrap_or(0),
        usage: get("usage_in_bytes")?.unwrap_or(0),
        max: get("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: get("failcnt")?.unwrap_or(0),
    })
}

fn cpuacct_stats(dir: &Path, s: &mut Stats) -> Result<(), FsError> {
    let u = &mut s.cpu.usage;
    u.total = files::read_u64_optional(dir, "cpuacct.usage")?.unwrap_or(0);
    if let Some(t) = files::read_optional(dir, "cpuacct.usage_percpu")? {
        u.percpu = stats::parse_numbers(&t);
    }
    if let Some(t) = files::read_optional(dir, "cpuacct.usage_all")? {
        (u.percpu_kernel, u.percpu_user) = stats::parse_usage_all(&t);
    }
    if let Some(t) = files::read_optional(dir, "cpuacct.stat")? {
        let m = stats::parse_keyed(&t);
        let ticks = stats::clock_ticks();
        let ns = |k: &str| m.get(k).copied().unwrap_or(0).saturating_mul(1_000_000_000) / ticks;
        u.user = ns("user");
        u.kernel = ns("system");
    }
    Ok(())
}

fn cpuset_stats(dir: &Path, s: &mut Stats) -> Result<(), FsError> {
    let c = &mut s.cpuset;
    if let Some(t) = files::read_optional(dir, "cpuset.cpus")? {
        c.cpus = stats::parse_cpu_list(&t);
    }
    if let Some(t) = files::read_optional(dir, "cpuset.mems")? {
        c.mems = stats::parse_cpu_list(&t);
    }
    let get = |f: &str| files::read_u64_optional(dir, f).map(|v| v.unwrap_or(0));
    c.cpu_exclusive = get("cpuset.cpu_exclusive")?;
    c.mem_hardwall = get("cpuset.mem_hardwall")?;
    c.mem_exclusive = get("cpuset.mem_exclusive")?;
    c.memory_migrate = get("cpuset.memory_migrate")?;
    c.memory_spread_page = get("cpuset.memory_spread_page")?;
    c.memory_spread_slab = get("cpuset.memory_spread_slab")?;
    c.memory_pressure = get("cpuset.memory_pressure")?;
    c.sched_load_balance = get("cpuset.sched_load_balance")?;
    if let Some(t) = files::read_optional(dir, "cpuset.sched_relax_domain_level")? {
        c.sched_relax_domain_level = t.trim().parse().unwrap_or(0);
    }
    Ok(())
}

/// CFQ's files where the kernel has them, then BFQ's, then the throttling
/// layer's (always there, counting every I/O); an empty set falls through to the
/// next so that a device not using CFQ or BFQ still reports its I/O.
fn blkio_stats(dir: &Path, s: &mut Stats) -> Result<(), FsError> {
    let read = |f: &str| -> Result<Vec<BlkioEntry>, FsError> {
        Ok(files::read_optional(dir, f)?
            .map(|t| stats::parse_blkio_v1(&t))
            .unwrap_or_default())
    };
    let b = &mut s.blkio;
    let cfq_bytes = read("blkio.io_service_bytes_recursive")?;
    if !cfq_bytes.is_empty() {
        b.io_service_bytes_recursive = cfq_bytes;
        b.io_serviced_recursive = read("blkio.io_serviced_recursive")?;
        b.io_queued_recursive = read("blkio.io_queued_recursive")?;
        b.io_service_time_recursive = read("blkio.io_service_time_recursive")?;
        b.io_wait_time_recursive = read("blkio.io_wait_time_recursive")?;
        b.io_merged_recursive = read("blkio.io_merged_recursive")?;
        b.io_time_recursive = read("blkio.time_recursive")?;
        b.sectors_recursive = read("blkio.sectors_recursive")?;
        return Ok(());
    }
    let bfq_bytes = read("blkio.bfq.io_service_bytes_recursive")?;
    if !bfq_bytes.is_empty() {
        b.io_service_bytes_recursive = bfq_bytes;
        b.io_serviced_recursive = read("blkio.bfq.io_serviced_recursive")?;
        return Ok(());
    }
    b.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive")?;
    b.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The v1 backend against a fake tree: plain files where cgroupfs would be.
    use super::*;

    fn fake(files_in: &[(&str, &str)]) -> (tempfile::TempDir, V1Cgroup) {
        let root = tempfile::tempdir().unwrap();
        let mut h = BTreeMap::new();
        for c in [
            "memory", "cpu", "cpuset", "pids", "devices", "blkio", "freezer",
        ] {
            h.insert(c.to_string(), root.path().join(c));
        }
        let cg = V1Cgroup::new(&h, Some(&root.path().join("unified")), Path::new("berth/x"));
        for (path, content) in files_in {
            let p = root.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        (root, cg)
    }

    fn read(root: &Path, p: &str) -> String {
        std::fs::read_to_string(root.join(p)).unwrap()
    }

    #[test]
    fn paths_have_the_unified_key() {
        let (root, cg) = fake(&[]);
        let p = cg.paths();
        assert_eq!(p[""], root.path().join("unified/berth/x"));
        assert_eq!(p["memory"], root.path().join("memory/berth/x"));
        assert_eq!(V1Cgroup::from_dirs(&p), cg);
    }

    #[test]
    fn cpuset_is_copied_down_from_the_nearest_filled_ancestor() {
        let (root, cg) = fake(&[
            ("cpuset/cpuset.cpus", "0-1\n"),
            ("cpuset/cpuset.mems", "0\n"),
            ("cpuset/berth/cpuset.cpus", ""),
            ("cpuset/berth/cpuset.mems", ""),
            ("cpuset/berth/x/cpuset.cpus", ""),
            ("cpuset/berth/x/cpuset.mems", ""),
        ]);
        cg.create().unwrap();
        assert_eq!(read(root.path(), "cpuset/berth/cpuset.cpus"), "0-1");
        assert_eq!(read(root.path(), "cpuset/berth/x/cpuset.mems"), "0");
        assert!(root.path().join("unified/berth/x").is_dir());
        assert!(root.path().join("memory/berth/x").is_dir());
    }

    #[test]
    fn memory_order_and_values() {
        let dir = "memory/berth/x";
        let (root, cg) = fake(&[
            (
                &format!("{dir}/memory.limit_in_bytes"),
                "9223372036854771712",
            ),
            (&format!("{dir}/memory.memsw.limit_in_bytes"), ""),
            (&format!("{dir}/memory.soft_limit_in_bytes"), ""),
            (&format!("{dir}/memory.swappiness"), ""),
            (&format!("{dir}/memory.oom_control"), ""),
        ]);
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":104857600,"swap":209715200,"reservation":52428800,
                "swappiness":10,"disableOOMKiller":true,"kernel":1}}"#,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        let p = root.path().join(dir);
        assert_eq!(read(&p, "memory.limit_in_bytes"), "104857600");
        assert_eq!(read(&p, "memory.memsw.limit_in_bytes"), "209715200");
        assert_eq!(read(&p, "memory.soft_limit_in_bytes"), "52428800");
        assert_eq!(read(&p, "memory.swappiness"), "10");
        assert_eq!(read(&p, "memory.oom_control"), "1");
    }

    #[test]
    fn swap_is_ignored_without_swap_accounting_but_still_checked() {
        let dir = "memory/berth/x";
        let (root, cg) = fake(&[(&format!("{dir}/memory.limit_in_bytes"), "")]);
        let r: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":1000,"swap":2000}}"#).unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(
            read(&root.path().join(dir), "memory.limit_in_bytes"),
            "1000"
        );
        let bad: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":2000,"swap":1000}}"#).unwrap();
        assert!(matches!(
            cg.apply(&bad),
            Err(CgroupError::Resource(ResourceError::SwapBelowMemory { .. }))
        ));
    }

    #[test]
    fn cpu_pids_devices_blkio() {
        let (root, cg) = fake(&[
            ("cpu/berth/x/cpu.shares", ""),
            ("cpu/berth/x/cpu.cfs_period_us", ""),
            ("cpu/berth/x/cpu.cfs_quota_us", ""),
            ("cpuset/berth/x/cpuset.cpus", ""),
            ("cpuset/berth/x/cpuset.mems", ""),
            ("pids/berth/x/pids.max", ""),
            ("devices/berth/x/devices.allow", ""),
            ("devices/berth/x/devices.deny", ""),
            ("blkio/berth/x/blkio.bfq.weight", ""),
            ("blkio/berth/x/blkio.throttle.read_bps_device", ""),
        ]);
        let r: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
                "pids":{"limit":0},
                "devices":[{"allow":false,"access":"rwm"},
                           {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],
                "blockIO":{"weight":300,
                           "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}}"#,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        let p = root.path();
        assert_eq!(read(p, "cpu/berth/x/cpu.shares"), "512");
        assert_eq!(read(p, "cpu/berth/x/cpu.cfs_period_us"), "100000");
        assert_eq!(read(p, "cpu/berth/x/cpu.cfs_quota_us"), "50000");
        assert_eq!(read(p, "cpuset/berth/x/cpuset.cpus"), "0");
        assert_eq!(read(p, "pids/berth/x/pids.max"), "max");
        assert_eq!(read(p, "devices/berth/x/devices.deny"), "a *:* rwm");
        assert_eq!(read(p, "devices/berth/x/devices.allow"), "c 1:3 rwm");
        assert_eq!(read(p, "blkio/berth/x/blkio.bfq.weight"), "300");
        assert_eq!(
            read(p, "blkio/berth/x/blkio.throttle.read_bps_device"),
            "8:0 1048576"
        );
    }

    #[test]
    fn bad_specs_write_nothing() {
        let (root, cg) = fake(&[("pids/berth/x/pids.max", "")]);
        let r: LinuxResources = serde_json::from_str(
            r#"{"pids":{"limit":5},"devices":[{"allow":true,"type":"c","access":"xyz"}]}"#,
        )
        .unwrap();
        assert!(cg.apply(&r).is_err());
        assert_eq!(read(root.path(), "pids/berth/x/pids.max"), "");
        let unified: LinuxResources =
            serde_json::from_str(r#"{"unified":{"memory.high":"1"}}"#).unwrap();
        assert!(matches!(
            cg.apply(&unified),
            Err(CgroupError::Resource(ResourceError::UnifiedOnV1(_)))
        ));
    }

    #[test]
    fn missing_controller_is_a_clear_error() {
        let cg = V1Cgroup::new(&BTreeMap::new(), None, Path::new("berth/x"));
        let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":5}}"#).unwrap();
        let err = cg.apply(&r).unwrap_err().to_string();
        assert!(err.contains("pids"), "{err}");
        // Network priorities are ignored when net_prio is not mounted.
        let net: LinuxResources = serde_json::from_str(
            r#"{"network":{"classID":1,"priorities":[{"name":"eth0","priority":1}]}}"#,
        )
        .unwrap();
        cg.apply(&net).unwrap();
    }

    #[test]
    fn oom_count_and_stats_from_files() {
        let (root, cg) = fake(&[
            (
                "memory/berth/x/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
            ("memory/berth/x/memory.stat", "cache 4096\nrss 8192\n"),
            ("memory/berth/x/memory.usage_in_bytes", "12288\n"),
            ("memory/berth/x/memory.limit_in_bytes", "104857600\n"),
            ("pids/berth/x/pids.current", "3\n"),
            ("pids/berth/x/pids.max", "max\n"),
            ("freezer/berth/x/freezer.state", "THAWED\n"),
        ]);
        assert_eq!(cg.oom_kill_count().unwrap(), 2);
        let s = cg.stats().unwrap();
        assert_eq!(s.memory.cache, 4096);
        assert_eq!(s.memory.usage.usage, 12288);
        assert_eq!(s.memory.usage.limit, 104857600);
        assert_eq!(s.memory.swap, MemoryEntry::default());
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
        assert!(!cg.is_frozen().unwrap());
        drop(root);
        assert!(matches!(cg.stats(), Err(CgroupError::Missing { .. })));
    }
}
