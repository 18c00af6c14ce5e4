//! Who the container process is: supplementary groups, gid and uid, plus the
//! small per-process attributes set next to them (no_new_privs, oom_score_adj,
//! umask). Called in the init (or exec'd process) just before it execs the user's
//! program; the capability sets are applied after [`set_identity`] by
//! `capabilities::apply`, which is why the uid change keeps the permitted set.

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use oci_spec::runtime::User;

use crate::logger;

/// Where the kernel says whether setgroups(2) is allowed in this user namespace.
const SETGROUPS_FILE: &str = "/proc/self/setgroups";
const OOM_SCORE_ADJ_FILE: &str = "/proc/self/oom_score_adj";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("user {0:?} is not valid: expected <uid>[:<gid>] with numeric ids")]
    InvalidUserSpec(String),
    #[error("setgroups({gids:?}): {source}")]
    SetGroups {
        gids: Vec<u32>,
        #[source]
        source: Errno,
    },
    #[error("additional gids {0:?} asked for, but setgroups is denied in this user namespace")]
    SetGroupsDenied(Vec<u32>),
    #[error("setgid({gid}): {source}")]
    SetGid {
        gid: u32,
        #[source]
        source: Errno,
    },
    #[error("setuid({uid}): {source}")]
    SetUid {
        uid: u32,
        #[source]
        source: Errno,
    },
    #[error("prctl(PR_SET_KEEPCAPS, {value}): {source}")]
    KeepCaps {
        value: bool,
        #[source]
        source: Errno,
    },
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(#[source] Errno),
    #[error("oom_score_adj {0} is out of range (-1000..=1000)")]
    OomScoreRange(i32),
    #[error("write {value} to {path}: {source}")]
    OomScore {
        value: i32,
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("umask {0:#o} is not valid (at most 0o777)")]
    InvalidUmask(u32),
}

/// Parse `--user` of `exec`: `<uid>` or `<uid>:<gid>`, numbers only (runc does not
/// resolve names there either). The gid is None when not given: runc then keeps
/// the container process's gid, which [`apply_user_override`] does.
pub fn parse_user_override(s: &str) -> Result<(u32, Option<u32>), IdentityError> {
    let bad = || IdentityError::InvalidUserSpec(s.to_string());
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid: u32 = uid.parse().map_err(|_| bad())?;
    let gid = match gid {
        Some(g) => Some(g.parse::<u32>().map_err(|_| bad())?),
        None => None,
    };
    Ok((uid, gid))
}

/// `<uid>[:<gid>]` as a pair; a missing gid is 0. For `exec --user` prefer
/// [`apply_user_override`], which keeps the container's gid as runc does.
pub fn parse_user_spec(s: &str) -> Result<(u32, u32), IdentityError> {
    let (uid, gid) = parse_user_override(s)?;
    Ok((uid, gid.unwrap_or(0)))
}

/// Apply `exec --user` to the process's user the way runc does: the uid always,
/// the gid only when given, everything else (additional gids, umask) unchanged.
pub fn apply_user_override(user: &mut User, s: &str) -> Result<(), IdentityError> {
    let (uid, gid) = parse_user_override(s)?;
    user.set_uid(uid);
    if let Some(gid) = gid {
        user.set_gid(gid);
    }
    Ok(())
}

/// Whether /proc/self/setgroups says "deny" (a user namespace whose gid map was
/// written by an unprivileged process).
fn setgroups_denied() -> bool {
    std::fs::read_to_string(SETGROUPS_FILE)
        .map(|s| s.trim() == "deny")
        .unwrap_or(false)
}

/// Clears PR_SET_KEEPCAPS when dropped, so a failed uid change does not leave it
/// set for the rest of the process's life.
struct KeepCapsGuard;

impl Drop for KeepCapsGuard {
    fn drop(&mut self) {
        let _ = prctl::set_keepcaps(false);
    }
}

