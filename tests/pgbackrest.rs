//! pgBackRest end to end (issue 18, first slice): the three roles of the
//! SlapOS resilient stack from the bundled site, each its own node (own
//! `--root`, loopback address, ports), on real PostgreSQL 15 and real
//! pgBackRest 2.45 (installed when missing, as root): the export
//! (127.0.0.81, archive-push to the repository), the pull-backup
//! (127.0.0.82, `pgbackrest server` with TLS, the stanza, a first full
//! backup, verified) and an import (127.0.0.83, restored from the
//! repository, replaying WAL from it). Each role applied twice: the second
//! run changes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ensure_package, Run, Sandbox};
use resources::pg::testing::{free_port, stop_now};
use resources::pg::{Conn, DEFAULT_BINDIR};

const SUPERUSER_PW: &str = "supersecret";

/// One node of the stack.
struct Node {
    sb: Sandbox,
    name: &'static str,
    addr: &'static str,
    pg_port: u16,
    tls_port: u16,
}

impl Node {
    fn new(name: &'static str, addr: &'static str) -> Node {
        let sb = Sandbox::bundled();
        // The postgres OS user runs PostgreSQL and pgbackrest inside the sandbox.
        for d in [sb.path().to_path_buf(), sb.root()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // 127.0.0.81-84 are this test's alone; the two ports must differ.
        let pg_port = free_port(addr);
        let tls_port = std::iter::repeat_with(|| free_port(addr))
            .find(|p| *p != pg_port)
            .expect("a second free port");
        Node {
            sb,
            name,
            addr,
            pg_port,
            tls_port,
        }
    }

    fn datadir(&self) -> PathBuf {
        self.sb.root().join("pg/data")
    }

    fn conf(&self) -> PathBuf {
        self.sb.root().join("etc/pgbackrest/pgbackrest.conf")
    }

    /// This node's Hiera data: its PostgreSQL (if any) and its pgBackRest role.
    fn hiera(&self, ca_dir: &Path, extra: &str) {
        let data = format!(
            r#"pgsql_server::port: {port}
pgsql_server::connect_host: {addr}
pgsql_server::datadir: /pg/data
pgsql_server::parent_dirs: [/pg]
pgsql_server::socket_dir: {sock}
pgsql_server::fence: false
pgsql_server::settings:
  listen_addresses: {addr}
  port: {port}
  unix_socket_directories: {sock}
  fsync: false
pgsql_server::ipv4acls: []
pgbackrest::ip: {addr}
pgbackrest::tls_port: {tls}
pgbackrest::prefix: {root}
pgbackrest::ca_dir: {ca}
{extra}"#,
            port = self.pg_port,
            addr = self.addr,
            sock = self.datadir().display(),
            tls = self.tls_port,
            root = self.sb.root().display(),
            ca = ca_dir.display(),
        );
        self.sb
            .site_file(&format!("hiera/data/nodes/{}.yaml", self.name), &data);
    }

    /// `agent apply --detailed-exitcodes --node NAME`, state in the root.
    fn apply(&self) -> Run {
        self.agent(&["apply", "--detailed-exitcodes"])
    }

    /// `agent ARGS --node NAME` with this node's root and site.
    fn agent(&self, args: &[&str]) -> Run {
        let site = self.sb.site();
        Run::of(
            Command::new(env!("CARGO_BIN_EXE_agent"))
                .args(args)
                .args(["--node", self.name])
                .arg("--root")
                .arg(self.sb.root())
                .arg("--manifests")
                .arg(site.join("manifests"))
                .arg("--hiera-config")
                .arg(site.join("hiera/hiera.yaml"))
                .arg("--facts-dir")
                .arg(self.sb.path().join("facts.d"))
                .current_dir(self.sb.path())
                .env_remove("AGENT_LOG"),
        )
    }

    /// `pgbackrest ARGS` with this node's configuration, as postgres.
    fn pgbackrest(&self, args: &[&str]) -> Run {
        Run::of(
            Command::new("setpriv")
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "pgbackrest",
                ])
                .arg(format!("--config={}", self.conf().display()))
                .arg("--stanza=main")
                .args(args),
        )
    }

    fn conn(&self) -> Conn {
        Conn::new(self.addr, self.pg_port, "postgres", Some(SUPERUSER_PW))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let pidfile = self.sb.root().join("var/run/pgbackrest-server.pid");
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if self.datadir().join("PG_VERSION").exists() {
            stop_now(Path::new(DEFAULT_BINDIR), &self.datadir());
        }
    }
}

