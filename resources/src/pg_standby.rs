//! `pg_standby`: makes a data dir a hot standby of a primary, the way the
//! Stash seed's `production-db-standby` is built (restored from the primary's
//! backup, then streaming), and keeps its recovery settings in sync.
//!
//! An absent or empty data dir is seeded, by `pg_basebackup` from the
//! primary or by copying the newest backup `pg_backup` left in a directory,
//! through a temp dir beside it, so it is never left half-seeded. The
//! recovery settings come from the manifest's template (`content`) and are
//! written in the form the server version reads (see [`crate::pg::recovery`]).
//!
//! A standby that was promoted (failover: the trigger file, `pg_ctl promote`)
//! stays a primary: turning it back would throw away writes made since, so
//! re-seeding is left to a human. The marker file `.agent-standby`, written
//! at seeding, tells a promoted standby from a primary the agent never
//! seeded; the latter is refused, not converted.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg::attr::{port_or, Number};
use crate::pg::recovery::{self, RECOVERY_CONF, SIGNAL_VERSION, STANDBY_SIGNAL};
use crate::pg::{self, seed};
use crate::redact;
use crate::{atomic, diff, stage};

pub use crate::pg::recovery::recovery_files;

/// Written in the data dir at seeding: "the agent made this a standby".
pub const MARKER: &str = ".agent-standby";

/// Attributes of `- pg_standby: <data dir>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Host name or address of the primary to seed from.
    primary_host: String,
    /// Its port (default 5432).
    primary_port: Option<Number>,
    /// Role with the REPLICATION attribute used by pg_basebackup.
    replication_user: String,
    /// Its password (Sensitive); passed to pg_basebackup in its environment,
    /// never on a command line.
    replication_password: Option<String>,
    /// Directory of the PostgreSQL binaries (default
    /// `/usr/lib/postgresql/15/bin`).
    bindir: Option<String>,
    /// How an empty data dir is seeded: `basebackup` (default) streams a
    /// copy from the primary; `restore` copies the newest complete backup in
    /// `backup_dir` (as `pg_backup` writes them). A restored standby catches
    /// up by streaming, so the primary must still have the WAL written since
    /// that backup.
    method: Option<Method>,
    /// Directory of `pg_backup` backups (node path); required by `restore`.
    backup_dir: Option<String>,
    /// The promote trigger file (node path) that the recovery settings name.
    /// A stale one is removed when seeding, or the fresh standby would
    /// promote itself at once. PostgreSQL 16 has no trigger file.
    trigger_file: Option<String>,
    /// Name the standby reports to the primary while seeding (default
    /// `standby`); put the same in primary_conninfo's application_name.
    application_name: Option<String>,
    /// The recovery settings, `name = 'value'` lines, usually rendered from
    /// `template: recovery.conf.hbs` (≤ 11) or `standby.auto.conf.hbs` (12+).
    /// Treated as Sensitive: primary_conninfo holds a password.
    content: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Method {
    Basebackup,
    Restore,
}

/// Where a seed comes from.
#[derive(Debug)]
enum Source {
    Basebackup,
    Restore { backup_dir: String },
}

/// What the data dir holds now.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Empty,
    Standby(u32),
    Promoted(u32),
}

/// A typed `pg_standby` resource.
#[derive(Debug)]
pub struct PgStandby {
    id: ResourceId,
    datadir: String,
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    bindir: PathBuf,
    source: Source,
    trigger_file: Option<String>,
    application_name: String,
    content: String,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    if let Some(pw) = &p.replication_password {
        redact::register(pw);
    }
    let datadir = id.title.trim_end_matches('/').to_string();
    if !datadir.starts_with('/') || datadir.contains(['\n', '\r']) {
        return Err(invalid(
            "the title must be the data dir's absolute path".into(),
        ));
    }
    let content = p.content.ok_or_else(|| {
        invalid(
            "content is required (give `template: standby.auto.conf.hbs` or `recovery.conf.hbs`)"
                .into(),
        )
    })?;
    if content.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#')) && recovery::setting_name(l).is_none()
    }) {
        // The line is not echoed: it may hold the password.
        return Err(invalid(
            "content has a line that is not `name = 'value'`".into(),
        ));
    }
    let source = match (p.method.unwrap_or(Method::Basebackup), p.backup_dir) {
        // A site may name its backup dir for every standby and switch the
        // method per node; with basebackup it is simply not read.
        (Method::Basebackup, _) => Source::Basebackup,
        (Method::Restore, Some(d)) if d.starts_with('/') => Source::Restore { backup_dir: d },
        (Method::Restore, _) => {
            return Err(invalid(
                "method restore needs an absolute backup_dir".into(),
            ))
        }
    };
    if let Some(t) = &p.trigger_file {
        if !t.starts_with('/') {
            return Err(invalid(format!(
                "trigger_file '{t}' must be an absolute path"
            )));
        }
    }
    Ok(Box::new(PgStandby {
        id: id.clone(),
        datadir,
        host: p.primary_host,
        port: port_or(&p.primary_port, 5432).map_err(invalid)?,
        user: p.replication_user,
        password: p.replication_password,
        bindir: PathBuf::from(p.bindir.unwrap_or_else(|| pg::DEFAULT_BINDIR.into())),
        source,
        trigger_file: p.trigger_file,
        application_name: p.application_name.unwrap_or_else(|| "standby".into()),
        content,
    }))
}

