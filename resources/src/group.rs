//! `group`: one local group, present (with a gid, if given) or absent.
//!
//! The type owns the *what*: `ensure`, `gid`, and the safety rule that a
//! group the agent did not create (see [`crate::account_ledger`]) is never
//! changed or removed unless `manage_existing: true`. The *how* is the shadow
//! utilities (groupadd, groupmod, groupdel), run with `-R <root>` under
//! `--root` so they write the sandbox's `/etc/group` and `/etc/gshadow`.
//! The current state is read from the account databases
//! ([`crate::accounts`]), never from command output.

use serde::Deserialize;

use crate::account_ledger::{Kind, Ledger};
use crate::accounts;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::runner::Cmd;

/// Attributes of `- group: <name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `present` (default) or `absent`.
    #[serde(default)]
    ensure: Ensure,
    /// The numeric group id. Not given: chosen by groupadd, and not
    /// managed afterwards.
    gid: Option<u32>,
    /// Create it as a system group (`groupadd -r`: a gid from the system
    /// range). Only used when the group is created. Default false.
    #[serde(default)]
    system: bool,
    /// Change or remove the group even though the agent did not create it.
    /// Default false: a group that already existed is left as it is, and a
    /// declaration that would change it fails saying so.
    #[serde(default)]
    manage_existing: bool,
}

/// Whether the account should exist.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ensure {
    #[default]
    Present,
    Absent,
}

/// A typed `group` resource.
#[derive(Debug)]
pub struct Group {
    id: ResourceId,
    name: String,
    ensure: Ensure,
    gid: Option<u32>,
    system: bool,
    manage_existing: bool,
}

/// What `apply` does.
#[derive(Debug)]
enum Action {
    Create,
    SetGid(u32),
    Remove,
}

/// A user or group name the shadow utilities and the colon-separated
/// databases accept: not empty, no `:`, `,`, white space or control
/// character, not starting with `-` (it would be read as an option), at
/// most 32 bytes.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name
            .chars()
            .any(|c| c == ':' || c == ',' || c.is_whitespace() || c.is_control())
}

/// `-R <root>` under a sandbox root: the shadow utilities then chroot into
/// it and edit its databases.
pub(crate) fn root_args(cx: &Context) -> Result<Vec<String>, ResourceError> {
    if cx.root == std::path::Path::new("/") {
        return Ok(vec![]);
    }
    let root = std::path::absolute(&cx.root).map_err(|e| ResourceError::io(&cx.root, e))?;
    Ok(vec!["-R".into(), root.to_string_lossy().into_owned()])
}

/// The refusal of a change to an account the agent did not create.
pub(crate) fn not_ours(id: &ResourceId, what: &str) -> ResourceError {
    ResourceError::Failed(format!(
        "{id}: the {what} exists and was not created by the agent: refusing to change \
         or remove it (set `manage_existing: true` to manage it anyway)"
    ))
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    if !valid_name(&id.title) {
        return Err(ResourceError::Invalid(format!(
            "{id}: '{}' is not a valid group name",
            id.title
        )));
    }
    Ok(Box::new(Group {
        id: id.clone(),
        name: id.title.clone(),
        ensure: p.ensure,
        gid: p.gid,
        system: p.system,
        manage_existing: p.manage_existing,
    }))
}

impl Group {
    /// Fails unless the agent may change or remove the existing group.
    fn may_change(&self, cx: &Context) -> Result<(), ResourceError> {
        if self.manage_existing || Ledger::of(cx).contains(Kind::Group, &self.name)? {
            Ok(())
        } else {
            Err(not_ours(&self.id, "group"))
        }
    }

    fn argv(&self, cx: &Context, action: &Action) -> Result<Vec<String>, ResourceError> {
        let mut argv = vec![match action {
            Action::Create => "groupadd",
            Action::SetGid(_) => "groupmod",
            Action::Remove => "groupdel",
        }
        .to_string()];
        argv.extend(root_args(cx)?);
        match action {
            Action::Create => {
                if self.system {
                    argv.push("-r".into());
                }
                if let Some(gid) = self.gid {
                    argv.extend(["-g".into(), gid.to_string()]);
                }
            }
            Action::SetGid(gid) => argv.extend(["-g".into(), gid.to_string()]),
            Action::Remove => {}
        }
        argv.push(self.name.clone());
        Ok(argv)
    }
}

