//! `agent demo patroni --json` end to end (about two minutes): three etcd
//! members, three Patroni nodes and the Stash stand-in following `db_master`
//! from etcd through `agent watch`, through the four faults. Every scenario
//! must promote another node and get the stand-in writing on it, with no
//! acknowledged row lost and never two nodes committing writes at once
//! (synchronous_mode). The timings themselves are figures for README, not
//! assertions.
//!
//! Needs root (iptables, the postgres user) and the Debian packages
//! etcd-server, etcd-client, patroni, python3-psycopg2 and iptables, which
//! the demo installs when missing.

mod common;

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_patroni_loses_no_acknowledged_row_in_any_scenario() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "agent demo patroni needs root (iptables, PostgreSQL as the postgres user)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["demo", "patroni", "--json", "--dir"])
        .arg(dir.path().join("demo"))
        .current_dir(common::repo())
        .output()
        .expect("agent demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        log_tails(&dir.path().join("demo"))
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    println!("{v}");
    let scenarios = v["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["kill", "switchover", "freeze", "partition"], "{v}");
    for s in scenarios {
        assert!(s["promoted_s"].is_number(), "not promoted: {s}");
        assert!(
            s["app_writing_s"].is_number(),
            "the app never wrote on the new primary: {s}"
        );
        assert_eq!(s["acked_rows_lost"], 0, "{s}");
        assert_eq!(s["two_writable_samples"], 0, "{s}");
        // A frozen Patroni is what a watchdog resets; `agent fence` is the
        // watchdog here. Nothing else is fenced.
        assert_eq!(s["fenced"], s["name"] == "freeze", "{s}");
    }
    // Everything it started is gone: no process runs from its directory.
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir.path().display().to_string()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The last lines of every log the demo keeps (Patroni, fences, etcd, the
/// watcher), for a failure's message: the directory goes with the test.
fn log_tails(base: &std::path::Path) -> String {
    let mut logs = vec![];
    let mut dirs = vec![base.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("data") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                logs.push(p);
            }
        }
    }
    logs.sort();
    logs.iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("==> {} <==\n{tail}\n", p.display())
        })
        .collect()
}
