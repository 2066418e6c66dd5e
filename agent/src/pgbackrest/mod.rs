//! pgBackRest health (issue 18): `pgbackrest info --output=json` parsed
//! into serde structs, the age of the newest WAL segment in the
//! repository, `pg_stat_archiver.failed_count` where PostgreSQL is local,
//! for the `pgbackrest` facts and `agent pgbackrest check`, whose checks
//! are in [`check`].
//!
//! Everything is read from the node's own `pgbackrest.conf`
//! (`<root>/etc/pgbackrest/pgbackrest.conf`), with pgBackRest run as the
//! user owning that file (postgres: pgBackRest refuses to share a
//! repository with root-owned files). No configuration or no binary: no
//! health at all ([`Health::read`] returns `Ok(None)`), never an error
//! the fact layer has to carry.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use resources::runner::{Cmd, Runner};

pub mod check;
pub use check::{check, CheckLine, Limits};

/// Where pgBackRest reads its configuration on a host (under `--root` in a
/// sandbox).
pub const CONFIG: &str = "etc/pgbackrest/pgbackrest.conf";
/// Where the binary is (the Debian package).
const BINARY: &str = "pgbackrest";
/// One pgBackRest command may not take longer (a repository host that
/// does not answer would otherwise hold a fact collection for minutes).
const TIMEOUT: Duration = Duration::from_secs(60);
/// pgBackRest's own `--io-timeout` for the reading commands.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

// --- `pgbackrest info --output=json`, the parts read ---

/// One stanza of `pgbackrest info --output=json`.
#[derive(Debug, Clone, Deserialize)]
pub struct InfoStanza {
    pub name: String,
    pub status: InfoStatus,
    #[serde(default)]
    pub backup: Vec<InfoBackup>,
    #[serde(default)]
    pub archive: Vec<InfoArchive>,
    /// Each repository's own status: why the stanza's is `other` (99)
    /// when a repository host does not answer.
    #[serde(default)]
    pub repo: Vec<InfoRepo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoRepo {
    pub key: Option<i64>,
    pub status: InfoStatus,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoStatus {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoBackup {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: InfoTimestamp,
    #[serde(default)]
    pub info: Option<InfoSize>,
    #[serde(default)]
    pub error: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoTimestamp {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoSize {
    /// The database size the backup covers, in bytes.
    pub size: Option<u64>,
    pub repository: Option<InfoRepoSize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InfoRepoSize {
    /// Bytes the backup takes in the repository (compressed, its own files).
    pub delta: Option<u64>,
}

/// The WAL range the repository holds for one PostgreSQL version.
#[derive(Debug, Clone, Deserialize)]
pub struct InfoArchive {
    /// `15-1`: the directory under `archive/<stanza>/`.
    pub id: String,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// One entry of `pgbackrest repo-ls --output=json`.
#[derive(Debug, Clone, Deserialize)]
struct RepoEntry {
    #[serde(rename = "type")]
    kind: String,
    time: Option<i64>,
}

// --- the configuration, the parts read ---

/// A stanza section of pgbackrest.conf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfStanza {
    pub name: String,
    /// `pg1-path` without `pg1-host`: PostgreSQL runs on this node.
    pub local_pg: bool,
    pub pg_port: Option<String>,
    pub pg_socket: Option<String>,
}

/// The stanza sections of a pgbackrest.conf (INI: `[name]`, `key=value`;
/// `[global]` and command sections such as `[global:archive-push]` or
/// `[main:backup]` are not stanzas).
pub fn conf_stanzas(text: &str) -> Vec<ConfStanza> {
    // Per stanza: its values, and whether it names pg1-path / pg1-host
    // (in either order).
    let mut out: Vec<(ConfStanza, bool, bool)> = Vec::new();
    let mut in_stanza = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_stanza = name != "global" && !name.contains(':');
            if in_stanza {
                let stanza = ConfStanza {
                    name: name.to_string(),
                    ..Default::default()
                };
                out.push((stanza, false, false));
            }
            continue;
        }
        let (Some((stanza, pg_path, pg_host)), Some((k, v))) =
            (out.last_mut().filter(|_| in_stanza), line.split_once('='))
        else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "pg1-path" => *pg_path = true,
            "pg1-host" => *pg_host = true,
            "pg1-port" => stanza.pg_port = Some(v),
            "pg1-socket-path" => stanza.pg_socket = Some(v),
            _ => {}
        }
    }
    out.into_iter()
        .map(|(mut stanza, pg_path, pg_host)| {
            stanza.local_pg = pg_path && !pg_host;
            stanza
        })
        .collect()
}

// --- health ---

/// One backup, as the facts list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backup {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub start: i64,
    pub stop: i64,
    /// Database bytes the backup covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Bytes it takes in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_size: Option<u64>,
}

/// The health of one stanza: the `pgbackrest.stanzas.<name>` fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StanzaHealth {
    /// `ok`, or pgBackRest's message (`no valid backups`, `missing stanza path`…).
    pub status: String,
    pub status_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_full_age_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_diff_age_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_wal_archived_age_s: Option<i64>,
    /// The newest WAL segment in the repository (`archive max`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_wal_archived: Option<String>,
    /// Full backups in the repository.
    pub redundancy: usize,
    /// `pg_stat_archiver.failed_count` where PostgreSQL is local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_failures: Option<i64>,
    pub backups: Vec<Backup>,
}

/// What the node's pgBackRest reports, by stanza.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub config: String,
    pub stanzas: BTreeMap<String, StanzaHealth>,
}

