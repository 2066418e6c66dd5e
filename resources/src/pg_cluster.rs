//! `pg_cluster`: a PostgreSQL data directory, created with `initdb`.
//!
//! The type only ever *creates* a cluster. A data dir that already holds a
//! `PG_VERSION` is in sync whatever its settings: re-initialising or
//! "fixing" the encoding of a cluster would destroy data, so differences are
//! only logged. A non-empty dir without `PG_VERSION` is refused rather than
//! initialised over (it may be a half-restored backup or the wrong path).
//!
//! `initdb` runs as the `postgres` OS user (it refuses root); the
//! superuser's password reaches it through a 0600 file owned by that user,
//! never the command line, and the file is removed afterwards.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::pg;

/// Attributes of `- pg_cluster: <data dir>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Directory of the PostgreSQL binaries (default
    /// `/usr/lib/postgresql/15/bin`).
    bindir: Option<String>,
    /// Server encoding of the new cluster (default `UTF8`).
    encoding: Option<String>,
    /// Locale of the new cluster (default `C`).
    locale: Option<String>,
    /// Authentication method of `local` rules initdb writes (default `peer`).
    auth_local: Option<String>,
    /// Authentication method of `host` rules initdb writes (default
    /// `scram-sha-256`).
    auth_host: Option<String>,
    /// Name of the bootstrap superuser (default `postgres`).
    superuser: Option<String>,
    /// Password of the bootstrap superuser (Sensitive). Without it the
    /// superuser cannot log in with `scram-sha-256`.
    superuser_password: Option<String>,
    /// Enable data page checksums (`initdb --data-checksums`; default false).
    #[serde(default)]
    data_checksums: bool,
}

/// A typed `pg_cluster` resource.
#[derive(Debug)]
pub struct PgCluster {
    id: ResourceId,
    datadir: String,
    bindir: PathBuf,
    encoding: String,
    locale: String,
    auth_local: String,
    auth_host: String,
    superuser: String,
    password: Option<String>,
    data_checksums: bool,
}

/// A value that goes into an initdb argument: one word, no option syntax.
fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c))
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let datadir = id.title.clone();
    if !datadir.starts_with('/') || datadir == "/" {
        return Err(invalid(format!(
            "data dir '{datadir}' must be an absolute path below /"
        )));
    }
    let bindir = p.bindir.unwrap_or_else(|| pg::DEFAULT_BINDIR.to_string());
    if !bindir.starts_with('/') {
        return Err(invalid(format!(
            "bindir '{bindir}' must be an absolute path"
        )));
    }
    let word = |name: &str, v: Option<String>, default: &str| -> Result<String, ResourceError> {
        let v = v.unwrap_or_else(|| default.to_string());
        if valid_word(&v) {
            Ok(v)
        } else {
            Err(invalid(format!("{name} '{v}' is not a valid value")))
        }
    };
    let password = p.superuser_password.filter(|s| !s.is_empty());
    if let Some(pw) = &password {
        crate::redact::register(pw);
        if pw.contains(['\n', '\r']) {
            return Err(invalid("superuser_password must be a single line".into()));
        }
    }
    Ok(Box::new(PgCluster {
        id: id.clone(),
        datadir,
        bindir: PathBuf::from(bindir),
        encoding: word("encoding", p.encoding, "UTF8")?,
        locale: word("locale", p.locale, "C")?,
        auth_local: word("auth_local", p.auth_local, "peer")?,
        auth_host: word("auth_host", p.auth_host, "scram-sha-256")?,
        superuser: word("superuser", p.superuser, "postgres")?,
        password,
        data_checksums: p.data_checksums,
    }))
}

/// What the data dir holds now.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// A cluster (`PG_VERSION` present) of this major version, if readable.
    Initialised(Option<u32>),
    /// Missing, or an empty directory: initdb may run.
    Empty,
}

fn state(dir: &Path) -> Result<State, ResourceError> {
    if dir.join("PG_VERSION").exists() {
        return Ok(State::Initialised(pg::data_dir_version(dir)));
    }
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::Empty),
        Err(e) => Err(ResourceError::io(dir, e)),
        Ok(mut entries) => match entries.next() {
            None => Ok(State::Empty),
            Some(_) => Err(ResourceError::Failed(format!(
                "{} is not empty but holds no PG_VERSION: refusing to initdb over existing files",
                dir.display()
            ))),
        },
    }
}