/// Become `user`: supplementary groups, then gid, then uid (the order in which
/// each step still has the privilege the next one needs). The permitted
/// capabilities survive the uid change so that `capabilities::apply` can set the
/// final sets afterwards.
pub fn set_identity(user: &User) -> Result<(), IdentityError> {
    let additional: Vec<u32> = user.additional_gids().clone().unwrap_or_default();
    let gids: Vec<Gid> = additional.iter().map(|g| Gid::from_raw(*g)).collect();
    match setgroups(&gids) {
        Ok(()) => {}
        // In a user namespace set up by an unprivileged user the kernel refuses
        // setgroups for good; with nothing asked for, there is nothing to lose.
        Err(Errno::EPERM) if setgroups_denied() => {
            if !additional.is_empty() {
                return Err(IdentityError::SetGroupsDenied(additional));
            }
            logger::debug(
                "setgroups is denied in this user namespace; supplementary groups left as they are",
            );
        }
        Err(source) => {
            return Err(IdentityError::SetGroups {
                gids: additional,
                source,
            })
        }
    }

    prctl::set_keepcaps(true).map_err(|source| IdentityError::KeepCaps {
        value: true,
        source,
    })?;
    let guard = KeepCapsGuard;
    setgid(Gid::from_raw(user.gid())).map_err(|source| IdentityError::SetGid {
        gid: user.gid(),
        source,
    })?;
    setuid(Uid::from_raw(user.uid())).map_err(|source| IdentityError::SetUid {
        uid: user.uid(),
        source,
    })?;
    std::mem::forget(guard);
    prctl::set_keepcaps(false).map_err(|source| IdentityError::KeepCaps {
        value: false,
        source,
    })
}

/// Set `user.umask` when the spec gives one (otherwise the inherited umask stays,
/// as with runc).
pub fn set_umask(user: &User) -> Result<(), IdentityError> {
    if let Some(mask) = user.umask() {
        let mode = Mode::from_bits(mask).ok_or(IdentityError::InvalidUmask(mask))?;
        umask(mode);
    }
    Ok(())
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1): execve can no longer grant privileges (setuid
/// binaries, file capabilities). It cannot be undone.
pub fn set_no_new_privs() -> Result<(), IdentityError> {
    prctl::set_no_new_privs().map_err(IdentityError::NoNewPrivs)
}

/// Write `score` to /proc/self/oom_score_adj.
pub fn set_oom_score_adj(score: i32) -> Result<(), IdentityError> {
    if !(-1000..=1000).contains(&score) {
        return Err(IdentityError::OomScoreRange(score));
    }
    std::fs::write(OOM_SCORE_ADJ_FILE, format!("{score}\n")).map_err(|source| {
        IdentityError::OomScore {
            value: score,
            path: OOM_SCORE_ADJ_FILE,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_spec_parsing_follows_runc_exec() {
        assert_eq!(parse_user_override("1000").unwrap(), (1000, None));
        assert_eq!(parse_user_override("1000:100").unwrap(), (1000, Some(100)));
        assert_eq!(parse_user_override("0:0").unwrap(), (0, Some(0)));
        assert_eq!(parse_user_spec("1000").unwrap(), (1000, 0));
        assert_eq!(parse_user_spec("1000:5").unwrap(), (1000, 5));
        for bad in [
            "",
            ":",
            "1000:",
            ":5",
            "nobody",
            "1000:users",
            "-1",
            "1:2:3",
            "4294967296",
        ] {
            assert!(
                matches!(parse_user_spec(bad), Err(IdentityError::InvalidUserSpec(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn user_override_keeps_the_gid_when_not_given() {
        let mut user = User::default();
        user.set_gid(42);
        user.set_additional_gids(Some(vec![7]));
        apply_user_override(&mut user, "1000").unwrap();
        assert_eq!((user.uid(), user.gid()), (1000, 42));
        apply_user_override(&mut user, "1001:43").unwrap();
        assert_eq!((user.uid(), user.gid()), (1001, 43));
        assert_eq!(user.additional_gids(), &Some(vec![7]));
        assert!(apply_user_override(&mut user, "x").is_err());
        assert_eq!(user.uid(), 1001);
    }

    #[test]
    fn oom_score_range_is_checked_before_writing() {
        assert!(matches!(
            set_oom_score_adj(1001),
            Err(IdentityError::OomScoreRange(1001))
        ));
        assert!(matches!(
            set_oom_score_adj(-1001),
            Err(IdentityError::OomScoreRange(-1001))
        ));
    }

    #[test]
    fn bad_umask_is_refused() {
        let mut user = User::default();
        user.set_umask(Some(0o10000));
        assert!(matches!(
            set_umask(&user),
            Err(IdentityError::InvalidUmask(_))
        ));
    }
}
