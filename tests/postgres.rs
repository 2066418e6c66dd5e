//! PostgreSQL end to end, from the bundled manifests and Hiera alone: a
//! primary (`roles/db_primary`) and a hot standby (`roles/db_standby`), each
//! its own node (own `--root`, own loopback address and port), real
//! streaming replication, then `db_master` through promotion and split brain.

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
        sb.site_file(
            "manifests/site.yaml",
            "nodes:\n  pg-primary: [roles/db_primary]\n  pg-standby: [roles/db_standby]\n",
        );
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

    /// Node data: own address/port, data dir inside the sandbox, loopback ACLs.
    fn hiera(&self, primary: &Node, nodes: &str) {
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
db_cluster::nodes: {nodes}
db_cluster::probe_timeout_ms: 500
db_cluster::self: '{addr}:{port}'
"#,
            port = self.port,
            addr = self.addr,
            sock = self.datadir().display(),
            trigger = self.datadir().join("trigger_failover.txt").display(),
            paddr = primary.addr,
            pport = primary.port,
        );
        self.sb
            .site_file(&format!("hiera/data/nodes/{}.yaml", self.name), &data);
    }

    fn agent(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--node", self.name]);
        self.sb.agent(&all)
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
}

impl Drop for Node {
    fn drop(&mut self) {
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
fn primary_and_standby_from_manifests_then_db_master_through_failover() {
    let free = |a| resources::pg::testing::free_port(a);
    let primary = Node::new("pg-primary", "127.0.0.11", free("127.0.0.11"));
    let standby = Node::new("pg-standby", "127.0.0.12", free("127.0.0.12"));
    let nodes = format!(
        "['{}:{}', '{}:{}']",
        primary.addr, primary.port, standby.addr, standby.port
    );
    primary.hiera(&primary, &nodes);
    standby.hiera(&primary, &nodes);

    // Primary: initdb, settings, rules, start, role, database, backup cron.
    let first = primary.agent(&["apply", "--detailed-exitcodes"]);
    first.code(2);
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
    let crontab = primary.sb.read_root("var/spool/cron/crontabs/root");
    assert!(
        crontab.contains("# agent: pg_backup weekly") && crontab.contains("@weekly"),
        "{crontab}"
    );
    assert!(
        !first.all().contains(SUPERUSER_PW),
        "a password leaked:\n{}",
        first.all()
    );

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

    // Converged: a second apply changes nothing on either node.
    primary.agent(&["apply", "--detailed-exitcodes"]).code(0);
    standby.agent(&["apply", "--detailed-exitcodes"]).code(0);

    // db_master follows the primary.
    let master = |n: &Node| n.agent(&["facts", "db_master"]);
    let p = format!("{}:{}", primary.addr, primary.port);
    let s = format!("{}:{}", standby.addr, standby.port);
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
    // The promoted node stays a primary: its next apply does not demote it,
    // and takes over the primary's duty, the backups (then nothing more).
    standby
        .agent(&["apply", "--detailed-exitcodes"])
        .code(2)
        .stdout_has("pg_backup[weekly]: crontab changed absent");
    standby.agent(&["apply", "--detailed-exitcodes"]).code(0);

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
