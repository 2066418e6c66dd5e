//! Failover convergence, measured on the demo's cluster: from the standby's
//! promotion to Stash writing on the new primary, with `agent watch
//! --interval 250ms` (target ≤ 2 s), plus the other steps of the timeline.
//! RUNS=N clusters are built and failed over (default 3; each takes ~15 s).
//! Run with `cargo bench --bench failover`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use agent::testbed::demo::{self, Cluster};

fn main() {
    let runs = common::env_num("RUNS", 3);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut rows = Vec::new();
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::create(
            &repo.join("manifests"),
            &repo.join("hiera/hiera.yaml"),
            dir.path().join(format!("run{i}")),
            false,
            false,
        )
        .expect("cluster");
        c.agent_bin = env!("CARGO_BIN_EXE_agent").into();
        demo::provision(&c, false).expect("provisioned");
        c.start_watch(Duration::from_millis(250)).expect("watch");
        let f = demo::failover(&c, false).expect("failover");
        c.stop_all();
        rows.push(f);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!("failover convergence, agent watch --interval 250ms, {runs} failovers (ms after the primary stopped)");
    println!("{:<44} {:>9} {:>9} {:>9}", "step", "median", "min", "max");
    let steps: [(&str, Vec<f64>); 4] = [
        (
            "standby promoted (trigger file)",
            rows.iter().map(|f| ms(f.promoted)).collect(),
        ),
        (
            "db_master changed",
            rows.iter().map(|f| ms(f.db_master_changed)).collect(),
        ),
        (
            "jdbc.url converged",
            rows.iter().map(|f| ms(f.url_converged)).collect(),
        ),
        (
            "Stash writing on the new primary",
            rows.iter().map(|f| ms(f.stash_writing)).collect(),
        ),
    ];
    for (name, v) in steps {
        let (m, lo, hi) = median(v);
        println!("{name:<44} {m:>7.0}ms {lo:>7.0}ms {hi:>7.0}ms");
    }
    println!(
        "acknowledged rows lost (asynchronous replication): {:?}; samples with two writable primaries: {:?}",
        rows.iter().map(|f| f.lost_rows).collect::<Vec<_>>(),
        rows.iter().map(|f| f.two_writable_samples).collect::<Vec<_>>()
    );
    let (m, lo, hi) = median(
        rows.iter()
            .map(|f| ms(f.stash_writing) - ms(f.promoted))
            .collect(),
    );
    println!(
        "{:<44} {m:>7.0}ms {lo:>7.0}ms {hi:>7.0}ms   target <= 2000 ms",
        "promotion → Stash writing (convergence)"
    );
    println!("comparison: the seed's manual procedure (edit jdbc.url, restart Stash by hand); Puppet's default run interval 30 min");
}
