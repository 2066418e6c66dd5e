//! A planned switchover between two sites and back (issue 14, item 4),
//! for real: Gold, a one-node Patroni cluster with its own one-member
//! etcd (127.0.0.131), and GoldDR, a one-node Patroni standby cluster
//! replicating from it under its own scope in that etcd (127.0.0.134).
//!
//! A writer commits a row every 50 ms to whichever site takes it
//! (retrying on the other), a sampler asks both sites every 100 ms whether
//! they are writable (not in recovery). Then:
//! - `agent dr switchover` refuses, changing nothing, when Gold's leader
//!   does not answer (`--peer` naming a dead port) and when GoldDR lags
//!   more than `dr::switchover_max_lag_bytes` (replay paused);
//! - a switchover that cannot finish in time (`dr::promote_timeout`
//!   0.5 s) is undone: Gold writable again, GoldDR its standby cluster;
//! - `agent dr switchover` on GoldDR: GoldDR writable, Gold a standby
//!   leader streaming from it (a row written on GoldDR shows on Gold), no
//!   pg_rewind in Gold's Patroni log, epoch 1 with the demotion token,
//!   `dr_switchover` fired;
//! - `agent dr failback` on Gold: the same the other way;
//! - every acknowledged row is on the writable site at the end, and no
//!   sample ever saw both sites writable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::testbed::patroni::PatroniCluster;
use agent::testbed::two_site::{gold_options, golddr_options};
use common::{Run, Sandbox};
use serde_json::{json, Value};

const GOLD: [&str; 3] = ["127.0.0.131", "127.0.0.132", "127.0.0.133"];
const GOLDDR: [&str; 3] = ["127.0.0.134", "127.0.0.135", "127.0.0.136"];

fn wait_for<T>(what: &str, within: Duration, mut ok: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Clone)]
struct Db {
    addr: String,
    port: u16,
    password: String,
}

impl Db {
    fn of(c: &PatroniCluster) -> Db {
        Db {
            addr: c.nodes[0].addr.to_string(),
            port: c.nodes[0].pg_port,
            password: c.password.clone(),
        }
    }
    fn connect(&self, timeout: Duration) -> Option<postgres::Client> {
        let mut c =
            resources::pg::Conn::new(&self.addr, self.port, "postgres", Some(&self.password));
        c.connect_timeout = timeout;
        c.connect().ok()
    }
    fn client(&self) -> postgres::Client {
        self.connect(Duration::from_secs(5)).expect("connects")
    }
    fn rows(&self) -> Option<Vec<i64>> {
        let mut c = self.connect(Duration::from_secs(2))?;
        let rows = c.query("select i from sw_rows", &[]).ok()?;
        Some(rows.iter().map(|r| r.get(0)).collect())
    }
    fn writable(&self) -> Option<bool> {
        let mut c = self.connect(Duration::from_millis(500))?;
        c.query_one("select not pg_is_in_recovery()", &[])
            .ok()
            .map(|r| r.get(0))
    }
}

