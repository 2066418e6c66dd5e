//! `exec` resource type: a shell command run when its guards say so
//! (`creates`, `unless`, `onlyif`), or only on refresh (`refreshonly`).
//!
//! Every command, guards included, runs through the context's runner with
//! the same user, cwd, PATH and environment, plus `AGENT_ROOT` so that a
//! command can prefix the paths it touches the way `--root` does for types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::attr::OneOrMany;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::runner::Cmd;

/// PATH of commands that do not set `path`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Seconds a command may run when `timeout` is not given.
pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;

/// Attributes of `- exec: NAME` (the name is the command when `command` is not given).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The command line, run with `/bin/sh -c` (default: the title).
    command: Option<String>,
    /// A node path (under `--root`); when it exists the command does not run.
    creates: Option<String>,
    /// A guard command: when it exits 0 the command does not run.
    unless: Option<String>,
    /// A guard command: the command runs only when it exits 0.
    onlyif: Option<String>,
    /// Run only when notified (by `notify`/`subscribe`), never on its own.
    refreshonly: Option<bool>,
    /// Working directory, a node path (under `--root`); must exist.
    cwd: Option<String>,
    /// Run the command and its guards as this user (needs root).
    user: Option<String>,
    /// Extra environment: a list of `"KEY=value"` or a map. PATH is set by
    /// `path`, and AGENT_ROOT is reserved.
    environment: Option<Environment>,
    /// Seconds before the command (or a guard) is killed and fails
    /// (default 300; 0 = no limit).
    timeout: Option<f64>,
    /// PATH of the command: a string, or a list joined with `:`
    /// (default /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin).
    path: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Environment {
    List(Vec<String>),
    Map(BTreeMap<String, Value>),
}

/// A validated `exec` resource.
#[derive(Debug)]
pub struct Exec {
    id: ResourceId,
    command: String,
    creates: Option<String>,
    unless: Option<String>,
    onlyif: Option<String>,
    refreshonly: bool,
    cwd: Option<String>,
    user: Option<String>,
    /// `environment`, in declaration order (map: key order).
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    path: String,
    sensitive: bool,
}

/// Builds an `exec` from its declaration.
pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    Ok(Box::new(Exec::new(decl)?))
}

