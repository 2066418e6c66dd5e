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
        &format!(
            "{repo_at}pgbackrest::clients: ['{}']\npgbackrest::check::min_redundancy: 2\n",
            repo.addr
        ),
    );
    repo.hiera(
                ca.path(),
        &format!(
            "pgbackrest::full_schedule: '30 2 * * 6'\npgbackrest::diff_schedule: '45 3 * * 1-5'\npgbackrest::clients: ['{e}', '{i}']\npgbackrest::export_ip: {e}\npgbackrest::export_port: {t}\npgbackrest::export_pg_path: {d}\npgbackrest::export_pg_port: {p}\npgbackrest::export_pg_socket: {d}\n",
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

    scheduled_backups_facts_and_check(&export, &repo, &lost);
}

/// The `pgbackrest` fact of a node (`agent facts pgbackrest --json`), parsed.
fn pgbackrest_fact(n: &Node) -> serde_json::Value {
    let run = n.agent(&["facts", "pgbackrest", "--json"]);
    run.code(0);
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    json["pgbackrest"].clone()
}

/// Issue 18, second slice, on the stack the first one brought up: the
/// pull-backup's crontab holds the configured full and differential
/// schedules, and its script (run by hand once) takes a differential
/// backup and verifies it; the `pgbackrest` facts and `agent pgbackrest
/// check` read the repository's real state.
fn scheduled_backups_facts_and_check(export: &Node, repo: &Node, lost: &Node) {
    // The crontab entries, with the schedules from the node's Hiera data.
    let crontab = repo.sb.read_root("var/spool/cron/crontabs/postgres");
    let script = repo.sb.root().join("etc/pgbackrest/scheduled-backup");
    for (schedule, kind) in [("30 2 * * 6", "full"), ("45 3 * * 1-5", "diff")] {
        let entry = format!("{schedule} {} {kind}", script.display());
        assert!(
            crontab.lines().any(|l| l == entry),
            "{entry:?} in the crontab:\n{crontab}"
        );
    }
    // The script, as cron would run it: a differential backup, verified.
    let run = Run::of(
        Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(&script)
            .arg("diff"),
    );
    run.code(0);
    assert!(
        run.stdout
            .contains("diff backup of main taken and verified"),
        "{}",
        run.all()
    );

    // The facts: one full (redundancy 1), fresh; the differential just
    // taken; WAL in the repository; both backups listed.
    let fact = pgbackrest_fact(repo);
    let main = &fact["stanzas"]["main"];
    assert_eq!(main["status"], "ok", "{fact:#}");
    assert_eq!(main["redundancy"], 1, "{fact:#}");
    let age = |k: &str| {
        main[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} in {fact:#}"))
    };
    assert!(age("last_full_age_s") < 600, "{fact:#}");
    assert!(age("last_diff_age_s") < 120, "{fact:#}");
    assert!(age("last_wal_archived_age_s") < 600, "{fact:#}");
    assert!(
        main.get("archive_failures").is_none(),
        "no PostgreSQL on the pull-backup"
    );
    let kinds: Vec<&str> = main["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["full", "diff"], "{fact:#}");
    assert!(main["backups"][1]["label"].as_str().unwrap().ends_with('D'));
    // Lazy: a question that does not name it never runs pgBackRest.
    let run = repo.agent(&["facts", "os.family", "--timing"]);
    run.code(0);
    assert!(
        !run.stderr.contains("facts from pgbackrest"),
        "{}",
        run.all()
    );
    let run = repo.agent(&["facts", "pgbackrest.stanzas.main.redundancy", "--timing"]);
    run.code(0);
    assert!(
        run.stderr.contains("facts from pgbackrest"),
        "{}",
        run.all()
    );
    assert_eq!(run.stdout.trim(), "1");
    // The export reads the same repository remotely, and its own archiver.
    let fact = pgbackrest_fact(export);
    let main = &fact["stanzas"]["main"];
    assert_eq!(main["redundancy"], 1, "{fact:#}");
    assert_eq!(main["archive_failures"], 0, "{fact:#}");
    assert!(main["last_wal_archived_age_s"].is_i64(), "{fact:#}");

    // A run whose catalog reads the fact exports it as metrics.
    let prom = repo.sb.path().join("agent.prom");
    repo.agent(&[
        "apply",
        "--noop",
        "-e",
        "- file: /tmp/redundancy\n  content: \"{{facts.pgbackrest.stanzas.main.redundancy}}\"",
        "--metrics-file",
        prom.to_str().unwrap(),
    ])
    .code(0);
    let metrics = std::fs::read_to_string(&prom).expect("metrics file");
    for line in [
        "agent_pgbackrest_redundancy{stanza=\"main\"} 1\n",
        "agent_pgbackrest_status_code{stanza=\"main\"} 0\n",
        "agent_pgbackrest_last_full_age_seconds{stanza=\"main\"} ",
        "agent_pgbackrest_last_wal_archived_age_seconds{stanza=\"main\"} ",
    ] {
        assert!(metrics.contains(line), "{line:?} in\n{metrics}");
    }

    // The check passes with the Hiera defaults, one line per check.
    let run = repo.agent(&["pgbackrest", "check"]);
    run.code(0);
    for check in [
        "main: status: OK",
        "main: last full backup age: OK",
        "main: last archived WAL age: OK",
        "main: redundancy: OK (1 full backup(s), limit >= 1)",
    ] {
        assert!(run.stdout.contains(check), "{check:?} in {}", run.all());
    }
    // A full backup older than the limit fails the check, naming it.
    std::thread::sleep(Duration::from_secs(2));
    let run = repo.agent(&["pgbackrest", "check", "--max-full-age", "1s", "--json"]);
    run.code(1);
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("--json");
    assert_eq!(out["ok"], false);
    let failed: Vec<&str> = out["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["last full backup age"], "{}", run.stdout);
    let run = repo.agent(&[
        "pgbackrest",
        "check",
        "--min-redundancy",
        "2",
        "--stanza",
        "main",
    ]);
    run.code(1);
    assert!(
        run.stdout
            .contains("main: redundancy: FAILED (1 full backup(s), limit >= 2)"),
        "{}",
        run.all()
    );
    // The export's Hiera asks for two fulls: its check (of the same
    // repository, over TLS) fails on that limit alone.
    let run = export.agent(&["pgbackrest", "check"]);
    run.code(1);
    assert!(
        run.stdout
            .contains("main: redundancy: FAILED (1 full backup(s), limit >= 2)")
            && run.stdout.contains("main: last full backup age: OK"),
        "{}",
        run.all()
    );
    // A stanza the repository lacks, and a node without pgBackRest: errors
    // that say so.
    let run = repo.agent(&["pgbackrest", "check", "--stanza", "nope"]);
    run.code(1);
    assert!(
        run.all().contains("stanza nope is not in the repository"),
        "{}",
        run.all()
    );
    let run = lost.agent(&["pgbackrest", "check"]);
    run.code(1);
    assert!(
        run.all().contains("no pgBackRest configuration at"),
        "{}",
        run.all()
    );
    let run = lost.agent(&["facts", "pgbackrest"]);
    run.code(1);

    // It breaks the repository: a backup file that no longer
    // matches its checksum makes the scheduled script fail after its
    // backup, naming verify: cron's job exits non-zero.
    let full = repo.sb.root().join(format!(
        "var/lib/pgbackrest/repo/backup/main/{}/pg_data/PG_VERSION.gz",
        kinds_label(repo, "full")
    ));
    std::fs::write(&full, b"not what was backed up").expect("corrupting a backup file");
    let run = Run::of(
        Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(&script)
            .arg("diff"),
    );
    run.code(1);
    assert!(
        run.stderr
            .contains("pgbackrest verify found the repository invalid")
            && run.stderr.contains("checksum invalid: 1"),
        "the script names verify: {}",
        run.all()
    );

    // The repository host down: the export's check fails on the stanza's
    // status, saying why, in bounded time.
    let pidfile = repo.sb.root().join("var/run/pgbackrest-server.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the server's pid file")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stopping the repository's server");
    wait_for(
        "the repository server to stop",
        Duration::from_secs(10),
        || std::net::TcpStream::connect((repo.addr, repo.tls_port)).is_err(),
    );
    // Stopped: the node's drop must not signal a reused pid.
    std::fs::remove_file(&pidfile).expect("removing the server's pid file");
    let started = Instant::now();
    let run = export.agent(&["pgbackrest", "check", "--min-redundancy", "0"]);
    run.code(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "check with the repository down took {:?} (io-timeout 5 s)",
        started.elapsed()
    );
    assert!(
        run.stdout.contains("main: status: FAILED (other (repo1: "),
        "{}",
        run.all()
    );
}

/// The label of the newest backup of type `kind` in the repository.
fn kinds_label(repo: &Node, kind: &str) -> String {
    let fact = pgbackrest_fact(repo);
    fact["stanzas"]["main"]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["type"] == kind)
        .filter_map(|b| b["label"].as_str())
        .next_back()
        .unwrap_or_else(|| panic!("a {kind} backup in {fact:#}"))
        .to_string()
}