/// Waits for `ok`, with a deadline (never a fixed sleep before asserting).
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn export_pull_backup_and_import_roles_back_up_restore_and_replay() {
    ensure_package("pgbackrest", "/usr/bin/pgbackrest");
    let ca = tempfile::tempdir().expect("tempdir");
    let export = Node::new("pgbackrest-export", "127.0.0.81");
    let repo = Node::new("pgbackrest-pull-backup", "127.0.0.82");
    let import = Node::new("pgbackrest-import1", "127.0.0.83");
    let repo_at = format!(
        "pgbackrest::repo_ip: {}\npgbackrest::repo_port: {}\npgbackrest::repo_host_path: {}\n",
        repo.addr,
        repo.tls_port,
        repo.sb.root().join("var/lib/pgbackrest/repo").display()
    );
    export.hiera(
        ca.path(),
        &format!("{repo_at}pgbackrest::clients: ['{}']\n", repo.addr),
    );
    repo.hiera(
                ca.path(),
        &format!(
            "pgbackrest::clients: ['{e}', '{i}']\npgbackrest::export_ip: {e}\npgbackrest::export_port: {t}\npgbackrest::export_pg_path: {d}\npgbackrest::export_pg_port: {p}\npgbackrest::export_pg_socket: {d}\n",
            e = export.addr,
            i = import.addr,
            t = export.tls_port,
            d = export.datadir().display(),
            p = export.pg_port,
        ),
    );
    import.hiera(ca.path(), &repo_at);

    // Bad input first: an import whose data lacks the repository's address
    // fails the compile naming the key, and writes nothing.
    let lost = Node::new("pgbackrest-import9", "127.0.0.84");
    lost.hiera(ca.path(), "");
    let before = lost.sb.snapshot();
    let run = lost.apply();
    run.code(1);
    assert!(run.all().contains("pgbackrest::repo_"), "{}", run.all());
    assert_eq!(before, lost.sb.snapshot(), "a failed compile wrote");
    assert!(
        !ca.path().join("ca.crt").exists(),
        "a failed compile made the CA"
    );

    // First runs, in the order a new stack comes up: each changes its node.
    for n in [&export, &repo, &import] {
        let run = n.apply();
        run.code(2);
        assert!(!run.all().contains("Error"), "{}: {}", n.name, run.all());
    }

    // Certificates: made by the agent, keys 0600, owned by postgres.
    for n in [&export, &repo, &import] {
        let key = n.sb.root().join("etc/pgbackrest/tls/server.key");
        assert_eq!(mode(&key), 0o600, "{}: key mode", n.name);
        assert!(n.sb.root().join("etc/pgbackrest/tls/server.crt").is_file());
    }
    assert_eq!(mode(&ca.path().join("ca.key")), 0o600, "CA key mode");

    // The repository holds a full backup, and verify agrees.
    let info = repo.pgbackrest(&["info", "--output=json"]);
    info.code(0);
    let json: serde_json::Value = serde_json::from_str(&info.stdout).expect("info is JSON");
    let stanza = &json[0];
    assert_eq!(
        stanza["status"]["code"], 0,
        "stanza status: {}",
        info.stdout
    );
    let backups = stanza["backup"].as_array().expect("backups");
    assert_eq!(backups.len(), 1, "one backup: {}", info.stdout);
    assert_eq!(backups[0]["type"], "full");
    let verify = repo.pgbackrest(&["verify", "--log-level-console=info"]);
    verify.code(0);
    assert!(
        verify
            .stdout
            .contains("verify command end: completed successfully"),
        "verify: {}",
        verify.all()
    );

    // The import is a standby restored from the repository, with its own
    // settings back after the restore, and replays what the export writes.
    let mut imp = import.conn().connect().expect("the import answers");
    let row = imp
        .query_one(
            "select pg_is_in_recovery(), current_setting('wal_retrieve_retry_interval'), \
             current_setting('archive_mode'), current_setting('port'), \
             current_setting('restore_command')",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "the import is in recovery");
    assert_eq!(row.get::<_, String>(1), "1s");
    assert_eq!(row.get::<_, String>(2), "on");
    assert_eq!(row.get::<_, String>(3), import.pg_port.to_string());
    let restore_command: String = row.get(4);
    assert!(
        restore_command.contains("archive-get")
            && restore_command.contains(&import.conf().display().to_string()),
        "restore_command: {restore_command}"
    );
    let mut exp = export.conn().connect().expect("the export answers");
    exp.batch_execute(
        "create table rows_written (id int primary key); \
         insert into rows_written select generate_series(1, 100);",
    )
    .unwrap();
    wait_for(
        "the import to replay the export's rows",
        Duration::from_secs(60),
        || {
            imp.query_one(
                "select to_regclass('rows_written') is not null \
             and (select count(*) from rows_written) = 100",
                &[],
            )
            .map(|r| r.get::<_, Option<bool>>(0) == Some(true))
            .unwrap_or(false)
        },
    );

    // Second runs (--noop, then for real): nothing to change on any node,
    // certificates untouched.
    let certs = |n: &Node| {
        let tls = n.sb.root().join("etc/pgbackrest/tls");
        ["ca.crt", "server.crt", "server.key"].map(|f| std::fs::read(tls.join(f)).unwrap())
    };
    let ca_cert = std::fs::read(ca.path().join("ca.crt")).unwrap();
    for n in [&export, &repo, &import] {
        let before = certs(n);
        n.agent(&["apply", "--noop", "--detailed-exitcodes"])
            .code(0);
        let run = n.apply();
        run.code(0);
        assert!(before == certs(n), "{}: certificates changed", n.name);
    }
    assert_eq!(ca_cert, std::fs::read(ca.path().join("ca.crt")).unwrap());
    // The repository still checks out after all that (WAL archived through).
    repo.pgbackrest(&["check"]).code(0);
}
