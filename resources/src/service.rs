//! `service`: a long-running process that should be running or stopped,
//! started at boot or not, and restarted (or reloaded) when something it
//! subscribes to changes.
//!
//! The type owns the *what*: `ensure`, `enable`, what a refresh does, and the
//! comparison of the provider's status with the desired state. The *how*
//! lives in `service/`: `systemd` (systemctl), `pg_ctl` (a PostgreSQL data
//! directory, started as the postgres OS user) and `command` (shell lines for
//! start, stop and status). The provider is the one named by `provider:`,
//! else systemd when the host booted with systemd (`/run/systemd/system`
//! exists), else command.
//!
//! Services run on the host: like packages, systemd and command services are
//! host-global even under `--root` (command lines get the root in
//! `AGENT_ROOT` to find their files). pg_ctl's data directory and log file
//! are node paths, confined to the root.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};

mod command;
mod pg_ctl;
mod systemd;

/// Attributes of `- service: <name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `running` or `stopped`. Not given: whether it runs is not managed
    /// (a refresh still restarts it if it is running).
    ensure: Option<Ensure>,
    /// Start at boot (`true`) or not (`false`; also a rendered string).
    /// systemd only; other providers ignore it. Not given: not managed.
    #[serde(default, deserialize_with = "crate::attr::rendered_bool")]
    enable: Option<bool>,
    /// What a refresh (notify/subscribe) does to a running service:
    /// `restart` (default) or `reload`. With provider `command`, any other
    /// value is the shell line that restarts it (default: stop, then start).
    restart: Option<String>,
    /// `systemd`, `pg_ctl` or `command`. Default: systemd when the host runs
    /// systemd, else command. Without it, `start`/`stop`/`status`/`reload`/
    /// a restart line may be given for hosts without systemd: where PID 1
    /// is systemd the unit named by the title runs the service instead.
    provider: Option<String>,
    /// The package that installs the service: `package[<this>]`, if
    /// declared, is applied first. Default: the title.
    package: Option<String>,
    /// Longest a start, stop, restart or reload may take, in seconds
    /// (default 60; pg_ctl also gets it as `-t`).
    timeout: Option<u64>,
    /// pg_ctl: the data directory (node path). Required.
    datadir: Option<String>,
    /// pg_ctl: where the PostgreSQL binaries are
    /// (default `/usr/lib/postgresql/15/bin`).
    bindir: Option<String>,
    /// pg_ctl: the server's log file (node path), written by the postgres
    /// OS user (default `<datadir>/server.log`, always writable by it).
    logfile: Option<String>,
    /// pg_ctl: extra server options passed with `-o` (`-c port=5433`).
    options: Option<String>,
    /// command: shell line that starts the service. Required.
    start: Option<String>,
    /// command: shell line that stops the service. Required.
    stop: Option<String>,
    /// command: shell line whose exit status 0 means running. Required.
    status: Option<String>,
    /// command: shell line that reloads the service (needed for
    /// `restart: reload`).
    reload: Option<String>,
}

/// The desired run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    Running,
    Stopped,
}

/// What a provider says about the service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopped,
    /// It cannot run at all (pg_ctl: no data directory), with why.
    Missing(String),
}

/// What a refresh does to a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshAction {
    Restart,
    Reload,
}

/// How to query and drive one kind of service manager. Every command goes
/// through `cx.runner`.
pub(crate) trait Provider: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;
    fn status(&self, cx: &Context) -> Result<Status, ResourceError>;
    fn start(&self, cx: &Context) -> Result<(), ResourceError>;
    fn stop(&self, cx: &Context) -> Result<(), ResourceError>;
    fn restart(&self, cx: &Context) -> Result<(), ResourceError>;
    fn reload(&self, cx: &Context) -> Result<(), ResourceError>;
    /// Whether it starts at boot; `None` when this provider (or this unit)
    /// has no such setting to manage.
    fn enabled(&self, _cx: &Context) -> Result<Option<bool>, ResourceError> {
        Ok(None)
    }
    fn set_enabled(&self, _cx: &Context, _on: bool) -> Result<(), ResourceError> {
        Ok(())
    }
    /// Node paths it writes.
    fn paths(&self) -> Vec<String> {
        vec![]
    }
}

/// The provider kinds a manifest can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Systemd,
    PgCtl,
    Command,
}

/// True when the host was booted with systemd as PID 1: what
/// `sd_booted()` checks, the directory `/run/systemd/system` (`marker`).
pub fn systemd_booted(marker: &Path) -> bool {
    marker.is_dir()
}

