//! Real PostgreSQL clusters for tests: initdb in a temp dir (as the
//! `postgres` OS user when we are root), own port and socket dir, started
//! with `pg_ctl -w`, stopped on drop even when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::pg::{bin_cmd, chown_to_os_user, Conn, DEFAULT_BINDIR};
use crate::runner::Runner;

/// The superuser password of test clusters.
pub const PASSWORD: &str = "test-superuser-pw";

/// A free TCP port on `addr`.
pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .expect("bind")
        .local_addr()
        .unwrap()
        .port()
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
        let port = free_port(addr);
        let conf = format!(
            "listen_addresses = '{addr}'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n",
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
        let c = TestCluster {
            datadir,
            addr: addr.to_string(),
            port,
            bindir,
            runner,
        };
        c.start();
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
        let d = self.datadir.display().to_string();
        let log = self.datadir.join("server.log").display().to_string();
        self.runner
            .run(&bin_cmd(
                &self.bindir,
                "pg_ctl",
                &["-D", &d, "-l", &log, "-w", "start"],
            ))
            .expect("pg_ctl start");
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
