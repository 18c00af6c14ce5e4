//! `berth-runtime spec`: write a starting config.json into the bundle, the one
//! `runc spec` writes (with berth's hostname), built from oci-spec's types so it
//! always parses back.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
};
use serde::Serialize;

use crate::cli::{Cli, SpecArgs};
use crate::commands::features::OCI_VERSION;

/// The file `spec` writes and `create` reads.
pub const CONFIG_FILE: &str = "config.json";

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> anyhow::Result<Mount> {
    let mut b = MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        b = b.options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>());
    }
    b.build().with_context(|| format!("build the {dest} mount"))
}

fn build() -> anyhow::Result<Spec> {
    let caps: oci_spec::runtime::Capabilities = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        .build()?;
    // The builder fills unset lists from LinuxCapabilities::default(), which is
    // not empty; runc's config has no inheritable or ambient list.
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    let process = ProcessBuilder::default()
        .terminal(true)
        .args(vec!["sh".to_string()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "TERM=xterm".to_string(),
        ])
        .cwd("/")
        .no_new_privileges(true)
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()?])
        .build()?;

    let mounts = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    // As runc: a cgroup namespace only on a cgroup v2 host. On v1 and hybrid
    // hosts the container sees its cgroup paths from the host's root, which
    // is what tools reading /proc/self/cgroup there expect.
    if cgroup_v2_host() {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;

    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let linux = LinuxBuilder::default()
        .masked_paths(strings(&[
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]))
        .readonly_paths(strings(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()?])
                .build()?,
        )
        .namespaces(namespaces)
        .build()?;

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()?,
        )
        .process(process)
        .hostname("berth")
        .mounts(mounts)
        .linux(linux)
        .build()?;
    // Spec::default() (the builder's base) carries an empty annotations map.
    spec.set_annotations(None);
    Ok(spec)
}

/// Whether this host has only the cgroup v2 hierarchy.
fn cgroup_v2_host() -> bool {
    matches!(
        crate::cgroups::Layout::detect(),
        Ok(crate::cgroups::Layout::V2 { .. })
    )
}

/// The config `spec` writes: runc's example config with hostname "berth".
pub fn default_spec() -> Spec {
    // Every builder above gets all it needs, so build() cannot fail; the fallback
    // only keeps this signature free of a Result.
    build().unwrap_or_default()
}

/// The spec as config.json text, tab-indented like runc's. oci-spec keeps
/// capabilities in hash sets, whose order changes from run to run; going through
/// a JSON value (sorted keys) with sorted capability lists makes the file the same
/// every time.
pub fn to_json(spec: &Spec) -> anyhow::Result<Vec<u8>> {
    let mut value = serde_json::to_value(spec).context("serialize the spec")?;
    if let Some(sets) = value
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for list in sets.values_mut() {
            if let Some(items) = list.as_array_mut() {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).context("serialize the spec")?;
    out.push(b'\n');
    Ok(out)
}

pub fn run(_cli: &Cli, args: &SpecArgs) -> anyhow::Result<i32> {
    let bundle: PathBuf = args.bundle.clone();
    if !bundle.is_dir() {
        anyhow::bail!("bundle {} is not a directory", bundle.display());
    }
    let path = bundle.join(CONFIG_FILE);
    let data = to_json(&build()?)?;
    // O_EXCL: an existing config.json is never overwritten, even by a race.
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            anyhow::bail!("File {CONFIG_FILE} exists. Remove it first.")
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
    };
    file.write_all(&data)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn default_spec_has_runc_shape() {
        let spec = default_spec();
        assert_eq!(spec.version(), OCI_VERSION);
        assert_eq!(spec.hostname().as_deref(), Some("berth"));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), &PathBuf::from("rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.cwd(), &PathBuf::from("/"));
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 3);
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        let rl = p.rlimits().as_ref().unwrap();
        assert_eq!(
            (rl[0].typ(), rl[0].soft(), rl[0].hard()),
            (PosixRlimitType::RlimitNofile, 1024, 1024)
        );
        let dests: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(ns.len(), if cgroup_v2_host() { 6 } else { 5 });
        assert_eq!(ns.contains(&LinuxNamespaceType::Cgroup), cgroup_v2_host());
        assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 10);
        assert_eq!(linux.readonly_paths().as_ref().unwrap().len(), 5);
    }

    #[test]
    fn json_round_trips_and_uses_spec_names() {
        let spec = default_spec();
        let data = to_json(&spec).unwrap();
        let back: Spec = serde_json::from_slice(&data).unwrap();
        assert_eq!(back, spec);
        let raw: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(raw["ociVersion"], OCI_VERSION);
        assert_eq!(
            raw["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(raw["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(raw["process"]["noNewPrivileges"], true);
        assert_eq!(raw["linux"]["namespaces"][1]["type"], "network");
        assert_eq!(raw["linux"]["resources"]["devices"][0]["access"], "rwm");
        assert_eq!(raw["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(raw["mounts"][2]["options"][3], "ptmxmode=0666");
        assert!(raw["mounts"][0].get("options").is_none());
        assert!(raw.get("annotations").is_none());
        assert!(raw["process"]["capabilities"].get("ambient").is_none());
        assert_eq!(
            raw["process"]["capabilities"]["effective"],
            serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(to_json(&default_spec()).unwrap(), data);
        assert!(String::from_utf8(data)
            .unwrap()
            .contains("\n\t\"ociVersion\""));
    }

    #[test]
    fn spec_writes_once_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from([
            "berth-runtime",
            "spec",
            "--bundle",
            d.path().to_str().unwrap(),
        ]);
        let Some(crate::cli::Command::Spec(args)) = &cli.command else {
            panic!("not parsed as spec");
        };
        assert_eq!(run(&cli, args).unwrap(), 0);
        let written: Spec = Spec::load(d.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(written, default_spec());
        let e = run(&cli, args).unwrap_err();
        assert!(
            e.to_string()
                .contains("File config.json exists. Remove it first"),
            "{e}"
        );

        let missing = SpecArgs {
            bundle: d.path().join("nope"),
        };
        assert!(run(&cli, &missing).is_err());
    }
}