impl PgStandby {
    fn failed(&self, msg: impl std::fmt::Display) -> ResourceError {
        ResourceError::Failed(format!("{}: {msg}", self.id))
    }

    /// Reads what the data dir holds; refuses what we must not touch.
    fn state(&self, dir: &Path) -> Result<State, ResourceError> {
        if dir.exists() && !dir.is_dir() {
            return Err(self.failed(format!("{} is not a directory", self.datadir)));
        }
        if seed::is_absent_or_empty(dir)? {
            return Ok(State::Empty);
        }
        let Some(version) = pg::data_dir_version(dir) else {
            return Err(self.failed(format!(
                "{} is not empty and holds no PostgreSQL data dir (no PG_VERSION); refusing to seed over it",
                self.datadir
            )));
        };
        if version >= SIGNAL_VERSION && dir.join(RECOVERY_CONF).exists() {
            return Err(self.failed(format!(
                "{}/{RECOVERY_CONF} exists, and PostgreSQL {version} refuses to start with it; \
                 remove it (its settings belong in postgresql.auto.conf now)",
                self.datadir
            )));
        }
        let signal = if version >= SIGNAL_VERSION {
            STANDBY_SIGNAL
        } else {
            RECOVERY_CONF
        };
        if dir.join(signal).exists() {
            Ok(State::Standby(version))
        } else if dir.join(MARKER).exists() {
            Ok(State::Promoted(version))
        } else {
            Err(self.failed(format!(
                "{} holds a primary the agent did not seed; making it a standby would discard \
                 its data, so that is left to a human (move it away to have it re-seeded)",
                self.datadir
            )))
        }
    }

    /// The files of a standby data dir that differ from what they should
    /// be: (path, new content, change).
    fn drift(
        &self,
        dir: &Path,
        version: u32,
    ) -> Result<Vec<(PathBuf, String, Change)>, ResourceError> {
        recovery::validate(version, &self.content)
            .map_err(|e| ResourceError::Invalid(format!("{}: {e}", self.id)))?;
        let auto = atomic::read_optional(&dir.join(recovery::AUTO_CONF))?.unwrap_or_default();
        let auto = String::from_utf8_lossy(&auto);
        let mut out = Vec::new();
        let mut wanted = recovery_files(version, &self.content, &auto);
        wanted.push((MARKER.to_string(), marker_text()));
        for (name, text) in wanted {
            let path = dir.join(&name);
            let old = atomic::read_optional(&path)?;
            // The signal and the marker count by their presence alone.
            let presence_only = name == STANDBY_SIGNAL || name == MARKER;
            if old.as_deref() == Some(text.as_bytes()) || (presence_only && old.is_some()) {
                continue;
            }
            let node = format!("{}/{name}", self.datadir);
            let change = if presence_only {
                Change::new(name.as_str(), None, Some("present".into()))
            } else {
                // The settings hold primary_conninfo and its password.
                diff::content_change(Path::new(&node), old.as_deref(), text.as_bytes(), true)
            };
            out.push((path, text, change));
        }
        Ok(out)
    }

    fn source_text(&self) -> String {
        match &self.source {
            Source::Basebackup => format!(
                "basebackup from {}:{} as {}",
                self.host, self.port, self.user
            ),
            Source::Restore { backup_dir } => {
                format!("restore of the newest backup in {backup_dir}")
            }
        }
    }

