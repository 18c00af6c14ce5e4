//! The cgroup v2 (unified) backend. It takes the hierarchy's root as a parameter
//! (normally /sys/fs/cgroup) so that its file writes are tested against a fake
//! tree on hosts that are not v2.
//!
//! Device rules become an eBPF device program attached to the cgroup
//! ([`crate::device_filter`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::files::{self, FsError};
use crate::resources::{self, ResourceError};
use crate::stats::{self, MemoryEntry, Stats};
use crate::CgroupError;

/// Controllers enabled for the container's cgroup, in every ancestor's
/// cgroup.subtree_control, when the parent offers them.
const CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// How long freezing may take before it is abandoned (a process in
/// uninterruptible sleep delays it; only a stuck one makes it fail).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// One container's cgroup on a v2 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Cgroup {
    root: PathBuf,
    dir: PathBuf,
}

impl V2Cgroup {
    /// The cgroup `relative` below the hierarchy rooted at `root`.
    pub fn new(root: &Path, relative: &Path) -> Self {
        V2Cgroup {
            root: root.to_path_buf(),
            dir: root.join(relative),
        }
    }

    /// Rebuild from a recorded directory; the root is found from the mounts.
    pub fn from_dir(dir: &Path) -> Self {
        V2Cgroup {
            root: root_of(dir),
            dir: dir.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Enable the controllers the container needs in every ancestor, creating
    /// ancestors as it goes, then create the cgroup itself.
    pub fn create(&self) -> Result<(), CgroupError> {
        let relative = self.dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut cur = self.root.clone();
        for part in relative.components() {
            enable_controllers(&cur);
            cur.push(part);
            files::mkdir_all(&cur)?;
        }
        files::mkdir_all(&self.dir)?;
        Ok(())
    }

    /// Write `value` to a controller's file; a missing file means the controller
    /// is not enabled for this cgroup, which is said as such.
    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        files::write(&self.dir, file, value).map_err(|e| self.not_enabled(e, controller, file))
    }

    fn not_enabled(&self, e: FsError, controller: &str, file: &str) -> CgroupError {
        if e.is_not_found() && self.dir.is_dir() {
            CgroupError::NotEnabled {
                controller: controller.to_string(),
                file: file.to_string(),
                dir: self.dir.clone(),
            }
        } else {
            e.into()
        }
    }

    /// Write every limit the spec sets; unset ones are left as they are.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        validate(r)?;
        if let Some(m) = r.memory() {
            self.apply_memory(m)?;
        }
        if let Some(c) = r.cpu() {
            self.apply_cpu(c)?;
        }
        if let Some(p) = r.pids() {
            self.write("pids", "pids.max", &resources::pids_max(p.limit()))?;
        }
        if let Some(devices) = r.devices().as_deref().filter(|d| !d.is_empty()) {
            crate::attach_device_filter(&self.dir, devices)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_io(b)?;
        }
        for l in r.hugepage_limits().as_deref().unwrap_or_default() {
            let size = resources::hugepage_size(l.page_size())?;
            let value = if l.limit() < 0 {
                "max".to_string()
            } else {
                l.limit().to_string()
            };
            self.write("hugetlb", &format!("hugetlb.{size}.max"), &value)?;
            let rsvd = format!("hugetlb.{size}.rsvd.max");
            if files::exists(&self.dir, &rsvd) {
                self.write("hugetlb", &rsvd, &value)?;
            }
        }
        if r.network().is_some() {
            log::debug!("cgroups: network class ids and priorities do not exist on cgroup v2");
        }
        if let Some(rdma) = r.rdma() {
            for (dev, limits) in rdma {
                if let Some(line) = resources::rdma_line(dev, limits)? {
                    self.write("rdma", "rdma.max", &line)?;
                }
            }
        }
        if let Some(unified) = r.unified() {
            // Sorted, so that the outcome does not depend on hash order; written
            // last, so that explicit unified values win over converted ones.
            let mut keys: Vec<&String> = unified.keys().collect();
            keys.sort();
            for key in keys {
                let (controller, _) = resources::unified_key(key)?;
                for line in unified[key].split('\n').filter(|l| !l.trim().is_empty()) {
                    self.write(controller, key, line)?;
                }
            }
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<(), CgroupError> {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            log::debug!("cgroups: kernel memory limits do not exist on cgroup v2");
        }
        if m.swappiness().is_some() || m.disable_oom_killer().is_some() {
            log::debug!("cgroups: swappiness and disableOOMKiller do not exist on cgroup v2");
        }
        let swap = resources::v2_swap_max(m.limit(), m.swap())?;
        let max = resources::v2_limit("memory limit", m.limit())?;
        let low = resources::v2_limit("memory reservation", m.reservation())?;
        if let Some(swap) = swap {
            match files::write(&self.dir, "memory.swap.max", &swap) {
                Ok(()) => {}
                Err(e) if e.is_not_found() && files::exists(&self.dir, "memory.max") => {
                    log::debug!("cgroups: swap accounting is off; memory.swap.max is not set");
                }
                Err(e) => return Err(self.not_enabled(e, "memory", "memory.swap.max")),
            }
        }
        if let Some(max) = max {
            self.write("memory", "memory.max", &max)?;
        }
        if let Some(low) = low {
            self.write("memory", "memory.low", &low)?;
        }
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<(), CgroupError> {
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            let weight = resources::shares_to_weight(shares).to_string();
            self.write("cpu", "cpu.weight", &weight)?;
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let quota = match quota {
                Some(q) if q > 0 => q.to_string(),
                Some(_) => "max".to_string(),
                // Only the period changes: keep the quota in force.
                None => files::read(&self.dir, "cpu.max")
                    .map_err(|e| self.not_enabled(e, "cpu", "cpu.max"))?
                    .split_whitespace()
                    .next()
                    .unwrap_or("max")
                    .to_string(),
            };
            let value = match period {
                Some(p) => format!("{quota} {p}"),
                None => quota,
            };
            self.write("cpu", "cpu.max", &value)?;
        }
        if let Some(b) = c.burst() {
            self.write("cpu", "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            self.write("cpu", "cpu.idle", &i.to_string())?;
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.write("cpuset", "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.write("cpuset", "cpuset.mems", mems)?;
        }
        Ok(())
    }

    fn apply_io(&self, b: &LinuxBlockIo) -> Result<(), CgroupError> {
        if b.leaf_weight().is_some()
            || b.weight_device()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|d| d.leaf_weight().is_some())
        {
            log::debug!("cgroups: blkio leaf weights do not exist on cgroup v2");
        }
        // BFQ takes blkio's own 10..1000 scale; io.weight its 1..10000 one.
        let bfq = files::exists(&self.dir, "io.bfq.weight");
        let (file, convert): (&str, fn(u16) -> u64) = if bfq {
            ("io.bfq.weight", u64::from)
        } else {
            ("io.weight", resources::blkio_weight_to_io_weight)
        };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            self.write("io", file, &convert(w).to_string())?;
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(w) = d.weight() {
                let line = format!("{}:{} {}", d.major(), d.minor(), convert(w));
                self.write("io", file, &line)?;
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.as_deref().unwrap_or_default() {
                // v1 lifts a limit with 0; v2 with "max".
                let rate = match t.rate() {
                    0 => "max".to_string(),
                    r => r.to_string(),
                };
                let line = format!("{}:{} {key}={rate}", t.major(), t.minor());
                self.write("io", "io.max", &line)?;
            }
        }
        Ok(())
    }

    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        Ok(files::write(&self.dir, "cgroup.procs", &pid.to_string())?)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + files::REMOVE_TIMEOUT;
        Ok(files::remove_tree(&self.dir, deadline)?)
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        freeze_dir(&self.dir)
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        thaw_dir(&self.dir)
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        is_frozen_dir(&self.dir)
    }

    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(files::pids_recursive(&self.dir)?)
    }

