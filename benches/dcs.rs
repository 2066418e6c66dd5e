//! Beyond one machine (issue 20 item 5): 100 simulated application nodes
//! on one real Patroni cluster (3 etcd members, 3 Patroni nodes, PostgreSQL
//! 15 on loopback), finding the primary two ways:
//! - the probe source: each node polls every DB node with
//!   `pg_is_in_recovery()` every 250 ms (`agent watch`'s default interval);
//!   figures: connections per second each DB node takes (counted by the
//!   server: `pg_stat_database.sessions`), and the time one resolution takes;
//! - the etcd source: each node holds one etcd watch on the leader key and
//!   reads etcd only when it changes; figures: DB connections (the same
//!   server counter), wake-ups while idle, the time one read takes, and how
//!   long after a planned switchover all 100 nodes name the new leader.
//!
//! Run with `cargo bench --bench dcs` (APPS=N, SECONDS=N to change).

mod common;

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use agent::failover::dbmaster::{probe_all, Probe, ProbeConfig, Target};
use agent::failover::dcs::etcd::{self, Subscription, Wake};
use agent::failover::dcs::EtcdSettings;
use agent::testbed::patroni::{Options, PatroniCluster};

fn main() {
    let apps = common::env_num("APPS", 100);
    let seconds = common::env_num("SECONDS", 10) as u64;
    let dir = std::env::temp_dir().join(format!("agent-bench-dcs-{}", std::process::id()));
    let opts = Options {
        scope: "bench".into(),
        addrs: ["127.0.0.61", "127.0.0.62", "127.0.0.63"],
        max_connections: 400,
        ..Options::default()
    };
    let c = PatroniCluster::start(&dir, opts, true).expect("the Patroni cluster starts");
    println!(
        "{apps} application nodes on one Patroni cluster (3 etcd, 3 Patroni + PostgreSQL 15, loopback)"
    );
    let targets: Vec<Target> = c
        .nodes
        .iter()
        .map(|n| Target {
            host: n.addr.into(),
            port: n.pg_port,
        })
        .collect();
    let cfg = ProbeConfig {
        user: "postgres".into(),
        password: Some(c.password.clone()),
        dbname: "postgres".into(),
        timeout: Duration::from_secs(1),
    };

    // The probe source.
    let before = sessions(&c);
    let times = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let start = Arc::new(Barrier::new(apps));
    let threads: Vec<_> = (0..apps)
        .map(|_| {
            let (targets, cfg, times, failed, start) = (
                targets.clone(),
                cfg.clone(),
                times.clone(),
                failed.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut tick = Instant::now();
                while Instant::now() < end {
                    let t = Instant::now();
                    let probes = probe_all(&targets, &cfg);
                    let took = t.elapsed();
                    if probes.iter().filter(|p| **p == Probe::Primary).count() == 1 {
                        times.lock().unwrap().push(took);
                    } else {
                        *failed.lock().unwrap() += 1;
                    }
                    tick += Duration::from_millis(250);
                    if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = sessions(&c);
    let mut times = times.lock().unwrap().clone();
    times.sort();
    println!("\nprobe source: every node polls every DB node each 250 ms, {seconds} s");
    for (i, n) in c.nodes.iter().enumerate() {
        println!(
            "  {:<22} {:>7.1} connections/s",
            n.pg(),
            (after[i] - before[i]) as f64 / seconds as f64
        );
    }
    println!(
        "  resolve db_master: median {:?}, p95 {:?}, max {:?} ({} resolutions, {} without exactly one primary)",
        pct(&times, 50),
        pct(&times, 95),
        times.last().copied().unwrap_or_default(),
        times.len(),
        failed.lock().unwrap()
    );

    // The etcd source.
    let settings = EtcdSettings {
        endpoints: c
            .etcd_endpoints()
            .iter()
            .map(|e| format!("http://{e}"))
            .collect(),
        prefix: "/service/bench/".into(),
        timeout: Duration::from_secs(1),
    };
    let before = sessions(&c);
    let watched = Instant::now();
    let subs: Vec<Subscription> = (0..apps)
        .map(|_| Subscription::start(settings.clone()))
        .collect();
    // Each subscription reports its watch established once.
    for s in &subs {
        match s.wait(Instant::now() + Duration::from_secs(30)) {
            Wake::Evaluate(_) => {}
            other => panic!("watch not established: {other:?}"),
        }
    }
    let mut reads = vec![];
    for _ in 0..apps {
        let t = Instant::now();
        etcd::read(&settings).expect("etcd answers");
        reads.push(t.elapsed());
    }
    reads.sort();
    let idle_end = Instant::now() + Duration::from_secs(seconds.min(5));
    let idle_wakes: usize = subs
        .iter()
        .map(|s| usize::from(matches!(s.wait(idle_end), Wake::Evaluate(_))))
        .sum();
    let after_idle = sessions(&c);
    let watched = watched.elapsed();
    let leader = c.leader().expect("a leader");
    let target = c.sync_standby().expect("a sync standby");
    let new_master = c.nodes[target].pg();
    let switched = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| c.switchover(target).expect("switchover"));
        let seen: Vec<Duration> = std::thread::scope(|inner| {
            let handles: Vec<_> = subs
                .into_iter()
                .map(|s| {
                    let (settings, new_master) = (&settings, &new_master);
                    inner.spawn(move || loop {
                        match s.wait(Instant::now() + Duration::from_secs(60)) {
                            Wake::Evaluate(_) => {
                                let v = etcd::read(settings).unwrap_or_default();
                                let named = v
                                    .leader
                                    .as_ref()
                                    .and_then(|l| v.members.iter().find(|m| &m.name == l))
                                    .and_then(|m| m.conn.clone());
                                if named.as_deref() == Some(new_master) {
                                    return switched.elapsed();
                                }
                            }
                            other => panic!("no change seen: {other:?}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut seen = seen;
        seen.sort();
        println!("\netcd source: one watch on the leader key per node");
        for (i, n) in c.nodes.iter().enumerate() {
            // The server's counter also counts the bench's own two
            // connections (before and after) and Patroni's, if it opened any.
            println!(
                "  {:<22} {:>7.1} connections/s ({} sessions in the {} s from the watches' start to the end of the idle time)",
                n.pg(),
                (after_idle[i] - before[i]) as f64 / watched.as_secs_f64(),
                after_idle[i] - before[i],
                watched.as_secs(),
            );
        }
        println!(
            "  idle: {idle_wakes} wake-ups in {} s across {apps} watches (no request to etcd)",
            seconds.min(5)
        );
        println!(
            "  one read of the cluster (range over /service/bench/): median {:?}, p95 {:?}",
            pct(&reads, 50),
            pct(&reads, 95)
        );
        println!(
            "  switchover {} -> {}: first node named the new leader at {:?}, all {apps} by {:?} after the POST",
            c.nodes[leader].name,
            c.nodes[target].name,
            seen[0],
            seen[seen.len() - 1]
        );
    });
    watch_convergence(&c, &settings);
}

/// A real `agent watch` with the etcd source on a one-file site: the time
/// from the leader key's change (seen by a watch of the bench's own) to the
/// file naming the new primary, over a planned switchover.
fn watch_convergence(c: &PatroniCluster, settings: &EtcdSettings) {
    let site = c.dir.join("watch-site");
    let write = |rel: &str, text: String| {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "hiera/hiera.yaml",
        "version: 5\ndefaults:\n  datadir: data\n  data_hash: yaml_data\nhierarchy:\n  - name: common\n    path: common.yaml\n".into(),
    );
    write(
        "hiera/data/common.yaml",
        format!(
            "db_cluster::source: etcd\ndb_cluster::etcd: [{}]\ndb_cluster::scope: bench\n",
            settings.endpoints.join(", ")
        ),
    );
    write("manifests/site.yaml", "nodes: {}\ndefault: [app]\n".into());
    write(
        "manifests/app.yaml",
        "resources:\n  - file: /etc/db_master\n    content: \"{{facts.db_master}}\\n\"\n".into(),
    );
    std::fs::create_dir_all(site.join("root/etc")).unwrap();
    let file = site.join("root/etc/db_master");
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["watch", "--node", "app", "--root"])
        .arg(site.join("root"))
        .arg("--state-dir")
        .arg(site.join("state"))
        .arg("--manifests")
        .arg(site.join("manifests"))
        .arg("--hiera-config")
        .arg(site.join("hiera/hiera.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent watch starts");
    println!("\nagent watch (etcd source): leader key changed -> the application's file names the new primary");
    let mut figures = vec![];
    for _ in 0..common::env_num("SWITCHOVERS", 3) {
        let leader = c.wait_healthy(Duration::from_secs(90)).expect("healthy");
        let content = || std::fs::read_to_string(&file).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while content().trim() != c.nodes[leader].pg() {
            assert!(Instant::now() < deadline, "the watch never converged");
            std::thread::sleep(Duration::from_millis(20));
        }
        let target = c.sync_standby().expect("a sync standby");
        let want = c.nodes[target].pg();
        let observer = Subscription::start(settings.clone());
        let _ = observer.wait(Instant::now() + Duration::from_secs(10)); // established
        std::thread::scope(|s| {
            s.spawn(|| c.switchover(target).expect("switchover"));
            // The key's put of the new leader, as the bench's own watch sees it.
            let changed_at = loop {
                match observer.wait(Instant::now() + Duration::from_secs(60)) {
                    Wake::Evaluate(_) => {
                        let at = Instant::now();
                        let v = etcd::read(settings).unwrap_or_default();
                        if v.leader.as_deref() == Some(c.nodes[target].name.as_str()) {
                            break at;
                        }
                    }
                    other => panic!("no change seen: {other:?}"),
                }
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while content().trim() != want {
                assert!(Instant::now() < deadline, "the watch never followed");
                std::thread::sleep(Duration::from_millis(2));
            }
            let took = changed_at.elapsed();
            println!(
                "  {} -> {}: {:?}",
                c.nodes[leader].name, c.nodes[target].name, took
            );
            figures.push(took);
        });
    }
    figures.sort();
    println!(
        "  median {:?} over {} switchovers (target <= 300 ms)",
        pct(&figures, 50),
        figures.len()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = watch.wait();
}

/// `pg_stat_database.sessions` summed, per DB node: connections the server
/// has accepted since its start.
fn sessions(c: &PatroniCluster) -> Vec<i64> {
    c.nodes
        .iter()
        .map(|n| {
            let mut client = postgres::Config::new()
                .host(n.addr)
                .port(n.pg_port)
                .user("postgres")
                .password(&c.password)
                .dbname("postgres")
                .connect(postgres::NoTls)
                .expect("the bench connects");
            let row = client
                .query_one(
                    "SELECT coalesce(sum(sessions), 0)::bigint FROM pg_stat_database",
                    &[],
                )
                .expect("sessions");
            row.get::<_, i64>(0)
        })
        .collect()
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
