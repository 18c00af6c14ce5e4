//! Linux capabilities of the container process.
//!
//! Two steps, in the order the init runs them: [`drop_bounding`] while the init is
//! still root (dropping from the bounding set needs CAP_SETPCAP), then, after
//! `identity::set_identity` changed the uid with KEEPCAPS set, [`apply`] sets the
//! effective, permitted, inheritable and ambient sets to exactly what the spec lists.
//! Capabilities the running kernel does not know are skipped (debug log), as runc
//! does, so one config works on old and new kernels.

use caps::{CapSet, Capability as KernelCap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability as OciCap, LinuxCapabilities};

use crate::logger;

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("drop {cap} from the bounding set: {source}")]
    DropBounding {
        cap: KernelCap,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("read the {set} capability set: {source}")]
    Read {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("set the {set} capabilities to [{caps}]: {source}")]
    Set {
        set: &'static str,
        caps: String,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("effective capabilities [{0}] are not in the permitted set")]
    EffectiveNotPermitted(String),
    #[error("clear the ambient capability set: {0}")]
    ClearAmbient(#[source] caps::errors::CapsError),
}

/// The kernel capability for a spec capability. The match is exhaustive, so a
/// capability added to oci-spec fails to compile here instead of being lost.
pub fn to_kernel(cap: OciCap) -> KernelCap {
    match cap {
        OciCap::AuditControl => KernelCap::CAP_AUDIT_CONTROL,
        OciCap::AuditRead => KernelCap::CAP_AUDIT_READ,
        OciCap::AuditWrite => KernelCap::CAP_AUDIT_WRITE,
        OciCap::BlockSuspend => KernelCap::CAP_BLOCK_SUSPEND,
        OciCap::Bpf => KernelCap::CAP_BPF,
        OciCap::CheckpointRestore => KernelCap::CAP_CHECKPOINT_RESTORE,
        OciCap::Chown => KernelCap::CAP_CHOWN,
        OciCap::DacOverride => KernelCap::CAP_DAC_OVERRIDE,
        OciCap::DacReadSearch => KernelCap::CAP_DAC_READ_SEARCH,
        OciCap::Fowner => KernelCap::CAP_FOWNER,
        OciCap::Fsetid => KernelCap::CAP_FSETID,
        OciCap::IpcLock => KernelCap::CAP_IPC_LOCK,
        OciCap::IpcOwner => KernelCap::CAP_IPC_OWNER,
        OciCap::Kill => KernelCap::CAP_KILL,
        OciCap::Lease => KernelCap::CAP_LEASE,
        OciCap::LinuxImmutable => KernelCap::CAP_LINUX_IMMUTABLE,
        OciCap::MacAdmin => KernelCap::CAP_MAC_ADMIN,
        OciCap::MacOverride => KernelCap::CAP_MAC_OVERRIDE,
        OciCap::Mknod => KernelCap::CAP_MKNOD,
        OciCap::NetAdmin => KernelCap::CAP_NET_ADMIN,
        OciCap::NetBindService => KernelCap::CAP_NET_BIND_SERVICE,
        OciCap::NetBroadcast => KernelCap::CAP_NET_BROADCAST,
        OciCap::NetRaw => KernelCap::CAP_NET_RAW,
        OciCap::Perfmon => KernelCap::CAP_PERFMON,
        OciCap::Setgid => KernelCap::CAP_SETGID,
        OciCap::Setfcap => KernelCap::CAP_SETFCAP,
        OciCap::Setpcap => KernelCap::CAP_SETPCAP,
        OciCap::Setuid => KernelCap::CAP_SETUID,
        OciCap::SysAdmin => KernelCap::CAP_SYS_ADMIN,
        OciCap::SysBoot => KernelCap::CAP_SYS_BOOT,
        OciCap::SysChroot => KernelCap::CAP_SYS_CHROOT,
        OciCap::SysModule => KernelCap::CAP_SYS_MODULE,
        OciCap::SysNice => KernelCap::CAP_SYS_NICE,
        OciCap::SysPacct => KernelCap::CAP_SYS_PACCT,
        OciCap::SysPtrace => KernelCap::CAP_SYS_PTRACE,
        OciCap::SysRawio => KernelCap::CAP_SYS_RAWIO,
        OciCap::SysResource => KernelCap::CAP_SYS_RESOURCE,
        OciCap::SysTime => KernelCap::CAP_SYS_TIME,
        OciCap::SysTtyConfig => KernelCap::CAP_SYS_TTY_CONFIG,
        OciCap::Syslog => KernelCap::CAP_SYSLOG,
        OciCap::WakeAlarm => KernelCap::CAP_WAKE_ALARM,
    }
}