/// pgbackrest.conf under `root` (`/` on a host).
pub fn config_path(root: Option<&Path>) -> PathBuf {
    root.unwrap_or(Path::new("/")).join(CONFIG)
}

/// Seconds since the epoch.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// True when `pgbackrest` is on PATH.
fn binary_found() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(BINARY).is_file()))
}

/// How pgBackRest is run for the configuration at `config`.
struct Pgbr {
    config: PathBuf,
    /// The configuration's owner, when it is not us (we are root).
    user: Option<String>,
    runner: Runner,
}

impl Pgbr {
    fn new(config: &Path) -> Result<Pgbr> {
        let meta = std::fs::metadata(config).with_context(|| config.display().to_string())?;
        let me = nix::unistd::geteuid().as_raw();
        let user = if meta.uid() != me && me == 0 {
            let u = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))?
                .with_context(|| {
                    format!("{}: owner uid {} has no name", config.display(), meta.uid())
                })?;
            Some(u.name)
        } else {
            None
        };
        Ok(Pgbr {
            config: config.to_path_buf(),
            user,
            runner: Runner::default(),
        })
    }

    /// `pgbackrest --config=… ARGS`: its stdout, or an error with its stderr.
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![
            BINARY.to_string(),
            format!("--config={}", self.config.display()),
            // Reading commands leave no log files behind (a fact is
            // collected on every run that names it).
            "--log-level-file=off".to_string(),
            // A repository host that refuses connections is retried until
            // io-timeout (60 s by default; seen here: `info` then took the
            // whole minute): a health question gives up sooner.
            format!("--io-timeout={}", IO_TIMEOUT.as_secs()),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.cmd(argv)
    }

    fn cmd(&self, argv: Vec<String>) -> Result<String> {
        let cmd = Cmd {
            argv,
            user: self.user.clone(),
            timeout: Some(TIMEOUT),
            ..Default::default()
        };
        let out = self.runner.output(&cmd).map_err(anyhow::Error::new)?;
        if !out.success() {
            bail!(
                "`{}` exited {}: {}",
                cmd.display(),
                out.status,
                out.stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or(out.stdout.trim())
            );
        }
        Ok(out.stdout)
    }

    /// `info` of one stanza (a repository host admits a client for its
    /// stanzas only, `tls-server-auth`: a remote `info` of every stanza
    /// comes back as `[invalid]`), or of all with `None`.
    fn info(&self, stanza: Option<&str>) -> Result<Vec<InfoStanza>> {
        let flag = stanza.map(|s| format!("--stanza={s}"));
        let mut args = vec!["info", "--output=json"];
        args.extend(flag.as_deref());
        let text = self.run(&args)?;
        serde_json::from_str(&text).context("parsing `pgbackrest info --output=json`")
    }

    /// When the newest archived segment `max` reached the repository: the
    /// mtime of its file under `archive/<stanza>/<id>/<first 16 hex>/`.
    fn wal_time(&self, stanza: &str, archive_id: &str, max: &str) -> Result<Option<i64>> {
        let dir = format!(
            "archive/{stanza}/{archive_id}/{}",
            &max[..max.len().min(16)]
        );
        let flag = format!("--stanza={stanza}");
        let text = self.run(&["repo-ls", "--output=json", &flag, &dir])?;
        let entries: BTreeMap<String, RepoEntry> =
            serde_json::from_str(&text).context("parsing `pgbackrest repo-ls --output=json`")?;
        Ok(entries
            .iter()
            .filter(|(name, e)| e.kind == "file" && name.starts_with(max))
            .filter_map(|(_, e)| e.time)
            .max())
    }

    /// `pg_stat_archiver.failed_count` of the local PostgreSQL.
    fn archive_failures(&self, stanza: &ConfStanza) -> Option<i64> {
        let mut argv = vec!["psql".to_string(), "-X".into(), "-At".into()];
        if let Some(s) = &stanza.pg_socket {
            argv.extend(["-h".to_string(), s.clone()]);
        }
        if let Some(p) = &stanza.pg_port {
            argv.extend(["-p".to_string(), p.clone()]);
        }
        argv.extend([
            "-d".to_string(),
            "postgres".into(),
            "-c".into(),
            "select failed_count from pg_stat_archiver".into(),
        ]);
        match self.cmd(argv) {
            Ok(out) => out.trim().parse().ok(),
            Err(e) => {
                tracing::debug!(error = %e, "pg_stat_archiver not read");
                None
            }
        }
    }
}

