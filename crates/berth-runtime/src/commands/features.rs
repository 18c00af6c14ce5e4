//! `berth-runtime features` (the runtime-spec's features document, which callers
//! such as containerd read to learn what the runtime can do) and `--version`.
//! Lists are derived from the code that implements them wherever possible
//! (mount options from the mount-option parser, capabilities from the caps
//! library, seccomp flags by trying them), so the document does not drift.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, LinuxNamespaceType, MountExtensionsBuilder, NetDevicesBuilder,
    SeccompBuilder, SelinuxBuilder,
};
use serde::Serialize;

use crate::cli::Cli;
use crate::seccomp;

/// The runtime-spec version berth-runtime implements.
pub const OCI_VERSION: &str = "1.2.0";
/// The runc release whose command line and behaviour berth-runtime follows
/// (measured with that release's integration suite, scripts/runc-suite.sh).
pub const RUNC_VERSION: &str = "1.1.5";
/// The oldest runtime-spec version whose configs it accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// Annotation carrying the libseccomp version (the key runc uses).
pub const ANNOTATION_LIBSECCOMP_VERSION: &str = "io.github.seccomp.libseccomp.version";
/// Annotation carrying berth-runtime's version.
pub const ANNOTATION_VERSION: &str = "io.github.berth.runtime.version";

/// The hooks the spec defines, in the order they run.
pub const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Every mount option runc knows; `features` reports those berth's parser takes
/// as flags (anything it would hand to the filesystem as data is left out).
const CANDIDATE_MOUNT_OPTIONS: [&str; 62] = [
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
];

/// Options the parser accepts without mapping them to a flag.
const EXTRA_MOUNT_OPTIONS: [&str; 1] = ["unbindable"];

/// Every namespace type, as the spec names them.
const NAMESPACES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

fn libseccomp_version() -> Option<String> {
    seccomp::library_version().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
}

/// What `berth-runtime --version` prints, in `runc --version`'s line shapes.
pub fn version_text() -> String {
    // Tools written for runc look for `runc version X.Y.Z` on the first line
    // and `commit:` on the second: say which runc this command line matches.
    let mut s = format!(
        "berth-runtime version {v} (runc version {RUNC_VERSION} compatible)\n\
         commit: berth-runtime-{v}\nspec: {OCI_VERSION}\n",
        v = env!("CARGO_PKG_VERSION")
    );
    if let Some(v) = libseccomp_version() {
        s.push_str(&format!("libseccomp: {v}\n"));
    }
    s
}

fn mount_options() -> Vec<String> {
    let dest = Path::new("/");
    let mut list: Vec<String> = CANDIDATE_MOUNT_OPTIONS
        .iter()
        .chain(EXTRA_MOUNT_OPTIONS.iter())
        .filter(|opt| {
            let opts = [opt.to_string()];
            crate::mounts::parse_options(&opts, dest).is_ok_and(|o| o.data.is_empty())
        })
        .map(|opt| opt.to_string())
        .collect();
    list.sort();
    list.dedup();
    list
}