    /// Seeds the empty/absent `dir` through a temp dir beside it.
    fn seed(&self, cx: &Context, dir: &Path) -> Result<(), ResourceError> {
        let parent = dir.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(self.failed(format!(
                "the parent directory {} does not exist",
                parent.display()
            )));
        }
        seed::remove_stale(dir);
        let tmp = seed::temp_dir(dir);
        seed::create_private(&tmp)?;
        let result = self.fill(cx, &tmp).and_then(|()| seed::install(&tmp, dir));
        if result.is_err() {
            // Leave the data dir as it was: absent or empty, never half-seeded.
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            tracing::info!(resource = %self.id, "seeded a standby by {}", self.source_text());
        }
        result
    }

    /// Copies the primary's data into `tmp` and makes it a standby.
    fn fill(&self, cx: &Context, tmp: &Path) -> Result<(), ResourceError> {
        match &self.source {
            Source::Basebackup => {
                let port = self.port.to_string();
                let d = tmp.display().to_string();
                let mut cmd = pg::bin_cmd(
                    &self.bindir,
                    "pg_basebackup",
                    &[
                        "-h",
                        &self.host,
                        "-p",
                        &port,
                        "-U",
                        &self.user,
                        "-D",
                        &d,
                        "-X",
                        "stream",
                        // A spread checkpoint would make this take minutes.
                        "--checkpoint=fast",
                        "--no-password",
                    ],
                );
                if let Some(pw) = &self.password {
                    cmd.env.push(("PGPASSWORD".into(), pw.clone()));
                }
                cmd.env
                    .push(("PGAPPNAME".into(), self.application_name.clone()));
                cmd.env.push(("PGCONNECT_TIMEOUT".into(), "10".into()));
                cx.runner.run(&cmd).map_err(|e| {
                    self.failed(format!(
                        "seeding from {}:{} failed: {e}",
                        self.host, self.port
                    ))
                })?;
            }
            Source::Restore { backup_dir } => {
                let from = cx.path(backup_dir)?;
                let newest = crate::pg_backup::newest_backup(&from)?
                    .ok_or_else(|| self.failed(format!("no complete backup in {backup_dir}")))?;
                tracing::info!(resource = %self.id, backup = %newest.display(), "restoring");
                seed::copy_tree(&newest, tmp)?;
                seed::chown_tree(tmp)?;
            }
        }
        let version = pg::data_dir_version(tmp)
            .ok_or_else(|| self.failed("the copy holds no PG_VERSION: not a data dir"))?;
        for (path, text, _) in self.drift(tmp, version)? {
            atomic::write_atomic(&path, text.as_bytes(), Some(0o600))?;
            seed::chown_tree(&path)?;
        }
        self.remove_trigger(cx, tmp)
    }

    /// A trigger file left from an earlier failover would promote the new
    /// standby as soon as it starts.
    fn remove_trigger(&self, cx: &Context, tmp: &Path) -> Result<(), ResourceError> {
        let Some(trigger) = &self.trigger_file else {
            return Ok(());
        };
        let path = match trigger.strip_prefix(&format!("{}/", self.datadir)) {
            Some(inside) => tmp.join(inside),
            None => cx.path(trigger)?,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(resource = %self.id, "removed the stale trigger file {trigger}");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ResourceError::io(path, e)),
        }
    }
}

fn marker_text() -> String {
    "This data dir was seeded as a standby by the agent (pg_standby). If it has no\n\
     standby.signal/recovery.conf it was promoted, and the agent leaves it a primary.\n"
        .to_string()
}

/// What `apply` does, as `check` decided.
#[derive(Debug)]
enum Step {
    /// Seed the empty data dir from the source.
    Seed,
    /// Write these files of a standby data dir (path, content).
    Rewrite(Vec<(PathBuf, String)>),
}