impl Health {
    /// The health of the node's pgBackRest: `Ok(None)` when the node has
    /// no pgbackrest.conf or no `pgbackrest` binary.
    pub fn read(root: Option<&Path>) -> Result<Option<Health>> {
        let config = config_path(root);
        if !config.is_file() || !binary_found() {
            return Ok(None);
        }
        let pgbr = Pgbr::new(&config)?;
        let conf =
            std::fs::read_to_string(&config).with_context(|| config.display().to_string())?;
        let conf = conf_stanzas(&conf);
        let now = now();
        let mut stanzas = BTreeMap::new();
        let infos = if conf.is_empty() {
            pgbr.info(None)?
        } else {
            let mut all = Vec::new();
            for c in &conf {
                all.extend(pgbr.info(Some(&c.name))?);
            }
            all
        };
        for info in infos {
            let archive = info.archive.iter().rev().find(|a| a.max.is_some());
            let wal_time = match archive {
                Some(InfoArchive {
                    id, max: Some(max), ..
                }) => match pgbr.wal_time(&info.name, id, max) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(stanza = %info.name, error = %e, "newest WAL segment's time not read");
                        None
                    }
                },
                _ => None,
            };
            let failures = conf
                .iter()
                .find(|c| c.name == info.name && c.local_pg)
                .and_then(|c| pgbr.archive_failures(c));
            let mut health = stanza_health(&info, now, wal_time);
            health.archive_failures = failures;
            stanzas.insert(info.name.clone(), health);
        }
        Ok(Some(Health {
            config: config.display().to_string(),
            stanzas,
        }))
    }

    /// The `pgbackrest` fact.
    pub fn fact(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// One stanza's health from its `info` entry, at `now`, with the time the
/// newest WAL segment reached the repository.
pub fn stanza_health(info: &InfoStanza, now: i64, wal_time: Option<i64>) -> StanzaHealth {
    let ok: Vec<&InfoBackup> = info
        .backup
        .iter()
        .filter(|b| b.error != Some(true))
        .collect();
    let newest = |kind: &str| {
        ok.iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.timestamp.stop)
            .max()
            .map(|t| (now - t).max(0))
    };
    StanzaHealth {
        status: status_text(info),
        status_code: info.status.code,
        last_full_age_s: newest("full"),
        last_diff_age_s: newest("diff"),
        last_wal_archived_age_s: wal_time.map(|t| (now - t).max(0)),
        last_wal_archived: info.archive.iter().rev().find_map(|a| a.max.clone()),
        redundancy: ok.iter().filter(|b| b.kind == "full").count(),
        archive_failures: None,
        backups: info
            .backup
            .iter()
            .map(|b| Backup {
                label: b.label.clone(),
                kind: b.kind.clone(),
                start: b.timestamp.start,
                stop: b.timestamp.stop,
                size: b.info.as_ref().and_then(|i| i.size),
                repo_size: b.info.as_ref().and_then(|i| i.repository.as_ref()?.delta),
            })
            .collect(),
    }
}

/// The stanza's status message, with the failing repositories' reasons
/// (`other` alone says nothing: `other (repo1: [HostConnectError] …)`).
fn status_text(info: &InfoStanza) -> String {
    let reasons: Vec<String> = info
        .repo
        .iter()
        .filter(|r| r.status.code != 0 && info.status.code != 0)
        .map(|r| format!("repo{}: {}", r.key.unwrap_or(1), r.status.message))
        .collect();
    if reasons.is_empty() {
        info.status.message.clone()
    } else {
        format!("{} ({})", info.status.message, reasons.join("; "))
    }
}

