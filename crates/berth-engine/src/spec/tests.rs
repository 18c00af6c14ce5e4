//! Tests of the spec generator: each checks one Docker behaviour on the produced spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, ImageConfig, ResourcesUlimits};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Mount, PosixRlimitType, Spec};

use super::*;

struct Vols;
impl VolumeResolver for Vols {
    fn resolve(&self, name: &str) -> Result<PathBuf, SpecError> {
        Ok(PathBuf::from(format!(
            "/var/lib/berth/volumes/{name}/_data"
        )))
    }
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Fixture {
    rootfs: tempfile::TempDir,
    facts: HostFacts,
}

impl Fixture {
    fn new() -> Fixture {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nvideo:x:44:\n",
        )
        .unwrap();
        Fixture {
            rootfs,
            facts: HostFacts {
                hostname: "the-host".into(),
                cgroup_v2: false,
                devices: vec![],
                blkio_weight: true,
            },
        }
    }

    fn build(
        &self,
        config: &ContainerConfig,
        hc: &HostConfig,
        image: &ImageConfig,
    ) -> Result<Spec, SpecError> {
        build_spec(&SpecInput {
            id: ID,
            config,
            host_config: hc,
            image,
            rootfs: self.rootfs.path(),
            container_dir: Path::new("/data/containers/x"),
            init_path: Path::new("/usr/libexec/berth/berth-init"),
            volumes: &Vols,
            host: &self.facts,
        })
    }

    fn spec(&self, hc: HostConfig) -> Spec {
        self.build(&cmd(&["sh"]), &hc, &ImageConfig::default())
            .unwrap()
    }

    /// Whether a plain `sh` with this HostConfig is refused.
    fn refuses(&self, hc: &HostConfig) -> bool {
        self.build(&cmd(&["sh"]), hc, &ImageConfig::default())
            .is_err()
    }
}

fn cmd(args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        cmd: Some(args.iter().map(|s| s.to_string()).collect()),
        ..ContainerConfig::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn find_mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn opts(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn bounding(spec: &Spec) -> Vec<Capability> {
    let mut v: Vec<Capability> = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
        .into_iter()
        .collect();
    v.sort_by_key(|c| c.to_string());
    v
}

fn env(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

fn args(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

#[test]
fn defaults_match_docker() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig::default());
    assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new(&format!("/berth/{ID}")))
    );
    assert_eq!(bounding(&spec).len(), 14);
    assert!(bounding(&spec).contains(&Capability::NetBindService));
    assert!(!bounding(&spec).contains(&Capability::SysAdmin));
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(linux
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));
    let ns: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ] {
        assert!(ns.contains(&t), "{t:?}");
    }
    assert!(
        !ns.contains(&LinuxNamespaceType::Cgroup),
        "cgroup v1 host: host cgroupns"
    );
    for dest in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(find_mount(&spec, dest).is_some(), "{dest}");
    }
    assert!(opts(find_mount(&spec, "/dev/shm").unwrap()).contains(&"size=67108864".to_string()));
    assert!(opts(find_mount(&spec, "/sys").unwrap()).contains(&"ro".to_string()));
    assert!(opts(find_mount(&spec, "/sys/fs/cgroup").unwrap()).contains(&"ro".to_string()));
    let hosts = find_mount(&spec, "/etc/hosts").unwrap();
    assert_eq!(
        hosts.source().as_deref(),
        Some(Path::new("/data/containers/x/hosts"))
    );
    assert!(find_mount(&spec, "/etc/resolv.conf").is_some());
    assert!(find_mount(&spec, "/etc/hostname").is_some());
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(p.user().uid(), 0);
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
    assert!(
        linux.seccomp().is_some(),
        "Docker's default seccomp profile"
    );
    let devs = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(!devs[0].allow());
}

#[test]
fn cgroup_v2_hosts_get_a_private_cgroup_namespace() {
    let mut f = Fixture::new();
    f.facts.cgroup_v2 = true;
    let spec = f.spec(HostConfig::default());
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
}