impl Resource for PgStandby {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let dir = cx.path(&self.datadir)?;
        match self.state(&dir)? {
            State::Empty => {
                if let (Source::Basebackup, Ok(v)) =
                    (&self.source, pg::bin_version(&cx.runner, &self.bindir))
                {
                    // Fail before a long copy when the settings cannot work.
                    recovery::validate(v, &self.content)
                        .map_err(|e| ResourceError::Invalid(format!("{}: {e}", self.id)))?;
                }
                let from = dir.exists().then(|| "empty".to_string());
                let change = Change::new("seed", from, Some(self.source_text()));
                Ok(Plan::new(vec![change], Step::Seed))
            }
            State::Promoted(version) => {
                tracing::info!(
                    resource = %self.id, version,
                    "this standby was promoted and is a primary now; leaving it so (re-seeding is a human decision)"
                );
                Ok(Plan::in_sync())
            }
            State::Standby(version) => {
                let (files, changes): (Vec<_>, Vec<_>) = self
                    .drift(&dir, version)?
                    .into_iter()
                    .map(|(path, text, c)| ((path, text), c))
                    .unzip();
                if changes.is_empty() {
                    return Ok(Plan::in_sync());
                }
                Ok(Plan::new(changes, Step::Rewrite(files)))
            }
        }
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let step: Step = plan.steps(&self.id)?;
        // The data dir is looked at again: a standby promoted since check
        // stays a primary, and nothing is seeded over what appeared there.
        let dir = cx.path(&self.datadir)?;
        match (step, self.state(&dir)?) {
            (Step::Seed, State::Empty) => self.seed(cx, &dir),
            (Step::Rewrite(files), State::Standby(_)) => {
                for (path, text) in files {
                    stage::replace_file(cx, &path, text.as_bytes(), Some(0o600))?;
                    seed::chown_tree(&path)?;
                }
                Ok(())
            }
            (_, State::Promoted(_)) => {
                tracing::info!(resource = %self.id, "promoted since check; left a primary");
                Ok(())
            }
            (Step::Seed, _) => Err(self.failed(format!(
                "{} is no longer empty; not seeding over it",
                self.datadir
            ))),
            (Step::Rewrite(_), _) => Err(self.failed(format!(
                "{} is no longer a standby data dir; not writing its settings",
                self.datadir
            ))),
        }
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = Vec::new();
        if let Some(parent) = Path::new(&self.datadir).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        if let Source::Restore { backup_dir } = &self.source {
            ids.push(ResourceId::new("file", backup_dir));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        let mut paths = vec![self.datadir.clone()];
        paths.extend(self.trigger_file.clone());
        // A restore reads its backups from under the root as well.
        if let Source::Restore { backup_dir } = &self.source {
            paths.push(backup_dir.clone());
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupStore;
    use crate::pg::standby_testing::{
        assert_streams, create_repl_role, in_recovery, no_seeding_dirs, poll, Running,
        REPL_PASSWORD, REPL_USER,
    };
    use crate::pg::testing::{free_port, open_for_postgres, TestCluster};
    use crate::pg_backup::tests::{install_script, run_script};
    use serde_json::json;
    use std::time::Duration;

    fn decl(datadir: &Path, attrs: serde_json::Value) -> Decl {
        Decl {
            id: ResourceId::new("pg_standby", datadir.display().to_string()),
            attrs: attrs.as_object().unwrap().clone(),
            sensitive: ["replication_password".to_string(), "content".into()]
                .into_iter()
                .collect(),
            location: Default::default(),
        }
    }

    /// Declares a standby at `datadir` of the server at 127.0.0.1:`port`.
    fn standby(datadir: &Path, port: u16, extra: serde_json::Value) -> Box<dyn Resource> {
        let content = format!(
            "# managed by the agent\nprimary_conninfo = 'host=127.0.0.1 port={port} user={REPL_USER} password={REPL_PASSWORD} application_name=standby'\npromote_trigger_file = '{}/trigger_failover.txt'\n",
            datadir.display()
        );
        let mut attrs = json!({"primary_host": "127.0.0.1", "primary_port": port, "replication_user": REPL_USER,
                               "replication_password": REPL_PASSWORD, "content": content,
                               "trigger_file": format!("{}/trigger_failover.txt", datadir.display())});
        for (k, v) in extra.as_object().unwrap() {
            attrs[k] = v.clone();
        }
        build(&decl(datadir, attrs), &TypeEnv::default()).unwrap()
    }

    fn context(dir: &Path) -> Context {
        Context::new("/", BackupStore::new(&dir.join("state")))
    }

    #[test]
    fn basebackup_seeds_a_streaming_standby_that_stays_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let primary = TestCluster::primary(&dir.path().join("primary"), "127.0.0.1");
        create_repl_role(&primary);
        let base = dir.path().join("node");
        open_for_postgres(&base);
        let datadir = base.join("standby");
        let cx = context(dir.path());
        let r = standby(&datadir, primary.port, json!({}));
        assert_eq!(
            r.paths(),
            vec![
                datadir.display().to_string(),
                format!("{}/trigger_failover.txt", datadir.display())
            ]
        );
        assert_eq!(
            r.autorequires(),
            vec![ResourceId::new("file", base.display().to_string())]
        );

        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].property, "seed");
        assert!(!changes[0].line().contains(REPL_PASSWORD));
        r.apply(&cx, plan).unwrap();
        assert!(
            !cx.runner
                .history()
                .iter()
                .any(|c| c.contains(REPL_PASSWORD)),
            "password in argv"
        );
        assert!(cx
            .runner
            .history()
            .iter()
            .any(|c| c.contains("--checkpoint=fast")));
        for f in ["PG_VERSION", STANDBY_SIGNAL, MARKER] {
            assert!(datadir.join(f).is_file(), "{f}");
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&datadir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(r.check(&cx).unwrap().is_empty(), "not idempotent");
        no_seeding_dirs(&base);

        let running = Running::start(&datadir);
        assert_streams(&primary, &running, 1);
        assert!(r.check(&cx).unwrap().is_empty());

        // Drifted settings are one sensitive change, printed without the password.
        let auto = datadir.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap();
        std::fs::write(
            &auto,
            text.replace("host=127.0.0.1 port=", "host=elsewhere port="),
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].sensitive);
        let shown = format!(
            "{}{}",
            changes[0].line(),
            changes[0].printable_diff().unwrap()
        );
        assert!(
            !shown.contains(REPL_PASSWORD) && !shown.contains("elsewhere"),
            "{shown}"
        );
        r.apply(&cx, plan).unwrap();
        assert_eq!(std::fs::read_to_string(&auto).unwrap(), text);
        assert!(r.check(&cx).unwrap().is_empty());

