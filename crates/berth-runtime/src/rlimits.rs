//! POSIX resource limits of the container process (`process.rlimits`).
//!
//! [`validate`] runs at create time, before any side effect, so a bad list is
//! refused with a clear message; [`apply`] sets the limits in the process that
//! will exec the user's program, while it is still privileged (raising a hard
//! limit needs CAP_SYS_RESOURCE).

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("unknown rlimit type {0:?}")]
    UnknownType(String),
    #[error("rlimit {0} is given more than once")]
    Duplicate(PosixRlimitType),
    #[error("rlimit {typ}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        typ: PosixRlimitType,
        soft: u64,
        hard: u64,
    },
    #[error("setrlimit({typ}, soft {soft}, hard {hard}): {source}")]
    Set {
        typ: PosixRlimitType,
        soft: u64,
        hard: u64,
        #[source]
        source: Errno,
    },
}

/// The kernel resource for a spec rlimit type (exhaustive: a new oci-spec type
/// fails to compile here instead of being ignored).
pub fn resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Parse a type name as written in config.json (`RLIMIT_NOFILE`).
pub fn parse_type(name: &str) -> Result<PosixRlimitType, RlimitError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| RlimitError::UnknownType(name.to_string()))
}

/// Check `process.rlimits[].type` of a raw config before it is parsed into a
/// Spec, so an unknown type is reported by name instead of as a serde error.
pub fn check_raw_types(config: &serde_json::Value) -> Result<(), RlimitError> {
    let Some(list) = config
        .pointer("/process/rlimits")
        .and_then(|v| v.as_array())
    else {
        return Ok(());
    };
    for item in list {
        match item.get("type") {
            Some(serde_json::Value::String(name)) => {
                parse_type(name)?;
            }
            other => {
                return Err(RlimitError::UnknownType(
                    other.map(|v| v.to_string()).unwrap_or_default(),
                ))
            }
        }
    }
    Ok(())
}

/// Refuse a list the kernel would half-apply: a type twice, or soft above hard.
pub fn validate(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    // PosixRlimitType is not Hash; a list has at most a few entries.
    for (i, r) in rlimits.iter().enumerate() {
        if rlimits[..i].iter().any(|prev| prev.typ() == r.typ()) {
            return Err(RlimitError::Duplicate(r.typ()));
        }
        if r.soft() > r.hard() {
            return Err(RlimitError::SoftAboveHard {
                typ: r.typ(),
                soft: r.soft(),
                hard: r.hard(),
            });
        }
    }
    Ok(())
}

/// Set every limit on the calling process (validated first, so nothing is set
/// when the list is bad). u64::MAX is RLIM_INFINITY.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    validate(rlimits)?;
    for r in rlimits {
        setrlimit(resource(r.typ()), r.soft(), r.hard()).map_err(|source| RlimitError::Set {
            typ: r.typ(),
            soft: r.soft(),
            hard: r.hard(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::PosixRlimitBuilder;

    fn rl(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn valid_lists_pass() {
        validate(&[]).unwrap();
        validate(&[
            rl(PosixRlimitType::RlimitNofile, 1024, 4096),
            rl(PosixRlimitType::RlimitCore, u64::MAX, u64::MAX),
            rl(PosixRlimitType::RlimitNproc, 0, 0),
        ])
        .unwrap();
    }

    #[test]
    fn duplicates_and_soft_above_hard_are_refused() {
        let dup = validate(&[
            rl(PosixRlimitType::RlimitNofile, 1, 2),
            rl(PosixRlimitType::RlimitNofile, 1, 2),
        ]);
        assert!(matches!(
            dup,
            Err(RlimitError::Duplicate(PosixRlimitType::RlimitNofile))
        ));
        let e = validate(&[rl(PosixRlimitType::RlimitNofile, 10, 5)]).unwrap_err();
        assert!(matches!(
            e,
            RlimitError::SoftAboveHard {
                soft: 10,
                hard: 5,
                ..
            }
        ));
        assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
        // apply validates before touching anything.
        assert!(apply(&[rl(PosixRlimitType::RlimitNofile, 10, 5)]).is_err());
    }

    #[test]
    fn type_names() {
        assert_eq!(
            parse_type("RLIMIT_NOFILE").unwrap(),
            PosixRlimitType::RlimitNofile
        );
        assert_eq!(
            parse_type("RLIMIT_RTTIME").unwrap(),
            PosixRlimitType::RlimitRttime
        );
        assert!(
            matches!(parse_type("RLIMIT_FOO"), Err(RlimitError::UnknownType(n)) if n == "RLIMIT_FOO")
        );
        assert_eq!(
            resource(PosixRlimitType::RlimitNofile),
            Resource::RLIMIT_NOFILE
        );
    }

    #[test]
    fn raw_types_are_checked() {
        let good = serde_json::json!({"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}]}});
        check_raw_types(&good).unwrap();
        check_raw_types(&serde_json::json!({})).unwrap();
        let bad = serde_json::json!({"process": {"rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}});
        let e = check_raw_types(&bad).unwrap_err();
        assert!(e.to_string().contains("RLIMIT_BOGUS"), "{e}");
        let missing = serde_json::json!({"process": {"rlimits": [{"soft": 1}]}});
        assert!(check_raw_types(&missing).is_err());
    }
}
