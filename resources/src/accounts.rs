//! The account databases as the `user` and `group` types read them: one
//! user or group by name, and a user's supplementary groups.
//!
//! On the host (root `/`) they come from the libc/NSS lookups (getpwnam,
//! getgrnam, getgrouplist), so LDAP or sssd accounts count as existing.
//! Under `--root` there is no NSS for the chroot: the root's own
//! `/etc/passwd` and `/etc/group` are read with a tiny parser of their
//! colon-separated lines. Command output is never parsed.

use std::ffi::CString;
use std::path::Path;

use crate::core::{Context, ResourceError};

/// One user as the passwd database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The GECOS field.
    pub comment: String,
    pub home: String,
    pub shell: String,
}

/// One group as the group database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// Users listed as members (supplementary membership).
    pub members: Vec<String>,
}

/// True when the context is the host itself (NSS applies).
fn on_host(cx: &Context) -> bool {
    cx.root == Path::new("/")
}

fn lookup_failed(what: &str, e: impl std::fmt::Display) -> ResourceError {
    ResourceError::Failed(format!("looking up {what}: {e}"))
}

/// The user `name`, if it exists.
pub fn user(cx: &Context, name: &str) -> Result<Option<UserEntry>, ResourceError> {
    if on_host(cx) {
        let found = nix::unistd::User::from_name(name)
            .map_err(|e| lookup_failed(&format!("user {name}"), e))?;
        return Ok(found.map(|u| UserEntry {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            comment: u.gecos.to_string_lossy().into_owned(),
            home: u.dir.to_string_lossy().into_owned(),
            shell: u.shell.to_string_lossy().into_owned(),
        }));
    }
    let text = read_db(cx, "/etc/passwd")?;
    Ok(parse_passwd(&text).into_iter().find(|u| u.name == name))
}

/// The group `name`, if it exists.
pub fn group(cx: &Context, name: &str) -> Result<Option<GroupEntry>, ResourceError> {
    if on_host(cx) {
        let found = nix::unistd::Group::from_name(name)
            .map_err(|e| lookup_failed(&format!("group {name}"), e))?;
        return Ok(found.map(|g| GroupEntry {
            name: g.name,
            gid: g.gid.as_raw(),
            members: g.mem,
        }));
    }
    let text = read_db(cx, "/etc/group")?;
    Ok(parse_group(&text).into_iter().find(|g| g.name == name))
}

/// The name of user `uid`, if there is one.
pub fn user_name_of(cx: &Context, uid: u32) -> Result<Option<String>, ResourceError> {
    if on_host(cx) {
        let found = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map_err(|e| lookup_failed(&format!("user {uid}"), e))?;
        return Ok(found.map(|u| u.name));
    }
    let text = read_db(cx, "/etc/passwd")?;
    Ok(parse_passwd(&text)
        .into_iter()
        .find(|u| u.uid == uid)
        .map(|u| u.name))
}

/// The name of group `gid`, if there is one.
pub fn group_name(cx: &Context, gid: u32) -> Result<Option<String>, ResourceError> {
    if on_host(cx) {
        let found = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .map_err(|e| lookup_failed(&format!("group {gid}"), e))?;
        return Ok(found.map(|g| g.name));
    }
    let text = read_db(cx, "/etc/group")?;
    Ok(parse_group(&text)
        .into_iter()
        .find(|g| g.gid == gid)
        .map(|g| g.name))
}

/// A user's uid by name, or a numeric uid; `None` when there is no such
/// user. Under `--root` the root's own `/etc/passwd` first (a user a `user`
/// resource created in the sandbox), then the host's.
pub fn resolve_user(cx: &Context, name: &str) -> Result<Option<u32>, ResourceError> {
    resolve(
        cx,
        name,
        "user",
        || Ok(user(cx, name)?.map(|u| u.uid)),
        || nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
    )
}

/// [`resolve_user`] for a group.
pub fn resolve_group(cx: &Context, name: &str) -> Result<Option<u32>, ResourceError> {
    resolve(
        cx,
        name,
        "group",
        || Ok(group(cx, name)?.map(|g| g.gid)),
        || nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
    )
}

