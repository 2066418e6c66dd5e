//! Two sites (issue 14), for real: Gold, a one-node Patroni cluster, and
//! GoldDR, a one-node Patroni *standby cluster* replicating from Gold's
//! leader, each with its own scope in one etcd member (the test bed's
//! `two_site`, addresses 127.0.0.101 and .104). The GoldDR node's
//! `standby_cluster` is the one the `patroni_node` role renders from Hiera.
//!
//! (a) GoldDR comes up as `standby_leader` streaming Gold's rows; the `dr`
//! fact's lag is numbers; with replay paused the lag passes
//! `dr::lag_alert_bytes` and `agent dr status` fires `dr_lag` (once).
//! (b) `agent dr promote` refuses while Gold's leader answers, naming it,
//! and changes nothing. (c) Gold killed (kill -9 of Patroni and the
//! postmaster), `agent dr promote` makes GoldDR a writable primary with
//! Gold's rows, records epoch 1 and fires `dr_promoted`; a second promote
//! finds nothing to do. (d) `--force` on a second standby cluster (.105)
//! while Gold is up: promoted, the epoch records it as forced, and so does
//! the hook.
//!
//! The daemons are started once for this binary (one test); the clusters
//! stop every process they started when dropped, also on a failed assertion.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agent::testbed::patroni::PatroniCluster;
use agent::testbed::two_site::{gold_options, golddr_options};
use common::{Run, Sandbox};
use serde_json::{json, Value};

const GOLD: [&str; 3] = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
const GOLDDR: [&str; 3] = ["127.0.0.104", "127.0.0.105", "127.0.0.106"];
const GOLDDR2: [&str; 3] = ["127.0.0.105", "127.0.0.106", "127.0.0.104"];

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

fn pg(c: &PatroniCluster) -> postgres::Client {
    let n = &c.nodes[0];
    resources::pg::Conn::new(n.addr, n.pg_port, "postgres", Some(&c.password))
        .connect()
        .unwrap()
}