fn role(c: &PatroniCluster) -> String {
    c.cluster_doc().unwrap_or_default()["members"][0]["role"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn config(c: &PatroniCluster) -> Value {
    ureq::get(&format!("http://{}/config", c.nodes[0].rest()))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap()
}

fn patch_config(c: &PatroniCluster, patch: Value) {
    ureq::patch(&format!("http://{}/config", c.nodes[0].rest()))
        .send_json(&patch)
        .unwrap();
    wait_for("the patched configuration", Duration::from_secs(20), || {
        let have = config(c);
        patch
            .as_object()?
            .iter()
            .all(|(k, v)| have.get(k).unwrap_or(&Value::Null) == v)
            .then_some(())
    });
}

fn is_standby_cluster(c: &PatroniCluster) -> bool {
    config(c)
        .get("standby_cluster")
        .is_some_and(|v| v.is_object())
}

fn patroni_log(c: &PatroniCluster) -> String {
    std::fs::read_to_string(c.nodes[0].dir.join("patroni.log")).unwrap_or_default()
}

/// One site's agent: a node with a role of no resources (the test bed
/// runs Patroni), its Hiera naming its Patroni and the other site's, and
/// a hook writing what `dr_switchover` gets.
struct Site {
    sb: Sandbox,
    node: &'static str,
}

impl Site {
    fn new(
        node: &'static str,
        me: &PatroniCluster,
        other_key: &str,
        other: &PatroniCluster,
    ) -> Site {
        let sb = Sandbox::bundled();
        sb.site_file("manifests/roles/dr_site.yaml", "resources: []\n")
            .site_file(
                "manifests/site.yaml",
                &format!("nodes:\n  {node}: [roles/dr_site]\n"),
            );
        let hooks = sb.path().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let p = hooks.join("dr_switchover");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n{{ cat; echo; }} >> '{}'\n",
                sb.path().join("switchover.jsonl").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = &me.nodes[0];
        sb.site_file(
            &format!("hiera/data/nodes/{node}.yaml"),
            &format!(
                "patroni::ip: {ip}\npatroni::scope: {scope}\npatroni::rest_port: {rest}\n\
                 patroni::pg_port: {pgp}\n{other_key}: ['{orest}']\n\
                 dr::promote_timeout: 90\npgsql_server::postgres_password: '{pw}'\n",
                ip = n.addr,
                scope = me.opts.scope,
                rest = n.rest_port,
                pgp = n.pg_port,
                orest = other.nodes[0].rest(),
                pw = me.password,
            ),
        );
        Site { sb, node }
    }

    fn agent(&self, args: &[&str]) -> Run {
        let hooks = self.sb.path().join("hooks");
        let mut all = args.to_vec();
        all.extend(["--node", self.node, "--hooks-dir", hooks.to_str().unwrap()]);
        self.sb.agent(&all)
    }

    fn set_hiera(&self, key: &str, value: &str) {
        let rel = format!("hiera/data/nodes/{}.yaml", self.node);
        let path = self.sb.site().join(&rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        self.sb.site_file(&rel, &format!("{kept}{key}: {value}\n"));
    }

    fn epoch(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.sb.state().join("dr-epoch.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn hooks(&self) -> Vec<Value> {
        std::fs::read_to_string(self.sb.path().join("switchover.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The writer: a row every 50 ms to whichever site takes it.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(sites: [Db; 2]) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(vec![]));
        let (st, ac) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut clients: [Option<postgres::Client>; 2] = [None, None];
            let mut at = 0usize;
            let mut i: i64 = 1_000_000;
            while !st.load(Ordering::SeqCst) {
                let mut done = false;
                for k in [at, 1 - at] {
                    if clients[k].is_none() {
                        clients[k] = sites[k].connect(Duration::from_millis(500));
                    }
                    let Some(c) = clients[k].as_mut() else {
                        continue;
                    };
                    match c.execute("insert into sw_rows values ($1)", &[&i]) {
                        Ok(_) => {
                            ac.lock().unwrap().push(i);
                            at = k;
                            done = true;
                            break;
                        }
                        Err(_) => clients[k] = None,
                    }
                }
                if done {
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> Vec<i64> {
        self.acked.lock().unwrap().clone()
    }

    fn stop(&mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked()
    }
}

/// The sampler: both sites' writability every 100 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Sampler {
    fn start(sites: [Db; 2]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut samples, mut both) = (0u64, 0u64);
            while !st.load(Ordering::SeqCst) {
                let w: Vec<bool> = sites
                    .iter()
                    .map(|d| d.writable().unwrap_or(false))
                    .collect();
                samples += 1;
                if w[0] && w[1] {
                    both += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (samples, both)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// (samples, samples with both sites writable).
    fn stop(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or((0, 0), |t| t.join().unwrap())
    }
}

/// Every acknowledged row is on `db` (waiting for it to catch up).
fn all_there(what: &str, db: &Db, acked: &[i64]) {
    wait_for(what, Duration::from_secs(30), || {
        let have: std::collections::HashSet<i64> = db.rows()?.into_iter().collect();
        let lost: Vec<_> = acked.iter().filter(|i| !have.contains(i)).collect();
        lost.is_empty().then_some(())
    });
}

/// Runs a switchover or failback on `site` while the writer writes and the
/// sampler samples; returns (seconds, rows acked during it).
fn switch(site: &Site, cmd: &str, sites: [Db; 2]) -> (f64, usize) {
    let mut writer = Writer::start(sites.clone());
    let mut sampler = Sampler::start(sites.clone());
    wait_for("rows written before", Duration::from_secs(20), || {
        (writer.acked().len() >= 20).then_some(())
    });
    let started = Instant::now();
    let first = writer.acked().len();
    let run = site.agent(&["dr", cmd]);
    let secs = started.elapsed().as_secs_f64();
    // Rows written after it, on the new writable site.
    let before = writer.acked().len();
    wait_for("rows written after", Duration::from_secs(30), || {
        (writer.acked().len() >= before + 20).then_some(())
    });
    let acked = writer.stop();
    let (samples, both) = sampler.stop();
    run.code(0).stdout_has(&format!("{cmd}:"));
    assert_eq!(
        both, 0,
        "{both} of {samples} samples saw both sites writable during the {cmd}"
    );
    assert!(samples > 10, "{samples} samples");
    let (new, old) = if cmd == "switchover" {
        (&sites[1], &sites[0])
    } else {
        (&sites[0], &sites[1])
    };
    all_there(
        &format!("every acked row on the new primary after the {cmd}"),
        new,
        &acked,
    );
    all_there(
        &format!("every acked row on the demoted site after the {cmd}"),
        old,
        &acked,
    );
    println!(
        "{cmd}: {secs:.1} s (agent), {} rows acked ({} while it ran), lost = 0, {samples} writability samples, 0 with both writable",
        acked.len(),
        before - first
    );
    (secs, acked.len())
}

#[test]
fn switchover_and_failback_lose_no_row_and_need_no_rewind() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "Patroni runs as the postgres user: run this test as root"
    );
    let dir = std::env::temp_dir().join(format!("agent-drsw-gold-{}", std::process::id()));
    // Declared first, dropped last: GoldDR uses its etcd.
    let gold = PatroniCluster::start(&dir, gold_options("gold", GOLD, 1), true)
        .expect("the Gold cluster starts");
    let gdb = Db::of(&gold);
    gdb.client()
        .batch_execute(
            "create table sw_rows (i int8); insert into sw_rows select generate_series(1, 100)",
        )
        .unwrap();
    let standby = json!({"host": gold.nodes[0].addr, "port": gold.nodes[0].pg_port});
    let ddir = std::env::temp_dir().join(format!("agent-drsw-golddr-{}", std::process::id()));
    let golddr = PatroniCluster::start(
        &ddir,
        golddr_options(&gold, "golddr", GOLDDR, 1, standby),
        true,
    )
    .expect("the GoldDR standby cluster starts");
    let ddb = Db::of(&golddr);
    assert_eq!(role(&golddr), "standby_leader");
    wait_for("Gold's rows on GoldDR", Duration::from_secs(60), || {
        (ddb.rows()?.len() == 100).then_some(())
    });
    let drsite = Site::new("golddr1", &golddr, "dr::gold_patroni", &gold);
    let goldsite = Site::new("gold1", &gold, "dr::golddr_patroni", &golddr);
    let sites = [gdb.clone(), ddb.clone()];

    // Refused, nothing changed: Gold's leader does not answer (a port
    // where nothing listens)...
    drsite
        .agent(&["dr", "switchover", "--peer", "127.0.0.131:1"])
        .code(1)
        .stderr_has("refusing the switchover of golddr")
        .stderr_has("not a planned switchover")
        .stderr_has("agent dr promote")
        .stderr_has("Nothing was changed");
    // ... or GoldDR lags more than the bound (replay paused, 2 MB on Gold).
    patch_config(&golddr, json!({"pause": true}));
    ddb.client()
        .batch_execute("select pg_wal_replay_pause()")
        .unwrap();
    gdb.client()
        .batch_execute(
            "create table sw_pad as select repeat('x', 1000) as pad from generate_series(1, 2000)",
        )
        .unwrap();
    drsite.set_hiera("dr::switchover_max_lag_bytes", "65536");
    drsite
        .agent(&["dr", "switchover"])
        .code(1)
        .stderr_has("more than dr::switchover_max_lag_bytes 65536")
        .stderr_has("Nothing was changed");
    for (c, what) in [(&gold, "Gold"), (&golddr, "GoldDR")] {
        assert!(
            config(c)["postgresql"]["parameters"]
                .get("default_transaction_read_only")
                .is_none(),
            "{what}'s configuration untouched"
        );
    }
    assert!(!is_standby_cluster(&gold) && is_standby_cluster(&golddr));
    assert_eq!(gdb.writable(), Some(true));
    assert!(drsite.epoch().is_none() && drsite.hooks().is_empty());
    ddb.client()
        .batch_execute("select pg_wal_replay_resume()")
        .unwrap();
    patch_config(&golddr, json!({"pause": null}));
    drsite.set_hiera("dr::switchover_max_lag_bytes", "16777216");

    // A switchover that cannot finish in time (dr::promote_timeout 0.5 s:
    // Gold is not back as a standby leader by then) is undone: Gold
    // writable again (its standby_cluster removed), GoldDR still its
    // standby cluster, streaming; no epoch, no hook.
    drsite.set_hiera("dr::promote_timeout", "0.5");
    drsite
        .agent(&["dr", "switchover"])
        .code(1)
        .stderr_has("the switchover was undone")
        .stderr_has(&format!(
            "{} is a writable primary again",
            gold.nodes[0].pg()
        ));
    drsite.set_hiera("dr::promote_timeout", "90");
    wait_for("Gold writable again", Duration::from_secs(60), || {
        (gdb.writable()? && role(&gold) == "leader").then_some(())
    });
    assert!(!is_standby_cluster(&gold) && is_standby_cluster(&golddr));
    assert!(config(&gold)["postgresql"]["parameters"]
        .get("default_transaction_read_only")
        .is_none());
    assert!(drsite.epoch().is_none() && drsite.hooks().is_empty());
    gdb.client()
        .batch_execute("insert into sw_rows values (-3)")
        .unwrap();
    wait_for(
        "GoldDR streaming from Gold again",
        Duration::from_secs(60),
        || ddb.rows()?.contains(&-3).then_some(()),
    );
    let timeline = |db: &Db| -> i64 {
        db.client()
            .query_one("select timeline_id::int8 from pg_control_checkpoint()", &[])
            .unwrap()
            .get(0)
    };
    gdb.client().batch_execute("checkpoint").unwrap();
    let tl = timeline(&gdb);
    println!("after the undone switchover Gold is on timeline {tl}");

    let rewinds_before = patroni_log(&gold).matches("pg_rewind").count();

    // The switchover, on GoldDR.
    let (sw_secs, _) = switch(&drsite, "switchover", sites.clone());
    assert_eq!(role(&golddr), "leader");
    assert!(!is_standby_cluster(&golddr));
    assert_eq!(role(&gold), "standby_leader");
    assert_eq!(
        config(&gold)["standby_cluster"],
        json!({"host": golddr.nodes[0].addr, "port": golddr.nodes[0].pg_port})
    );
    assert!(config(&gold)["postgresql"]["parameters"]
        .get("default_transaction_read_only")
        .is_none());
    ddb.client()
        .batch_execute("insert into sw_rows values (-1)")
        .unwrap();
    wait_for(
        "a row written on GoldDR on Gold",
        Duration::from_secs(30),
        || gdb.rows()?.contains(&-1).then_some(()),
    );
    let e = drsite.epoch().expect("GoldDR's epoch file");
    assert_eq!(e["epoch"], 1);
    assert_eq!(e["leader"], golddr.nodes[0].pg());
    let token = &e["token"]["demotion"];
    assert_eq!(e["token"]["kind"], "switchover");
    assert_eq!(token["timeline"], tl);
    assert_eq!(token["demoted"], gold.nodes[0].pg());
    assert!(
        token["system_identifier"].as_str().unwrap().len() > 10,
        "{e}"
    );
    assert!(token["end_lsn"].as_str().unwrap().contains('/'), "{e}");
    let hooks = drsite.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["event"], "dr_switchover");
    assert_eq!(hooks[0]["kind"], "switchover");
    assert_eq!(hooks[0]["epoch"], 1);
    // Again: nothing to do.
    drsite
        .agent(&["dr", "switchover"])
        .code(0)
        .stdout_has("already writable");

    // The failback, on Gold.
    let (fb_secs, _) = switch(&goldsite, "failback", sites.clone());
    assert_eq!(role(&gold), "leader");
    assert!(!is_standby_cluster(&gold));
    assert_eq!(role(&golddr), "standby_leader");
    assert_eq!(
        config(&golddr)["standby_cluster"],
        json!({"host": gold.nodes[0].addr, "port": gold.nodes[0].pg_port})
    );
    gdb.client()
        .batch_execute("insert into sw_rows values (-2)")
        .unwrap();
    wait_for(
        "a row written on Gold on GoldDR",
        Duration::from_secs(30),
        || ddb.rows()?.contains(&-2).then_some(()),
    );
    let e = goldsite.epoch().expect("Gold's epoch file");
    assert_eq!(e["epoch"], 1);
    assert_eq!(e["token"]["kind"], "failback");
    assert_eq!(e["token"]["demotion"]["timeline"], tl + 1);
    assert_eq!(e["token"]["demotion"]["demoted"], golddr.nodes[0].pg());
    assert_eq!(goldsite.hooks()[0]["kind"], "failback");

    let log = patroni_log(&gold);
    // How Patroni demoted Gold (README: why the token is the end of WAL).
    for l in log.lines().filter(|l| l.contains("Demoting self")) {
        println!("Gold's Patroni: {l}");
    }
    assert_eq!(
        log.matches("pg_rewind").count(),
        rewinds_before,
        "no pg_rewind on Gold: {log}"
    );
    let dlog = patroni_log(&golddr);
    assert!(
        !dlog.contains("running pg_rewind"),
        "no pg_rewind on GoldDR: {dlog}"
    );
    println!("switchover {sw_secs:.1} s, failback {fb_secs:.1} s, lost 0");
}
