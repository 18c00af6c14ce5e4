//! Turns Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) and `GroupAdd` into
//! numeric ids by reading the container's own `/etc/passwd` and `/etc/group`, as the
//! image sees them (never the host's).

use std::path::Path;

/// A user as the spec needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The user's home directory from passwd (for HOME), when known.
    pub home: Option<String>,
}

/// Why a user or group could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user or group {0:?}: ids must be between 0 and 4294967294")]
    BadId(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_lines(path: &Path) -> Vec<String> {
    // A missing or unreadable file means no entries, as libcontainer treats it.
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_lines(&rootfs.join("etc/passwd"))
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn groups(rootfs: &Path) -> Vec<GroupEntry> {
    read_lines(&rootfs.join("etc/group"))
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_id(s: &str) -> Result<Option<u32>, UserError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(v) if v < u32::MAX => Ok(Some(v)),
        _ => Err(UserError::BadId(s.to_string())),
    }
}

fn group_id(groups: &[GroupEntry], g: &str) -> Result<u32, UserError> {
    if let Some(id) = parse_id(g)? {
        return Ok(id);
    }
    groups
        .iter()
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::NoGroup(g.to_string()))
}

/// Resolves `user` (empty = root) and `group_add` against `rootfs`.
///
/// A numeric uid that passwd does not know is allowed (gid 0), a name that it does not
/// know is an error; the user's supplementary groups from /etc/group come along, then
/// `group_add`.
pub fn resolve(rootfs: &Path, user: &str, group_add: &[String]) -> Result<ResolvedUser, UserError> {
    let users = passwd(rootfs);
    let groups = groups(rootfs);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match parse_id(u)? {
        Some(uid) => users.iter().find(|e| e.uid == uid),
        None => Some(
            users
                .iter()
                .find(|e| e.name == u)
                .ok_or_else(|| UserError::NoUser(u.to_string()))?,
        ),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => parse_id(u)?.unwrap_or(0),
    };
    let mut out = ResolvedUser {
        uid,
        gid: entry.map(|e| e.gid).unwrap_or(0),
        additional_gids: vec![],
        home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        out.gid = group_id(&groups, g)?;
    } else if let Some(e) = entry {
        // Without an explicit group the user also gets the groups listing it as a member.
        for grp in groups.iter().filter(|grp| grp.members.contains(&e.name)) {
            if grp.gid != out.gid && !out.additional_gids.contains(&grp.gid) {
                out.additional_gids.push(grp.gid);
            }
        }
    }
    for g in group_add {
        let gid = group_id(&groups, g)?;
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             # comment\n\
             daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
             app:x:1000:1000:app:/home/app:/bin/sh\n\
             broken-line\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\naudio:x:29:app\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn empty_user_is_root() {
        let d = rootfs();
        let u = resolve(d.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, vec![10]);
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let d = rootfs();
        let u = resolve(d.path(), "app", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![10, 29]);
    }

    #[test]
    fn explicit_group_and_numeric_ids() {
        let d = rootfs();
        let u = resolve(d.path(), "app:wheel", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert!(u.additional_gids.is_empty());
        let u = resolve(d.path(), "4242:4343", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4343));
        // a uid passwd does not know gets gid 0
        let u = resolve(d.path(), "4242", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        let u = resolve(d.path(), "1", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
    }

    #[test]
    fn group_add_by_name_and_number() {
        let d = rootfs();
        let u = resolve(d.path(), "daemon", &["audio".into(), "777".into()]).unwrap();
        assert_eq!(u.additional_gids, vec![29, 777]);
        assert_eq!(
            resolve(d.path(), "daemon", &["nogroup".into()]).unwrap_err(),
            UserError::NoGroup("nogroup".into())
        );
    }

    #[test]
    fn unknown_names_fail_like_docker() {
        let d = rootfs();
        let e = resolve(d.path(), "ghost", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert!(matches!(
            resolve(d.path(), "app:nogrp", &[]),
            Err(UserError::NoGroup(_))
        ));
        assert!(matches!(
            resolve(d.path(), "4294967295", &[]),
            Err(UserError::BadId(_))
        ));
    }

    #[test]
    fn a_rootfs_without_passwd_still_takes_numeric_ids() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(resolve(d.path(), "5:6", &[]).unwrap().uid, 5);
        assert!(resolve(d.path(), "bob", &[]).is_err());
    }
}
