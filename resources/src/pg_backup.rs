//! `pg_backup`: a scheduled, verified physical backup of a primary (the
//! Stash seed's weekly cron backup into /mnt/db_bkup, which its standby is
//! restored from).
//!
//! The type manages three things: a script that takes one backup with
//! `pg_basebackup` into `<backup_dir>/<UTC time>.partial`, checks it with
//! `pg_verifybackup`, renames it to `<backup_dir>/<UTC time>` only when it
//! verified, and prunes all but the newest `keep`; the pgpass file the
//! script reads its password from (so the password is never in the script,
//! the crontab or any argv); and the crontab entry that runs the script,
//! written by the `cron` type's own code (same marker, same spool paths).
//! `pg_standby`'s `restore` method reads this layout: see [`newest_backup`].
//!
//! With `initial_backup: true` the apply also runs the script once when the
//! backup dir holds no complete backup (the seed's initial backup at the end
//! of the primary's provisioning, which its standby is restored from). The
//! script takes node paths under `$AGENT_ROOT` when set (the agent sets it
//! under `--root`; cron does not), so that run works in a sandbox too.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg::attr::{port_or, Number};
use crate::pg::DEFAULT_BINDIR;
use crate::redact;
use crate::{atomic, diff, stage};

/// Attributes of `- pg_backup: <name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Directory (node path) the backups go to, one subdirectory per backup
    /// named by its UTC start time (`20240107T030000Z`). Created by the
    /// script, 0700.
    backup_dir: String,
    /// How many complete backups to keep (default 4); older ones are deleted
    /// after a new one has verified.
    keep: Option<Number>,
    /// When to run: five cron fields or a shorthand (default `@weekly`).
    schedule: Option<String>,
    /// Whose crontab runs the script (default `root`); it owns the script
    /// and the pgpass file and must be able to write `backup_dir`.
    user: Option<String>,
    /// The server to back up (default `127.0.0.1`).
    host: Option<String>,
    /// Its port (default 5432).
    port: Option<Number>,
    /// A role with the REPLICATION attribute (pg_basebackup needs one) that
    /// pg_hba.conf admits for `replication` connections from this host.
    replication_user: String,
    /// Its password (Sensitive). Written only to the pgpass file.
    password: String,
    /// Directory of pg_basebackup and pg_verifybackup (default
    /// `/usr/lib/postgresql/15/bin`).
    bindir: Option<String>,
    /// Where the script is installed (default
    /// `/usr/local/sbin/agent-pg-backup-<name>`); the pgpass file sits beside
    /// it as `<script>.pgpass`.
    script: Option<String>,
    /// `present` (default) or `absent`: no crontab entry, script or pgpass
    /// file (the backups taken stay). Duties that follow the primary use
    /// it: the node `db_master` names takes the backups, the others not.
    #[serde(default)]
    ensure: crate::attr::Ensure,
    /// Take a backup during this apply when `backup_dir` holds no complete
    /// one yet (default false): the initial backup a standby can be
    /// restored from at once, instead of after the first scheduled run.
    /// Shown as a change (`initial backup`) until one is there.
    #[serde(default)]
    initial_backup: bool,
}

/// A typed `pg_backup` resource.
pub struct PgBackup {
    id: ResourceId,
    backup_dir: String,
    keep: u32,
    user: String,
    host: String,
    port: u16,
    replication_user: String,
    password: String,
    bindir: String,
    script: String,
    pgpass: String,
    /// The crontab entry, managed by the `cron` type.
    cron: Box<dyn Resource>,
    /// False for `ensure: absent`.
    present: bool,
    initial_backup: bool,
}

pub fn build(decl: &Decl, env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    Ok(Box::new(parse(decl, env)?))
}