#[test]
fn env_merges_image_user_path_hostname_and_term() {
    let f = Fixture::new();
    let image = ImageConfig {
        env: Some(strings(&["PATH=/opt/bin:/bin", "A=image", "B=image"])),
        cmd: Some(strings(&["sh"])),
        ..ImageConfig::default()
    };
    let config = ContainerConfig {
        env: Some(strings(&["B=user", "C=user"])),
        tty: Some(true),
        ..ContainerConfig::default()
    };
    let spec = f.build(&config, &HostConfig::default(), &image).unwrap();
    assert_eq!(
        env(&spec),
        strings(&[
            "PATH=/opt/bin:/bin",
            "HOSTNAME=0123456789ab",
            "TERM=xterm",
            "A=image",
            "B=user",
            "C=user",
            "HOME=/root",
        ])
    );
    let spec = f.spec(HostConfig::default());
    assert_eq!(env(&spec)[0], defaults::DEFAULT_PATH);
    assert!(!env(&spec).iter().any(|e| e.starts_with("TERM=")));
}

#[test]
fn entrypoint_and_cmd_merge_like_docker() {
    let image = ImageConfig {
        entrypoint: Some(strings(&["/entry"])),
        cmd: Some(strings(&["--default"])),
        ..ImageConfig::default()
    };
    let merged = |c: ContainerConfig| {
        let mut c = c;
        merge_image_config(&mut c, &image);
        command(&c)
    };
    // nothing given: image entrypoint + image cmd
    assert_eq!(
        merged(ContainerConfig::default()).unwrap(),
        ["/entry", "--default"]
    );
    // cmd given: image entrypoint + user cmd
    assert_eq!(merged(cmd(&["x"])).unwrap(), ["/entry", "x"]);
    // entrypoint given: the image cmd is dropped
    let c = ContainerConfig {
        entrypoint: Some(strings(&["/other"])),
        ..ContainerConfig::default()
    };
    assert_eq!(merged(c).unwrap(), ["/other"]);
    // --entrypoint "" resets it: the image cmd alone
    let c = ContainerConfig {
        entrypoint: Some(strings(&[""])),
        ..ContainerConfig::default()
    };
    assert_eq!(merged(c).unwrap(), ["--default"]);
    // nothing anywhere
    let mut c = ContainerConfig::default();
    merge_image_config(&mut c, &ImageConfig::default());
    let e = command(&c).unwrap_err();
    assert_eq!(e.to_string(), "No command specified");
}

#[test]
fn image_working_dir_user_and_labels_are_inherited() {
    let image = ImageConfig {
        working_dir: Some("/app".into()),
        user: Some("nobody".into()),
        labels: Some(HashMap::from([
            ("a".into(), "1".into()),
            ("b".into(), "1".into()),
        ])),
        stop_signal: Some("SIGQUIT".into()),
        cmd: Some(strings(&["run"])),
        ..ImageConfig::default()
    };
    let mut c = ContainerConfig {
        labels: Some(HashMap::from([("b".into(), "2".into())])),
        ..ContainerConfig::default()
    };
    merge_image_config(&mut c, &image);
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    let labels = c.labels.clone().unwrap();
    assert_eq!(labels["a"], "1");
    assert_eq!(labels["b"], "2");
    let f = Fixture::new();
    let spec = f
        .build(&ContainerConfig::default(), &HostConfig::default(), &image)
        .unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.cwd(), Path::new("/app"));
    assert_eq!((p.user().uid(), p.user().gid()), (65534, 65534));
}

#[test]
fn non_root_users_get_no_effective_caps() {
    let f = Fixture::new();
    let config = ContainerConfig {
        user: Some("nobody".into()),
        ..cmd(&["sh"])
    };
    let hc = HostConfig {
        group_add: Some(strings(&["video", "1234"])),
        ..HostConfig::default()
    };
    let spec = f.build(&config, &hc, &ImageConfig::default()).unwrap();
    let p = spec.process().as_ref().unwrap();
    let caps = p.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(caps.effective().as_ref().unwrap().is_empty());
    assert!(caps.permitted().as_ref().unwrap().is_empty());
    assert_eq!(p.user().additional_gids().clone().unwrap(), vec![44, 1234]);
    assert!(env(&spec).contains(&"HOME=/home".to_string()));
}

#[test]
fn unknown_user_is_an_error() {
    let f = Fixture::new();
    let config = ContainerConfig {
        user: Some("ghost".into()),
        ..cmd(&["sh"])
    };
    let e = f
        .build(&config, &HostConfig::default(), &ImageConfig::default())
        .unwrap_err();
    assert!(matches!(e, SpecError::User(_)));
}

