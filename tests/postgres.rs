//! PostgreSQL end to end, from the bundled site alone, as an operator runs
//! it (the acceptance of the Stash-on-real-nodes issue): `roles/stash_server`
//! (primary + Stash) and `roles/db_standby` (hot standby), each its own node
//! (own `--root` with the default state dir `<root>/var/lib/agent`, own
//! loopback address and port): `--noop` first (exit 2, nothing written),
//! then for real (2), then again (0); real streaming replication; the seed's
//! failover; both nodes applied once more (the old primary converges to
//! "fenced" and exits 0, the backup duty moves to the new primary); then
//! `db_master` through split brain and loss of every node.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Run, Sandbox};
use resources::pg::testing::stop_now;
use resources::pg::{bin_cmd, Conn, DEFAULT_BINDIR};
use resources::runner::Runner;

const SUPERUSER_PW: &str = "supersecret";

/// One node of the test cluster.
struct Node {
    sb: Sandbox,
    name: &'static str,
    addr: &'static str,
    port: u16,
}

impl Node {
    fn new(name: &'static str, addr: &'static str, port: u16) -> Node {
        let sb = Sandbox::bundled();
        // The postgres OS user must reach the data dir inside the sandbox.
        for d in [sb.path().to_path_buf(), sb.root()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Node {
            sb,
            name,
            addr,
            port,
        }
    }

    fn datadir(&self) -> PathBuf {
        self.sb.root().join("pg/data")
    }

    fn label(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// Node data: own address/port, data dir inside the sandbox, loopback
    /// ACLs and hosts (what `agent demo` writes for its nodes).
    fn hiera(&self, primary: &Node, standby: &Node) {
        let data = format!(
            r#"pgsql_server::port: {port}
pgsql_server::connect_host: {addr}
pgsql_server::datadir: /pg/data
pgsql_server::parent_dirs: [/pg]
pgsql_server::socket_dir: {sock}
pgsql_server::trigger_file: {trigger}
pgsql_server::backup_dir: /mnt/db_bkup
pgsql_server::primary_host: {paddr}
pgsql_server::primary_port: {pport}
pgsql_server::settings:
  listen_addresses: {addr}
  fsync: false
pgsql_server::ipv4acls:
  - 'host stashdb stashuser 127.0.0.0/8 scram-sha-256'
  - 'host replication replicator 127.0.0.0/8 scram-sha-256'
db_cluster::nodes: ['{plabel}', '{slabel}']
db_cluster::probe_timeout_ms: 500
db_cluster::self: '{label}'
stash::db_master_default: '{plabel}'
cluster::hosts: [{{name: {pname}, ip: {paddr}, alias: stash}}, {{name: {sname}, ip: {saddr}, alias: db-standby}}]
"#,
            port = self.port,
            addr = self.addr,
            label = self.label(),
            sock = self.datadir().display(),
            trigger = self.datadir().join("trigger_failover.txt").display(),
            paddr = primary.addr,
            pport = primary.port,
            pname = primary.name,
            plabel = primary.label(),
            saddr = standby.addr,
            sname = standby.name,
            slabel = standby.label(),
        );
        self.sb
            .site_file(&format!("hiera/data/nodes/{}.yaml", self.name), &data);
    }

    /// `agent ARGS --node NAME` on this node, with the default state dir
    /// (`<root>/var/lib/agent`), as an operator runs it.
    fn agent(&self, args: &[&str]) -> Run {
        let site = self.sb.site();
        Run::of(
            std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
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

    fn conn(&self) -> Conn {
        Conn::new(self.addr, self.port, "postgres", Some(SUPERUSER_PW))
    }

    fn pg_ctl(&self, args: &[&str]) {
        let d = self.datadir().display().to_string();
        let mut a = vec!["-D", d.as_str()];
        a.extend(args);
        Runner::default()
            .run(&bin_cmd(Path::new(DEFAULT_BINDIR), "pg_ctl", &a))
            .expect("pg_ctl");
    }

    /// The root crontab (empty when there is none).
    fn crontab(&self) -> String {
        std::fs::read_to_string(self.sb.root().join("var/spool/cron/crontabs/root"))
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The stand-in Stash of the stash-server node, then the server.
        let pidfile = self.sb.root().join("var/run/stash.pid");
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        stop_now(Path::new(DEFAULT_BINDIR), &self.datadir());
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stash_server_and_standby_from_the_bundled_site_through_failover() {
    let free = |a| resources::pg::testing::free_port(a);
    let primary = Node::new("stash-server", "127.0.0.11", free("127.0.0.11"));
    let standby = Node::new("production-db-standby", "127.0.0.12", free("127.0.0.12"));
    primary.hiera(&primary, &standby);
    standby.hiera(&primary, &standby);

    // --noop on fresh roots: what would change, no failure, nothing written.
    for n in [&primary, &standby] {
        let before = n.sb.snapshot();
        let noop = n.agent(&["apply", "--noop", "--detailed-exitcodes"]);
        noop.code(2);
        assert!(!noop.all().contains("Error"), "{}: {}", n.name, noop.all());
        assert_eq!(before, n.sb.snapshot(), "{}: --noop wrote", n.name);
    }

    // Primary: initdb, settings, rules, start, role, database, backup cron,
    // Stash; its state in the default state dir.
    let first = primary.agent(&["apply", "--detailed-exitcodes"]);
    first.code(2);
    assert!(
        primary
            .sb
            .root()
            .join("var/lib/agent/last_run_report.json")
            .is_file(),
        "the default state dir"
    );
    let mut db = primary.conn().connect().expect("the primary answers");
    let roles: Vec<String> = db
        .query(
            "select rolname from pg_roles where rolname in ('stashuser','replicator') order by 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["replicator", "stashuser"]);
    let owner: String = db
        .query_one(
            "select pg_get_userbyid(datdba)::text from pg_database where datname = 'stashdb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, "stashuser");
    let hba_errors: i64 = db
        .query_one(
            "select count(*) from pg_hba_file_rules where error is not null",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(hba_errors, 0);
    let crontab = primary.crontab();
    assert!(
        crontab.contains("# agent: pg_backup weekly") && crontab.contains("@weekly"),
        "{crontab}"
    );
    assert!(
        !first.all().contains(SUPERUSER_PW),
        "a password leaked:\n{}",
        first.all()
    );

    // `agent resource pg_role|pg_database NAME`: what the server has, as
    // declarations that, applied (here through -e), change nothing.
    let port = primary.port.to_string();
    for (type_name, name, want) in [
        ("pg_role", "stashuser", "  login: true\n"),
        ("pg_database", "stashdb", "  owner: stashuser\n"),
    ] {
        let shown = Run::of(
            primary
                .sb
                .command(&[
                    "resource",
                    type_name,
                    name,
                    "--pg-host",
                    primary.addr,
                    "--pg-port",
                    &port,
                ])
                .env("PGPASSWORD", SUPERUSER_PW),
        );
        shown
            .code(0)
            .stdout_has(&format!("- {type_name}: {name}\n"))
            .stdout_has(want);
        assert!(!shown.all().contains(SUPERUSER_PW), "{}", shown.all());
        let declared = format!("{}  superuser_password: {SUPERUSER_PW}\n", shown.stdout);
        primary
            .agent(&["apply", "--noop", "--detailed-exitcodes", "-e", &declared])
            .code(0);
    }

    // Standby: basebackup, recovery settings, own port, start.
    let seeded = standby.agent(&["apply", "--detailed-exitcodes"]);
    seeded.code(2);
    assert!(standby.datadir().join("standby.signal").exists());
    let auto = std::fs::read_to_string(standby.datadir().join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("primary_conninfo") && auto.contains("promote_trigger_file"),
        "{auto}"
    );
    assert!(
        !seeded.all().contains("repl-Pa55-standby"),
        "the replication password leaked"
    );
    let mut replica = standby.conn().connect().expect("the standby answers");
    assert!(replica
        .query_one("select pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0));
    wait_for("the standby to stream", || {
        db.query(
            "select 1 from pg_stat_replication where state = 'streaming'",
            &[],
        )
        .unwrap()
        .len()
            == 1
    });
    db.batch_execute("create table heartbeat(n int); insert into heartbeat values (42)")
        .unwrap();
    wait_for("the row to replicate", || {
        replica
            .query("select n from heartbeat", &[])
            .map(|rows| rows.len() == 1)
            .unwrap_or(false)
    });

    // The initial backup the primary took, and a standby restored from it
    // (`standby_method: restore`): the seed's /mnt/db_bkup is a folder the
    // nodes share; here a copy of the primary's lands in the new node's root.
    let backups = primary.sb.root().join("mnt/db_bkup");
    let initial = resources::pg_backup::newest_backup(&backups)
        .unwrap()
        .expect("the primary's first apply took a backup");
    let restored = Node::new("production-db-standby2", "127.0.0.13", free("127.0.0.13"));
    restored.hiera(&primary, &restored);
    let data = restored
        .sb
        .site()
        .join("hiera/data/nodes/production-db-standby2.yaml");
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("pgsql_server::standby_method: restore\n");
    std::fs::write(&data, text).unwrap();
    common::copy_dir(&backups, &restored.sb.root().join("mnt/db_bkup"));
    restored
        .agent(&["apply", "--detailed-exitcodes"])
        .code(2)
        .stdout_has("restore of the newest backup in /mnt/db_bkup");
    assert_eq!(
        std::fs::read(restored.datadir().join("PG_VERSION")).unwrap(),
        std::fs::read(initial.join("PG_VERSION")).unwrap()
    );
    let mut from_backup = restored
        .conn()
        .connect()
        .expect("the restored standby answers");
    assert!(from_backup
        .query_one("select pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0));
    // It caught up by streaming: the row written after the backup is there.
    wait_for("the restored standby to replicate the row", || {
        from_backup
            .query("select n from heartbeat", &[])
            .map(|rows| rows.len() == 1)
            .unwrap_or(false)
    });
    restored.agent(&["apply", "--detailed-exitcodes"]).code(0);
    drop(from_backup);
    drop(restored);

    // Converged: a second apply changes nothing on either node. Roles and
    // database are the primary's duty: the standby leaves them alone.
    let p = format!("{}:{}", primary.addr, primary.port);
    let s = format!("{}:{}", standby.addr, standby.port);
    primary.agent(&["apply", "--detailed-exitcodes"]).code(0);
    standby
        .agent(&["apply", "--detailed-exitcodes"])
        .code(0)
        .stdout_has(&format!(
            "pg_role[stashuser]: left alone: a standby: {p} is the primary"
        ));

    // db_master follows the primary.
    let master = |n: &Node| n.agent(&["facts", "db_master"]);
    assert_eq!(master(&standby).stdout.trim(), p);
    drop(replica);
    drop(db);

    // Failover as the seed does it: stop the primary, touch the trigger file.
    primary.pg_ctl(&["-m", "fast", "-w", "stop"]);
    std::fs::write(standby.datadir().join("trigger_failover.txt"), "").unwrap();
    wait_for("the standby to be promoted", || {
        standby
            .conn()
            .connect()
            .and_then(|mut c| {
                c.query_one("select pg_is_in_recovery()", &[])
                    .map_err(|e| resources::pg::sql_error("q", e))
            })
            .map(|r| !r.get::<_, bool>(0))
            .unwrap_or(false)
    });
    assert_eq!(master(&standby).stdout.trim(), s);
    // Both nodes once more. The promoted node stays a primary (its apply
    // does not demote it) and takes over the primary's duties: the backups,
    // and the roles and database (a password changed by hand is put back).
    standby
        .conn()
        .connect()
        .unwrap()
        .batch_execute("alter role stashuser password 'changed-by-hand'")
        .unwrap();
    standby
        .agent(&["apply", "--detailed-exitcodes"])
        .code(2)
        .stdout_has("pg_backup[weekly]: crontab changed absent")
        .stdout_has("pg_role[stashuser]: password changed");
    standby.agent(&["apply", "--detailed-exitcodes"]).code(0);
    assert!(
        standby.crontab().contains("# agent: pg_backup weekly"),
        "{}",
        standby.crontab()
    );
    // The old primary converges to "fenced": its Stash follows the new
    // primary, its backup entry goes, what needs its server is left alone
    // with the reason, nothing fails; then a run with nothing to do, exit 0.
    let fenced = primary.agent(&["apply", "--detailed-exitcodes"]);
    fenced
        .code(2)
        .stdout_has(&format!("left alone: fenced: {s} is the primary"))
        .stdout_has(" 0 failed");
    assert!(
        !primary.crontab().contains("pg_backup weekly"),
        "{}",
        primary.crontab()
    );
    let props = primary
        .sb
        .read_root("var/atlassian/application-data/stash/shared/stash-config.properties");
    let pairs = resources::properties::parse(&props);
    assert_eq!(
        resources::properties::lookup(&pairs, "jdbc.url"),
        Some(format!("jdbc:postgresql://{s}/stashdb").as_str()),
        "{props}"
    );
    primary
        .agent(&["apply", "--detailed-exitcodes"])
        .code(0)
        .stdout_has("left alone: fenced:");
    assert!(
        !primary.datadir().join("postmaster.pid").exists(),
        "fenced: not restarted"
    );

    // The old primary comes back as a primary too: split brain.
    primary.pg_ctl(&["-l", "/dev/null", "-w", "start"]);
    let split = master(&standby);
    split
        .code(1)
        .stderr_has("split brain")
        .stderr_has(&p)
        .stderr_has(&s);
    let flag = standby.agent(&["facts", "db_split_brain"]);
    flag.code(0);
    assert_eq!(flag.stdout.trim(), "true");

    // Nothing reachable: the last known value, marked stale.
    primary.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    standby.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    let stale = standby.agent(&["facts", "db_master", "db_master_stale"]);
    stale
        .code(0)
        .stdout_has(&format!("db_master => {s}"))
        .stdout_has("db_master_stale => true");
}
