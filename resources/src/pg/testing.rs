//! Real PostgreSQL clusters for tests: initdb in a temp dir (as the
//! `postgres` OS user when we are root), own port and socket dir, started
//! with `pg_ctl -w`, stopped on drop even when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::pg::{bin_cmd, chown_to_os_user, Conn, DEFAULT_BINDIR};
use crate::runner::Runner;

/// The superuser password of test clusters.
pub const PASSWORD: &str = "test-superuser-pw";

/// A TCP port that was free on `addr` a moment ago. Another process may
/// take it before the caller binds it: servers started on it go through
/// [`start_on_a_free_port`], which tries again on another port then.
pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .expect("bind")
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server with `start(port)` on a port found free, and again on
/// another when the server could not bind it (taken meanwhile: the race
/// [`free_port`] cannot close, since the server binds the port itself).
/// The port it runs on.
pub fn start_on_a_free_port(
    addr: &str,
    log: &Path,
    mut start: impl FnMut(u16) -> Result<(), String>,
) -> u16 {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port(addr);
        match start(port) {
            Ok(()) => return port,
            Err(e) => {
                let logged = std::fs::read_to_string(log).unwrap_or_default();
                if !logged.contains("could not bind") && !e.contains("could not bind") {
                    panic!("starting a test server on port {port}: {e}\n{logged}");
                }
                last = format!("{e}\n{logged}");
            }
        }
    }
    panic!("no free port for a test server after 5 tries: {last}");
}

/// Makes `dir` (and its parents inside a temp dir) usable by the postgres
/// OS user: traversable, and owned by it.
pub fn open_for_postgres(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let mut p = Some(dir);
    while let Some(d) = p {
        if d == Path::new("/") || d == Path::new("/tmp") {
            break;
        }
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711));
        p = d.parent();
    }
    chown_to_os_user(dir).unwrap();
}

/// A declaration for type tests: `type[title]` with JSON attributes, the
/// named ones marked Sensitive.
pub fn decl(
    type_name: &str,
    title: &str,
    attrs: serde_json::Value,
    sensitive: &[&str],
) -> crate::core::Decl {
    crate::core::Decl {
        id: crate::core::ResourceId::new(type_name, title),
        attrs: attrs.as_object().expect("attributes are a map").clone(),
        sensitive: sensitive.iter().map(|s| s.to_string()).collect(),
        location: Default::default(),
    }
}

/// A context rooted at `root` with its backup store in `state`.
pub fn context(root: &Path, state: &Path) -> crate::core::Context {
    crate::core::Context::new(root, crate::backup::BackupStore::new(state))
}

/// A running test cluster.
pub struct TestCluster {
    pub datadir: PathBuf,
    pub addr: String,
    pub port: u16,
    pub bindir: PathBuf,
    runner: Runner,
}

impl TestCluster {
    /// initdb + start a primary listening on `addr` (e.g. 127.0.0.1).
    pub fn primary(base: &Path, addr: &str) -> TestCluster {
        let bindir = PathBuf::from(DEFAULT_BINDIR);
        open_for_postgres(base);
        let datadir = base.join("data");
        let pwfile = base.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chown_to_os_user(&pwfile).unwrap();
        let runner = Runner::default();
        let d = datadir.display().to_string();
        let pw = format!("--pwfile={}", pwfile.display());
        runner
            .run(&bin_cmd(
                &bindir,
                "initdb",
                &[
                    "-D",
                    &d,
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    &pw,
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ))
            .expect("initdb");
        let conf = format!(
            "listen_addresses = '{addr}'\nunix_socket_directories = '{}'\nfsync = off\n",
            datadir.display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(datadir.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let hba = "host all all 127.0.0.0/8 scram-sha-256\nhost replication all 127.0.0.0/8 scram-sha-256\n";
        std::fs::OpenOptions::new()
            .append(true)
            .open(datadir.join("pg_hba.conf"))
            .unwrap()
            .write_all(hba.as_bytes())
            .unwrap();
        let mut c = TestCluster {
            datadir,
            addr: addr.to_string(),
            port: 0,
            bindir,
            runner,
        };
        c.port = start_on_a_free_port(addr, &c.datadir.join("server.log"), |port| {
            // The last `port` line of postgresql.conf wins.
            std::fs::OpenOptions::new()
                .append(true)
                .open(c.datadir.join("postgresql.conf"))
                .and_then(|mut f| f.write_all(format!("port = {port}\n").as_bytes()))
                .map_err(|e| e.to_string())?;
            c.try_start()
        });
        c
    }

    /// A handle on an existing data dir (not started), stopped on drop like
    /// the others.
    pub fn existing(datadir: PathBuf, addr: &str, port: u16) -> TestCluster {
        TestCluster {
            datadir,
            addr: addr.to_string(),
            port,
            bindir: PathBuf::from(DEFAULT_BINDIR),
            runner: Runner::default(),
        }
    }

    pub fn start(&self) {
        self.try_start().expect("pg_ctl start");
    }

    fn try_start(&self) -> Result<(), String> {
        let d = self.datadir.display().to_string();
        let log = self.datadir.join("server.log").display().to_string();
        self.runner
            .run(&bin_cmd(
                &self.bindir,
                "pg_ctl",
                &["-D", &d, "-l", &log, "-w", "start"],
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn stop(&self) {
        let d = self.datadir.display().to_string();
        let _ = self.runner.run(&bin_cmd(
            &self.bindir,
            "pg_ctl",
            &["-D", &d, "-m", "fast", "-w", "stop"],
        ));
    }

    /// A superuser connection description.
    pub fn conn(&self) -> Conn {
        Conn::new(&self.addr, self.port, "postgres", Some(PASSWORD))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        stop_now(&self.bindir, &self.datadir);
    }
}

/// Stops the test server of `datadir` at once (`pg_ctl -m immediate`), if
/// it runs: what every test cluster, standby and node does when dropped.
pub fn stop_now(bindir: &Path, datadir: &Path) {
    if datadir.join("postmaster.pid").exists() {
        let d = datadir.display().to_string();
        let _ = Runner::default().run(&bin_cmd(
            bindir,
            "pg_ctl",
            &["-D", &d, "-m", "immediate", "-w", "stop"],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_cluster_starts_answers_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let c = TestCluster::primary(dir.path(), "127.0.0.1");
        let mut client = c.conn().connect().unwrap();
        let row = client.query_one("select pg_is_in_recovery()", &[]).unwrap();
        assert!(!row.get::<_, bool>(0));
        drop(client);
        c.stop();
        assert!(c.conn().connect().is_err());
    }
}
