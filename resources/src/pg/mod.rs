//! What the PostgreSQL types share: how to reach a cluster (the `postgres`
//! crate over TCP or a Unix socket), how to run its binaries as the
//! `postgres` OS user, and how to read its version.
//!
//! Connections authenticate as the cluster's superuser (default `postgres`)
//! with its password (Hiera's `pgsql_server::postgres_password`, Sensitive):
//! the agent runs as root, and peer authentication would see root, not
//! postgres. `pg_cluster` sets that password at initdb time and `pg_hba`
//! keeps a rule that lets the superuser in over loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::ResourceError;
use crate::redact;
use crate::runner::Cmd;

pub mod attr;
#[cfg(test)]
pub(crate) mod live;
pub mod recovery;
pub mod seed;
// Test beds, never in the product build: see the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod standby_testing;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

/// Where the PostgreSQL binaries live when nothing says otherwise.
pub const DEFAULT_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// How to reach one cluster.
#[derive(Debug, Clone)]
pub struct Conn {
    /// An address/host name, or a socket directory (starts with '/').
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub connect_timeout: Duration,
}

impl Conn {
    pub fn new(host: &str, port: u16, user: &str, password: Option<&str>) -> Self {
        if let Some(p) = password {
            redact::register(p);
        }
        Conn {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: password.map(str::to_string),
            dbname: "postgres".into(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    pub fn db(mut self, dbname: &str) -> Self {
        self.dbname = dbname.to_string();
        self
    }

    /// A libpq-style description, without the password.
    pub fn describe(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, self.dbname
        )
    }

    /// Opens a connection.
    pub fn connect(&self) -> Result<postgres::Client, ResourceError> {
        let mut cfg = postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.connect_timeout)
            .application_name("agent");
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg.connect(postgres::NoTls).map_err(|e| {
            ResourceError::Failed(format!(
                "connecting to {}: {}",
                self.describe(),
                redact::redact(&e.to_string())
            ))
        })
    }

    /// Runs `sql` for resource `id` as one batch on a new connection: what
    /// the SQL-speaking types' `apply` does. The debug log shows `logged`
    /// and an error names `named` (both `sql` itself, or for a statement
    /// that carries a secret, only a harmless head of it).
    pub fn execute(
        &self,
        id: &crate::core::ResourceId,
        sql: &str,
        logged: &str,
        named: &str,
    ) -> Result<(), ResourceError> {
        let mut client = self.connect()?;
        tracing::debug!(resource = %id, "{logged}");
        client
            .batch_execute(sql)
            .map_err(|e| sql_error(&format!("{id}: {named}"), e))
    }
}

/// A query error with the statement's context, redacted.
pub fn sql_error(what: &str, e: postgres::Error) -> ResourceError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    ResourceError::Failed(format!("{what}: {}", redact::redact(&detail)))
}

/// The OS user that runs initdb / pg_ctl / pg_basebackup: `postgres` when we
/// are root (PostgreSQL refuses to run as root), else ourselves.
pub fn os_user() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        Some("postgres".to_string())
    } else {
        None
    }
}

