//! Test support for the replication types (`pg_standby`, `pg_backup`): a
//! replication role on a test primary, a standby server started on a seeded
//! data dir (stopped on drop, also when the test panics), and the checks
//! that it really is a streaming standby.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pg::testing::{
    open_for_postgres, start_on_a_free_port, stop_now, TestCluster, PASSWORD,
};
use crate::pg::{bin_cmd, Conn, DEFAULT_BINDIR};
use crate::runner::Runner;

pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl-secret-pw";

/// Creates the replication role backups and standbys connect as.
pub fn create_repl_role(cluster: &TestCluster) {
    let mut client = cluster.conn().connect().unwrap();
    client
        .batch_execute(&format!(
            "CREATE ROLE {REPL_USER} REPLICATION LOGIN PASSWORD '{REPL_PASSWORD}'"
        ))
        .unwrap();
}

/// A server started on a data dir, on its own port and socket dir.
pub struct Running {
    pub datadir: PathBuf,
    pub port: u16,
}

impl Running {
    /// A streaming standby of the primary on 127.0.0.1:`primary_port`:
    /// `pg_basebackup -R` (as postgres, with the test password) into
    /// `<base>/<name>`, then started on a port of its own.
    pub fn streaming_standby(base: &Path, name: &str, primary_port: u16) -> Running {
        let datadir = base.join(name);
        // pg_basebackup fills an existing empty dir owned by the postgres OS user.
        open_for_postgres(&datadir);
        std::fs::set_permissions(
            &datadir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        )
        .unwrap();
        let d = datadir.display().to_string();
        let p = primary_port.to_string();
        let mut backup = bin_cmd(
            Path::new(DEFAULT_BINDIR),
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-U",
                "postgres",
                "-D",
                &d,
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-w",
            ],
        );
        backup.env.push(("PGPASSWORD".into(), PASSWORD.into()));
        Runner::default().run(&backup).expect("pg_basebackup");
        Running::start(&datadir)
    }

    /// `127.0.0.1:port`, as clusters name their nodes.
    pub fn label(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `q` as postgres.
    pub fn sql(&self, q: &str) {
        self.client().batch_execute(q).unwrap();
    }

    /// Stops the server now (drop does too).
    pub fn stop(&self) {
        stop_now(Path::new(DEFAULT_BINDIR), &self.datadir);
    }

    pub fn start(datadir: &Path) -> Running {
        let d = datadir.display().to_string();
        let log = datadir.join("standby.log");
        let log_text = log.display().to_string();
        let port = start_on_a_free_port("127.0.0.1", &log, |port| {
            // The copied postgresql.conf names the primary's port and socket dir.
            let opts = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
                datadir.display()
            );
            Runner::default()
                .run(&bin_cmd(
                    Path::new(DEFAULT_BINDIR),
                    "pg_ctl",
                    &["-D", &d, "-l", &log_text, "-o", &opts, "-w", "start"],
                ))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        Running {
            datadir: datadir.to_path_buf(),
            port,
        }
    }

    pub fn client(&self) -> postgres::Client {
        Conn::new("127.0.0.1", self.port, "postgres", Some(PASSWORD))
            .connect()
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_now(Path::new(DEFAULT_BINDIR), &self.datadir);
    }
}

/// Calls `f` every 100 ms until it gives a value; panics after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn in_recovery(c: &mut postgres::Client) -> bool {
    c.query_one("select pg_is_in_recovery()", &[])
        .unwrap()
        .get(0)
}

/// The server is a standby and a row written on the primary shows up on it
/// within 5 s.
pub fn assert_streams(primary: &TestCluster, running: &Running, value: i32) {
    let mut p = primary.conn().connect().unwrap();
    p.batch_execute(&format!(
        "create table if not exists t (x int); insert into t values ({value})"
    ))
    .unwrap();
    let mut s = running.client();
    assert!(in_recovery(&mut s));
    poll("the row on the standby", Duration::from_secs(5), || {
        s.query_opt("select x from t where x = $1", &[&value])
            .ok()
            .flatten()
            .map(|_| ())
    });
}

/// No `<datadir>.seeding-*` temp dir is left in `base`.
pub fn no_seeding_dirs(base: &Path) {
    let left: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".seeding-"))
        .collect();
    assert!(left.is_empty(), "temp dirs left: {left:?}");
}