/// Parse a capability name the way runc and Docker accept it: `CAP_SYS_ADMIN`,
/// `SYS_ADMIN`, `cap_sys_admin` or `sys_admin`.
pub fn parse_cap(name: &str) -> Result<KernelCap, CapsError> {
    caps::to_canonical(name.trim())
        .parse()
        .map_err(|_| CapsError::Unknown(name.to_string()))
}

/// Every capability the library knows, in kernel order, as `CAP_*` names (what
/// `features` reports).
pub fn known_names() -> Vec<String> {
    let mut all: Vec<KernelCap> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// Remove capability names oci-spec cannot parse from a raw config, so that an
/// unknown name is skipped (as runc does) instead of failing the whole config.
/// Returns the names removed, for the caller to log.
pub fn strip_unknown_raw(config: &mut serde_json::Value) -> Vec<String> {
    let mut removed = Vec::new();
    let Some(sets) = config
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return removed;
    };
    for list in sets.values_mut() {
        if let Some(items) = list.as_array_mut() {
            items.retain(|item| {
                let known = serde_json::from_value::<OciCap>(item.clone()).is_ok();
                if !known {
                    removed.push(item.as_str().unwrap_or("<not a string>").to_string());
                }
                known
            });
        }
    }
    removed
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<KernelCap> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernel set for one of the spec's lists, without what this kernel lacks.
fn kernel_set(list: Option<&Capabilities>, supported: &CapsHashSet, which: &str) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for cap in list.into_iter().flatten() {
        let k = to_kernel(*cap);
        if supported.contains(&k) {
            out.insert(k);
        } else {
            logger::debug(&format!(
                "capability {k} ({which}) is not known to this kernel; skipped"
            ));
        }
    }
    out
}

/// The capabilities this kernel knows, probed once (one prctl per capability)
/// for both `drop_bounding` and `apply`.
fn supported() -> CapsHashSet {
    static SUPPORTED: std::sync::OnceLock<CapsHashSet> = std::sync::OnceLock::new();
    SUPPORTED
        .get_or_init(caps::runtime::thread_all_supported)
        .clone()
}

/// Drop from the bounding set every capability not listed in `caps.bounding`
/// (all of them when the list is absent). Needs CAP_SETPCAP, so it runs before the
/// uid change.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let supported = supported();
    let keep = kernel_set(caps.bounding().as_ref(), &supported, "bounding");
    let mut all: Vec<KernelCap> = supported.into_iter().collect();
    all.sort_by_key(|c| c.index());
    for cap in all {
        if keep.contains(&cap) {
            continue;
        }
        // Already gone needs no CAP_SETPCAP: a process without it can still run
        // this when there is nothing left to drop.
        let present =
            caps::has_cap(None, CapSet::Bounding, cap).map_err(|source| CapsError::Read {
                set: "bounding",
                source,
            })?;
        if present {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|source| CapsError::DropBounding { cap, source })?;
        }
    }
    Ok(())
}