impl PgCluster {
    /// Creates the data dir (0700, owned by the postgres OS user) and any
    /// missing parents (0755, so that postgres can traverse them).
    fn prepare_dir(&self, dir: &Path) -> Result<(), ResourceError> {
        if let Some(parent) = dir.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| ResourceError::io(parent, e))?;
            self.check_traversable(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ResourceError::io(dir, e)),
        }
        pg::chown_to_os_user(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| ResourceError::io(dir, e))
    }

    /// When initdb runs as another user, every parent must let it through;
    /// say which one does not instead of initdb's terse "Permission denied".
    fn check_traversable(&self, parent: &Path) -> Result<(), ResourceError> {
        let Some(user) = pg::os_user() else {
            return Ok(());
        };
        let Ok(Some(pw)) = nix::unistd::User::from_name(&user) else {
            return Ok(());
        };
        for dir in parent.ancestors() {
            let meta = fs::metadata(dir).map_err(|e| ResourceError::io(dir, e))?;
            let mode = meta.mode();
            let ok = if meta.uid() == pw.uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == pw.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return Err(ResourceError::Failed(format!(
                    "{}: {} (mode {:o}) is not traversable by the {user} OS user, which runs initdb",
                    self.id,
                    dir.display(),
                    mode & 0o7777
                )));
            }
        }
        Ok(())
    }

    /// Writes the password file beside the data dir (0600, postgres-owned).
    fn write_pwfile(&self, dir: &Path, password: &str) -> Result<PathBuf, ResourceError> {
        use std::io::Write;
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = parent.join(format!(".{name}.agent-pwfile.{}", std::process::id()));
        let _ = fs::remove_file(&path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ResourceError::io(&path, e))?;
        let written = f
            .write_all(password.as_bytes())
            .and_then(|_| f.write_all(b"\n"));
        drop(f);
        let owned = written
            .map_err(|e| ResourceError::io(&path, e))
            .and_then(|_| pg::chown_to_os_user(&path));
        if let Err(e) = owned {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(path)
    }
}

/// The one thing a pg_cluster's `apply` does: initdb into `dir` (the data
/// dir, confined to the root), found empty by `check`.
#[derive(Debug)]
struct Initdb {
    dir: PathBuf,
}