/// A command for a PostgreSQL binary, run as [`os_user`].
pub fn bin_cmd(bindir: &Path, name: &str, args: &[&str]) -> Cmd {
    let mut argv = vec![bindir.join(name).display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = Cmd::new(&argv);
    cmd.user = os_user();
    cmd.env.push(("LC_ALL".into(), "C".into()));
    cmd
}

/// Gives a directory to the PostgreSQL OS user (when root), so initdb and
/// the server can write there.
pub fn chown_to_os_user(path: &Path) -> Result<(), ResourceError> {
    let Some(user) = os_user() else { return Ok(()) };
    let pw = nix::unistd::User::from_name(&user)
        .map_err(|e| ResourceError::Failed(format!("looking up {user}: {e}")))?
        .ok_or_else(|| ResourceError::Invalid(format!("no OS user {user}")))?;
    nix::unistd::chown(path, Some(pw.uid), Some(pw.gid))
        .map_err(|e| ResourceError::io(path, std::io::Error::from(e)))
}

/// Major version of a data dir (its `PG_VERSION` file), if initialised.
pub fn data_dir_version(datadir: &Path) -> Option<u32> {
    std::fs::read_to_string(datadir.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Major version of the binaries in `bindir` (`pg_ctl --version`).
pub fn bin_version(runner: &crate::runner::Runner, bindir: &Path) -> Result<u32, ResourceError> {
    let out = runner.run(&Cmd::new(&[
        bindir.join("pg_ctl").display().to_string(),
        "--version".into(),
    ]))?;
    parse_version(&out.stdout).ok_or_else(|| {
        ResourceError::Failed(format!(
            "cannot read a version from '{}'",
            out.stdout.trim()
        ))
    })
}

/// `pg_ctl (PostgreSQL) 15.18 (Debian ...)` → 15; `9.6.24` → 9.
pub fn parse_version(text: &str) -> Option<u32> {
    let token = text
        .split_whitespace()
        .find(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    token.split('.').next()?.parse().ok()
}

/// The data dir path given a root (all PostgreSQL paths are node paths).
pub fn node_path(cx: &crate::core::Context, p: &str) -> Result<PathBuf, ResourceError> {
    cx.path(p)
}

/// Refuses a data dir that Patroni runs: it rewrites postgresql.conf and
/// pg_hba.conf from its own configuration (keeping the original as
/// `postgresql.base.conf`, its cache of the cluster's settings as
/// `patroni.dynamic.json`), so a `pg_conf` or `pg_hba` there would fight it
/// at every run. One owner per setting: the error names Patroni's.
pub fn refuse_if_patroni(
    id: &crate::core::ResourceId,
    datadir: &Path,
) -> Result<(), ResourceError> {
    let Some(marker) = ["patroni.dynamic.json", "postgresql.base.conf"]
        .into_iter()
        .find(|m| datadir.join(m).exists())
    else {
        return Ok(());
    };
    Err(ResourceError::Failed(format!(
        "{id}: Patroni runs the server of {} ({marker} is there) and writes its postgresql.conf and \
         pg_hba.conf itself; set cluster-wide parameters in patroni::dcs (postgresql.parameters, \
         converged by patroni_config), this node's in patroni::parameters, rules in patroni::pg_hba",
        datadir.display()
    )))
}

/// Quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The connection attributes shared by the SQL-speaking types (`host`,
/// `port`, `superuser`, `superuser_password`), with their defaults applied:
/// `127.0.0.1`, 5432, `postgres`, no password.
pub fn conn_from_attrs(
    host: Option<&str>,
    port: Option<u16>,
    superuser: Option<&str>,
    password: Option<&str>,
) -> Result<Conn, ResourceError> {
    let host = host.unwrap_or("127.0.0.1");
    if host.is_empty() {
        return Err(ResourceError::Invalid("host must not be empty".into()));
    }
    let port = port.unwrap_or(5432);
    if port == 0 {
        return Err(ResourceError::Invalid("port must be 1-65535".into()));
    }
    Ok(Conn::new(
        host,
        port,
        superuser.unwrap_or("postgres"),
        password,
    ))
}

/// How long "is the server up?" probes wait before deciding it is not.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection if the server of `datadir` is running, `None` if it is not.
///
/// A refused or timed-out connection means "not running" only when the data
/// dir has no live postmaster either: a server that runs but refuses us
/// (wrong password, pg_hba) is an error, because silently skipping the
/// reload would leave the new configuration unapplied.
pub fn connect_if_running(
    conn: &Conn,
    datadir: &Path,
) -> Result<Option<postgres::Client>, ResourceError> {
    let mut probe = conn.clone();
    probe.connect_timeout = PROBE_TIMEOUT;
    match probe.connect() {
        Ok(client) => Ok(Some(client)),
        Err(e) => match postmaster_pid(datadir) {
            Some(pid) => Err(ResourceError::Failed(format!(
                "the server of {} is running (pid {pid}) but does not accept the agent: {e}",
                datadir.display()
            ))),
            None => {
                tracing::debug!(datadir = %datadir.display(), "server not running: {e}");
                Ok(None)
            }
        },
    }
}

/// The pid of a live postmaster of `datadir` (first line of postmaster.pid).
pub fn postmaster_pid(datadir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(datadir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

/// Writes a server configuration file (postgresql.conf, pg_hba.conf, an
/// include): backup of the old content when `backup` is set, atomic
/// replacement, and the ownership the server needs. An existing file keeps
/// its owner and mode; a new one belongs to [`os_user`] with mode 0600 — a
/// root-owned 0600 file would lock the server out of its own configuration.
/// The owner is set on the temp file before the rename: a run killed at
/// any moment leaves the old file or the new one, the server's either way.
pub fn write_config(
    cx: &crate::core::Context,
    path: &Path,
    content: &[u8],
    backup: bool,
) -> Result<(), ResourceError> {
    use std::os::unix::fs::MetadataExt;
    let old = std::fs::metadata(path).ok();
    let (owner, mode) = if !nix::unistd::geteuid().is_root() {
        (None, None)
    } else {
        match &old {
            Some(meta) => (Some((meta.uid(), meta.gid())), Some(meta.mode() & 0o7777)),
            None => (os_user_ids()?, Some(0o600)),
        }
    };
    if backup {
        if let Some(bytes) = crate::atomic::read_optional(path)? {
            cx.backup.save(cx.stager(), path, &bytes)?;
        }
    }
    // A run killed mid-write left its temp beside the file.
    if let Some(dir) = path.parent() {
        crate::atomic::clean_stale_temps(dir);
    }
    crate::atomic::write_atomic_owned(path, content, mode, owner)
}

/// (uid, gid) of [`os_user`], when there is one.
fn os_user_ids() -> Result<Option<(u32, u32)>, ResourceError> {
    let Some(user) = os_user() else {
        return Ok(None);
    };
    let pw = nix::unistd::User::from_name(&user)
        .map_err(|e| ResourceError::Failed(format!("looking up {user}: {e}")))?
        .ok_or_else(|| ResourceError::Invalid(format!("no OS user {user}")))?;
    Ok(Some((pw.uid.as_raw(), pw.gid.as_raw())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_quoting() {
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_version("pg_ctl (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_version("nothing"), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