#[test]
fn hostname_set_or_host_network() {
    let f = Fixture::new();
    let config = ContainerConfig {
        hostname: Some("web".into()),
        domainname: Some("example.com".into()),
        ..cmd(&["sh"])
    };
    let spec = f
        .build(&config, &HostConfig::default(), &ImageConfig::default())
        .unwrap();
    assert_eq!(spec.hostname().as_deref(), Some("web"));
    assert_eq!(spec.domainname().as_deref(), Some("example.com"));
    assert!(env(&spec).contains(&"HOSTNAME=web".to_string()));
    // Without a UTS namespace of its own there is no domain name to set.
    let host_uts = HostConfig {
        uts_mode: Some("host".into()),
        ..HostConfig::default()
    };
    let config = ContainerConfig {
        domainname: Some("example.com".into()),
        ..cmd(&["sh"])
    };
    let spec = f
        .build(&config, &host_uts, &ImageConfig::default())
        .unwrap();
    assert_eq!(spec.domainname().as_deref(), None);
    let hc = HostConfig {
        network_mode: Some("host".into()),
        ..HostConfig::default()
    };
    let spec = f.spec(hc);
    assert_eq!(spec.hostname().as_deref(), Some("the-host"));
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
}

#[test]
fn network_modes() {
    let f = Fixture::new();
    for mode in ["none", "default", "bridge", ""] {
        let spec = f.spec(HostConfig {
            network_mode: Some(mode.into()),
            ..HostConfig::default()
        });
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(
            ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network),
            "{mode}"
        );
    }
    // A user network or another container's: a namespace of its own too (the
    // network module puts its path in).
    for mode in ["mynet", "container:abc"] {
        let spec = f.spec(HostConfig {
            network_mode: Some(mode.into()),
            ..HostConfig::default()
        });
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(
            ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network),
            "{mode}"
        );
    }
}

#[test]
fn memory_limits() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        memory: Some(100 * 1024 * 1024),
        memory_reservation: Some(50 * 1024 * 1024),
        oom_kill_disable: Some(true),
        ..HostConfig::default()
    });
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let mem = res.memory().unwrap();
    assert_eq!(mem.limit(), Some(104857600));
    assert_eq!(
        mem.swap(),
        Some(2 * 104857600),
        "swap defaults to twice the memory"
    );
    assert_eq!(mem.reservation(), Some(50 * 1024 * 1024));
    assert_eq!(mem.disable_oom_killer(), Some(true));
    let spec = f.spec(HostConfig {
        memory: Some(100 * 1024 * 1024),
        memory_swap: Some(-1),
        ..HostConfig::default()
    });
    let mem = spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap()
        .memory()
        .unwrap();
    assert_eq!(mem.swap(), Some(-1));
}

#[test]
fn bad_memory_limits_are_400s() {
    let f = Fixture::new();
    let cases = [
        HostConfig {
            memory: Some(1024),
            ..HostConfig::default()
        },
        HostConfig {
            memory: Some(100 << 20),
            memory_swap: Some(50 << 20),
            ..HostConfig::default()
        },
        HostConfig {
            memory_swap: Some(50 << 20),
            ..HostConfig::default()
        },
        HostConfig {
            memory: Some(10 << 20),
            memory_reservation: Some(20 << 20),
            ..HostConfig::default()
        },
        // Overflows: Memory × 2 for the default swap, NanoCpus × the period.
        HostConfig {
            memory: Some(i64::MAX),
            ..HostConfig::default()
        },
        HostConfig {
            nano_cpus: Some(i64::MAX),
            ..HostConfig::default()
        },
        HostConfig {
            nano_cpus: Some(-1),
            ..HostConfig::default()
        },
        HostConfig {
            nano_cpus: Some(1000),
            ..HostConfig::default()
        },
    ];
    for hc in cases {
        let e = f
            .build(&cmd(&["sh"]), &hc, &ImageConfig::default())
            .unwrap_err();
        assert!(matches!(e, SpecError::Invalid(_)), "{hc:?}");
    }
}