    /// OOM kills in this cgroup and below (memory.events is hierarchical).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let text = files::read(&self.dir, "memory.events")
            .map_err(|e| self.not_enabled(e, "memory", "memory.events"))?;
        Ok(stats::parse_keyed(&text)
            .get("oom_kill")
            .copied()
            .unwrap_or(0))
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        if !self.dir.is_dir() {
            return Err(CgroupError::Missing {
                path: self.dir.clone(),
            });
        }
        let dir = &self.dir;
        let mut s = Stats::default();
        if let Some(text) = files::read_optional(dir, "cpu.stat")? {
            let m = stats::parse_keyed(&text);
            let us = |k: &str| m.get(k).copied().unwrap_or(0).saturating_mul(1000);
            s.cpu.usage.total = us("usage_usec");
            s.cpu.usage.user = us("user_usec");
            s.cpu.usage.kernel = us("system_usec");
            s.cpu.throttling.periods = m.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttling.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttling.throttled_time = us("throttled_usec");
        }
        if let Some(t) = files::read_optional(dir, "cpuset.cpus.effective")? {
            s.cpuset.cpus = stats::parse_cpu_list(&t);
        }
        if let Some(t) = files::read_optional(dir, "cpuset.mems.effective")? {
            s.cpuset.mems = stats::parse_cpu_list(&t);
        }
        if let Some(text) = files::read_optional(dir, "memory.stat")? {
            s.memory.raw = stats::parse_keyed(&text);
            s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        }
        if let Some(usage) = files::read_u64_optional(dir, "memory.current")? {
            let events = files::read_optional(dir, "memory.events")?
                .map(|t| stats::parse_keyed(&t))
                .unwrap_or_default();
            s.memory.usage = MemoryEntry {
                limit: files::read_u64_optional(dir, "memory.max")?.unwrap_or(u64::MAX),
                usage,
                max: files::read_u64_optional(dir, "memory.peak")?.unwrap_or(0),
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            // v1 reports memory+swap; so does berth on v2, for the same readers.
            if let Some(swap) = files::read_u64_optional(dir, "memory.swap.current")? {
                let swap_limit =
                    files::read_u64_optional(dir, "memory.swap.max")?.unwrap_or(u64::MAX);
                s.memory.swap = MemoryEntry {
                    limit: if swap_limit == u64::MAX || s.memory.usage.limit == u64::MAX {
                        u64::MAX
                    } else {
                        swap_limit.saturating_add(s.memory.usage.limit)
                    },
                    usage: swap.saturating_add(usage),
                    max: 0,
                    failcnt: 0,
                };
            }
        }
        s.pids.current = files::read_u64_optional(dir, "pids.current")?.unwrap_or(0);
        s.pids.limit = match files::read_u64_optional(dir, "pids.max")? {
            Some(u64::MAX) | None => 0,
            Some(v) => v,
        };
        if let Some(text) = files::read_optional(dir, "io.stat")? {
            let (bytes, ios) = stats::parse_io_stat(&text);
            s.blkio.io_service_bytes_recursive = bytes;
            s.blkio.io_serviced_recursive = ios;
        }
        for size in stats::hugetlb_sizes(dir) {
            let get = |f: &str| files::read_u64_optional(dir, &format!("hugetlb.{size}.{f}"));
            let events = files::read_optional(dir, &format!("hugetlb.{size}.events"))?
                .map(|t| stats::parse_keyed(&t))
                .unwrap_or_default();
            let entry = stats::Hugetlb {
                usage: get("current")?.unwrap_or(0),
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            s.hugetlb.insert(size, entry);
        }
        Ok(s)
    }
}

/// Checks that need no kernel, before anything is written.
fn validate(r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(d) = r.devices().as_deref().filter(|d| !d.is_empty()) {
        crate::device_filter::compile(d)?;
    }
    if let Some(m) = r.memory() {
        resources::v2_swap_max(m.limit(), m.swap())?;
        resources::v2_limit("memory limit", m.limit())?;
        resources::v2_limit("memory reservation", m.reservation())?;
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(ResourceError::Unsupported {
                what: "realtime CPU bandwidth",
                version: "v2",
            }
            .into());
        }
    }
    for l in r.hugepage_limits().as_deref().unwrap_or_default() {
        resources::hugepage_size(l.page_size())?;
    }
    if let Some(rdma) = r.rdma() {
        for (dev, limits) in rdma {
            resources::rdma_line(dev, limits)?;
        }
    }
    for key in r.unified().as_ref().map(|u| u.keys()).into_iter().flatten() {
        resources::unified_key(key)?;
    }
    Ok(())
}