/// The features document.
pub fn features() -> anyhow::Result<Features> {
    let yes = true;
    let no = false;
    let mut seccomp_feature = SeccompBuilder::default()
        .enabled(yes)
        .actions(seccomp::SUPPORTED_ACTIONS.to_vec())
        .operators(
            seccomp::OPERATORS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .archs(seccomp::supported_arches())
        .known_flags(
            seccomp::KNOWN_FLAGS
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?;
    seccomp_feature.set_supported_flags(Some(
        seccomp::supported_flags()
            .iter()
            .map(|f| f.to_string())
            .collect(),
    ));

    let linux = LinuxFeatureBuilder::default()
        .namespaces(NAMESPACES.to_vec())
        .capabilities(crate::capabilities::known_names())
        .cgroup(
            CgroupBuilder::default()
                .v1(yes)
                .v2(yes)
                .systemd(no)
                .systemd_user(no)
                .rdma(yes)
                .build()?,
        )
        .seccomp(seccomp_feature)
        .apparmor(ApparmorBuilder::default().enabled(no).build()?)
        .selinux(SelinuxBuilder::default().enabled(no).build()?)
        .intel_rdt(IntelRdtBuilder::default().enabled(no).build()?)
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(IDMapBuilder::default().enabled(no).build()?)
                .build()?,
        )
        .net_devices(NetDevicesBuilder::default().enabled(no).build()?)
        .build()?;

    let mut annotations = HashMap::new();
    annotations.insert(
        ANNOTATION_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Some(v) = libseccomp_version() {
        annotations.insert(ANNOTATION_LIBSECCOMP_VERSION.to_string(), v);
    }

    Ok(FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(OCI_VERSION)
        .hooks(HOOKS.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .mount_options(mount_options())
        .linux(linux)
        .annotations(annotations)
        .build()?)
}

/// The features document as runc prints it: JSON indented by four spaces.
pub fn to_json(f: &Features) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    f.serialize(&mut ser).context("serialize the features")?;
    let mut s = String::from_utf8(out).context("features JSON is not UTF-8")?;
    s.push('\n');
    Ok(s)
}

pub fn run(_cli: &Cli) -> anyhow::Result<i32> {
    print!("{}", to_json(&features()?)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_has_runc_line_shapes() {
        let t = version_text();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "berth-runtime version {} (runc version 1.1.5 compatible)",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(lines[1].starts_with("commit: "), "{t}");
        assert_eq!(lines[2], "spec: 1.2.0");
        assert!(lines[3].starts_with("libseccomp: 2."), "{t}");
    }

    #[test]
    fn features_document() {
        let f = features().unwrap();
        let json = to_json(&f).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(v["ociVersionMax"], OCI_VERSION);
        assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
        let opts: Vec<&str> = v["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.as_str())
            .collect();
        for o in [
            "ro",
            "rbind",
            "nosuid",
            "rprivate",
            "strictatime",
            "rro",
            "rnosuid",
        ] {
            assert!(opts.contains(&o), "{o} missing from {opts:?}");
        }
        // Options the parser refuses or passes to the filesystem are not claimed.
        for o in ["idmap", "acl"] {
            assert!(!opts.contains(&o), "{o} claimed");
        }
        let linux = &v["linux"];
        assert!(linux["namespaces"]
            .as_array()
            .unwrap()
            .contains(&"network".into()));
        assert!(linux["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(linux["cgroup"]["v1"], true);
        assert_eq!(linux["cgroup"]["v2"], true);
        assert_eq!(linux["cgroup"]["systemd"], false);
        let sc = &linux["seccomp"];
        assert_eq!(sc["enabled"], true);
        assert!(sc["actions"]
            .as_array()
            .unwrap()
            .contains(&"SCMP_ACT_ERRNO".into()));
        assert!(sc["actions"]
            .as_array()
            .unwrap()
            .contains(&"SCMP_ACT_NOTIFY".into()));
        assert!(sc["operators"]
            .as_array()
            .unwrap()
            .contains(&"SCMP_CMP_MASKED_EQ".into()));
        assert!(sc["archs"]
            .as_array()
            .unwrap()
            .contains(&"SCMP_ARCH_X86_64".into()));
        assert!(sc["knownFlags"]
            .as_array()
            .unwrap()
            .contains(&"SECCOMP_FILTER_FLAG_LOG".into()));
        assert!(sc["supportedFlags"].as_array().is_some());
        assert_eq!(linux["apparmor"]["enabled"], false);
        assert_eq!(linux["selinux"]["enabled"], false);
        assert!(v["annotations"][ANNOTATION_LIBSECCOMP_VERSION].is_string());
        assert!(json.contains("\n    \"ociVersionMin\""));
        // It parses back into the spec's type.
        let back: Features = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
    }
}
