//! `agent facts db_master` latency, whole process, against real PostgreSQL:
//! a primary and a streaming standby up; one node's port closed; one node
//! that accepts TCP and never answers (the probe's 1 s timeout bounds it).
//! Run with `cargo bench --bench db_master` (RUNS=N to change).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use resources::pg::standby_testing::Running;
use resources::pg::testing::{free_port, TestCluster, PASSWORD};

fn main() {
    let runs = common::env_num("RUNS", 10);
    let dir = tempfile::tempdir().unwrap();
    let primary = TestCluster::primary(&dir.path().join("primary"), "127.0.0.1");
    let standby = Running::streaming_standby(dir.path(), "standby", primary.port);
    let closed = free_port("127.0.0.1");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();

    println!("db_master probe latency: `agent facts db_master`, whole process, {runs} runs each");
    println!(
        "{:<44} {:>9} {:>9} {:>9}   target",
        "nodes", "median", "min", "max"
    );
    let scenarios = [
        (
            "primary + standby, both up",
            vec![primary.port, standby.port],
            "<= 50 ms",
        ),
        (
            "primary + a closed port",
            vec![primary.port, closed],
            "<= 50 ms",
        ),
        (
            "primary + a node that never answers",
            vec![primary.port, silent_port],
            "<= 1.1 s",
        ),
    ];
    for (name, ports, target) in scenarios {
        let site = dir.path().join(format!("site-{}", ports[1]));
        write_hiera(&site, &ports);
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_agent"))
                .args([
                    "facts",
                    "db_master",
                    "--node",
                    "bench",
                    "--manifests",
                    "/nonexistent",
                ])
                .arg("--hiera-config")
                .arg(site.join("hiera.yaml"))
                .arg("--state-dir")
                .arg(site.join("state"))
                .stderr(Stdio::null())
                .output()
                .unwrap();
            times.push(started.elapsed());
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                got.trim(),
                format!("127.0.0.1:{}", primary.port),
                "{name}: db_master"
            );
        }
        times.sort();
        let ms = |d: &Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{:<44} {:>9} {:>9} {:>9}   {target}",
            name,
            ms(&times[times.len() / 2]),
            ms(&times[0]),
            ms(times.last().unwrap())
        );
    }
    drop(silent);
}

fn write_hiera(site: &Path, ports: &[u16]) {
    std::fs::create_dir_all(site.join("data")).unwrap();
    std::fs::write(
        site.join("hiera.yaml"),
        "version: 5\nhierarchy:\n  - name: common\n    path: common.yaml\n",
    )
    .unwrap();
    let nodes: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    std::fs::write(
        site.join("data/common.yaml"),
        format!(
            "db_cluster::nodes: [{}]\ndb_cluster::probe_password: '{PASSWORD}'\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
}