#[test]
fn cpu_limits() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        nano_cpus: Some(1_500_000_000),
        cpu_shares: Some(512),
        cpuset_cpus: Some("0-1".into()),
        ..HostConfig::default()
    });
    let cpu = spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap()
        .cpu()
        .clone()
        .unwrap();
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.quota(), Some(150_000));
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
    let spec = f.spec(HostConfig {
        cpu_quota: Some(50_000),
        cpu_period: Some(200_000),
        ..HostConfig::default()
    });
    let cpu = spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap()
        .cpu()
        .clone()
        .unwrap();
    assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(200_000)));
    let e = f
        .build(
            &cmd(&["sh"]),
            &HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_quota: Some(50_000),
                ..HostConfig::default()
            },
            &ImageConfig::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("Nano CPUs and CPU Quota"));
}

#[test]
fn pids_limit_and_ulimits() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        pids_limit: Some(64),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nproc".into()),
            soft: Some(10),
            hard: Some(20),
        }]),
        ..HostConfig::default()
    });
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(res.pids().as_ref().unwrap().limit(), 64);
    let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
    let nproc = rl
        .iter()
        .find(|r| r.typ() == PosixRlimitType::RlimitNproc)
        .unwrap();
    assert_eq!((nproc.soft(), nproc.hard()), (10, 20));
    assert!(rl.iter().any(|r| r.typ() == PosixRlimitType::RlimitNofile));
    // -1 and 0 mean unlimited
    let spec = f.spec(HostConfig {
        pids_limit: Some(-1),
        ..HostConfig::default()
    });
    assert!(spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .pids()
        .is_none());
    let bad = HostConfig {
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(20),
            hard: Some(10),
        }]),
        ..HostConfig::default()
    };
    assert!(f
        .build(&cmd(&["sh"]), &bad, &ImageConfig::default())
        .is_err());
    let unknown = HostConfig {
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("bogus".into()),
            soft: Some(1),
            hard: Some(1),
        }]),
        ..HostConfig::default()
    };
    assert!(f
        .build(&cmd(&["sh"]), &unknown, &ImageConfig::default())
        .is_err());
}

#[test]
fn privileged_gets_everything() {
    let mut f = Fixture::new();
    f.facts.devices = host_devices(Path::new("/dev"));
    let spec = f.spec(HostConfig {
        privileged: Some(true),
        cap_drop: Some(strings(&["ALL"])),
        ..HostConfig::default()
    });
    assert_eq!(bounding(&spec).len(), defaults::all_caps().len());
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    assert!(opts(find_mount(&spec, "/sys").unwrap()).contains(&"rw".to_string()));
    let devs = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(devs.len(), 1);
    assert!(devs[0].allow());
    let host_devs = linux.devices().clone().unwrap();
    assert!(host_devs.iter().any(|d| d.path() == Path::new("/dev/null")));
}

#[test]
fn cap_add_drop() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        cap_add: Some(strings(&["SYS_ADMIN"])),
        cap_drop: Some(strings(&["NET_RAW"])),
        ..HostConfig::default()
    });
    let caps = bounding(&spec);
    assert!(caps.contains(&Capability::SysAdmin));
    assert!(!caps.contains(&Capability::NetRaw));
    let spec = f.spec(HostConfig {
        cap_drop: Some(strings(&["ALL"])),
        ..HostConfig::default()
    });
    assert!(bounding(&spec).is_empty());
    let e = f
        .build(
            &cmd(&["sh"]),
            &HostConfig {
                cap_add: Some(strings(&["NOT_A_CAP"])),
                ..HostConfig::default()
            },
            &ImageConfig::default(),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "unknown capability: \"CAP_NOT_A_CAP\"");
}

#[test]
fn security_opts() {
    let f = Fixture::new();
    for opt in [
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
    ] {
        let spec = f.spec(HostConfig {
            security_opt: Some(strings(&[opt])),
            ..HostConfig::default()
        });
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true),
            "{opt}"
        );
    }
    let spec = f.spec(HostConfig {
        security_opt: Some(strings(&["seccomp=unconfined", "apparmor=unconfined"])),
        ..HostConfig::default()
    });
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    for bad in ["bogus", "no-new-privileges=maybe"] {
        let e = f
            .build(
                &cmd(&["sh"]),
                &HostConfig {
                    security_opt: Some(strings(&[bad])),
                    ..HostConfig::default()
                },
                &ImageConfig::default(),
            )
            .unwrap_err();
        assert!(matches!(e, SpecError::Invalid(_)), "{bad}");
    }
    // A custom profile in Docker's format is honoured; a broken one is a 400.
    let spec = f.spec(HostConfig {
        security_opt: Some(strings(&[
            "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"mkdir\"],\"action\":\"SCMP_ACT_ERRNO\"}]}",
        ])),
        ..HostConfig::default()
    });
    let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        s.default_action(),
        oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
    );
    assert_eq!(s.syscalls().as_ref().unwrap()[0].names(), &["mkdir"]);
    let e = f
        .build(
            &cmd(&["sh"]),
            &HostConfig {
                security_opt: Some(strings(&["seccomp={\"defaultAction\":"])),
                ..HostConfig::default()
            },
            &ImageConfig::default(),
        )
        .unwrap_err();
    assert!(matches!(e, SpecError::Invalid(_)), "{e}");
}