impl Resource for PgCluster {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let dir = cx.path(&self.datadir)?;
        match state(&dir).map_err(|e| ResourceError::Failed(format!("{}: {e}", self.id)))? {
            State::Initialised(version) => {
                // Never touched once created: settings are only initdb's.
                tracing::debug!(
                    resource = %self.id,
                    version = ?version,
                    "cluster exists; encoding/locale/auth settings apply only at creation"
                );
                Ok(Plan::in_sync())
            }
            State::Empty => {
                let change = Change::new("ensure", Some("absent".into()), Some("present".into()));
                Ok(Plan::new(vec![change], Initdb { dir }))
            }
        }
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let Initdb { dir } = plan.steps(&self.id)?;
        // initdb never runs over what is there now, whatever check saw.
        if let State::Initialised(_) =
            state(&dir).map_err(|e| ResourceError::Failed(format!("{}: {e}", self.id)))?
        {
            return Ok(());
        }
        self.prepare_dir(&dir)?;
        let d = dir.display().to_string();
        let enc = self.encoding.clone();
        let locale = format!("--locale={}", self.locale);
        let auth_local = format!("--auth-local={}", self.auth_local);
        let auth_host = format!("--auth-host={}", self.auth_host);
        let mut args: Vec<String> = vec![
            "-D".into(),
            d,
            "-U".into(),
            self.superuser.clone(),
            "-E".into(),
            enc,
            locale,
            auth_local,
            auth_host,
        ];
        if self.data_checksums {
            args.push("--data-checksums".into());
        }
        let pwfile = match &self.password {
            Some(pw) => Some(self.write_pwfile(&dir, pw)?),
            None => None,
        };
        if let Some(f) = &pwfile {
            args.push(format!("--pwfile={}", f.display()));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = pg::bin_cmd(&self.bindir, "initdb", &argv);
        cmd.timeout = Some(std::time::Duration::from_secs(600));
        let result = cx.runner.run(&cmd);
        if let Some(f) = &pwfile {
            let _ = fs::remove_file(f);
        }
        result
            .map(|_| ())
            .map_err(|e| ResourceError::Failed(format!("{}: initdb failed: {e}", self.id)))
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![ResourceId::new("file", &self.datadir)];
        if let Some(parent) = Path::new(&self.datadir).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        vec![self.datadir.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::testing::{context as cx, decl, open_for_postgres};
    use serde_json::json;

    #[test]
    fn build_validates() {
        let env = TypeEnv::default();
        assert!(build(&decl("pg_cluster", "relative", json!({}), &[]), &env).is_err());
        assert!(build(
            &decl("pg_cluster", "/d", json!({"encoding": "UTF8; rm"}), &[]),
            &env
        )
        .is_err());
        assert!(build(
            &decl("pg_cluster", "/d", json!({"locale": "--x"}), &[]),
            &env
        )
        .is_err());
        assert!(build(&decl("pg_cluster", "/d", json!({"bogus": 1}), &[]), &env).is_err());
        let r = build(
            &decl("pg_cluster", "/var/lib/pg/main", json!({}), &[]),
            &env,
        )
        .unwrap();
        assert_eq!(r.paths(), vec!["/var/lib/pg/main".to_string()]);
        assert_eq!(
            r.autorequires(),
            vec![
                ResourceId::new("file", "/var/lib/pg/main"),
                ResourceId::new("file", "/var/lib/pg")
            ]
        );
    }

    #[test]
    fn refuses_a_non_empty_dir_without_pg_version() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("data")).unwrap();
        fs::write(root.path().join("data/stray"), "x").unwrap();
        let r = build(
            &decl("pg_cluster", "/data", json!({}), &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        fs::remove_file(root.path().join("data/stray")).unwrap();
        let c = cx(root.path(), state.path());
        // Planned while empty; the stray file arrives before apply.
        let plan = r.check(&c).unwrap();
        assert!(!plan.is_empty());
        fs::write(root.path().join("data/stray"), "x").unwrap();
        let err = r.check(&c).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(r.apply(&c, plan).is_err());
        assert!(c.runner.history().is_empty(), "initdb must not run");
    }

    #[test]
    fn an_existing_cluster_is_never_touched() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("data")).unwrap();
        fs::write(root.path().join("data/PG_VERSION"), "9.6\n").unwrap();
        let r = build(
            &decl("pg_cluster", "/data", json!({"encoding": "LATIN1"}), &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        let c = cx(root.path(), state.path());
        assert!(r.check(&c).unwrap().is_empty());
    }

    #[test]
    fn initdb_creates_a_cluster_whose_superuser_has_the_password() {
        let base = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        open_for_postgres(base.path());
        let root = base.path();
        let r = build(
            &decl(
                "pg_cluster",
                "/pg/15/main",
                json!({"superuser_password": "cluster-pw-1", "data_checksums": true}),
                &["superuser_password"],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        let c = cx(root, state.path());
        let plan = r.check(&c).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].line(), "ensure changed 'absent' to 'present'");
        r.apply(&c, plan).unwrap();
        let dir = root.join("pg/15/main");
        assert_eq!(pg::data_dir_version(&dir), Some(15));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(root.join("pg/15")).unwrap().mode() & 0o777,
            0o755
        );
        // The password file is gone and never was on a command line.
        let leftovers: Vec<_> = fs::read_dir(root.join("pg/15"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert!(c
            .runner
            .history()
            .iter()
            .all(|h| !h.contains("cluster-pw-1")));
        let conf = fs::read_to_string(dir.join("pg_hba.conf")).unwrap();
        assert!(conf.contains("scram-sha-256"), "{conf}");
        assert!(r.check(&c).unwrap().is_empty(), "idempotent");

        // Start it and log in with the password over TCP.
        let port = pg::testing::free_port("127.0.0.1");
        let extra = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            dir.display()
        );
        let mut conf = fs::read_to_string(dir.join("postgresql.conf")).unwrap();
        conf.push_str(&extra);
        fs::write(dir.join("postgresql.conf"), conf).unwrap();
        let cluster = pg::testing::TestCluster::existing(dir.clone(), "127.0.0.1", port);
        cluster.start();
        let mut client = pg::Conn::new("127.0.0.1", port, "postgres", Some("cluster-pw-1"))
            .connect()
            .unwrap();
        let row = client
            .query_one("SELECT current_setting('data_checksums')", &[])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "on");
        assert!(pg::Conn::new("127.0.0.1", port, "postgres", Some("wrong"))
            .connect()
            .is_err());
    }
}