/// Enable in `dir`'s cgroup.subtree_control those of [`CONTROLLERS`] that `dir`
/// offers and has not enabled yet. Failures are not errors here: a controller
/// that cannot be enabled (processes in `dir`, a realtime task for cpu) shows up
/// later, precisely, when a limit for it is written.
fn enable_controllers(dir: &Path) {
    let offered = files::read_optional(dir, "cgroup.controllers")
        .ok()
        .flatten()
        .unwrap_or_default();
    let enabled = files::read_optional(dir, "cgroup.subtree_control")
        .ok()
        .flatten()
        .unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let wanted: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| offered.contains(c) && !enabled.contains(c))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let all = wanted
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if files::write(dir, "cgroup.subtree_control", &all).is_ok() {
        return;
    }
    for c in wanted {
        if let Err(e) = files::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
            log::debug!("cgroups: {e}");
        }
    }
}

/// The root of the cgroup2 hierarchy holding `dir`: the topmost ancestor on a
/// cgroup2 filesystem (statfs), else the deepest cgroup2 mount above it in
/// mountinfo, else the first ancestor without `cgroup.type` (only the root lacks
/// it). statfs comes first because reading mountinfo costs the kernel a line per
/// mount of the namespace, and a host with many containers has thousands.
fn root_of(dir: &Path) -> PathBuf {
    // A cgroup already removed is looked for from its nearest existing ancestor.
    let topmost = dir
        .ancestors()
        .skip_while(|p| !p.exists())
        .take_while(|p| crate::layout::is_cgroup2(p))
        .last();
    if let Some(root) = topmost {
        return root.to_path_buf();
    }
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let best = crate::layout::parse_mountinfo(&info)
            .into_iter()
            .filter(|m| m.fstype == "cgroup2" && dir.starts_with(&m.mount_point))
            .map(|m| m.mount_point)
            .max_by_key(|p| p.components().count());
        if let Some(root) = best {
            return root;
        }
    }
    let mut cur = dir;
    while let Some(parent) = cur.parent() {
        if parent.is_dir() && !files::exists(parent, "cgroup.type") {
            return parent.to_path_buf();
        }
        cur = parent;
    }
    PathBuf::from(crate::layout::DEFAULT_ROOT)
}

