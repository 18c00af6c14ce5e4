//! `berth-runtime update`: change the resources of a running container, from flags
//! or a resources.json, and record the result in state.json so that a later
//! `state`/`events` sees what is in force.

use std::io::Read;

use anyhow::Context;
use oci_spec::runtime::{Linux, LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cgroups::CgroupManager;
use crate::cli::{Cli, UpdateArgs};
use crate::state::{State, Status};

pub fn run(cli: &Cli, args: &UpdateArgs) -> anyhow::Result<i32> {
    let mut state = State::load(&cli.root, &args.id)?;
    if state.status(&cli.root) == Status::Stopped {
        anyhow::bail!("container {} is not running", args.id);
    }
    let delta = match &args.resources {
        Some(path) => {
            let mut data = Vec::new();
            if path.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            }
            serde_json::from_slice::<LinuxResources>(&data)
                .with_context(|| format!("parsing resources from {}", path.display()))?
        }
        None => from_flags(args)?,
    };
    CgroupManager::from_paths(&state.cgroup_paths)?.apply(&delta)?;
    let mut linux = state.config.linux().clone().unwrap_or_else(Linux::default);
    let merged = merge(linux.resources().clone().unwrap_or_default(), &delta);
    linux.set_resources(Some(merged));
    state.config.set_linux(Some(linux));
    state.save(&cli.root)?;
    Ok(0)
}

/// Parse a byte size: a number with an optional k/m/g suffix (binary), or -1.
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('b') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: i64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n == -1 {
        return Ok(-1);
    }
    n.checked_mul(mult)
        .filter(|v| *v >= 0)
        .with_context(|| format!("invalid size {s:?}"))
}

fn from_flags(a: &UpdateArgs) -> anyhow::Result<LinuxResources> {
    let mut r = LinuxResources::default();
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(a.memory.as_deref().map(parse_bytes).transpose()?);
        m.set_reservation(
            a.memory_reservation
                .as_deref()
                .map(parse_bytes)
                .transpose()?,
        );
        m.set_swap(a.memory_swap.as_deref().map(parse_bytes).transpose()?);
        r.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_shares(a.cpu_shares);
        c.set_quota(a.cpu_quota);
        c.set_period(a.cpu_period);
        c.set_realtime_period(a.cpu_rt_period);
        c.set_realtime_runtime(a.cpu_rt_runtime);
        c.set_cpus(a.cpuset_cpus.clone());
        c.set_mems(a.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// Overlay the values set in `delta` onto `base`.
fn merge(mut base: LinuxResources, delta: &LinuxResources) -> LinuxResources {
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
    if delta.unified().is_some() {
        base.set_unified(delta.unified().clone());
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("100m").unwrap(), 104857600);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-5").is_err());
    }

    #[test]
    fn merge_keeps_untouched_fields() {
        let mut base = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_limit(Some(100));
        m.set_reservation(Some(50));
        base.set_memory(Some(m));
        let args = UpdateArgs {
            memory: Some("200".into()),
            pids_limit: Some(10),
            ..Default::default()
        };
        let merged = merge(base, &from_flags(&args).unwrap());
        let mem = merged.memory().unwrap();
        assert_eq!(mem.limit(), Some(200));
        assert_eq!(mem.reservation(), Some(50));
        assert_eq!(merged.pids().unwrap().limit(), 10);
    }
}