fn parse(decl: &Decl, env: &TypeEnv) -> Result<PgBackup, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    redact::register(&p.password);
    let title = id.title.as_str();
    if title.is_empty()
        || !title
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "the name may hold only letters, digits, '_', '-' and '.' (it names the script)".into(),
        ));
    }
    let keep = match &p.keep {
        None => 4,
        Some(k) => k.value().map_err(|e| invalid(format!("keep: {e}")))?,
    };
    let keep = u32::try_from(keep)
        .ok()
        .filter(|k| *k >= 1)
        .ok_or_else(|| invalid(format!("keep must be at least 1, got {keep}")))?;
    let port = port_or(&p.port, 5432).map_err(invalid)?;
    let script = p
        .script
        .unwrap_or_else(|| format!("/usr/local/sbin/agent-pg-backup-{title}"));
    for (name, path) in [("backup_dir", &p.backup_dir), ("script", &script)] {
        if !path.starts_with('/') || path.contains(['\n', '\r']) {
            return Err(invalid(format!("{name} '{path}' must be an absolute path")));
        }
    }
    let one_line = [&p.replication_user, &p.password];
    if one_line.iter().any(|v| v.contains(['\n', '\r'])) || p.replication_user.is_empty() {
        return Err(invalid(
            "replication_user and password must be single, non-empty lines".into(),
        ));
    }
    let user = p.user.unwrap_or_else(|| "root".into());
    let schedule = p.schedule.unwrap_or_else(|| "@weekly".into());
    let present = p.ensure == crate::attr::Ensure::Present;
    let cron_decl = Decl {
        id: ResourceId::new("cron", format!("pg_backup {title}")),
        attrs: json!({
            "command": script,
            "user": user,
            "schedule": schedule,
            "ensure": if present { "present" } else { "absent" },
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
        sensitive: Default::default(),
        location: decl.location.clone(),
    };
    let cron =
        crate::cron::build(&cron_decl, env).map_err(|e| invalid(format!("crontab entry: {e}")))?;
    Ok(PgBackup {
        id: id.clone(),
        backup_dir: p.backup_dir.trim_end_matches('/').to_string(),
        keep,
        user,
        host: p.host.unwrap_or_else(|| "127.0.0.1".into()),
        port,
        replication_user: p.replication_user,
        password: p.password,
        bindir: p.bindir.unwrap_or_else(|| DEFAULT_BINDIR.into()),
        pgpass: format!("{script}.pgpass"),
        script,
        cron,
        present,
        initial_backup: p.initial_backup,
    })
}

/// `s` quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A pgpass field, with `:` and `\` escaped as libpq expects.
fn pgpass_field(s: &str) -> String {
    s.replace('\\', r"\\").replace(':', r"\:")
}

/// The newest complete backup in `dir`, as the script leaves them: the
/// lexicographically greatest subdirectory (UTC timestamps sort by time)
/// that is not `.partial`, not hidden, and holds a `backup_manifest`.
pub fn newest_backup(dir: &Path) -> Result<Option<PathBuf>, ResourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ResourceError::io(dir, e))?;
    let mut best: Option<(String, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| ResourceError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.')
            || name.ends_with(".partial")
            || !path.is_dir()
            || !path.join("backup_manifest").is_file()
        {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| name > *b) {
            best = Some((name, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

impl PgBackup {
    /// The backup script, as installed at `script`.
    fn script_text(&self) -> String {
        format!(
            r#"#!/bin/sh
# Managed by the agent ({id}); local changes are overwritten.
# Takes a verified physical backup of {host}:{port} into {dir}/<UTC time>
# and keeps the newest {keep}. The password comes from $PGPASSFILE.
set -eu
umask 077
# Node paths below $AGENT_ROOT when the agent runs it under --root.
root=${{AGENT_ROOT:-}}
root=${{root%/}}
backup_dir="$root"{q_dir}
keep={keep}
bindir={q_bindir}
PGPASSFILE="$root"{q_pgpass}
PGCONNECT_TIMEOUT=30
export PGPASSFILE PGCONNECT_TIMEOUT

mkdir -p "$backup_dir"
# Leftovers of runs killed before they could clean up never count as backups.
for old in "$backup_dir"/*.partial; do
    if [ -e "$old" ]; then rm -rf "$old"; fi
done
# Named by the UTC second it starts in; a second backup in the same
# second gets -01, -02... (names still sort by time).
base=$(date -u +%Y%m%dT%H%M%SZ)
stamp=$base
n=0
while [ -e "$backup_dir/$stamp" ]; do
    n=$((n + 1))
    stamp=$(printf '%s-%02d' "$base" "$n")
done
final="$backup_dir/$stamp"
partial="$final.partial"
trap 'rm -rf "$partial"' EXIT
trap 'exit 1' HUP INT TERM
"$bindir/pg_basebackup" -h {q_host} -p {port} -U {q_user} -w -D "$partial" -Fp -X stream --checkpoint=fast
"$bindir/pg_verifybackup" -q "$partial"
mv "$partial" "$final"
trap - EXIT

# Keep the newest $keep complete backups; the one just taken always stays.
ls -1 "$backup_dir" | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z(-[0-9]{{2}})?$' | sort -r | tail -n +$((keep + 1)) |
while read -r old; do
    if [ "$old" != "$stamp" ]; then rm -rf "${{backup_dir:?}}/$old"; fi
done
"#,
            id = self.id,
            host = self.host,
            port = self.port,
            dir = self.backup_dir,
            keep = self.keep,
            q_dir = sh_quote(&self.backup_dir),
            q_bindir = sh_quote(&self.bindir),
            q_pgpass = sh_quote(&self.pgpass),
            q_host = sh_quote(&self.host),
            q_user = sh_quote(&self.replication_user),
        )
    }

    /// The pgpass line for the script's connection.
    fn pgpass_text(&self) -> String {
        format!(
            "{}:{}:*:{}:{}\n",
            pgpass_field(&self.host),
            self.port,
            pgpass_field(&self.replication_user),
            pgpass_field(&self.password)
        )
    }

    /// The two files: (node path, content, mode, sensitive, property).
    fn files(&self) -> [(&str, String, u32, bool, &'static str); 2] {
        [
            (&self.script, self.script_text(), 0o700, false, "script"),
            (&self.pgpass, self.pgpass_text(), 0o600, true, "pgpass"),
        ]
    }

    /// Hands a written file to the crontab user, who reads it (libpq skips
    /// an unreadable pgpass). Only root can, and only on the real root.
    fn chown_to_user(&self, cx: &Context, path: &Path) -> Result<(), ResourceError> {
        if !nix::unistd::geteuid().is_root() || cx.root != Path::new("/") {
            return Ok(());
        }
        let pw = nix::unistd::User::from_name(&self.user)
            .ok()
            .flatten()
            .ok_or_else(|| {
                ResourceError::Failed(format!("{}: user '{}' does not exist", self.id, self.user))
            })?;
        std::os::unix::fs::chown(path, Some(pw.uid.as_raw()), Some(pw.gid.as_raw()))
            .map_err(|e| ResourceError::io(path, e))
    }
}

impl PgBackup {
    /// Runs the installed script once, as cron would (as `user` on the
    /// real root), with `AGENT_ROOT` set so that it finds its node paths
    /// under `--root`.
    fn take_backup(&self, cx: &Context) -> Result<(), ResourceError> {
        let script = cx.path(&self.script)?;
        let mut cmd =
            crate::runner::Cmd::new(&["/bin/sh".to_string(), script.display().to_string()]);
        cmd.env
            .push(("AGENT_ROOT".into(), cx.root.to_string_lossy().into_owned()));
        if cx.root == Path::new("/") {
            cmd.user = Some(self.user.clone());
        }
        tracing::info!(resource = %self.id, "taking the initial backup");
        cx.runner.run(&cmd)?;
        Ok(())
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// What `apply` does to one of the two files, as `check` decided.
#[derive(Debug)]
enum FileStep {
    /// Replace its content (and give it this mode).
    Write(String, u32),
    /// Only its mode differs.
    Chmod(u32),
    /// `ensure: absent`: remove it (backed up).
    Remove,
}

/// What `apply` does: the files that differ, and the crontab entry's own
/// plan (made by the inner `cron` resource, applied by it).
#[derive(Debug, Default)]
struct Steps {
    files: Vec<(PathBuf, FileStep)>,
    cron: Option<Plan>,
    /// Run the script once, after the files and the entry are in place.
    initial: bool,
}

impl Resource for PgBackup {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let (mut changes, mut steps) = (Vec::new(), Steps::default());
        for (node, want, mode, sensitive, property) in self.files() {
            let path = cx.path(node)?;
            let old = atomic::read_optional(&path)?;
            if !self.present {
                if old.is_some() {
                    changes.push(Change::new(property, Some("present".into()), None));
                    steps.files.push((path, FileStep::Remove));
                }
                continue;
            }
            if old.as_deref() != Some(want.as_bytes()) {
                let mut c = diff::content_change(
                    Path::new(node),
                    old.as_deref(),
                    want.as_bytes(),
                    sensitive,
                );
                c.property = property.into();
                changes.push(c);
                steps.files.push((path, FileStep::Write(want, mode)));
            } else if mode_of(&path) != Some(mode) {
                changes.push(Change::new(
                    format!("{property} mode"),
                    mode_of(&path).map(|m| format!("{m:04o}")),
                    Some(format!("{mode:04o}")),
                ));
                steps.files.push((path, FileStep::Chmod(mode)));
            }
        }
        if self.present && self.initial_backup {
            let dir = cx.path(&self.backup_dir)?;
            let have = dir.is_dir() && newest_backup(&dir)?.is_some();
            if !have {
                changes.push(Change::new(
                    "initial backup",
                    Some("none".into()),
                    Some(format!("taken now into {}", self.backup_dir)),
                ));
                steps.initial = true;
            }
        }
        let cron = self.cron.check(cx)?;
        if !cron.is_empty() {
            changes.extend(cron.changes().iter().map(|c| Change {
                property: "crontab".into(),
                ..c.clone()
            }));
            steps.cron = Some(cron);
        }
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        for (path, step) in steps.files {
            match step {
                FileStep::Write(content, mode) => {
                    stage::replace_file(cx, &path, content.as_bytes(), Some(mode))?;
                    self.chown_to_user(cx, &path)?;
                }
                FileStep::Chmod(mode) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| ResourceError::io(&path, e))?;
                }
                FileStep::Remove => {
                    let old = std::fs::read(&path).map_err(|e| ResourceError::io(&path, e))?;
                    cx.backup
                        .save(&crate::stage::Stager::default(), &path, &old)?;
                    std::fs::remove_file(&path).map_err(|e| ResourceError::io(&path, e))?;
                }
            }
        }
        if let Some(cron) = steps.cron {
            self.cron.apply(cx, cron)?;
        }
        if steps.initial {
            self.take_backup(cx)?;
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![ResourceId::new("file", &self.backup_dir)];
        if let Some(parent) = Path::new(&self.backup_dir).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        if let Some(parent) = Path::new(&self.script).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        ids.extend(self.cron.autorequires());
        ids
    }

    fn paths(&self) -> Vec<String> {
        let mut paths = vec![self.script.clone(), self.pgpass.clone()];
        paths.extend(self.cron.paths());
        // The initial backup writes there (the script follows what it
        // finds): confined before anything runs.
        if self.present && self.initial_backup {
            paths.push(self.backup_dir.clone());
        }
        paths
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pg::standby_testing::{create_repl_role, REPL_PASSWORD, REPL_USER};
    use crate::pg::testing::TestCluster;
    use crate::runner::{Cmd, Runner};
    use std::str::FromStr;

    fn decl(title: &str, attrs: serde_json::Value) -> Decl {
        Decl {
            id: ResourceId::new("pg_backup", title),
            attrs: attrs.as_object().unwrap().clone(),
            sensitive: ["password".to_string()].into_iter().collect(),
            location: Default::default(),
        }
    }

    fn debian() -> TypeEnv {
        TypeEnv::from_facts(json!({"os": {"family": "Debian"}}))
    }

    /// A `pg_backup` of `cluster` into `<base>/backups`, its script at
    /// `<base>/bin/backup`, installed as plain files (not through a Context,
    /// whose crontab would be the machine's).
    pub(crate) fn install_script(
        cluster: &TestCluster,
        base: &Path,
        keep: u32,
    ) -> (PathBuf, PathBuf) {
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let r = parse(
            &decl(
                "t",
                json!({"backup_dir": base.join("backups").display().to_string(), "keep": keep,
                       "host": cluster.addr, "port": cluster.port, "replication_user": REPL_USER,
                       "password": REPL_PASSWORD, "script": bin.join("backup").display().to_string()}),
            ),
            &debian(),
        )
        .unwrap();
        for (node, text, mode, _, _) in r.files() {
            atomic::write_atomic(Path::new(node), text.as_bytes(), Some(mode)).unwrap();
        }
        (PathBuf::from(&r.script), base.join("backups"))
    }

    pub(crate) fn run_script(script: &Path) -> crate::runner::Output {
        Runner::default()
            .output(&Cmd::new(&["/bin/sh", &script.display().to_string()]))
            .unwrap()
    }

    fn complete(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn script_takes_verified_backups_keeps_newest_and_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = TestCluster::primary(&dir.path().join("primary"), "127.0.0.1");
        create_repl_role(&cluster);
        let (script, backups) = install_script(&cluster, &dir.path().join("b"), 2);
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(
            !text.contains(REPL_PASSWORD),
            "password only in the pgpass file"
        );
        let mut taken = Vec::new();
        // Three runs, usually within one second: the names still differ
        // and sort in the order taken.
        for run in 0..3 {
            let out = run_script(&script);
            assert!(out.success(), "run {run}: {}", out.stderr);
            taken.push(newest_backup(&backups).unwrap().unwrap());
        }
        let names = complete(&backups);
        assert_eq!(names.len(), 2, "{names:?}");
        let newest: Vec<String> = taken[1..]
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, newest, "the oldest backup was pruned");
        for name in &names {
            let re = regex_like_timestamp(name);
            assert!(re, "{name}");
            let b = backups.join(name);
            assert!(b.join("backup_manifest").is_file() && b.join("PG_VERSION").is_file());
            let verify = Runner::default()
                .output(&Cmd::new(&[
                    format!("{}/pg_verifybackup", cluster.bindir.display()),
                    b.display().to_string(),
                ]))
                .unwrap();
            assert!(verify.success(), "{}", verify.stderr);
        }

        // Primary down: the run fails, leaves no partial, counts nothing new.
        cluster.stop();
        let out = run_script(&script);
        assert!(!out.success());
        assert!(out.stderr.contains("pg_basebackup"), "{}", out.stderr);
        assert_eq!(complete(&backups), names);
        assert_eq!(newest_backup(&backups).unwrap().as_ref(), taken.last());
    }

    /// `20240107T030000Z`, or with a same-second suffix `-01`.
    fn regex_like_timestamp(name: &str) -> bool {
        let b = name.as_bytes();
        let suffix_ok = match b.len() {
            16 => true,
            19 => b[16] == b'-' && b[17..].iter().all(u8::is_ascii_digit),
            _ => false,
        };
        suffix_ok
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..16]
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 8 | 15) || c.is_ascii_digit())
    }

    #[test]
    fn newest_backup_skips_partial_hidden_and_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, manifest) in [
            ("20240101T000000Z", true),
            ("20240301T000000Z", true),
            ("20240401T000000Z.partial", true),
            ("20240501T000000Z", false),
            (".20240601T000000Z", true),
        ] {
            std::fs::create_dir(d.join(name)).unwrap();
            if manifest {
                std::fs::write(d.join(name).join("backup_manifest"), "{}").unwrap();
            }
        }
        assert_eq!(newest_backup(d).unwrap(), Some(d.join("20240301T000000Z")));
        assert_eq!(newest_backup(&d.join("20240501T000000Z")).unwrap(), None);
        assert!(newest_backup(&d.join("missing")).is_err());
    }

    fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&["var/spool/cron/crontabs", "usr/local/sbin"])
    }

    #[test]
    fn manages_script_pgpass_and_crontab_idempotently() {
        let (_dir, cx) = sandbox();
        let attrs = json!({"backup_dir": "/mnt/db_bkup", "replication_user": "repl", "password": "pw:with\\odd",
                           "schedule": "0 3 * * 0", "port": "5433"});
        let r = build(&decl("stash", attrs), &debian()).unwrap();
        assert_eq!(
            r.paths(),
            vec![
                "/usr/local/sbin/agent-pg-backup-stash".to_string(),
                "/usr/local/sbin/agent-pg-backup-stash.pgpass".into(),
                "/var/spool/cron/crontabs/root".into()
            ]
        );
        assert!(r
            .autorequires()
            .contains(&ResourceId::new("file", "/mnt/db_bkup")));
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let props: Vec<&str> = changes.iter().map(|c| c.property.as_str()).collect();
        assert_eq!(props, ["script", "pgpass", "crontab"]);
        assert!(changes[1].sensitive && !changes[0].sensitive);
        for c in &changes {
            let shown = format!("{}{}", c.line(), c.printable_diff().unwrap_or_default());
            assert!(!shown.contains("pw:with"), "{shown}");
        }
        r.apply(&cx, plan).unwrap();
        assert!(r.check(&cx).unwrap().is_empty(), "not idempotent");

        let root = &cx.root;
        let mode = |p: &str| mode_of(&root.join(p)).unwrap();
        assert_eq!(mode("usr/local/sbin/agent-pg-backup-stash"), 0o700);
        assert_eq!(mode("usr/local/sbin/agent-pg-backup-stash.pgpass"), 0o600);
        assert_eq!(
            std::fs::read_to_string(root.join("usr/local/sbin/agent-pg-backup-stash.pgpass"))
                .unwrap(),
            "127.0.0.1:5433:*:repl:pw\\:with\\\\odd\n"
        );
        let script =
            std::fs::read_to_string(root.join("usr/local/sbin/agent-pg-backup-stash")).unwrap();
        assert!(script.contains("-p 5433 -U 'repl' -w"), "{script}");
        assert!(
            script.contains("PGPASSFILE=\"$root\"'/usr/local/sbin/agent-pg-backup-stash.pgpass'")
        );
        assert!(!script.contains("pw:with"));

        let crontab = std::fs::read_to_string(root.join("var/spool/cron/crontabs/root")).unwrap();
        assert!(!crontab.contains("pw:with"));
        let mut lines = crontab.lines();
        assert_eq!(lines.next(), Some("# agent: pg_backup stash"));
        let entry = lines.next().unwrap();
        let fields: Vec<&str> = entry.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{entry}");
        crate::cron::validate_schedule(&fields[..5].join(" ")).unwrap();
        cron::Schedule::from_str(&format!("0 {} 1", fields[..4].join(" "))).unwrap();
        assert_eq!(fields[5], "/usr/local/sbin/agent-pg-backup-stash");

        // Drift in one part is one change.
        std::fs::set_permissions(
            root.join("usr/local/sbin/agent-pg-backup-stash"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(
            root.join("usr/local/sbin/agent-pg-backup-stash.pgpass"),
            "old",
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let props: Vec<&str> = changes.iter().map(|c| c.property.as_str()).collect();
        assert_eq!(props, ["script mode", "pgpass"]);
        r.apply(&cx, plan).unwrap();
        assert!(r.check(&cx).unwrap().is_empty());

        // ensure: absent (this node is no longer the primary): no entry, no
        // script, no pgpass; the backups themselves are not touched.
        let mut gone_attrs = json!({"backup_dir": "/mnt/db_bkup", "replication_user": "repl", "password": "pw:with\\odd"});
        gone_attrs["ensure"] = json!("absent");
        let gone = build(&decl("stash", gone_attrs), &debian()).unwrap();
        let plan = gone.check(&cx).unwrap();
        let props: Vec<&str> = plan.changes().iter().map(|c| c.property.as_str()).collect();
        assert_eq!(props, ["script", "pgpass", "crontab"]);
        gone.apply(&cx, plan).unwrap();
        assert!(!root.join("usr/local/sbin/agent-pg-backup-stash").exists());
        assert!(!root
            .join("usr/local/sbin/agent-pg-backup-stash.pgpass")
            .exists());
        let crontab =
            std::fs::read_to_string(root.join("var/spool/cron/crontabs/root")).unwrap_or_default();
        assert!(!crontab.contains("pg_backup stash"), "{crontab}");
        assert!(gone.check(&cx).unwrap().is_empty(), "absent is idempotent");
    }

    #[test]
    fn the_initial_backup_is_taken_under_a_root_once() {
        let (dir, cx) = sandbox();
        let cluster = TestCluster::primary(&dir.path().join("pg"), "127.0.0.1");
        create_repl_role(&cluster);
        let attrs = json!({"backup_dir": "/mnt/db_bkup", "replication_user": REPL_USER,
                           "password": REPL_PASSWORD, "host": cluster.addr, "port": cluster.port,
                           "initial_backup": true});
        let r = build(&decl("first", attrs), &debian()).unwrap();
        assert!(r.paths().contains(&"/mnt/db_bkup".to_string()), "confined");
        let plan = r.check(&cx).unwrap();
        let lines: Vec<String> = plan.changes().iter().map(|c| c.line()).collect();
        assert!(
            lines.contains(
                &"initial backup changed 'none' to 'taken now into /mnt/db_bkup'".to_string()
            ),
            "{lines:?}"
        );
        r.apply(&cx, plan).unwrap();
        // Into the root's backup dir, verified, named by its time.
        let taken = newest_backup(&cx.root.join("mnt/db_bkup"))
            .unwrap()
            .expect("a complete backup under the root");
        assert!(taken.join("PG_VERSION").is_file());
        assert!(!Path::new("/mnt/db_bkup")
            .join(taken.file_name().unwrap())
            .exists());
        // One is there: the next run takes none.
        assert!(r.check(&cx).unwrap().is_empty(), "not idempotent");
        // Without the attribute no backup is taken at apply.
        let (_dir2, cx2) = sandbox();
        let plain = build(
            &decl("first", json!({"backup_dir": "/mnt/db_bkup", "replication_user": REPL_USER,
                                  "password": REPL_PASSWORD, "host": cluster.addr, "port": cluster.port})),
            &debian(),
        )
        .unwrap();
        plain.apply(&cx2, plain.check(&cx2).unwrap()).unwrap();
        assert!(!cx2.root.join("mnt/db_bkup").exists());
    }

    #[test]
    fn invalid_declarations_are_refused() {
        // The password is registered as a secret process-wide: a common
        // string ("x") would be redacted out of every other test's output.
        let base = json!({"backup_dir": "/b", "replication_user": "repl", "password": "pg-backup-invalid-decl-pw"});
        let with = |k: &str, v: serde_json::Value| {
            let mut a = base.clone();
            a[k] = v;
            a
        };
        assert!(build(&decl("ok", base.clone()), &debian()).is_ok());
        for (title, attrs) in [
            ("bad/name", base.clone()),
            ("t", with("keep", json!(0))),
            ("t", with("schedule", json!("61 * * * *"))),
            ("t", with("backup_dir", json!("relative"))),
            ("t", with("port", json!("nope"))),
            ("t", with("unknown", json!(1))),
        ] {
            assert!(
                build(&decl(title, attrs.clone()), &debian()).is_err(),
                "{title} {attrs}"
            );
        }
    }
}