/// Freeze through cgroup.freeze and wait until cgroup.events says `frozen 1`;
/// thaw back and fail if it never does.
pub fn freeze_dir(dir: &Path) -> Result<(), CgroupError> {
    files::write(dir, "cgroup.freeze", "1")?;
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        let events = stats::parse_keyed(&files::read(dir, "cgroup.events")?);
        if events.get("frozen") == Some(&1) {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            let _ = files::write(dir, "cgroup.freeze", "0");
            return Err(CgroupError::FreezeFailed {
                path: dir.join("cgroup.events"),
                state: "frozen 0".into(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

pub fn thaw_dir(dir: &Path) -> Result<(), CgroupError> {
    Ok(files::write(dir, "cgroup.freeze", "0")?)
}

/// Whether a freeze was asked of this cgroup itself.
pub fn is_frozen_dir(dir: &Path) -> Result<bool, CgroupError> {
    Ok(files::read_optional(dir, "cgroup.freeze")?.is_some_and(|s| s.trim() == "1"))
}

#[cfg(test)]
mod tests {
    //! The v2 backend against a fake tree that mimics cgroup2's files.
    use super::*;

    /// A fake hierarchy: the root offers every controller; `berth` exists and
    /// offers them too; the container's cgroup `berth/x` has the files the kernel
    /// would give it once the controllers are enabled.
    fn fake() -> (tempfile::TempDir, V2Cgroup) {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let all = "cpuset cpu io memory hugetlb pids rdma misc\n";
        std::fs::write(r.join("cgroup.controllers"), all).unwrap();
        std::fs::write(r.join("cgroup.subtree_control"), "memory\n").unwrap();
        std::fs::create_dir_all(r.join("berth/x")).unwrap();
        std::fs::write(r.join("berth/cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(r.join("berth/cgroup.subtree_control"), "").unwrap();
        std::fs::write(r.join("berth/cgroup.type"), "domain\n").unwrap();
        for f in [
            "cgroup.procs",
            "cgroup.freeze",
            "cgroup.type",
            "memory.max",
            "memory.low",
            "memory.swap.max",
            "cpu.weight",
            "cpu.max",
            "cpuset.cpus",
            "cpuset.mems",
            "pids.max",
            "io.weight",
            "io.max",
            "hugetlb.2MB.max",
            "memory.high",
        ] {
            std::fs::write(r.join("berth/x").join(f), "").unwrap();
        }
        let cg = V2Cgroup::new(r, Path::new("berth/x"));
        (root, cg)
    }

    fn read(cg: &V2Cgroup, f: &str) -> String {
        std::fs::read_to_string(cg.dir().join(f)).unwrap()
    }

    #[test]
    fn create_enables_controllers_in_every_ancestor() {
        let (root, cg) = fake();
        std::fs::remove_dir_all(root.path().join("berth/x")).unwrap();
        cg.create().unwrap();
        assert!(cg.dir().is_dir());
        // The root had memory already: only what was missing is written.
        assert_eq!(
            std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +io +pids +hugetlb +rdma +misc"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("berth/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        // Nothing is enabled inside the container's own cgroup (it holds processes).
        assert!(!cg.dir().join("cgroup.subtree_control").exists());
    }

    #[test]
    fn writes_v2_files() {
        let (_root, cg) = fake();
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":104857600,"swap":314572800,"reservation":52428800,"swappiness":5},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"},
                "pids":{"limit":20},
                "blockIO":{"weight":500,
                           "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":100}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":-1}],
                "unified":{"memory.high":"90000000"}}"#,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(&cg, "memory.max"), "104857600");
        assert_eq!(read(&cg, "memory.swap.max"), "209715200");
        assert_eq!(read(&cg, "memory.low"), "52428800");
        assert_eq!(read(&cg, "cpu.weight"), "39");
        assert_eq!(read(&cg, "cpu.max"), "50000 100000");
        assert_eq!(read(&cg, "cpuset.cpus"), "0-1");
        assert_eq!(read(&cg, "cpuset.mems"), "0");
        assert_eq!(read(&cg, "pids.max"), "20");
        assert_eq!(read(&cg, "io.weight"), "4950");
        assert_eq!(read(&cg, "io.max"), "8:0 wiops=100");
        assert_eq!(read(&cg, "hugetlb.2MB.max"), "max");
        assert_eq!(read(&cg, "memory.high"), "90000000");
    }

    #[test]
    fn unlimited_values_are_max() {
        let (_root, cg) = fake();
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":-1},"cpu":{"quota":-1,"period":50000},"pids":{"limit":-1}}"#,
        )
        .unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(&cg, "memory.max"), "max");
        assert_eq!(read(&cg, "memory.swap.max"), "max");
        assert_eq!(read(&cg, "cpu.max"), "max 50000");
        assert_eq!(read(&cg, "pids.max"), "max");
    }

    #[test]
    fn a_new_period_keeps_the_quota() {
        let (_root, cg) = fake();
        std::fs::write(cg.dir().join("cpu.max"), "25000 100000\n").unwrap();
        let r: LinuxResources = serde_json::from_str(r#"{"cpu":{"period":200000}}"#).unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(&cg, "cpu.max"), "25000 200000");
    }

    #[test]
    fn missing_controller_and_bad_values_are_errors() {
        let (_root, cg) = fake();
        std::fs::remove_file(cg.dir().join("pids.max")).unwrap();
        let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":5}}"#).unwrap();
        let err = cg.apply(&r).unwrap_err();
        assert!(
            matches!(&err, CgroupError::NotEnabled { controller, .. } if controller == "pids"),
            "{err}"
        );
        let swap: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":200,"swap":100}}"#).unwrap();
        assert!(cg.apply(&swap).is_err());
        assert_eq!(
            read(&cg, "memory.max"),
            "",
            "nothing written for a bad spec"
        );
        let rt: LinuxResources =
            serde_json::from_str(r#"{"cpu":{"realtimeRuntime":1000}}"#).unwrap();
        assert!(cg.apply(&rt).is_err());
        let key: LinuxResources =
            serde_json::from_str(r#"{"unified":{"../../memory.max":"1"}}"#).unwrap();
        assert!(cg.apply(&key).is_err());
        let ctrl: LinuxResources =
            serde_json::from_str(r#"{"unified":{"misc.max":"x 1"}}"#).unwrap();
        assert!(matches!(
            cg.apply(&ctrl),
            Err(CgroupError::NotEnabled { .. })
        ));
    }

    #[test]
    fn swap_is_skipped_without_swap_accounting() {
        let (_root, cg) = fake();
        std::fs::remove_file(cg.dir().join("memory.swap.max")).unwrap();
        let r: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":1000,"swap":2000}}"#).unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(&cg, "memory.max"), "1000");
    }

    #[test]
    fn freeze_waits_for_the_events_file() {
        let (_root, cg) = fake();
        std::fs::write(cg.dir().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze().unwrap();
        assert_eq!(read(&cg, "cgroup.freeze"), "1");
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert!(!cg.is_frozen().unwrap());
    }

    #[test]
    fn stats_oom_and_pids_from_files() {
        let (_root, cg) = fake();
        let w = |f: &str, c: &str| std::fs::write(cg.dir().join(f), c).unwrap();
        w("cgroup.procs", "10\n11\n");
        std::fs::create_dir_all(cg.dir().join("sub")).unwrap();
        std::fs::write(cg.dir().join("sub/cgroup.procs"), "12\n").unwrap();
        w("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n");
        w("memory.stat", "anon 100\nfile 200\n");
        w("memory.current", "300\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
        w("memory.swap.current", "10\n");
        w("memory.swap.max", "max\n");
        w("pids.current", "3\n");
        w("pids.max", "20\n");
        w(
            "io.stat",
            "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        w("hugetlb.2MB.current", "0\n");
        assert_eq!(cg.pids().unwrap(), vec![10, 11, 12]);
        assert_eq!(cg.oom_kill_count().unwrap(), 1);
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu.usage.total, 1_500_000);
        assert_eq!(s.cpu.usage.kernel, 500_000);
        assert_eq!(s.cpu.throttling.throttled_time, 7000);
        assert_eq!(s.memory.cache, 200);
        assert_eq!(s.memory.usage.usage, 300);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 5);
        assert_eq!(s.memory.swap.usage, 310);
        assert_eq!(s.pids.limit, 20);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
        assert!(s.hugetlb.contains_key("2MB"));
    }

    #[test]
    fn root_of_a_fake_tree_is_found_by_cgroup_type() {
        let (root, cg) = fake();
        assert_eq!(root_of(cg.dir()), root.path());
    }
}