#[test]
fn docker_default_seccomp_unless_privileged() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig::default());
    let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        s.default_action(),
        oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
    );
    assert_eq!(s.default_errno_ret(), Some(1));
    let names: Vec<&String> = s
        .syscalls()
        .as_deref()
        .unwrap()
        .iter()
        .flat_map(|c| c.names())
        .collect();
    assert!(names.iter().any(|n| *n == "chroot"));
    assert!(!names.iter().any(|n| *n == "mount"));
    let spec = f.spec(HostConfig {
        cap_add: Some(strings(&["SYS_ADMIN"])),
        ..HostConfig::default()
    });
    let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert!(s
        .syscalls()
        .as_deref()
        .unwrap()
        .iter()
        .any(|c| c.names().iter().any(|n| n == "mount")));
    let spec = f.spec(HostConfig {
        privileged: Some(true),
        security_opt: Some(strings(&["seccomp={\"defaultAction\":\"SCMP_ACT_KILL\"}"])),
        ..HostConfig::default()
    });
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
}

#[test]
fn readonly_rootfs_tmpfs_binds_and_shm() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/run".to_string(), "size=1m".to_string())])),
        binds: Some(strings(&["/srv/data:/data:ro", "cache:/cache"])),
        shm_size: Some(1 << 20),
        ..HostConfig::default()
    });
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let run = find_mount(&spec, "/run").unwrap();
    assert_eq!(run.typ().as_deref(), Some("tmpfs"));
    assert!(opts(run).contains(&"size=1m".to_string()));
    let data = find_mount(&spec, "/data").unwrap();
    assert_eq!(data.source().as_deref(), Some(Path::new("/srv/data")));
    assert!(opts(data).contains(&"ro".to_string()));
    let cache = find_mount(&spec, "/cache").unwrap();
    assert_eq!(
        cache.source().as_deref(),
        Some(Path::new("/var/lib/berth/volumes/cache/_data"))
    );
    assert!(opts(find_mount(&spec, "/dev/shm").unwrap()).contains(&"size=1048576".to_string()));
    // a user mount replaces a default at the same place, and duplicates are refused
    let spec = f.spec(HostConfig {
        binds: Some(strings(&["/my/hosts:/etc/hosts"])),
        ..HostConfig::default()
    });
    let hosts: Vec<_> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.destination() == Path::new("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/my/hosts")));
    let dup = HostConfig {
        binds: Some(strings(&["/a:/x", "/b:/x"])),
        ..HostConfig::default()
    };
    assert!(f
        .build(&cmd(&["sh"]), &dup, &ImageConfig::default())
        .is_err());
}

#[test]
fn init_is_mounted_and_prepended() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        init: Some(true),
        ..HostConfig::default()
    });
    assert_eq!(args(&spec), ["/sbin/berth-init", "--", "sh"]);
    let m = find_mount(&spec, "/sbin/berth-init").unwrap();
    assert_eq!(
        m.source().as_deref(),
        Some(Path::new("/usr/libexec/berth/berth-init"))
    );
    assert!(opts(m).contains(&"ro".to_string()));
}

#[test]
fn sysctls() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        sysctls: Some(HashMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("kernel.shmmax".to_string(), "1000".to_string()),
        ])),
        ..HostConfig::default()
    });
    let s = spec.linux().as_ref().unwrap().sysctl().clone().unwrap();
    assert_eq!(s["net.ipv4.ip_forward"], "1");
    for (bad, mode) in [("kernel.panic", "none"), ("net.ipv4.ip_forward", "host")] {
        let hc = HostConfig {
            network_mode: Some(mode.into()),
            sysctls: Some(HashMap::from([(bad.to_string(), "1".to_string())])),
            ..HostConfig::default()
        };
        assert!(f.refuses(&hc), "{bad}");
    }
}

