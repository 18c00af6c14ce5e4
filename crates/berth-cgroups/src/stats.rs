//! Resource usage in the shape of runc's `events --stats` "data" object (runc's
//! `types.Stats`), so that containerd, Docker and anything else that reads runc's
//! output read berth's the same way, and the parsers for the kernel's stat files.
//!
//! Go's `omitempty`/`omitzero` are mirrored with `skip_serializing_if`; what the
//! layout cannot give is left at zero and so omitted. PSI, Intel RDT and network
//! interfaces are not reported.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Usage of one cgroup, runc's `types.Stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: CpuUsage,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: MemoryEntry,
    /// memory+swap, as cgroup v1 counts it (v2's swap is added to its memory).
    #[serde(skip_serializing_if = "is_zero")]
    pub swap: MemoryEntry,
    #[serde(skip_serializing_if = "is_zero")]
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP", skip_serializing_if = "is_zero")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as the kernel gives it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; a limit of "max" reads as `u64::MAX`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control);
/// lines that are not a key and a number are skipped.
pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), crate::files::parse_u64(v)?))
        })
        .collect()
}

/// Whitespace-separated numbers (cpuacct.usage_percpu).
pub fn parse_numbers(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// cpuacct.usage_all: a `cpu user system` header, then one line per CPU.
/// Returns (kernel, user) per CPU.
pub fn parse_usage_all(text: &str) -> (Vec<u64>, Vec<u64>) {
    let mut kernel = Vec::new();
    let mut user = Vec::new();
    for line in text.lines().skip(1) {
        let v = parse_numbers(line);
        if let [_, u, s] = v.as_slice() {
            user.push(*u);
            kernel.push(*s);
        }
    }
    (kernel, user)
}

/// A cpu or memory-node list (`0-3,8,10-11`).
pub fn parse_cpu_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.trim().parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// A v1 blkio stat file: `8:0 Read 4096` lines (and `Total N`, skipped), or
/// `8:0 4096` for files without an operation (blkio.sectors_recursive).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields.as_slice() {
            [dev, op, value] => (*dev, *op, *value),
            [dev, value] if dev.contains(':') => (*dev, "", *value),
            _ => continue,
        };
        let Some((major, minor)) = parse_dev(dev) else {
            continue;
        };
        let Ok(value) = value.parse() else {
            continue;
        };
        out.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    out
}

/// v2 io.stat (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`) in v1's terms:
/// (service bytes, serviced ios), each with Read and Write entries.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(parse_dev) else {
            continue;
        };
        for kv in fields {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else {
                continue;
            };
            let (table, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The hugepage sizes a cgroup directory has files for (`hugetlb.2MB.max` or
/// `hugetlb.2MB.limit_in_bytes` → `2MB`).
pub fn hugetlb_sizes(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("hugetlb.")?;
            let (size, _) = rest.split_once('.')?;
            crate::resources::hugepage_size(size)
                .ok()
                .map(str::to_string)
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

/// USER_HZ, the unit of cpuacct.stat.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let m = parse_keyed(
            "cache 4096\nrss 8192\nhierarchical_memory_limit 9223372036854771712\n\nbad\n",
        );
        assert_eq!(m["cache"], 4096);
        assert_eq!(m["rss"], 8192);
        assert_eq!(m["hierarchical_memory_limit"], 9223372036854771712);
        assert_eq!(m.len(), 3);
        let oom = parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(oom["oom_kill"], 3);
        let ev = parse_keyed("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(ev["oom_kill"], 1);
        assert_eq!(ev["max"], 12);
    }

    #[test]
    fn cpu_files() {
        assert_eq!(parse_numbers("10 20 \n"), vec![10, 20]);
        let (k, u) = parse_usage_all("cpu user system\n0 100 7\n1 200 9\n");
        assert_eq!(k, vec![7, 9]);
        assert_eq!(u, vec![100, 200]);
        assert_eq!(parse_cpu_list("0-2,5,7-8\n"), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(parse_cpu_list("\n"), Vec::<u16>::new());
    }

    #[test]
    fn blkio_files() {
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
        let (bytes, ios) =
            parse_io_stat("254:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n");
        assert_eq!(bytes.len(), 2);
        assert_eq!(bytes[0].op, "Read");
        assert_eq!(bytes[0].major, 254);
        assert_eq!(ios[1].value, 4);
    }

    #[test]
    fn serializes_like_runc() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.usage.percpu = vec![2, 3];
        s.memory.usage.limit = 100;
        s.memory.usage.usage = 10;
        s.memory.raw.insert("cache".into(), 1);
        s.pids.current = 1;
        s.blkio.io_service_bytes_recursive.push(BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 1,
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["cpu"],
            serde_json::json!({"usage": {"total": 5, "percpu": [2, 3], "kernel": 0, "user": 0}})
        );
        assert_eq!(
            v["memory"],
            serde_json::json!({"usage": {"limit": 100, "usage": 10, "failcnt": 0}, "raw": {"cache": 1}})
        );
        assert_eq!(v["pids"], serde_json::json!({"current": 1}));
        assert_eq!(
            v["blkio"],
            serde_json::json!({"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 1}]})
        );
        assert_eq!(v["hugetlb"], serde_json::json!({}));
        assert_eq!(v["cpuset"]["cpu_exclusive"], 0);
        let back: Stats = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