/// Set the effective, permitted, inheritable and ambient sets to exactly what
/// `caps` lists (an absent list means none). Called after the uid change, with the
/// permitted set kept by PR_SET_KEEPCAPS.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let supported = supported();
    let effective = kernel_set(caps.effective().as_ref(), &supported, "effective");
    let permitted = kernel_set(caps.permitted().as_ref(), &supported, "permitted");
    let inheritable = kernel_set(caps.inheritable().as_ref(), &supported, "inheritable");
    let ambient = kernel_set(caps.ambient().as_ref(), &supported, "ambient");

    let stray: CapsHashSet = effective.difference(&permitted).copied().collect();
    if !stray.is_empty() {
        return Err(CapsError::EffectiveNotPermitted(names(&stray)));
    }

    // The caps crate sets one set per capset(2) call, and each call must leave
    // effective ⊆ permitted and may only raise inheritable bits that are still
    // permitted. So: effective first (while permitted is still the full set),
    // then inheritable, then shrink permitted last.
    let set = |which: CapSet, name: &'static str, value: &CapsHashSet| {
        caps::set(None, which, value).map_err(|source| CapsError::Set {
            set: name,
            caps: names(value),
            source,
        })
    };
    set(CapSet::Effective, "effective", &effective)?;
    set(CapSet::Inheritable, "inheritable", &inheritable)?;
    set(CapSet::Permitted, "permitted", &permitted)?;

    // Ambient capabilities must be both permitted and inheritable. Like runc, a
    // capability that cannot be raised is reported, not fatal: configs written for
    // runc rely on that.
    caps::clear(None, CapSet::Ambient).map_err(CapsError::ClearAmbient)?;
    let mut amb: Vec<KernelCap> = ambient.into_iter().collect();
    amb.sort_by_key(|c| c.index());
    for cap in amb {
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            logger::debug(&format!("cannot raise ambient capability {cap}: {e}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cap_accepts_runc_spellings() {
        for name in [
            "CAP_SYS_ADMIN",
            "SYS_ADMIN",
            "cap_sys_admin",
            "sys_admin",
            " Sys_Admin ",
        ] {
            assert_eq!(parse_cap(name).unwrap(), KernelCap::CAP_SYS_ADMIN, "{name}");
        }
        assert_eq!(
            parse_cap("net_bind_service").unwrap(),
            KernelCap::CAP_NET_BIND_SERVICE
        );
        assert!(matches!(parse_cap("CAP_FOO"), Err(CapsError::Unknown(n)) if n == "CAP_FOO"));
        assert!(parse_cap("").is_err());
    }

    #[test]
    fn every_oci_capability_maps_to_the_kernel_one_of_the_same_name() {
        for k in caps::all() {
            let oci: OciCap = serde_json::from_value(serde_json::json!(k.to_string())).unwrap();
            assert_eq!(to_kernel(oci), k);
        }
    }

    #[test]
    fn known_names_are_in_kernel_order() {
        let names = known_names();
        assert_eq!(names[0], "CAP_CHOWN");
        assert!(names.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));
        assert_eq!(names.len(), caps::all().len());
    }

    #[test]
    fn unknown_raw_names_are_stripped() {
        let mut cfg = serde_json::json!({
            "process": {"capabilities": {
                "bounding": ["CAP_KILL", "CAP_FOO", "NET_RAW"],
                "effective": ["CAP_BAR"]
            }}
        });
        let mut removed = strip_unknown_raw(&mut cfg);
        removed.sort();
        assert_eq!(removed, ["CAP_BAR", "CAP_FOO"]);
        assert_eq!(
            cfg["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_KILL", "NET_RAW"])
        );
        assert!(strip_unknown_raw(&mut serde_json::json!({})).is_empty());
    }

    #[test]
    fn kernel_set_skips_unsupported() {
        let list: Capabilities = [OciCap::Kill, OciCap::CheckpointRestore]
            .into_iter()
            .collect();
        let supported: CapsHashSet = [KernelCap::CAP_KILL].into_iter().collect();
        let got = kernel_set(Some(&list), &supported, "test");
        assert_eq!(got, supported);
        assert!(kernel_set(None, &supported, "test").is_empty());
    }
}
