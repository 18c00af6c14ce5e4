//! `berth-runtime update`: change the resources of a running container, from flags
//! or a resources.json, and record the result in state.json so that a later
//! `state`/`events` sees what is in force.

use std::io::Read;

use anyhow::Context;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cli::{Cli, UpdateArgs};
use crate::Container;

pub fn run(cli: &Cli, args: &UpdateArgs) -> anyhow::Result<i32> {
    let mut c = Container::load(&cli.root, &args.id)?;
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
    c.update(&delta)?;
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
}