/// The `pgbackrest` fact group: absent (empty) when the node has no
/// pgBackRest; a failing `pgbackrest info` is a warning, not an error.
pub fn facts(root: Option<&Path>) -> Map<String, Value> {
    match Health::read(root) {
        Ok(Some(h)) => Map::from_iter([("pgbackrest".to_string(), h.fact())]),
        Ok(None) => Map::new(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "pgbackrest facts not collected");
            Map::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",
      "max":"000000010000000000000007","min":"000000010000000000000001"}],
      "backup":[
        {"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},
         "backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,
         "info":{"delta":23000000,"repository":{"delta":3000000,"size":3000000},"size":23000000},
         "label":"20261203-100000F","prior":null,"reference":null,
         "timestamp":{"start":1000,"stop":1010},"type":"full"},
        {"archive":{"start":"000000010000000000000005","stop":"000000010000000000000005"},
         "backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,
         "info":{"delta":8000,"repository":{"delta":900,"size":3000000},"size":23000000},
         "label":"20261203-100000F_20261203-110000D","prior":"20261203-100000F",
         "reference":["20261203-100000F"],"timestamp":{"start":2000,"stop":2005},"type":"diff"}],
      "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7,"version":"15"}],"name":"main",
      "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],
      "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn info_json_becomes_health() {
        let info: Vec<InfoStanza> = serde_json::from_str(INFO).unwrap();
        let h = stanza_health(&info[0], 3010, Some(3000));
        assert_eq!(h.status, "ok");
        assert_eq!(h.last_full_age_s, Some(2000));
        assert_eq!(h.last_diff_age_s, Some(1005));
        assert_eq!(h.last_wal_archived_age_s, Some(10));
        assert_eq!(
            h.last_wal_archived.as_deref(),
            Some("000000010000000000000007")
        );
        assert_eq!(h.redundancy, 1);
        assert_eq!(h.backups.len(), 2);
        assert_eq!(h.backups[1].kind, "diff");
        assert_eq!(h.backups[1].repo_size, Some(900));
        assert_eq!(h.backups[0].size, Some(23000000));
        let lines = check("main", &h, &Limits::default());
        assert!(lines.iter().all(|l| l.ok), "{lines:?}");
        let strict = Limits {
            max_full_age: Duration::from_secs(60),
            max_wal_age: Duration::from_secs(5),
            min_redundancy: 2,
        };
        let lines = check("main", &h, &strict);
        let failed: Vec<&str> = lines
            .iter()
            .filter(|l| !l.ok)
            .map(|l| l.check.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "last full backup age",
                "last archived WAL age",
                "redundancy"
            ]
        );
        assert_eq!(
            lines[1].to_string(),
            "main: last full backup age: FAILED (33m 20s, limit <= 1m)"
        );
    }

    #[test]
    fn a_stanza_without_backups_fails_its_checks() {
        let info: Vec<InfoStanza> = serde_json::from_str(
            r#"[{"name":"main","backup":[],"archive":[],
                 "status":{"code":2,"message":"no valid backups"}}]"#,
        )
        .unwrap();
        let h = stanza_health(&info[0], 10, None);
        assert_eq!((h.redundancy, h.last_full_age_s), (0, None));
        let lines = check("main", &h, &Limits::default());
        assert!(lines.iter().all(|l| !l.ok), "{lines:?}");
        assert_eq!(lines[1].value, "none");
    }

    #[test]
    fn an_unreachable_repository_says_why() {
        // What 2.45 prints (exit 0) when the repository host's TLS fails.
        let info: Vec<InfoStanza> = serde_json::from_str(
            r#"[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"main",
                 "repo":[{"cipher":"none","key":1,"status":{"code":99,
                   "message":"[CryptoError] unable to set user-defined CA certificate location"}}],
                 "status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}]"#,
        )
        .unwrap();
        let h = stanza_health(&info[0], 10, None);
        assert_eq!(
            h.status,
            "other (repo1: [CryptoError] unable to set user-defined CA certificate location)"
        );
        let lines = check("main", &h, &Limits::default());
        assert!(!lines[0].ok && lines[0].to_string().contains("CryptoError"));
    }

    #[test]
    fn config_stanzas_and_where_postgresql_is() {
        let conf = "[global]\nrepo1-path=/r\npg1-path=/nope\n\n[main]\npg1-path=/d\npg1-port=5433\n\
                    pg1-socket-path=/s\n\n[global:archive-push]\nx=1\n[other]\npg1-host=10.0.0.1\npg1-path=/d\n\
                    [third]\npg1-path=/d\npg1-host=h\n";
        let s = conf_stanzas(conf);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            ConfStanza {
                name: "main".into(),
                local_pg: true,
                pg_port: Some("5433".into()),
                pg_socket: Some("/s".into()),
            }
        );
        assert_eq!(s[1].name, "other");
        assert!(!s[1].local_pg, "pg1-host: PostgreSQL is elsewhere");
        assert!(!s[2].local_pg, "pg1-host after pg1-path");
    }

    #[test]
    fn no_configuration_is_no_health() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Health::read(Some(dir.path())).unwrap(), None);
        assert!(facts(Some(dir.path())).is_empty());
    }
}
