//! The Stash + HA PostgreSQL site end to end, the same scenario as `agent
//! demo`: both nodes from the real roles, drift corrected by a scheduled run,
//! `agent watch` converging jdbc.url after the seed's trigger-file failover,
//! Stash restarted exactly once, heartbeats resuming on the new primary, and
//! a split brain left alone with a hook saying why.

mod common;

use std::time::Duration;

use agent::testbed::demo::{self, Cluster};
use common::repo;

fn report(c: &Cluster) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(c.primary.state().join("last_run_report.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn stash_follows_the_primary_through_failover_and_split_brain() {
    // FAILOVER_KEEP_DIR=DIR keeps the cluster's files (logs, reports) for a look.
    let tmp = match std::env::var("FAILOVER_KEEP_DIR") {
        Ok(d) => tempfile::TempDir::new_in(d).unwrap().keep(),
        Err(_) => tempfile::tempdir().unwrap().keep(),
    };
    let _cleanup = RemoveOnDrop(tmp.clone(), std::env::var("FAILOVER_KEEP_DIR").is_err());
    let base = tmp;
    let mut c = Cluster::create(
        &repo().join("manifests"),
        &repo().join("hiera/hiera.yaml"),
        base.join("demo"),
        false,
        false,
    )
    .expect("cluster laid out");
    c.agent_bin = env!("CARGO_BIN_EXE_agent").into();
    demo::provision(&c, false).expect("provisioned, streaming, idempotent");
    // The demo's second standby, restored from the primary's initial backup.
    let initial = demo::restore_from_initial_backup(&mut c, false)
        .expect("a standby restored from the initial backup, streaming, idempotent");
    assert!(initial.join("backup_manifest").is_file());
    assert!(c.extra[0].root().join("pg/data/standby.signal").is_file());
    // The primary takes the backups, the standby does not.
    assert!(crontab(&c.primary).contains("# agent: pg_backup weekly"));
    assert!(!crontab(&c.standby).contains("pg_backup weekly"));
    let url = demo::jdbc_url(&c.primary.properties()).unwrap();
    assert_eq!(
        url,
        format!("jdbc:postgresql://{}/stashdb", c.primary.label())
    );

    // Drift: hand edits to the properties file and /etc/hosts; the next
    // scheduled run restores exactly those.
    let props = c.primary.properties();
    let text = std::fs::read_to_string(&props).unwrap();
    std::fs::write(
        &props,
        text.replace(&c.primary.label(), "somewhere-else:5432"),
    )
    .unwrap();
    let hosts = c.primary.root().join("etc/hosts");
    let text = std::fs::read_to_string(&hosts).unwrap();
    std::fs::write(
        &hosts,
        text.replace(
            "127.0.0.12\tproduction-db-standby",
            "10.9.9.9\tproduction-db-standby",
        ),
    )
    .unwrap();
    let out = c
        .agent(&c.primary, &["run", "--now", "--max-runs", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(demo::jdbc_url(&props).unwrap(), url);
    assert!(std::fs::read_to_string(&hosts)
        .unwrap()
        .contains("127.0.0.12\tproduction-db-standby"));
    let r = report(&c);
    let mut changed: Vec<String> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| !x["changes"].as_array().unwrap().is_empty())
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        vec![
            "host[production-db-standby]".to_string(),
            format!(
                "properties[/var/atlassian/application-data/stash/shared/stash-config.properties]"
            )
        ]
    );

    let starts_before = stash_starts(&c);
    c.start_watch(Duration::from_millis(250)).unwrap();
    let f = demo::failover(&c, false).expect("converged after failover");
    // The old primary was stopped before the promotion: never two nodes
    // taking writes at once.
    assert_eq!(f.two_writable_samples, 0, "{f:?}");
    assert_eq!(
        demo::jdbc_url(&props).unwrap(),
        format!("jdbc:postgresql://{}/stashdb", c.standby.label()),
        "jdbc.url names the new primary"
    );
    // An apply of our own waits for the watcher's run in flight (the lock)
    // and must find nothing left to do: no second restart is pending.
    let settled = settle(&c);
    assert!(settled.contains("0 changed"), "{settled}");
    // The old primary's node converges to "fenced": what needs its stopped
    // server is left alone with the reason, and nothing fails.
    assert!(settled.contains("left alone: fenced:"), "{settled}");
    assert!(settled.contains(" 0 failed"), "{settled}");
    // Duties follow the primary: the old primary's crontab loses the backup
    // entry, the new primary's gets it at its next run.
    assert!(
        !crontab(&c.primary).contains("pg_backup weekly"),
        "{}",
        crontab(&c.primary)
    );
    assert!(
        !crontab(&c.standby).contains("pg_backup weekly"),
        "before its run"
    );
    let promoted = common::Run::of(&mut c.agent(&c.standby, &["apply", "--lock-wait", "60"]));
    assert!(promoted.all().contains(" 0 failed"), "{}", promoted.all());
    assert!(
        crontab(&c.standby).contains("# agent: pg_backup weekly"),
        "{}",
        crontab(&c.standby)
    );
    assert_eq!(
        stash_starts(&c),
        starts_before + 1,
        "Stash restarted exactly once"
    );
    demo::wait_until(
        "three heartbeats in a row on the new primary",
        Duration::from_secs(10),
        || {
            let writes = demo::stash_writes(&c.primary.stash_log());
            writes.len() >= 3
                && writes
                    .iter()
                    .rev()
                    .take(3)
                    .all(|l| l.contains(&c.standby.label()))
        },
    )
    .expect("heartbeats resume on the new primary");
    assert!(f.stash_writing < Duration::from_secs(30));

    // Split brain: the old primary comes back as a primary.
    c.pg_ctl(&c.primary, &["-l", "/dev/null", "-w", "start"])
        .unwrap();
    let events = c.base.join("events.jsonl");
    demo::wait_until(
        "a master_up hook for the split brain",
        Duration::from_secs(20),
        || std::fs::read_to_string(&events).is_ok_and(|t| t.contains("split brain")),
    )
    .unwrap();
    let split: serde_json::Value = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("split brain"))
        })
        .unwrap();
    // Facts in a split brain: what is known is printed, the exit names db_master.
    let out = c
        .agent(
            &c.primary,
            &["facts", "db_master", "db_master_stale", "db_split_brain"],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("db_split_brain => true"), "{stdout}");
    assert!(stdout.contains("db_master_stale => false"), "{stdout}");
    assert!(
        stderr.contains("db_master has no value: split brain"),
        "{stderr}"
    );
    assert_eq!(split["event"], "master_up");
    assert_eq!(split["split_brain"], true);
    assert!(split["db_master"].is_null());
    // The watcher's run for this change has finished once ours got the lock.
    settle(&c);
    assert_eq!(
        demo::jdbc_url(&props).unwrap(),
        format!("jdbc:postgresql://{}/stashdb", c.standby.label()),
        "the url is left alone in a split brain"
    );
    assert_eq!(
        stash_starts(&c),
        starts_before + 1,
        "and Stash is not restarted"
    );
    c.stop_all();
}

/// The root crontab of a demo node (empty when there is none).
fn crontab(n: &demo::DemoNode) -> String {
    std::fs::read_to_string(n.root().join("var/spool/cron/crontabs/root")).unwrap_or_default()
}

/// Runs one apply on the Stash node, after the watcher's apply in flight
/// (they share the run lock): what follows sees everything the watcher
/// did for the events before. Its output.
fn settle(c: &demo::Cluster) -> String {
    let text = common::Run::of(&mut c.agent(&c.primary, &["apply", "--lock-wait", "60"])).all();
    assert!(
        !text.contains("lock"),
        "waited for the lock in vain: {text}"
    );
    text
}

/// How many times the stand-in Stash started (its log says so each time).
fn stash_starts(c: &Cluster) -> usize {
    std::fs::read_to_string(c.primary.stash_log())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" started"))
        .count()
}

/// Removes the test's directory at the end (unless asked to keep it).
struct RemoveOnDrop(std::path::PathBuf, bool);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