impl Resource for Group {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let current = accounts::group(cx, &self.name)?;
        let ensure = |from: &str, to: &str| {
            vec![Change::new(
                "ensure",
                Some(from.to_string()),
                Some(to.to_string()),
            )]
        };
        Ok(match (self.ensure, current) {
            (Ensure::Absent, None) => Plan::in_sync(),
            (Ensure::Absent, Some(_)) => {
                self.may_change(cx)?;
                Plan::new(ensure("present", "absent"), Action::Remove)
            }
            (Ensure::Present, None) => Plan::new(ensure("absent", "present"), Action::Create),
            (Ensure::Present, Some(cur)) => match self.gid {
                Some(gid) if gid != cur.gid => {
                    self.may_change(cx)?;
                    let change =
                        Change::new("gid", Some(cur.gid.to_string()), Some(gid.to_string()));
                    Plan::new(vec![change], Action::SetGid(gid))
                }
                _ => Plan::in_sync(),
            },
        })
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let action: Action = plan.steps(&self.id)?;
        cx.runner.run(&Cmd::new(&self.argv(cx, &action)?))?;
        let ledger = Ledger::of(cx);
        match action {
            Action::Create => ledger.record(Kind::Group, &self.name),
            Action::Remove => ledger.forget(Kind::Group, &self.name),
            Action::SetGid(_) => Ok(()),
        }
    }

    fn paths(&self) -> Vec<String> {
        vec!["/etc/group".into(), "/etc/gshadow".into()]
    }

    /// It reads the account databases.
    fn check_only_reads(&self) -> bool {
        true
    }

    /// groupadd and friends replace files, never directories.
    fn keeps_dirs(&self) -> bool {
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn group(title: &str, attrs: serde_json::Value) -> Box<dyn Resource> {
        build(
            &crate::testing::decl("group", title, attrs),
            &TypeEnv::default(),
        )
        .unwrap()
    }

    /// A sandbox root with the minimal account databases the shadow
    /// utilities need (`-R` edits them in place).
    pub(crate) fn account_sandbox() -> (tempfile::TempDir, Context) {
        let (dir, cx) = crate::testing::sandbox(&["etc", "home"]);
        let etc = cx.root.join("etc");
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        std::fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
        (dir, cx)
    }

    /// The shadow utilities chroot into the root: that needs root. An
    /// ordinary user has checked the plan (what can be checked) and stops
    /// there, saying so; root (CI) goes on to apply for real.
    pub(crate) fn as_root(what: &str) -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("{what}: plan checked; applying needs root (useradd/groupadd -R chroot)");
        }
        root
    }

    #[test]
    fn build_validates() {
        let d = |t: &str, a| build(&crate::testing::decl("group", t, a), &TypeEnv::default());
        assert!(d("staff", json!({"gid": 50, "system": true})).is_ok());
        assert!(d("st:aff", json!({})).is_err());
        assert!(d("-r", json!({})).is_err());
        assert!(d("staff", json!({"gid": -1})).is_err());
        assert!(d("staff", json!({"members": ["a"]})).is_err());
        assert!(d("staff", json!({"ensure": "gone"})).is_err());
    }

    #[test]
    fn commands_name_the_root() {
        let (_dir, cx) = account_sandbox();
        let g = Group {
            id: ResourceId::new("group", "app"),
            name: "app".into(),
            ensure: Ensure::Present,
            gid: Some(1500),
            system: true,
            manage_existing: false,
        };
        let root = std::path::absolute(&cx.root).unwrap();
        let root = root.to_string_lossy();
        assert_eq!(
            g.argv(&cx, &Action::Create).unwrap(),
            ["groupadd", "-R", &root, "-r", "-g", "1500", "app"]
        );
        assert_eq!(
            g.argv(&cx, &Action::Remove).unwrap(),
            ["groupdel", "-R", &root, "app"]
        );
    }

    #[test]
    fn existing_group_not_created_by_the_agent_is_refused() {
        let (_dir, cx) = account_sandbox();
        std::fs::write(cx.root.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        // Present and already as declared: nothing to change, no refusal.
        assert!(group("staff", json!({})).check(&cx).unwrap().is_empty());
        for attrs in [json!({"gid": 51}), json!({"ensure": "absent"})] {
            let err = group("staff", attrs).check(&cx).unwrap_err().to_string();
            assert!(err.contains("manage_existing"), "{err}");
        }
        assert!(cx.runner.history().is_empty());
        let plan = group("staff", json!({"gid": 51, "manage_existing": true}))
            .check(&cx)
            .unwrap();
        assert_eq!(plan.changes()[0].line(), "gid changed '50' to '51'");
    }

    #[test]
    fn apply_is_idempotent_under_a_root() {
        let (_dir, cx) = account_sandbox();
        let g = group("appgrp", json!({"gid": 1500, "system": true}));
        let plan = g.check(&cx).unwrap();
        assert_eq!(
            plan.changes()[0].line(),
            "ensure changed 'absent' to 'present'"
        );
        if !as_root("group's idempotence test") {
            return;
        }
        g.apply(&cx, plan).unwrap();
        assert!(
            g.check(&cx).unwrap().is_empty(),
            "second check finds nothing"
        );
        let etc_group = std::fs::read_to_string(cx.root.join("etc/group")).unwrap();
        assert!(etc_group.contains("appgrp:x:1500:"), "{etc_group}");
        assert!(cx.runner.history()[0].starts_with("groupadd -R "));

        // Created by the agent: its gid may change, and it may go.
        let g = group("appgrp", json!({"gid": 1501}));
        g.apply(&cx, g.check(&cx).unwrap()).unwrap();
        assert!(g.check(&cx).unwrap().is_empty());
        let gone = group("appgrp", json!({"ensure": "absent"}));
        gone.apply(&cx, gone.check(&cx).unwrap()).unwrap();
        assert!(gone.check(&cx).unwrap().is_empty());
        assert!(!Ledger::of(&cx).contains(Kind::Group, "appgrp").unwrap());
        assert_eq!(cx.runner.history().len(), 3);
    }
}