#[test]
fn tty_console_size_and_oom_score() {
    let f = Fixture::new();
    let config = ContainerConfig {
        tty: Some(true),
        ..cmd(&["sh"])
    };
    let hc = HostConfig {
        console_size: Some(vec![24, 80]),
        oom_score_adj: Some(500),
        ..HostConfig::default()
    };
    let spec = f.build(&config, &hc, &ImageConfig::default()).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(true));
    let b = p.console_size().unwrap();
    assert_eq!((b.height(), b.width()), (24, 80));
    assert_eq!(p.oom_score_adj(), Some(500));
}

#[test]
fn the_spec_serializes_to_runtime_json() {
    let f = Fixture::new();
    let spec = f.spec(HostConfig {
        memory: Some(100 << 20),
        ..HostConfig::default()
    });
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["ociVersion"], "1.0.2");
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 104857600);
    assert_eq!(v["process"]["args"][0], "sh");
    assert!(v["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("CAP_CHOWN")));
}

#[test]
fn a_relative_working_dir_is_a_400() {
    let f = Fixture::new();
    let mut c = cmd(&["sh"]);
    c.working_dir = Some("relative/dir".to_string());
    let e = f
        .build(&c, &HostConfig::default(), &ImageConfig::default())
        .unwrap_err();
    assert!(matches!(e, SpecError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("absolute path"), "{e}");
}

#[test]
fn the_cgroup_goes_under_its_parent() {
    let f = Fixture::new();
    let path = |parent: Option<&str>| {
        let spec = f.spec(HostConfig {
            cgroup_parent: parent.map(str::to_string),
            ..HostConfig::default()
        });
        let linux = spec.linux().clone().unwrap();
        linux.cgroups_path().clone().unwrap()
    };
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(path(None), Path::new("/berth").join(id));
    assert_eq!(path(Some("")), Path::new("/berth").join(id));
    assert_eq!(path(Some("mine/")), Path::new("/mine").join(id));
    assert_eq!(path(Some("/a/b")), Path::new("/a/b").join(id));
    for bad in ["../up", "a/../../b"] {
        let hc = HostConfig {
            cgroup_parent: Some(bad.to_string()),
            ..HostConfig::default()
        };
        assert!(f.refuses(&hc), "{bad}");
    }
}

#[test]
fn weights_are_kept_only_where_the_host_takes_them() {
    let hc = HostConfig {
        blkio_weight: Some(300),
        ..HostConfig::default()
    };
    let io = devices::block_io(&hc, true).unwrap().unwrap();
    assert_eq!(io.weight(), Some(300));
    assert!(devices::block_io(&hc, false).unwrap().is_none());
    assert!(devices::asks_for_weight(&hc));
    let bad = HostConfig {
        blkio_weight: Some(5),
        ..HostConfig::default()
    };
    assert!(devices::block_io(&bad, true).is_err());
}

#[test]
fn log_rotation_travels_as_annotations() {
    let f = Fixture::new();
    let hc = |opts: &[(&str, &str)]| HostConfig {
        log_config: Some(bollard_stubs::models::HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(
                opts.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }),
        ..HostConfig::default()
    };
    let spec = f.spec(hc(&[("max-size", "10m"), ("max-file", "3")]));
    let a = spec.annotations().clone().unwrap();
    assert_eq!(a[LOG_MAX_SIZE], "10000000");
    assert_eq!(a[LOG_MAX_FILE], "3");
    assert!(f.spec(hc(&[])).annotations().is_none());
    assert_eq!(human_size("1k"), Some(1000));
    assert_eq!(human_size("1.5MB"), Some(1_500_000));
    assert_eq!(human_size("2 g"), Some(2_000_000_000));
    assert_eq!(human_size("512"), Some(512));
    for bad in ["", "m", "10x", "-1m"] {
        assert_eq!(human_size(bad), None, "{bad}");
    }
    for bad in [
        [("max-size", "0")],
        [("max-size", "lots")],
        [("max-file", "0")],
    ] {
        assert!(f.refuses(&hc(&bad)), "{bad:?}");
    }
}