        // Failover as in the seed: touch the trigger file.
        std::fs::write(datadir.join("trigger_failover.txt"), "").unwrap();
        let mut s = running.client();
        poll("promotion", Duration::from_secs(15), || {
            (!in_recovery(&mut s)).then_some(())
        });
        assert!(!datadir.join(STANDBY_SIGNAL).exists());
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "a promoted standby stays primary"
        );
        assert!(!datadir.join(STANDBY_SIGNAL).exists());
        assert!(!in_recovery(&mut s));
    }

    #[test]
    fn unreachable_primary_fails_and_leaves_no_half_seeded_dir() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("node");
        open_for_postgres(&base);
        let datadir = base.join("standby");
        let cx = context(dir.path());
        let r = standby(&datadir, free_port("127.0.0.1"), json!({}));
        let err = r.apply(&cx, r.check(&cx).unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("pg_basebackup") && err.contains("failed"),
            "{err}"
        );
        assert!(!err.contains(REPL_PASSWORD));
        assert!(!datadir.exists());
        no_seeding_dirs(&base);
        // An empty data dir stays empty.
        std::fs::create_dir(&datadir).unwrap();
        let plan = r.check(&cx).unwrap();
        assert_eq!(plan.changes()[0].from.as_deref(), Some("empty"));
        assert!(r.apply(&cx, plan).is_err());
        assert!(seed::is_absent_or_empty(&datadir).unwrap() && datadir.is_dir());
        no_seeding_dirs(&base);
    }

    #[test]
    fn restores_the_newest_pg_backup_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let primary = TestCluster::primary(&dir.path().join("primary"), "127.0.0.1");
        create_repl_role(&primary);
        let (script, backups) = install_script(&primary, &dir.path().join("b"), 2);
        let out = run_script(&script);
        assert!(out.success(), "{}", out.stderr);
        let base = dir.path().join("node");
        open_for_postgres(&base);
        let datadir = base.join("standby");
        let cx = context(dir.path());
        let r = standby(
            &datadir,
            primary.port,
            json!({"method": "restore", "backup_dir": backups.display().to_string()}),
        );
        let plan = r.check(&cx).unwrap();
        assert!(plan.changes()[0].to.as_deref().unwrap().contains("restore"));
        r.apply(&cx, plan).unwrap();
        assert!(r.check(&cx).unwrap().is_empty());
        no_seeding_dirs(&base);
        let running = Running::start(&datadir);
        assert_streams(&primary, &running, 2);
    }

    fn fake_datadir(base: &Path, version: &str, files: &[&str]) -> PathBuf {
        let d = base.join(format!("v{version}-{}", files.join("-")));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("PG_VERSION"), format!("{version}\n")).unwrap();
        for f in files {
            std::fs::write(d.join(f), "").unwrap();
        }
        d
    }

    #[test]
    fn states_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let cx = context(dir.path());
        let base = dir.path();
        // A primary the agent never seeded, junk, and a 15 with recovery.conf are refused.
        for (d, needle) in [
            (fake_datadir(base, "15", &[]), "did not seed"),
            (
                fake_datadir(base, "15", &[STANDBY_SIGNAL, RECOVERY_CONF]),
                "refuses to start",
            ),
        ] {
            let err = standby(&d, 5432, json!({}))
                .check(&cx)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let junk = base.join("junk");
        std::fs::create_dir(&junk).unwrap();
        std::fs::write(junk.join("x"), "").unwrap();
        assert!(standby(&junk, 5432, json!({}))
            .check(&cx)
            .unwrap_err()
            .to_string()
            .contains("no PG_VERSION"));

        // Promoted (marker, no signal): nothing to do, nothing written.
        let promoted = fake_datadir(base, "15", &[MARKER]);
        let r = standby(&promoted, 5432, json!({}));
        assert!(r.check(&cx).unwrap().is_empty());
        assert!(
            !promoted.join(STANDBY_SIGNAL).exists()
                && !promoted.join("postgresql.auto.conf").exists()
        );
        // Nor by a plan made before the promotion: apply looks again.
        let was_standby = fake_datadir(base, "15", &[STANDBY_SIGNAL, MARKER]);
        let r = standby(&was_standby, 5432, json!({}));
        let plan = r.check(&cx).unwrap();
        assert!(!plan.is_empty());
        std::fs::remove_file(was_standby.join(STANDBY_SIGNAL)).unwrap();
        r.apply(&cx, plan).unwrap();
        assert!(
            !was_standby.join(STANDBY_SIGNAL).exists()
                && !was_standby.join("postgresql.auto.conf").exists()
        );

        // A standby seeded by hand (the seed's restore_bkup.rb) is adopted: settings + marker.
        let adopted = fake_datadir(base, "15", &[STANDBY_SIGNAL]);
        let r = standby(&adopted, 5432, json!({}));
        let plan = r.check(&cx).unwrap();
        let props: Vec<&str> = plan.changes().iter().map(|c| c.property.as_str()).collect();
        assert_eq!(props, ["content", MARKER]);
        r.apply(&cx, plan).unwrap();
        assert!(r.check(&cx).unwrap().is_empty());

        // PostgreSQL 11: recovery.conf with standby_mode.
        let old = fake_datadir(base, "11", &[RECOVERY_CONF, MARKER]);
        let content = "standby_mode = 'on'\nprimary_conninfo = 'host=db1 password=pw11'\ntrigger_file = '/t'\n";
        let attrs = json!({"primary_host": "db1", "replication_user": "r", "content": content});
        let r = build(&decl(&old, attrs), &TypeEnv::default()).unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].sensitive);
        r.apply(&cx, plan).unwrap();
        assert_eq!(
            std::fs::read_to_string(old.join(RECOVERY_CONF)).unwrap(),
            content
        );
        assert!(!old.join(STANDBY_SIGNAL).exists());
        assert!(r.check(&cx).unwrap().is_empty());
        // The 15 template's settings on an 11 data dir fail before writing anything.
        let r = standby(&old, 5432, json!({}));
        let err = r.check(&cx).unwrap_err().to_string();
        assert!(
            err.contains("does not know 'promote_trigger_file'"),
            "{err}"
        );
    }

    #[test]
    fn invalid_declarations_are_refused() {
        let d = Path::new("/var/lib/pgsql/data");
        let base = json!({"primary_host": "db1", "replication_user": "r", "content": "primary_conninfo = 'host=db1'\n"});
        let with = |k: &str, v: serde_json::Value| {
            let mut a = base.clone();
            a[k] = v;
            a
        };
        assert!(build(&decl(d, base.clone()), &TypeEnv::default()).is_ok());
        // A site may name the backup dir for every standby; basebackup ignores it.
        assert!(build(
            &decl(d, with("backup_dir", json!("/mnt/db_bkup"))),
            &TypeEnv::default()
        )
        .is_ok());
        let no_content = {
            let mut a = base.clone();
            a.as_object_mut().unwrap().remove("content");
            a
        };
        for attrs in [
            no_content,
            with("method", json!("restore")),
            with("method", json!("rsync")),
            with("content", json!("primary_conninfo 'secret-pw'\n")),
            with("primary_port", json!(0)),
            with("trigger_file", json!("relative")),
        ] {
            let err = build(&decl(d, attrs.clone()), &TypeEnv::default())
                .err()
                .unwrap()
                .to_string();
            assert!(!err.contains("secret-pw"), "{err}");
        }
        assert!(build(&decl(Path::new("relative"), base), &TypeEnv::default()).is_err());
    }
}