/// The explicit provider, else systemd when booted with it, else command.
pub fn choose_provider(explicit: Option<&str>, systemd: bool) -> Result<ProviderKind, String> {
    match explicit.map(str::trim) {
        Some("systemd") => Ok(ProviderKind::Systemd),
        Some("pg_ctl") => Ok(ProviderKind::PgCtl),
        Some("command") => Ok(ProviderKind::Command),
        Some(other) => Err(format!(
            "unknown provider '{other}' (expected systemd, pg_ctl or command)"
        )),
        None if systemd => Ok(ProviderKind::Systemd),
        None => Ok(ProviderKind::Command),
    }
}

/// A typed `service` resource.
#[derive(Debug)]
pub struct Service {
    id: ResourceId,
    ensure: Option<Ensure>,
    enable: Option<bool>,
    on_refresh: RefreshAction,
    package: String,
    provider: Box<dyn Provider>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let systemd = systemd_booted(Path::new("/run/systemd/system"));
    Ok(Box::new(build_with(decl, systemd)?))
}

/// [`build`] with the systemd detection given, for tests.
fn build_with(decl: &Decl, systemd: bool) -> Result<Service, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let name = id.title.trim().to_string();
    if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(invalid(format!("'{name}' is not a valid service name")));
    }
    let kind = choose_provider(p.provider.as_deref(), systemd).map_err(invalid)?;
    // Attributes of one provider given to another are mistakes, not no-ops.
    let foreign: &[(&str, bool, ProviderKind)] = &[
        ("datadir", p.datadir.is_some(), ProviderKind::PgCtl),
        ("bindir", p.bindir.is_some(), ProviderKind::PgCtl),
        ("logfile", p.logfile.is_some(), ProviderKind::PgCtl),
        ("options", p.options.is_some(), ProviderKind::PgCtl),
        ("start", p.start.is_some(), ProviderKind::Command),
        ("stop", p.stop.is_some(), ProviderKind::Command),
        ("status", p.status.is_some(), ProviderKind::Command),
        ("reload", p.reload.is_some(), ProviderKind::Command),
    ];
    // Without an explicit provider, command lines are the fallback for
    // hosts where PID 1 is not systemd: one declaration runs through the
    // unit of that name where it is, by its lines elsewhere (as `enable`
    // only matters to systemd). Named explicitly, a foreign one is an error.
    let fallback = |owner: ProviderKind| {
        p.provider.is_none() && kind == ProviderKind::Systemd && owner == ProviderKind::Command
    };
    if let Some((attr, _, owner)) = foreign
        .iter()
        .find(|(_, given, owner)| *given && *owner != kind && !fallback(*owner))
    {
        return Err(invalid(format!(
            "{attr} only applies to provider {}",
            kind_name(*owner)
        )));
    }
    let (on_refresh, restart_line) = match p.restart.as_deref().map(str::trim) {
        None | Some("restart") => (RefreshAction::Restart, None),
        Some("reload") => (RefreshAction::Reload, None),
        Some(line) if kind == ProviderKind::Command && !line.is_empty() => {
            (RefreshAction::Restart, Some(line.to_string()))
        }
        // A restart line for hosts without systemd; systemd restarts the unit.
        Some(line) if fallback(ProviderKind::Command) && !line.is_empty() => {
            (RefreshAction::Restart, None)
        }
        Some(other) => {
            return Err(invalid(format!(
                "restart '{other}' must be restart or reload"
            )))
        }
    };
    let timeout = Duration::from_secs(p.timeout.unwrap_or(60));
    if timeout.is_zero() {
        return Err(invalid("timeout must be at least 1 second".into()));
    }
    if kind == ProviderKind::Systemd && p.start.is_some() {
        tracing::debug!(resource = %id, "PID 1 is systemd: the unit runs it, its command lines are for other hosts");
    }
    if p.enable.is_some() && kind != ProviderKind::Systemd {
        tracing::debug!(resource = %id, provider = kind_name(kind), "enable is ignored: only systemd manages it");
    }
    let provider: Box<dyn Provider> = match kind {
        ProviderKind::Systemd => Box::new(systemd::Systemd::new(&name, timeout)),
        ProviderKind::PgCtl => {
            let datadir = p
                .datadir
                .ok_or_else(|| invalid("datadir is required with provider pg_ctl".into()))?;
            let absolute = |what: &str, v: &str| {
                if v.starts_with('/') {
                    Ok(())
                } else {
                    Err(invalid(format!("{what} '{v}' must be an absolute path")))
                }
            };
            absolute("datadir", &datadir)?;
            let datadir = datadir.trim_end_matches('/').to_string();
            let logfile = p.logfile.unwrap_or_else(|| format!("{datadir}/server.log"));
            absolute("logfile", &logfile)?;
            let bindir = PathBuf::from(p.bindir.as_deref().unwrap_or(crate::pg::DEFAULT_BINDIR));
            absolute("bindir", &bindir.display().to_string())?;
            Box::new(pg_ctl::PgCtl {
                datadir,
                logfile,
                bindir,
                options: p.options,
                timeout,
            })
        }
        ProviderKind::Command => {
            let need = |v: Option<String>, attr: &str| {
                v.filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| invalid(format!("{attr} is required with provider command")))
            };
            if on_refresh == RefreshAction::Reload && p.reload.is_none() {
                return Err(invalid("restart: reload needs a reload command".into()));
            }
            Box::new(command::CommandService {
                start: need(p.start, "start")?,
                stop: need(p.stop, "stop")?,
                status: need(p.status, "status")?,
                restart: restart_line,
                reload: p.reload,
                timeout,
            })
        }
    };
    Ok(Service {
        id: id.clone(),
        ensure: p.ensure,
        enable: p.enable.filter(|_| kind == ProviderKind::Systemd),
        on_refresh,
        package: p.package.unwrap_or(name),
        provider,
    })
}

