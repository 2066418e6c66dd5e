//! `user`: one local user account, present (with the uid, primary group,
//! supplementary groups, home, shell and comment declared) or absent.
//!
//! The type owns the *what*: the attributes, their validation, and the
//! comparison with the passwd and group databases ([`crate::accounts`]:
//! NSS on the host, the root's own files under `--root`; never command
//! output). Only declared attributes are managed. A user the agent did not
//! create ([`crate::account_ledger`]) is never changed or removed unless
//! `manage_existing: true`, and removing one deletes its home only with
//! `managehome: true`. The *how* is useradd, usermod and userdel, with
//! `-R <root>` under `--root`.

use serde::Deserialize;

use crate::account_ledger::{Kind, Ledger};
use crate::accounts::{self, UserEntry};
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::group::{not_ours, root_args, valid_name, Ensure};
use crate::runner::Cmd;

/// Attributes of `- user: <name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) or `absent`.
    #[serde(default)]
    ensure: Ensure,
    /// The numeric user id. Not given: chosen by useradd, not managed.
    uid: Option<u32>,
    /// The primary group, by name or number. Not given: useradd's default
    /// (usually a group named after the user), not managed. A named group
    /// declared in the catalog is applied first.
    gid: Option<GroupRef>,
    /// Supplementary groups (names), a list or one name. With
    /// `membership: minimum` (default) the user is added to any it lacks
    /// and kept in others; with `inclusive` these are exactly its groups.
    groups: Option<OneOrMany>,
    /// `minimum` (default) or `inclusive`: how `groups` is compared.
    #[serde(default)]
    membership: Membership,
    /// The home directory (absolute). Not given: useradd's default on
    /// creation, not managed afterwards.
    home: Option<String>,
    /// The login shell (absolute path). Not given: not managed.
    shell: Option<String>,
    /// The GECOS field (full name...). Not given: not managed.
    comment: Option<String>,
    /// Create it as a system user (`useradd -r`: a uid from the system
    /// range). Only used when the user is created. Default false.
    #[serde(default)]
    system: bool,
    /// Create the home directory with the user (`useradd -m`), move it
    /// when `home` changes (`usermod -m`), and delete it with the user
    /// (`userdel -r`). Default false: homes are never created or deleted.
    #[serde(default)]
    managehome: bool,
    /// Change or remove the user even though the agent did not create it.
    /// Default false: a user that already existed is left as it is, and a
    /// declaration that would change it fails saying so.
    #[serde(default)]
    manage_existing: bool,
}

/// A group named or numbered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum GroupRef {
    Id(u32),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// How `groups` is compared with the user's current groups.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Membership {
    #[default]
    Minimum,
    Inclusive,
}

/// The validated declaration of a present user: `None` = not managed.
#[derive(Debug, Default)]
struct Desired {
    uid: Option<u32>,
    gid: Option<GroupRef>,
    groups: Option<Vec<String>>,
    membership: Membership,
    home: Option<String>,
    shell: Option<String>,
    comment: Option<String>,
    system: bool,
}

/// A typed `user` resource.
#[derive(Debug)]
pub struct User {
    id: ResourceId,
    name: String,
    /// `None` = ensure absent.
    desired: Option<Desired>,
    managehome: bool,
    manage_existing: bool,
}

/// One attribute `usermod` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Uid(u32),
    Gid(GroupRef),
    /// The complete new list of supplementary groups.
    Groups(Vec<String>),
    Home(String),
    Shell(String),
    Comment(String),
}