impl Exec {
    pub fn new(decl: &Decl) -> Result<Exec, ResourceError> {
        let p: Params = decl.params()?;
        let id = &decl.id;
        let bad = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
        let command = p.command.unwrap_or_else(|| id.title.clone());
        if command.trim().is_empty() {
            return Err(bad("command is empty".into()));
        }
        for (name, value) in [("creates", &p.creates), ("cwd", &p.cwd)] {
            let escapes = |v: &str| {
                std::path::Path::new(v)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            };
            if value
                .as_deref()
                .is_some_and(|v| !v.starts_with('/') || escapes(v))
            {
                return Err(bad(format!("{name} must be an absolute path without '..'")));
            }
        }
        let env = match p.environment {
            None => vec![],
            Some(Environment::List(items)) => items
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => Err(bad(format!("environment entry '{kv}': expected KEY=value"))),
                })
                .collect::<Result<_, _>>()?,
            Some(Environment::Map(map)) => map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
                    _ => Err(bad(format!("environment {k}: expected a scalar value"))),
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some((k, _)) = env.iter().find(|(k, _)| k == "PATH" || k == "AGENT_ROOT") {
            return Err(bad(format!(
                "environment must not set {k} (use the path attribute for PATH)"
            )));
        }
        let timeout = match p.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS) {
            0.0 => None,
            t if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
            t => return Err(bad(format!("timeout {t}: expected seconds >= 0"))),
        };
        let path = match p.path {
            None => DEFAULT_PATH.to_string(),
            Some(OneOrMany::One(s)) => s,
            Some(OneOrMany::Many(v)) => v.join(":"),
        };
        Ok(Exec {
            id: id.clone(),
            command,
            creates: p.creates,
            unless: p.unless,
            onlyif: p.onlyif,
            refreshonly: p.refreshonly.unwrap_or(false),
            cwd: p.cwd,
            user: p.user,
            env,
            timeout,
            path,
            sensitive: decl.is_sensitive("command"),
        })
    }

    /// `line` as this exec runs it: shell, user, cwd, timeout, environment.
    fn cmd(&self, cx: &Context, line: &str) -> Result<Cmd, ResourceError> {
        let mut cmd = Cmd::shell(line);
        cmd.user = self.user.clone();
        cmd.timeout = self.timeout;
        cmd.cwd = self.cwd.as_deref().map(|c| cx.path(c)).transpose()?;
        cmd.env.push(("PATH".into(), self.path.clone()));
        cmd.env
            .push(("AGENT_ROOT".into(), cx.root.to_string_lossy().into_owned()));
        cmd.env.extend(self.env.iter().cloned());
        Ok(cmd)
    }

    /// True when `creates`, `unless` and `onlyif` all let the command run.
    fn guards_allow(&self, cx: &Context) -> Result<bool, ResourceError> {
        if let Some(creates) = &self.creates {
            // Not followed: a dangling link still counts as created.
            let path: PathBuf = cx.unfollowed_path(creates)?;
            if std::fs::symlink_metadata(&path).is_ok() {
                tracing::debug!(exec = %self.id, creates = %creates, "exists, not running");
                return Ok(false);
            }
        }
        if let Some(unless) = &self.unless {
            if cx.runner.output(&self.cmd(cx, unless)?)?.success() {
                tracing::debug!(exec = %self.id, "unless guard succeeded, not running");
                return Ok(false);
            }
        }
        if let Some(onlyif) = &self.onlyif {
            if !cx.runner.output(&self.cmd(cx, onlyif)?)?.success() {
                tracing::debug!(exec = %self.id, "onlyif guard failed, not running");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs the command; a non-zero exit is `CommandFailed` with its stderr.
    fn run(&self, cx: &Context) -> Result<(), ResourceError> {
        let out = cx
            .runner
            .run(&self.cmd(cx, &self.command)?)
            .map_err(|e| match e {
                // A Sensitive command line must not reach the report.
                ResourceError::CommandFailed { status, stderr, .. } if self.sensitive => {
                    ResourceError::CommandFailed {
                        cmd: self.id.to_string(),
                        status,
                        stderr,
                    }
                }
                other => other,
            })?;
        tracing::debug!(exec = %self.id, stdout = %out.stdout.trim_end(), "ran");
        Ok(())
    }
}

/// The one thing an exec's `apply` does, once its guards let it: run the
/// command (the guards ran in `check`, not again).
#[derive(Debug)]
struct RunCommand;

impl Resource for Exec {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        if self.refreshonly || !self.guards_allow(cx)? {
            return Ok(Plan::in_sync());
        }
        let change = Change::new("returns", Some("notrun".into()), Some("0".into()));
        Ok(Plan::new(
            vec![change.sensitive(self.sensitive)],
            RunCommand,
        ))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let RunCommand = plan.steps(&self.id)?;
        self.run(cx)
    }

    /// Runs again when notified, refreshonly or not (as Puppet does), unless
    /// a guard says it is not needed.
    fn refresh(&self, cx: &Context) -> Result<(), ResourceError> {
        if self.guards_allow(cx)? {
            self.run(cx)?;
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![];
        if let Some(cwd) = &self.cwd {
            let cwd = cwd.trim_end_matches('/');
            ids.push(ResourceId::new(
                "file",
                if cwd.is_empty() { "/" } else { cwd },
            ));
        }
        if let Some(user) = &self.user {
            ids.push(ResourceId::new("user", user));
        }
        ids
    }

    /// `creates` and `cwd` are node paths under the root: confined before
    /// anything runs like the paths other types write.
    fn paths(&self) -> Vec<String> {
        self.creates.iter().chain(&self.cwd).cloned().collect()
    }

    fn lints(&self) -> Vec<String> {
        let guarded = self.refreshonly
            || self.creates.is_some()
            || self.unless.is_some()
            || self.onlyif.is_some();
        if guarded {
            return vec![];
        }
        vec![
            "has no creates, unless, onlyif or refreshonly: it runs on every apply, \
              so no run is ever without changes"
                .to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Sandbox;
    use serde_json::json;
    use std::fs;
    use std::time::Instant;

    fn setup() -> Sandbox {
        Sandbox::new(&[])
    }

    fn exec(title: &str, attrs: Value) -> Exec {
        try_exec(title, attrs).unwrap()
    }

    fn try_exec(title: &str, attrs: Value) -> Result<Exec, ResourceError> {
        Exec::new(&Decl {
            id: ResourceId::new("exec", title),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            sensitive: Default::default(),
            location: Default::default(),
        })
    }

    #[test]
    fn creates_under_root_makes_it_idempotent() {
        let t = setup();
        let r = exec(
            "init",
            json!({"command": "mkdir -p \"$AGENT_ROOT/var\" && echo x >> \"$AGENT_ROOT/var/done\"", "creates": "/var/done"}),
        );
        let plan = r.check(&t.cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].line(), "returns changed 'notrun' to '0'");
        r.apply(&t.cx, plan).unwrap();
        assert_eq!(fs::read_to_string(t.root.join("var/done")).unwrap(), "x\n");
        assert!(r.check(&t.cx).unwrap().is_empty(), "creates now exists");
        // The guard looks under the root, not at the host's /var/done.
        fs::remove_file(t.root.join("var/done")).unwrap();
        assert_eq!(r.check(&t.cx).unwrap().changes().len(), 1);
    }

    #[test]
    fn unless_and_onlyif_guards() {
        let t = setup();
        let env = json!(["FLAG=on"]);
        let cases = [
            (json!({"unless": "true"}), 0),
            (json!({"unless": "false"}), 1),
            (json!({"onlyif": "true"}), 1),
            (json!({"onlyif": "exit 3"}), 0),
            // Guards see the same environment as the command.
            (
                json!({"onlyif": "test \"$FLAG\" = on", "environment": env}),
                1,
            ),
            (
                json!({"unless": "test \"$FLAG\" = on", "environment": env}),
                0,
            ),
            (json!({"unless": "false", "onlyif": "false"}), 0),
        ];
        for (attrs, want) in cases {
            let got = exec("true", attrs.clone())
                .check(&t.cx)
                .unwrap()
                .changes()
                .len();
            assert_eq!(got, want, "{attrs}");
        }
        assert!(t
            .cx
            .runner
            .history()
            .iter()
            .any(|c| c.contains("test \"$FLAG\" = on")));
    }

    #[test]
    fn failure_reports_stderr() {
        let t = setup();
        let r = exec(
            "broken",
            json!({"command": "echo partial; echo 'disk full' >&2; exit 3"}),
        );
        match r.apply(&t.cx, r.check(&t.cx).unwrap()) {
            Err(ResourceError::CommandFailed {
                cmd,
                status,
                stderr,
            }) => {
                assert!(cmd.contains("exit 3"), "{cmd}");
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "disk full");
            }
            other => panic!("expected CommandFailed, got {other:?}"),
        }
        // A failing guard command is only a "no", not an error.
        assert!(exec("x", json!({"onlyif": "echo no >&2; exit 1"}))
            .check(&t.cx)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn timeout_kills_command_and_guard() {
        let t = setup();
        let start = Instant::now();
        let r = exec("slow", json!({"command": "sleep 5", "timeout": 0.2}));
        let err = r
            .apply(&t.cx, r.check(&t.cx).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout"), "{err}");
        let guard = exec("x", json!({"unless": "sleep 5", "timeout": 0.2}));
        assert!(guard.check(&t.cx).is_err());
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(try_exec("x", json!({"timeout": -1})).is_err());
        assert_eq!(exec("x", json!({"timeout": 0})).timeout, None);
        assert_eq!(exec("x", json!({})).timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn environment_path_and_cwd() {
        let t = setup();
        fs::create_dir(t.root.join("work")).unwrap();
        let line = "echo \"$FOO|$N|$PATH|$AGENT_ROOT|$(pwd)\" > out";
        let r = exec(
            "env",
            json!({"command": line, "cwd": "/work",
            "environment": {"FOO": "a b", "N": 5}, "path": ["/bin", "/usr/bin"]}),
        );
        r.apply(&t.cx, r.check(&t.cx).unwrap()).unwrap();
        let root = t.root.to_str().unwrap();
        let want = format!("a b|5|/bin:/usr/bin|{root}|{root}/work\n");
        assert_eq!(fs::read_to_string(t.root.join("work/out")).unwrap(), want);

        let r = exec(
            "env2",
            json!({"command": "echo \"$K=$PATH\" > \"$AGENT_ROOT/o\"", "environment": ["K=v=w"]}),
        );
        r.apply(&t.cx, r.check(&t.cx).unwrap()).unwrap();
        let got = fs::read_to_string(t.root.join("o")).unwrap();
        assert_eq!(got, format!("v=w={DEFAULT_PATH}\n"));

        for bad in [
            json!(["NOEQUALS"]),
            json!(["PATH=/x"]),
            json!({"AGENT_ROOT": "/"}),
            json!({"K": [1]}),
        ] {
            assert!(
                try_exec("x", json!({ "environment": bad })).is_err(),
                "{bad}"
            );
        }
        assert!(try_exec("x", json!({"cwd": "relative"})).is_err());
    }

    #[test]
    fn refreshonly_runs_only_on_refresh_and_respects_guards() {
        let t = setup();
        let line = "echo run >> \"$AGENT_ROOT/log\"";
        let r = exec(
            "reload",
            json!({"command": line, "refreshonly": true, "unless": "test -e \"$AGENT_ROOT/stop\""}),
        );
        assert!(r.check(&t.cx).unwrap().is_empty());
        assert!(
            t.cx.runner.history().is_empty(),
            "refreshonly check runs nothing"
        );
        r.refresh(&t.cx).unwrap();
        r.refresh(&t.cx).unwrap();
        assert_eq!(
            fs::read_to_string(t.root.join("log")).unwrap(),
            "run\nrun\n"
        );
        fs::write(t.root.join("stop"), "").unwrap();
        r.refresh(&t.cx).unwrap();
        assert_eq!(
            fs::read_to_string(t.root.join("log")).unwrap(),
            "run\nrun\n"
        );
        // A normal exec runs on refresh too.
        let n = exec("normal", json!({"command": line}));
        n.refresh(&t.cx).unwrap();
        assert_eq!(
            fs::read_to_string(t.root.join("log")).unwrap(),
            "run\nrun\nrun\n"
        );
    }

    #[test]
    fn runs_as_user() {
        let t = setup();
        if !nix::unistd::geteuid().is_root() {
            return; // switching users needs root
        }
        let r = exec(
            "x",
            json!({"user": "nobody", "unless": "test \"$(id -un):$(id -gn)\" = nobody:nogroup"}),
        );
        assert!(r.check(&t.cx).unwrap().is_empty(), "guard ran as nobody");
        let r = exec(
            "x",
            json!({"user": "nobody", "unless": "test \"$(id -un)\" = root"}),
        );
        assert_eq!(r.check(&t.cx).unwrap().changes().len(), 1);
        let ghost = exec("x", json!({"user": "no-such-user-xyz", "onlyif": "true"}));
        assert!(ghost.check(&t.cx).is_err());
    }

    #[test]
    fn title_is_the_default_command_and_autorequires() {
        let t = setup();
        let r = exec("touch \"$AGENT_ROOT/t\"", json!({}));
        r.apply(&t.cx, r.check(&t.cx).unwrap()).unwrap();
        assert!(t.root.join("t").exists());
        let r = exec("x", json!({"cwd": "/srv/app/", "user": "app"}));
        let ids: Vec<String> = r.autorequires().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["file[/srv/app]", "user[app]"]);
        assert!(try_exec("x", json!({"bogus": 1})).is_err());
        assert!(try_exec(" ", json!({})).is_err());
        assert!(try_exec("x", json!({"creates": "rel"})).is_err());
    }

    #[test]
    fn sensitive_command_is_hidden_in_errors() {
        let t = setup();
        let mut d = Decl {
            id: ResourceId::new("exec", "set-password"),
            attrs: json!({"command": "echo hunter9-exec >/dev/null; exit 1"})
                .as_object()
                .cloned()
                .unwrap(),
            sensitive: Default::default(),
            location: Default::default(),
        };
        d.sensitive.insert("command".into());
        let r = Exec::new(&d).unwrap();
        assert!(r.check(&t.cx).unwrap().changes()[0].sensitive);
        let err = r
            .apply(&t.cx, r.check(&t.cx).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter9") && err.contains("exec[set-password]"),
            "{err}"
        );
    }

    #[test]
    fn paths_and_lints() {
        let r = exec("x", json!({"creates": "/var/done", "cwd": "/srv"}));
        assert_eq!(r.paths(), ["/var/done", "/srv"]);
        assert!(r.lints().is_empty(), "creates is a guard");
        assert!(try_exec("x", json!({"creates": "/var/../../etc/passwd"})).is_err());
        assert!(try_exec("x", json!({"cwd": "/srv/.."})).is_err());
        let bare = exec("echo hi", json!({}));
        assert!(bare.paths().is_empty());
        let lints = bare.lints();
        assert_eq!(lints.len(), 1);
        assert!(lints[0].contains("runs on every apply"), "{lints:?}");
        for guard in [
            json!({"unless": "true"}),
            json!({"onlyif": "true"}),
            json!({"refreshonly": true}),
        ] {
            assert!(exec("echo hi", guard.clone()).lints().is_empty(), "{guard}");
        }
    }
}