/// What `apply` does, as `check` decided: start or stop it, turn starting
/// at boot on or off; each `None` = leave as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Steps {
    run: Option<Ensure>,
    enable: Option<bool>,
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Systemd => "systemd",
        ProviderKind::PgCtl => "pg_ctl",
        ProviderKind::Command => "command",
    }
}

fn running_word(running: bool) -> String {
    if running { "running" } else { "stopped" }.to_string()
}

impl Service {
    fn missing(&self, why: &str) -> ResourceError {
        ResourceError::Failed(format!("{}: {why}", self.id))
    }
}

impl Resource for Service {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let mut changes = Vec::new();
        let mut steps = Steps::default();
        if let Some(want) = self.ensure {
            let running = match self.provider.status(cx)? {
                Status::Running => true,
                Status::Stopped => false,
                // Nothing can run there, so "stopped" holds; "running" cannot.
                Status::Missing(why) if want == Ensure::Running => return Err(self.missing(&why)),
                Status::Missing(_) => false,
            };
            let want_running = want == Ensure::Running;
            if running != want_running {
                steps.run = Some(want);
                changes.push(Change::new(
                    "ensure",
                    Some(running_word(running)),
                    Some(running_word(want_running)),
                ));
            }
        }
        if let Some(want) = self.enable {
            match self.provider.enabled(cx)? {
                Some(on) if on != want => {
                    steps.enable = Some(want);
                    changes.push(Change::new(
                        "enable",
                        Some(on.to_string()),
                        Some(want.to_string()),
                    ));
                }
                Some(_) => {}
                None => {
                    tracing::debug!(resource = %self.id, "enablement not manageable for this unit; left alone")
                }
            }
        }
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        tracing::debug!(resource = %self.id, provider = self.provider.name(), ?steps, "applying");
        match steps.run {
            Some(Ensure::Running) => self.provider.start(cx)?,
            Some(Ensure::Stopped) => self.provider.stop(cx)?,
            None => {}
        }
        if let Some(on) = steps.enable {
            self.provider.set_enabled(cx, on)?;
        }
        Ok(())
    }

    /// Running → restart (or reload); stopped but meant to run → start;
    /// meant to be stopped, or stopped and not managed → nothing.
    fn refresh(&self, cx: &Context) -> Result<(), ResourceError> {
        if self.ensure == Some(Ensure::Stopped) {
            return Ok(());
        }
        match self.provider.status(cx)? {
            Status::Running => match self.on_refresh {
                RefreshAction::Restart => self.provider.restart(cx),
                RefreshAction::Reload => self.provider.reload(cx),
            },
            Status::Stopped if self.ensure == Some(Ensure::Running) => self.provider.start(cx),
            Status::Missing(why) if self.ensure == Some(Ensure::Running) => Err(self.missing(&why)),
            Status::Stopped | Status::Missing(_) => Ok(()),
        }
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![ResourceId::new("package", &self.package)];
        // A pg_ctl service runs the cluster a pg_cluster resource creates
        // (its first path is the data dir).
        if self.provider.name() == "pg_ctl" {
            ids.extend(
                self.provider
                    .paths()
                    .into_iter()
                    .take(1)
                    .map(|d| ResourceId::new("pg_cluster", d)),
            );
        }
        ids
    }

    fn apply_implies_refresh(&self) -> bool {
        true
    }

    fn paths(&self) -> Vec<String> {
        self.provider.paths()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn decl(title: &str, attrs: serde_json::Value) -> Decl {
        crate::testing::decl("service", title, attrs)
    }

    /// A context rooted in a temp dir.
    pub fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&[])
    }

    #[test]
    fn provider_choice_follows_systemd_marker() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("run/systemd/system");
        assert!(!systemd_booted(&marker));
        assert_eq!(
            choose_provider(None, systemd_booted(&marker)),
            Ok(ProviderKind::Command)
        );
        std::fs::create_dir_all(&marker).unwrap();
        assert!(systemd_booted(&marker));
        assert_eq!(
            choose_provider(None, systemd_booted(&marker)),
            Ok(ProviderKind::Systemd)
        );
        assert_eq!(
            choose_provider(Some("pg_ctl"), true),
            Ok(ProviderKind::PgCtl)
        );
        assert_eq!(
            choose_provider(Some("command"), true),
            Ok(ProviderKind::Command)
        );
        assert!(choose_provider(Some("upstart"), true).is_err());
    }

    #[test]
    fn build_validates() {
        let cmd = json!({"provider": "command", "start": "s", "stop": "t", "status": "u"});
        let with = |extra: serde_json::Value| {
            let mut v = cmd.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert!(build_with(&decl("app", cmd.clone()), false).is_ok());
        assert!(build_with(
            &decl("app", json!({"provider": "command", "start": "s"})),
            false
        )
        .is_err());
        // No systemd: the default is command, which needs its lines.
        assert!(build_with(&decl("app", json!({"ensure": "running"})), false).is_err());
        assert!(build_with(
            &decl("app", json!({"ensure": "running", "enable": true})),
            true
        )
        .is_ok());
        assert!(build_with(&decl("app", json!({"ensure": "up"})), true).is_err());
        assert!(
            build_with(&decl("app", json!({"datadir": "/d"})), true).is_err(),
            "pg_ctl attribute on systemd"
        );
        assert!(
            build_with(&decl("app", json!({"provider": "pg_ctl"})), true).is_err(),
            "datadir required"
        );
        assert!(build_with(
            &decl("app", json!({"provider": "pg_ctl", "datadir": "rel"})),
            true
        )
        .is_err());
        assert!(build_with(
            &decl(
                "app",
                json!({"provider": "pg_ctl", "datadir": "/d", "start": "x"})
            ),
            true
        )
        .is_err());
        assert!(
            build_with(&decl("app", with(json!({"restart": "reload"}))), false).is_err(),
            "no reload line"
        );
        assert!(build_with(
            &decl("app", with(json!({"restart": "reload", "reload": "r"}))),
            false
        )
        .is_ok());
        assert!(build_with(
            &decl("app", with(json!({"restart": "/bin/app restart"}))),
            false
        )
        .is_ok());
        // No explicit provider: the command lines are the fallback for
        // hosts without systemd, the unit of the title runs it elsewhere.
        let lines =
            json!({"start": "s", "stop": "t", "status": "u", "restart": "/bin/app restart"});
        let s = build_with(&decl("app", lines.clone()), true).unwrap();
        assert_eq!(s.provider.name(), "systemd");
        assert_eq!(s.on_refresh, RefreshAction::Restart);
        let s = build_with(&decl("app", lines), false).unwrap();
        assert_eq!(s.provider.name(), "command");
        // Named explicitly, a foreign attribute is still a mistake.
        assert!(build_with(
            &decl("app", json!({"provider": "systemd", "start": "s"})),
            true
        )
        .is_err());
        assert!(build_with(&decl("app", with(json!({"timeout": 0}))), false).is_err());
        assert!(build_with(&decl("-x", json!({})), true).is_err());
        assert!(build_with(&decl("app", json!({"bogus": 1})), true).is_err());
    }

    #[test]
    fn autorequires_package_and_pg_paths() {
        let s = build_with(&decl("stash", json!({})), true).unwrap();
        assert_eq!(s.autorequires(), vec![ResourceId::new("package", "stash")]);
        assert!(s.paths().is_empty());
        let pg = decl(
            "pg",
            json!({"provider": "pg_ctl", "datadir": "/var/lib/pg/main/", "package": "postgresql-15"}),
        );
        let s = build_with(&pg, false).unwrap();
        assert_eq!(
            s.autorequires(),
            vec![
                ResourceId::new("package", "postgresql-15"),
                ResourceId::new("pg_cluster", "/var/lib/pg/main")
            ]
        );
        assert_eq!(
            s.paths(),
            vec![
                "/var/lib/pg/main".to_string(),
                "/var/lib/pg/main/server.log".to_string()
            ]
        );
    }
}
