//! The watcher's cost against real PostgreSQL, two clusters of three nodes
//! (a primary and two streaming standbys each):
//! - one watch tick (probe every node over the kept connections, classify,
//!   heartbeat when due), CPU time of the calling thread, which runs the
//!   whole tick (target ≤ 5 ms);
//! - the idle CPU of a whole `agent watch --interval 250ms` process over
//!   `IDLE_SECS` (default 60), from /proc (target ≤ 0.2 % of one core;
//!   Patroni idles at 0.05–0.2 % here).
//!
//! Run with `cargo bench --bench watch` (TICKS=N, IDLE_SECS=N).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::failover::watch::Monitor;
use agent::settings::{Raw, Settings};
use resources::pg::standby_testing::Running;
use resources::pg::testing::{TestCluster, PASSWORD};

fn main() {
    let ticks = common::env_num("TICKS", 400);
    let idle_secs = common::env_num("IDLE_SECS", 60);
    let dir = tempfile::tempdir().unwrap();
    let mut labels = vec![];
    let mut servers = vec![];
    let mut standbys = vec![];
    for c in ["a", "b"] {
        let p = TestCluster::primary(&dir.path().join(format!("{c}-primary")), "127.0.0.1");
        let mut nodes = vec![format!("'127.0.0.1:{}'", p.port)];
        for i in 1..=2 {
            let s = Running::streaming_standby(dir.path(), &format!("{c}-standby{i}"), p.port);
            nodes.push(format!("'127.0.0.1:{}'", s.port));
            standbys.push(s);
        }
        labels.push((c, nodes));
        servers.push(p);
    }
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("hiera/data")).unwrap();
    std::fs::create_dir_all(site.join("manifests/roles")).unwrap();
    std::fs::write(
        site.join("hiera/hiera.yaml"),
        "version: 5\nhierarchy:\n  - name: common\n    path: common.yaml\n",
    )
    .unwrap();
    let clusters: String = labels
        .iter()
        .map(|(c, nodes)| format!("  {c}:\n    nodes: [{}]\n", nodes.join(", ")))
        .collect();
    std::fs::write(
        site.join("hiera/data/common.yaml"),
        format!("db_clusters:\n{clusters}db_cluster::name: a\ndb_cluster::probe_password: '{PASSWORD}'\n"),
    )
    .unwrap();
    std::fs::write(site.join("manifests/site.yaml"), "default: [roles/app]\n").unwrap();
    std::fs::write(site.join("manifests/roles/app.yaml"), "resources: []\n").unwrap();
    let state = dir.path().join("state");

    // One tick, in this process.
    let settings = Settings::resolve(Raw {
        root: None,
        state_dir: Some(state.clone()),
        manifests: Some(site.join("manifests")),
        hiera_config: Some(site.join("hiera/hiera.yaml")),
        facts_dir: dir.path().join("facts.d"),
        node: Some("bench".into()),
    })
    .unwrap();
    let mut mon = Monitor::load(&settings).unwrap();
    for _ in 0..10 {
        mon.tick().unwrap();
    }
    let t = mon.tick().unwrap();
    for c in &t.status.clusters {
        assert!(c.master.is_some() && c.slaves.len() == 2, "{c:?}");
    }
    let mut cpu = Vec::with_capacity(ticks);
    let mut wall = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        let (c0, w0) = (thread_cpu(), Instant::now());
        mon.tick().unwrap();
        cpu.push(thread_cpu() - c0);
        wall.push(w0.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(mon);
    cpu.sort();
    wall.sort();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!("agent watch: two clusters of three nodes (a primary, two streaming standbys each), {ticks} ticks");
    println!(
        "{:<52} {:>10} {:>10} {:>10}   target",
        "", "median", "p90", "max"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}   <= 5 ms",
        "one tick, CPU",
        ms(cpu[ticks / 2]),
        ms(cpu[ticks * 9 / 10]),
        ms(cpu[ticks - 1])
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "one tick, wall",
        ms(wall[ticks / 2]),
        ms(wall[ticks * 9 / 10]),
        ms(wall[ticks - 1])
    );

    // A whole watcher, idle.
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "watch",
            "--interval",
            "250ms",
            "--node",
            "bench",
            "--hooks-dir",
            "/nonexistent",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--manifests")
        .arg(site.join("manifests"))
        .arg("--hiera-config")
        .arg(site.join("hiera/hiera.yaml"))
        .arg("--facts-dir")
        .arg(dir.path().join("facts.d"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("AGENT_LOG")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let c0 = proc_cpu(child.id());
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs as u64));
    let used = proc_cpu(child.id()) - c0;
    let over = w0.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{:<52} {:>9.3}% of one core ({} CPU in {:.0} s)   target <= 0.2 %; Patroni idles at 0.05-0.2 %",
        "agent watch --interval 250ms, idle",
        used.as_secs_f64() / over.as_secs_f64() * 100.0,
        ms(used),
        over.as_secs_f64()
    );
    drop(standbys);
    drop(servers);
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// utime + stime of a process, from /proc/PID/stat.
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}