/// What `apply` does.
#[derive(Debug)]
enum Action {
    Create,
    Modify(Vec<Field>),
    Remove,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    if !valid_name(&id.title) {
        return Err(invalid(format!("'{}' is not a valid user name", id.title)));
    }
    let desired = match p.ensure {
        Ensure::Absent => None,
        Ensure::Present => {
            // "1001" written as a string is the number, as in Puppet.
            let gid = match p.gid {
                Some(GroupRef::Name(n)) => Some(match n.trim().parse::<u32>() {
                    Ok(n) => GroupRef::Id(n),
                    Err(_) if valid_name(n.trim()) => GroupRef::Name(n.trim().to_string()),
                    Err(_) => return Err(invalid(format!("gid '{n}' is not a group name"))),
                }),
                other => other,
            };
            let groups = match p.groups {
                None => None,
                Some(OneOrMany::One(s)) => Some(vec![s]),
                Some(OneOrMany::Many(v)) => Some(v),
            }
            .map(|v| {
                let mut v: Vec<String> = v.into_iter().map(|g| g.trim().to_string()).collect();
                v.sort();
                v.dedup();
                v
            });
            if let Some(bad) = groups.iter().flatten().find(|g| !valid_name(g)) {
                return Err(invalid(format!("'{bad}' in groups is not a group name")));
            }
            for (attr, path) in [("home", &p.home), ("shell", &p.shell)] {
                if let Some(path) = path {
                    if !path.starts_with('/') || path.contains([':', '\n']) {
                        return Err(invalid(format!(
                            "{attr} '{path}' must be an absolute path without ':'"
                        )));
                    }
                }
            }
            if let Some(c) = &p.comment {
                if c.contains(|c: char| c == ':' || c.is_control()) {
                    return Err(invalid(
                        "comment must be one line without ':' (a passwd field)".into(),
                    ));
                }
            }
            Some(Desired {
                uid: p.uid,
                gid,
                groups,
                membership: p.membership,
                home: p.home,
                shell: p.shell,
                comment: p.comment,
                system: p.system,
            })
        }
    };
    Ok(Box::new(User {
        id: id.clone(),
        name: id.title.clone(),
        desired,
        managehome: p.managehome,
        manage_existing: p.manage_existing,
    }))
}

impl User {
    /// Fails unless the agent may change or remove the existing user.
    fn may_change(&self, cx: &Context) -> Result<(), ResourceError> {
        if self.manage_existing || Ledger::of(cx).contains(Kind::User, &self.name)? {
            Ok(())
        } else {
            Err(not_ours(&self.id, "user"))
        }
    }

    /// The differences between `cur` and `d`, for people and for usermod.
    fn diff(
        &self,
        cx: &Context,
        d: &Desired,
        cur: &UserEntry,
    ) -> Result<(Vec<Change>, Vec<Field>), ResourceError> {
        let mut changes = Vec::new();
        let mut fields = Vec::new();
        if let Some(gid) = &d.gid {
            let in_sync = match gid {
                GroupRef::Id(n) => *n == cur.gid,
                GroupRef::Name(n) => accounts::group(cx, n)?.is_some_and(|g| g.gid == cur.gid),
            };
            if !in_sync {
                let from =
                    accounts::group_name(cx, cur.gid)?.unwrap_or_else(|| cur.gid.to_string());
                let to = match gid {
                    GroupRef::Id(n) => n.to_string(),
                    GroupRef::Name(n) => n.clone(),
                };
                changes.push(Change::new("gid", Some(from), Some(to)));
                fields.push(Field::Gid(gid.clone()));
            }
        }
        let mut differ = |property: &str, from: String, to: String, field: Field| {
            if from != to {
                changes.push(Change::new(property, Some(from), Some(to)));
                fields.push(field);
            }
        };
        if let Some(uid) = d.uid {
            differ("uid", cur.uid.to_string(), uid.to_string(), Field::Uid(uid));
        }
        if let Some(groups) = &d.groups {
            let current = accounts::supplementary_groups(cx, cur)?;
            let mut target = groups.clone();
            if d.membership == Membership::Minimum {
                target.extend(current.iter().cloned());
                target.sort();
                target.dedup();
            }
            let (from, to) = (current.join(","), target.join(","));
            differ("groups", from, to, Field::Groups(target));
        }
        if let Some(home) = &d.home {
            differ(
                "home",
                cur.home.clone(),
                home.clone(),
                Field::Home(home.clone()),
            );
        }
        if let Some(shell) = &d.shell {
            let field = Field::Shell(shell.clone());
            differ("shell", cur.shell.clone(), shell.clone(), field);
        }
        if let Some(comment) = &d.comment {
            let field = Field::Comment(comment.clone());
            differ("comment", cur.comment.clone(), comment.clone(), field);
        }
        Ok((changes, fields))
    }