/// The id `name` has: in the root's own database (under `--root`), else on
/// the host, else `name` read as a number.
fn resolve(
    cx: &Context,
    name: &str,
    what: &str,
    in_root: impl FnOnce() -> Result<Option<u32>, ResourceError>,
    on_host: impl FnOnce() -> nix::Result<Option<u32>>,
) -> Result<Option<u32>, ResourceError> {
    if cx.root != Path::new("/") {
        if let Some(id) = in_root()? {
            return Ok(Some(id));
        }
    }
    match on_host() {
        Ok(Some(id)) => Ok(Some(id)),
        Ok(None) => Ok(name.parse().ok()),
        Err(e) => Err(ResourceError::Failed(format!(
            "looking up {what} {name}: {e}"
        ))),
    }
}

/// The host's name of `uid` (the number when it has none), for change lines.
pub fn user_label(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// The host's name of `gid` (the number when it has none), for change lines.
pub fn group_label(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

/// The names of the groups `user` is a supplementary member of (its
/// primary group left out), sorted.
pub fn supplementary_groups(cx: &Context, user: &UserEntry) -> Result<Vec<String>, ResourceError> {
    let mut names = if on_host(cx) {
        let c_name = CString::new(user.name.as_str())
            .map_err(|e| ResourceError::Invalid(format!("user {}: {e}", user.name)))?;
        let gids = nix::unistd::getgrouplist(&c_name, nix::unistd::Gid::from_raw(user.gid))
            .map_err(|e| lookup_failed(&format!("groups of user {}", user.name), e))?;
        let mut names = Vec::new();
        for gid in gids.into_iter().map(|g| g.as_raw()) {
            if gid != user.gid {
                names.push(group_name(cx, gid)?.unwrap_or_else(|| gid.to_string()));
            }
        }
        names
    } else {
        let text = read_db(cx, "/etc/group")?;
        parse_group(&text)
            .into_iter()
            .filter(|g| g.gid != user.gid && g.members.contains(&user.name))
            .map(|g| g.name)
            .collect()
    };
    names.sort();
    names.dedup();
    Ok(names)
}

/// A database file under the root; a missing one is empty.
fn read_db(cx: &Context, node_path: &str) -> Result<String, ResourceError> {
    let path = cx.path(node_path)?;
    match crate::atomic::read_optional(&path)? {
        Some(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        None => Ok(String::new()),
    }
}

/// The entries of a passwd file (`name:x:uid:gid:gecos:home:shell`);
/// comments, NIS `+`/`-` lines and malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<UserEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(UserEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                comment: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// The entries of a group file (`name:x:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 4 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group_lines() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# c\n+nis\nbad:x:nan:0::/:/bin/sh\napp:x:1001:1001:App, Inc:/srv/app:/usr/sbin/nologin\n",
        );
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].name, "app");
        assert_eq!(users[1].comment, "App, Inc");
        assert_eq!(users[1].home, "/srv/app");
        let groups = parse_group("root:x:0:\nstaff:x:50:app, bob\nshort:x:1\n");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].members, ["app", "bob"]);
        assert!(groups[0].members.is_empty());
    }

    #[test]
    fn reads_the_roots_files_under_a_sandbox() {
        let (_dir, cx) = crate::testing::sandbox(&["etc"]);
        assert_eq!(user(&cx, "app").unwrap(), None, "no passwd: no users");
        std::fs::write(
            cx.root.join("etc/passwd"),
            "app:x:1001:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            cx.root.join("etc/group"),
            "app:x:1001:app\nstaff:x:50:bob,app\nwheel:x:10:bob\n",
        )
        .unwrap();
        let app = user(&cx, "app").unwrap().unwrap();
        assert_eq!((app.uid, app.gid), (1001, 1001));
        assert_eq!(supplementary_groups(&cx, &app).unwrap(), ["staff"]);
        assert_eq!(group(&cx, "staff").unwrap().unwrap().gid, 50);
        assert_eq!(group_name(&cx, 10).unwrap().as_deref(), Some("wheel"));
        assert_eq!(group_name(&cx, 11).unwrap(), None);
    }

    #[test]
    fn reads_nss_on_the_host() {
        let root = std::path::PathBuf::from("/");
        let dir = tempfile::tempdir().unwrap();
        let cx = Context::new(root, crate::backup::BackupStore::new(dir.path()));
        let r = user(&cx, "root").unwrap().expect("root exists");
        assert_eq!(r.uid, 0);
        assert_eq!(group_name(&cx, 0).unwrap().as_deref(), Some("root"));
        assert!(user(&cx, "no-such-user-xyzzy").unwrap().is_none());
    }
}