fn count(c: &PatroniCluster) -> Option<i64> {
    let n = &c.nodes[0];
    let mut client = resources::pg::Conn::new(n.addr, n.pg_port, "postgres", Some(&c.password))
        .connect()
        .ok()?;
    client
        .query_one("select count(*) from dr_rows", &[])
        .ok()
        .map(|r| r.get(0))
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

/// A `patroni_config` declaring GoldDR's standby_cluster (Gold's leader,
/// and one key more than the test bed bootstrapped it with).
fn standby_config(golddr: &PatroniCluster, gold: &PatroniCluster) -> String {
    format!(
        "- patroni_config: golddr\n  api: http://{}\n  settings: {{loop_wait: 2}}\n  \
         standby_cluster: {{host: {}, port: {}, create_replica_methods: [basebackup]}}\n",
        golddr.nodes[0].rest(),
        gold.nodes[0].addr,
        gold.nodes[0].pg_port
    )
}

/// The GoldDR node's sandbox: the bundled site with `golddr1` (or
/// `golddr2`) as a `patroni_node`, and hooks that write what they get.
struct Site {
    sb: Sandbox,
    node: &'static str,
}

impl Site {
    fn new(node: &'static str) -> Site {
        let sb = Sandbox::bundled();
        sb.site_file(
            "manifests/site.yaml",
            &format!("nodes:\n  {node}: [roles/patroni_node]\n"),
        );
        let hooks = sb.path().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for (name, out) in [("dr_promoted", "promoted.json"), ("dr_lag", "lag.jsonl")] {
            let p = hooks.join(name);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\n{{ cat; echo; }} >> '{}'\n",
                    sb.path().join(out).display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Site { sb, node }
    }

    /// The node's Hiera: this site's Patroni (`me`, once started), Gold's
    /// leader as its standby_cluster, Gold's REST API.
    fn hiera(&self, addr: &str, me: Option<&PatroniCluster>, gold: &PatroniCluster) {
        let (rest, pgp) = me.map_or((8008, 5432), |c| (c.nodes[0].rest_port, c.nodes[0].pg_port));
        let g = &gold.nodes[0];
        self.sb.site_file(
            &format!("hiera/data/nodes/{}.yaml", self.node),
            &format!(
                "patroni::ip: {addr}\npatroni::scope: {node}\npatroni::rest_port: {rest}\n\
                 patroni::pg_port: {pgp}\n\
                 patroni::standby_cluster: {{host: {gh}, port: {gp}}}\n\
                 dr::gold_patroni: ['{grest}']\ndr::lag_alert_bytes: 65536\n\
                 dr::promote_timeout: 60\ndb_cluster::nodes: ['{addr}:{pgp}']\n\
                 pgsql_server::postgres_password: '{pw}'\n\
                 etcd::members:\n  - {{name: e1, ip: 127.0.0.1, client_port: {ep}, peer_port: 1}}\n",
                node = self.node,
                gh = g.addr,
                gp = g.pg_port,
                grest = g.rest(),
                pw = gold.password,
                ep = gold.etcd[0].client_port,
            ),
        );
    }

    fn agent(&self, args: &[&str]) -> Run {
        let hooks = self.sb.path().join("hooks");
        let mut all = args.to_vec();
        all.extend(["--node", self.node]);
        if args[0] == "dr" || args[0] == "watch" {
            all.extend(["--hooks-dir", hooks.to_str().unwrap()]);
        }
        self.sb.agent(&all)
    }

    /// `bootstrap.dcs.standby_cluster` of the patroni.yml the role renders
    /// (only the files are applied: the test bed runs Patroni).
    fn rendered_standby_cluster(&self) -> Value {
        self.agent(&["apply", "--tags", "file"]).code(0);
        let text = self.sb.read_root("etc/patroni/config.yml");
        let doc = agent::yaml::parse(&text).unwrap().to_json();
        doc["bootstrap"]["dcs"]["standby_cluster"].clone()
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.sb.path().join(name)).ok()
    }

    fn epoch(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.sb.state().join("dr-epoch.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

fn start_golddr(site: &Site, gold: &PatroniCluster, addrs: [&'static str; 3]) -> PatroniCluster {
    site.hiera(addrs[0], None, gold);
    let standby = site.rendered_standby_cluster();
    assert_eq!(
        standby,
        json!({"host": gold.nodes[0].addr, "port": gold.nodes[0].pg_port}),
        "the role renders patroni::standby_cluster into bootstrap.dcs"
    );
    let dir = std::env::temp_dir().join(format!("agent-dr-{}-{}", site.node, std::process::id()));
    let c = PatroniCluster::start(
        &dir,
        golddr_options(gold, site.node, addrs, 1, standby),
        true,
    )
    .expect("the GoldDR standby cluster starts");
    site.hiera(addrs[0], Some(&c), gold);
    c
}

#[test]
fn golddr_streams_from_gold_and_is_promoted_by_hand_only_once_gold_is_gone() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "Patroni runs as the postgres user: run this test as root"
    );
    let dir = std::env::temp_dir().join(format!("agent-dr-gold-{}", std::process::id()));
    // Declared first, dropped last: the standby clusters use its etcd.
    let mut gold = PatroniCluster::start(&dir, gold_options("gold", GOLD, 1), true)
        .expect("the Gold cluster starts");
    pg(&gold)
        .batch_execute(
            "create table dr_rows (i int); insert into dr_rows select generate_series(1, 100)",
        )
        .unwrap();

    // (a) GoldDR from the role's standby_cluster: a standby leader with
    // Gold's rows, and rows written later.
    let site = Site::new("golddr1");
    let golddr = start_golddr(&site, &gold, GOLDDR);
    assert_eq!(
        role(&golddr),
        "standby_leader",
        "{:?}",
        golddr.cluster_doc()
    );
    assert_eq!(
        config(&golddr)["standby_cluster"]["port"],
        gold.nodes[0].pg_port
    );
    wait_for("Gold's 100 rows on GoldDR", Duration::from_secs(60), || {
        (count(&golddr)? == 100).then_some(())
    });
    pg(&gold)
        .batch_execute("insert into dr_rows select generate_series(101, 150)")
        .unwrap();
    wait_for(
        "rows written on Gold since",
        Duration::from_secs(30),
        || (count(&golddr)? == 150).then_some(()),
    );
    let facts = site.agent(&["facts", "--json", "dr"]);
    facts.code(0);
    let dr: Value = serde_json::from_str(&facts.stdout).unwrap();
    let dr = if dr.get("dr").is_some() {
        dr["dr"].clone()
    } else {
        dr
    };
    assert_eq!(dr["standby"], true, "{dr}");
    assert!(dr["lag_bytes"].is_u64(), "{dr}");
    assert!(dr["lag_s"].is_number(), "{dr}");
    assert_eq!(dr["gold"], gold.nodes[0].pg(), "{dr}");
    assert!(dr["epoch"].is_null(), "{dr}");
    site.agent(&["dr", "status"]).code(0).stdout_has("lag ");

    // A mistyped standby_cluster key fails the compile, naming the file
    // and the key to use; patroni.yml is left as it was.
    let node_data = format!("hiera/data/nodes/{}.yaml", site.node);
    let good = std::fs::read_to_string(site.sb.site().join(&node_data)).unwrap();
    site.sb
        .site_file(&node_data, &good.replace("{host: ", "{hots: "));
    let before = site.sb.read_root("etc/patroni/config.yml");
    site.agent(&["apply", "--tags", "file"])
        .code(1)
        .stderr_has("manifests/profiles/patroni.yaml:")
        .stderr_has("did you mean 'standby_cluster.host'");
    assert_eq!(site.sb.read_root("etc/patroni/config.yml"), before);
    site.sb.site_file(&node_data, &good);

    // patroni_config converges standby_cluster on the running standby
    // cluster (a key added), then finds nothing to do.
    let converge = standby_config(&golddr, &gold);
    site.agent(&["apply", "--detailed-exitcodes", "-e", &converge])
        .code(2)
        .stdout_has("standby_cluster.create_replica_methods changed absent to");
    site.agent(&["apply", "--detailed-exitcodes", "-e", &converge])
        .code(0);
    assert_eq!(
        config(&golddr)["standby_cluster"]["create_replica_methods"],
        json!(["basebackup"])
    );
    assert_eq!(role(&golddr), "standby_leader");

    // Replay paused on GoldDR, 2 MB written on Gold: the lag passes
    // dr::lag_alert_bytes (64 kB), `dr status` exits 1 and fires dr_lag,
    // once; replay resumed, it is within bounds again.
    // (Patroni resumes a paused replay at its next loop unless the cluster
    // is in maintenance mode: paused as an operator would.)
    patch_config(&golddr, json!({"pause": true}));
    pg(&golddr)
        .batch_execute("select pg_wal_replay_pause()")
        .unwrap();
    pg(&gold)
        .batch_execute(
            "create table dr_pad as select repeat('x', 1000) as pad from generate_series(1, 2000)",
        )
        .unwrap();
    // `agent watch` checks at each heartbeat (a role without resources:
    // the test bed, not the agent, runs Patroni here).
    site.sb
        .site_file("manifests/roles/dr_watch.yaml", "resources: []\n")
        .site_file(
            "manifests/site.yaml",
            "nodes:\n  golddr1: [roles/dr_watch]\n",
        );
    site.agent(&["watch", "--max-time", "3s", "--heartbeat", "1s"])
        .code(0);
    let watched = site.read("lag.jsonl").unwrap_or_default();
    assert_eq!(
        watched.lines().filter(|l| l.contains("dr_lag")).count(),
        1,
        "{watched}"
    );
    let status = site.agent(&["dr", "status", "--json"]);
    status.code(1).stderr_has("> dr::lag_alert_bytes 65536");
    let lag: Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(lag["lag_bytes"].as_u64().unwrap() > 65536, "{lag}");
    site.agent(&["dr", "status"]).code(1);
    let fired = site.read("lag.jsonl").unwrap_or_default();
    let fired: Vec<Value> = fired
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        fired.len(),
        1,
        "dr_lag fires once while the lag stays over: {fired:?}"
    );
    assert_eq!(fired[0]["event"], "dr_lag");
    assert!(fired[0]["dr"]["lag_bytes"].as_u64().unwrap() > 65536);
    assert_eq!(fired[0]["agent_node"], "golddr1");
    pg(&golddr)
        .batch_execute("select pg_wal_replay_resume()")
        .unwrap();
    patch_config(&golddr, json!({"pause": null}));
    wait_for(
        "the lag back within bounds",
        Duration::from_secs(30),
        || (site.agent(&["dr", "status"]).code == 0).then_some(()),
    );

    // (d) first (it needs Gold up): a second standby cluster promoted with
    // --force while Gold answers: a split brain, recorded as such.
    let site2 = Site::new("golddr2");
    let golddr2 = start_golddr(&site2, &gold, GOLDDR2);
    assert_eq!(role(&golddr2), "standby_leader");
    let forced = site2.agent(&["dr", "promote", "--force", "--reason", "drill"]);
    forced
        .code(0)
        .stdout_has("golddr2 promoted (FORCED)")
        .stderr_has("two writable primaries");
    let e = site2.epoch().expect("the epoch file");
    assert_eq!(e["epoch"], 1);
    assert_eq!(e["forced"], true);
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("drill (forced while Gold's"),
        "{e}"
    );
    let hook: Value = serde_json::from_str(site2.read("promoted.json").unwrap().trim()).unwrap();
    assert_eq!(hook["event"], "dr_promoted");
    assert_eq!(hook["forced"], true);
    assert!(
        hook["gold_alive"]
            .as_str()
            .unwrap()
            .contains("answers /primary"),
        "{hook}"
    );
    pg(&golddr2)
        .batch_execute("insert into dr_rows values (-1)")
        .expect("the forced site takes writes");
    drop(golddr2);

    // (b) Gold's leader answers: refused, naming it; nothing changed.
    let refused = site.agent(&["dr", "promote"]);
    refused
        .code(1)
        .stderr_has("refusing to promote golddr1")
        .stderr_has(&format!(
            "Gold's Patroni at http://{}",
            gold.nodes[0].rest()
        ))
        .stderr_has(&format!("{} ({})", gold.nodes[0].name, gold.nodes[0].pg()))
        .stderr_has("Nothing was changed");
    assert_eq!(role(&golddr), "standby_leader");
    assert!(config(&golddr)["standby_cluster"].is_object());
    assert!(site.epoch().is_none(), "no epoch recorded");
    assert!(site.read("promoted.json").is_none(), "no hook fired");

    // (c) Gold killed: promoted, writable, Gold's rows kept, epoch 1, hook.
    gold.kill_node(0);
    let promoted = site.agent(&["dr", "promote", "--reason", "Gold lost"]);
    promoted.code(0).stdout_has(&format!(
        "golddr1 promoted: {} is a writable primary; epoch 1",
        golddr.nodes[0].pg()
    ));
    assert!(!promoted.stdout.contains("FORCED"));
    assert!(config(&golddr)
        .get("standby_cluster")
        .is_none_or(Value::is_null));
    assert_eq!(role(&golddr), "leader");
    let mut c = pg(&golddr);
    c.batch_execute("insert into dr_rows values (0)")
        .expect("writable");
    let n: i64 = c
        .query_one("select count(*) from dr_rows", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 151, "Gold's 150 rows and ours");
    let e = site.epoch().expect("the epoch file");
    assert_eq!(e["epoch"], 1);
    assert_eq!(e["forced"], false);
    assert_eq!(e["reason"], "Gold lost");
    assert_eq!(e["leader"], golddr.nodes[0].pg());
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let hook: Value = serde_json::from_str(site.read("promoted.json").unwrap().trim()).unwrap();
    assert_eq!(hook["event"], "dr_promoted");
    assert_eq!(hook["epoch"], 1);
    assert_eq!(hook["forced"], false);
    assert_eq!(hook["scope"], "golddr1");
    assert_eq!(hook["leader"], golddr.nodes[0].pg());
    assert_eq!(hook["gold"], gold.nodes[0].pg());
    // The role's patroni_config does not put standby_cluster back.
    site.agent(&[
        "apply",
        "--detailed-exitcodes",
        "-e",
        &standby_config(&golddr, &gold),
    ])
    .code(0);
    assert!(config(&golddr)
        .get("standby_cluster")
        .is_none_or(Value::is_null));
    assert_eq!(role(&golddr), "leader");
    // Again: nothing to promote, the epoch stays.
    site.agent(&["dr", "promote"])
        .code(0)
        .stdout_has("nothing to promote (epoch 1)");
    assert_eq!(site.epoch().unwrap()["epoch"], 1);
    assert!(Path::new(&site.sb.state()).join("dr-epoch.json").exists());
    let dr: Value = serde_json::from_str(&site.agent(&["facts", "--json", "dr"]).stdout).unwrap();
    let dr = if dr.get("dr").is_some() {
        dr["dr"].clone()
    } else {
        dr
    };
    assert_eq!(dr["standby"], false, "{dr}");
    assert_eq!(dr["epoch"], 1, "{dr}");
}