    /// The command that carries out `action` (the provider's *how*).
    fn argv(&self, cx: &Context, action: &Action) -> Result<Vec<String>, ResourceError> {
        let mut argv = vec![match action {
            Action::Create => "useradd",
            Action::Modify(_) => "usermod",
            Action::Remove => "userdel",
        }
        .to_string()];
        argv.extend(root_args(cx)?);
        let gid_arg = |g: &GroupRef| match g {
            GroupRef::Id(n) => n.to_string(),
            GroupRef::Name(n) => n.clone(),
        };
        match action {
            Action::Create => {
                let d = self.desired.as_ref().ok_or_else(|| {
                    ResourceError::Failed(format!("{}: create planned for an absent user", self.id))
                })?;
                if d.system {
                    argv.push("-r".into());
                }
                let mut opt = |flag: &str, value: Option<String>| {
                    if let Some(v) = value {
                        argv.extend([flag.to_string(), v]);
                    }
                };
                opt("-u", d.uid.map(|u| u.to_string()));
                opt("-g", d.gid.as_ref().map(gid_arg));
                opt("-G", d.groups.as_ref().map(|g| g.join(",")));
                opt("-d", d.home.clone());
                opt("-s", d.shell.clone());
                opt("-c", d.comment.clone());
                // -M explicitly: login.defs' CREATE_HOME must not decide.
                argv.push(if self.managehome { "-m" } else { "-M" }.into());
            }
            Action::Modify(fields) => {
                for field in fields {
                    let (flag, value) = match field {
                        Field::Uid(u) => ("-u", u.to_string()),
                        Field::Gid(g) => ("-g", gid_arg(g)),
                        Field::Groups(g) => ("-G", g.join(",")),
                        Field::Home(h) => ("-d", h.clone()),
                        Field::Shell(s) => ("-s", s.clone()),
                        Field::Comment(c) => ("-c", c.clone()),
                    };
                    argv.extend([flag.to_string(), value]);
                    if matches!(field, Field::Home(_)) && self.managehome {
                        argv.push("-m".into());
                    }
                }
            }
            Action::Remove => {
                if self.managehome {
                    argv.push("-r".into());
                }
            }
        }
        argv.push(self.name.clone());
        Ok(argv)
    }
}

impl Resource for User {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let current = accounts::user(cx, &self.name)?;
        let ensure = |from: &str, to: &str| {
            vec![Change::new(
                "ensure",
                Some(from.to_string()),
                Some(to.to_string()),
            )]
        };
        Ok(match (&self.desired, current) {
            (None, None) => Plan::in_sync(),
            (None, Some(_)) => {
                self.may_change(cx)?;
                Plan::new(ensure("present", "absent"), Action::Remove)
            }
            (Some(_), None) => Plan::new(ensure("absent", "present"), Action::Create),
            (Some(d), Some(cur)) => {
                let (changes, fields) = self.diff(cx, d, &cur)?;
                if changes.is_empty() {
                    Plan::in_sync()
                } else {
                    self.may_change(cx)?;
                    Plan::new(changes, Action::Modify(fields))
                }
            }
        })
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let action: Action = plan.steps(&self.id)?;
        cx.runner.run(&Cmd::new(&self.argv(cx, &action)?))?;
        let ledger = Ledger::of(cx);
        match action {
            Action::Create => ledger.record(Kind::User, &self.name),
            Action::Remove => ledger.forget(Kind::User, &self.name),
            Action::Modify(_) => Ok(()),
        }
    }

    /// Its primary and supplementary groups, when declared in the catalog.
    fn autorequires(&self) -> Vec<ResourceId> {
        let Some(d) = &self.desired else {
            return vec![];
        };
        let mut ids = Vec::new();
        match &d.gid {
            Some(GroupRef::Name(n)) => ids.push(ResourceId::new("group", n)),
            Some(GroupRef::Id(n)) => ids.push(ResourceId::new("group", n.to_string())),
            None => {}
        }
        for g in d.groups.iter().flatten() {
            ids.push(ResourceId::new("group", g));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        let mut paths = vec!["/etc/passwd".to_string(), "/etc/shadow".to_string()];
        if self.managehome {
            if let Some(home) = self.desired.as_ref().and_then(|d| d.home.clone()) {
                paths.push(home);
            }
        }
        paths
    }

    /// It reads the account databases.
    fn check_only_reads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::tests::{account_sandbox, as_root};
    use serde_json::json;

    fn user(title: &str, attrs: serde_json::Value) -> Box<dyn Resource> {
        build(
            &crate::testing::decl("user", title, attrs),
            &TypeEnv::default(),
        )
        .unwrap()
    }

    fn lines(plan: &Plan) -> Vec<String> {
        plan.changes().iter().map(|c| c.line()).collect()
    }

    #[test]
    fn build_validates() {
        let d = |t: &str, a| build(&crate::testing::decl("user", t, a), &TypeEnv::default());
        assert!(d("app", json!({"uid": 1001, "gid": "app", "groups": "staff"})).is_ok());
        assert!(d("app", json!({"gid": 1001, "groups": ["a", "b"]})).is_ok());
        assert!(d("a:b", json!({})).is_err());
        assert!(d("app", json!({"home": "relative"})).is_err());
        assert!(d("app", json!({"shell": "/bin/sh:x"})).is_err());
        assert!(d("app", json!({"comment": "a:b"})).is_err());
        assert!(d("app", json!({"groups": ["a,b"]})).is_err());
        assert!(d("app", json!({"gid": "no good"})).is_err());
        assert!(d("app", json!({"password": "x"})).is_err());
        assert!(d("app", json!({"membership": "some"})).is_err());
    }

    #[test]
    fn autorequires_its_groups_and_files_find_it() {
        let u = user("app", json!({"gid": "appgrp", "groups": ["b", "a"]}));
        let ids: Vec<String> = u.autorequires().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["group[appgrp]", "group[a]", "group[b]"]);
        assert_eq!(
            user("app", json!({"gid": 50})).autorequires()[0].to_string(),
            "group[50]"
        );
        // A file owned by the user and group is ordered after both.
        let file = crate::file::build(
            &crate::testing::decl(
                "file",
                "/srv/app",
                json!({"owner": "app", "group": "appgrp"}),
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        let g = crate::group::build(
            &crate::testing::decl("group", "appgrp", json!({})),
            &TypeEnv::default(),
        )
        .unwrap();
        let needs = file.autorequires();
        assert!(
            needs.contains(u.id()) && needs.contains(g.id()),
            "{needs:?}"
        );
    }

    #[test]
    fn commands_carry_only_what_is_declared() {
        let (_dir, cx) = account_sandbox();
        let root = std::path::absolute(&cx.root).unwrap();
        let root = root.to_string_lossy().into_owned();
        let u = User {
            id: ResourceId::new("user", "app"),
            name: "app".into(),
            desired: Some(Desired {
                uid: Some(1001),
                groups: Some(vec!["a".into(), "b".into()]),
                shell: Some("/bin/sh".into()),
                system: true,
                ..Default::default()
            }),
            managehome: false,
            manage_existing: false,
        };
        let argv = |a| u.argv(&cx, &a).unwrap();
        assert_eq!(
            argv(Action::Create),
            [
                "useradd", "-R", &root, "-r", "-u", "1001", "-G", "a,b", "-s", "/bin/sh", "-M",
                "app"
            ]
        );
        assert_eq!(
            argv(Action::Modify(vec![Field::Home("/srv/app".into())])),
            ["usermod", "-R", &root, "-d", "/srv/app", "app"]
        );
        // Without managehome the home is never deleted.
        assert_eq!(argv(Action::Remove), ["userdel", "-R", &root, "app"]);
        let u = User {
            managehome: true,
            ..u
        };
        let argv = |a| u.argv(&cx, &a).unwrap();
        assert_eq!(argv(Action::Remove), ["userdel", "-R", &root, "-r", "app"]);
        assert_eq!(
            argv(Action::Modify(vec![Field::Home("/srv/app".into())])),
            ["usermod", "-R", &root, "-d", "/srv/app", "-m", "app"]
        );
        assert_eq!(argv(Action::Create).last().map(|a| a.as_str()), Some("app"));
        assert!(argv(Action::Create).contains(&"-m".to_string()));
    }

    #[test]
    fn existing_user_not_created_by_the_agent_is_refused() {
        let (_dir, cx) = account_sandbox();
        let etc = cx.root.join("etc");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nstash:x:1001:1001:Stash:/home/stash:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nstash:x:1001:\nstaff:x:50:stash\n",
        )
        .unwrap();
        // Already as declared: in sync, nothing refused.
        let same = json!({"uid": 1001, "gid": "stash", "groups": "staff", "shell": "/bin/sh"});
        assert!(user("stash", same).check(&cx).unwrap().is_empty());
        for attrs in [
            json!({"shell": "/bin/bash"}),
            json!({"groups": ["wheel"]}),
            json!({"ensure": "absent", "managehome": true}),
        ] {
            let err = user("stash", attrs).check(&cx).unwrap_err().to_string();
            assert!(err.contains("not created by the agent"), "{err}");
            assert!(err.contains("manage_existing: true"), "{err}");
        }
        assert!(cx.runner.history().is_empty(), "nothing ran");
        // With manage_existing the change is planned; minimum membership
        // keeps the groups it has.
        let r = user(
            "stash",
            json!({"groups": ["wheel"], "comment": "Stash", "manage_existing": true}),
        );
        assert_eq!(
            lines(&r.check(&cx).unwrap()),
            ["groups changed 'staff' to 'staff,wheel'"]
        );
        let r = user(
            "stash",
            json!({"groups": [], "membership": "inclusive", "gid": 50, "manage_existing": true}),
        );
        assert_eq!(
            lines(&r.check(&cx).unwrap()),
            [
                "gid changed 'stash' to '50'",
                "groups changed 'staff' to ''"
            ]
        );
    }

    #[test]
    fn apply_is_idempotent_under_a_root() {
        let (_dir, cx) = account_sandbox();
        std::fs::write(
            cx.root.join("etc/group"),
            "root:x:0:\nappgrp:x:1500:\nstaff:x:50:\n",
        )
        .unwrap();
        let attrs = json!({
            "uid": 1600, "gid": "appgrp", "groups": ["staff"], "home": "/home/app",
            "shell": "/bin/sh", "comment": "App user", "managehome": true,
        });
        let u = user("app", attrs.clone());
        let plan = u.check(&cx).unwrap();
        assert_eq!(lines(&plan), ["ensure changed 'absent' to 'present'"]);
        if !as_root("user's idempotence test") {
            return;
        }
        u.apply(&cx, plan).unwrap();
        assert!(
            u.check(&cx).unwrap().is_empty(),
            "second check finds nothing"
        );
        let passwd = std::fs::read_to_string(cx.root.join("etc/passwd")).unwrap();
        assert!(
            passwd.contains("app:x:1600:1500:App user:/home/app:/bin/sh"),
            "{passwd}"
        );
        assert!(
            cx.root.join("home/app").is_dir(),
            "managehome made the home"
        );
        assert!(Ledger::of(&cx).contains(Kind::User, "app").unwrap());

        // Created by the agent: it may be changed, and removed with its home.
        let u = user("app", json!({"shell": "/bin/bash", "groups": []}));
        let plan = u.check(&cx).unwrap();
        assert_eq!(lines(&plan), ["shell changed '/bin/sh' to '/bin/bash'"]);
        u.apply(&cx, plan).unwrap();
        assert!(u.check(&cx).unwrap().is_empty());
        // Removed without managehome: the home stays.
        let gone = user("app", json!({"ensure": "absent"}));
        gone.apply(&cx, gone.check(&cx).unwrap()).unwrap();
        assert!(gone.check(&cx).unwrap().is_empty());
        assert!(cx.root.join("home/app").is_dir(), "home kept");
        assert!(!Ledger::of(&cx).contains(Kind::User, "app").unwrap());
        let ran = cx.runner.history();
        assert_eq!(ran.len(), 3, "{ran:?}");
        assert!(
            ran[2].starts_with("userdel -R ") && ran[2].ends_with(" app"),
            "{ran:?}"
        );

        // Created again and removed with managehome: the home goes too.
        let u = user("app2", json!({"home": "/home/app2", "managehome": true}));
        u.apply(&cx, u.check(&cx).unwrap()).unwrap();
        assert!(u.check(&cx).unwrap().is_empty());
        assert!(cx.root.join("home/app2").is_dir());
        let gone = user("app2", json!({"ensure": "absent", "managehome": true}));
        gone.apply(&cx, gone.check(&cx).unwrap()).unwrap();
        assert!(gone.check(&cx).unwrap().is_empty());
        assert!(!cx.root.join("home/app2").exists(), "home removed");
    }
}
