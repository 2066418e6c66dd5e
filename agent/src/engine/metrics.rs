//! The run summary as Prometheus metrics, in the text format node_exporter's
//! textfile collector reads (`--metrics-file`, e.g.
//! `/var/lib/node_exporter/textfile_collector/agent.prom`): when the last
//! run started and how long it took, its resources by status, its events,
//! the time per resource type, whether it was a noop, and — when the run
//! read them — the cluster facts (`db_master` as an info metric, so
//! `changes(agent_db_master_info[1h])` counts failovers; split brain and
//! stale flags), and pgBackRest's health by stanza when the run read the
//! `pgbackrest` fact (ages, redundancy, archive failures). Counts and times only: no value of a resource or of Hiera.

use std::fmt::Write;

use serde_json::{Map, Value};

/// The metrics text for `summary` (Puppet's `last_run_summary` schema, see
/// [`super::report::run_summary`]) and the collected `cluster` facts.
pub fn render(summary: &Value, cluster: &Map<String, Value>) -> String {
    let mut out = String::new();
    let num = |v: &Value| -> String {
        match v {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            _ => "0".into(),
        }
    };
    let mut metric = |name: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP agent_{name} {help}");
        let _ = writeln!(out, "# TYPE agent_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "agent_{name}{labels} {value}");
        }
    };
    metric(
        "last_run_timestamp_seconds",
        "Unix time the last run started.",
        vec![(String::new(), num(&summary["time"]["last_run"]))],
    );
    metric(
        "last_run_duration_seconds",
        "How long the last run took.",
        vec![(String::new(), num(&summary["time"]["total"]))],
    );
    metric(
        "last_run_noop",
        "1 when the last run was a noop run.",
        vec![(String::new(), num(&summary["application"]["noop"]))],
    );
    let by = |section: &str, label: &str| -> Vec<(String, String)> {
        summary[section]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (format!("{{{label}=\"{}\"}}", escape(k)), num(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    metric(
        "resources",
        "Resources of the last run by status.",
        by("resources", "status"),
    );
    metric(
        "events",
        "Events of the last run by status.",
        by("events", "status"),
    );
    metric(
        "changes",
        "Changes made by the last run.",
        vec![(String::new(), num(&summary["changes"]["total"]))],
    );
    let times: Vec<(String, String)> = by("time", "type")
        .into_iter()
        .filter(|(l, _)| !l.contains("\"last_run\"") && !l.contains("\"total\""))
        .collect();
    metric(
        "time_seconds",
        "Seconds the last run spent per resource type (and retrieving its configuration).",
        times,
    );
    if let Some(master) = cluster.get("db_master").and_then(Value::as_str) {
        metric(
            "db_master_info",
            "The PostgreSQL primary the last run saw (db_master).",
            vec![(format!("{{db_master=\"{}\"}}", escape(master)), "1".into())],
        );
    }
    for (fact, help) in [
        ("db_split_brain", "1 when the last run saw two primaries."),
        (
            "db_master_stale",
            "1 when no primary answered and db_master is the last known one.",
        ),
    ] {
        if let Some(v) = cluster.get(fact) {
            let flag = match v {
                Value::Bool(b) => u8::from(*b).to_string(),
                Value::String(s) => u8::from(s == "true").to_string(),
                _ => "0".into(),
            };
            metric(fact, help, vec![(String::new(), flag)]);
        }
    }
    // pgBackRest's health, by stanza, when the run read the fact.
    if let Some(stanzas) = cluster
        .get("pgbackrest")
        .and_then(|p| p.get("stanzas"))
        .and_then(Value::as_object)
    {
        for (key, name, help) in [
            (
                "last_full_age_s",
                "pgbackrest_last_full_age_seconds",
                "Age of the newest full backup.",
            ),
            (
                "last_diff_age_s",
                "pgbackrest_last_diff_age_seconds",
                "Age of the newest differential backup.",
            ),
            (
                "last_wal_archived_age_s",
                "pgbackrest_last_wal_archived_age_seconds",
                "Age of the newest WAL segment in the repository.",
            ),
            (
                "redundancy",
                "pgbackrest_redundancy",
                "Full backups in the repository.",
            ),
            (
                "archive_failures",
                "pgbackrest_archive_failures",
                "pg_stat_archiver.failed_count of the local PostgreSQL.",
            ),
            (
                "status_code",
                "pgbackrest_status_code",
                "pgbackrest info's status code (0: ok).",
            ),
        ] {
            let samples: Vec<(String, String)> = stanzas
                .iter()
                .filter_map(|(stanza, h)| {
                    let v = h.get(key).filter(|v| v.is_number())?;
                    Some((format!("{{stanza=\"{}\"}}", escape(stanza)), num(v)))
                })
                .collect();
            if !samples.is_empty() {
                metric(name, help, samples);
            }
        }
    }
    out
}

/// A label value as the text format wants it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_as_textfile_metrics() {
        let s = json!({
            "application": {"noop": false},
            "resources": {"changed": 1, "failed": 0, "total": 3},
            "time": {"file": 0.004, "config_retrieval": 0.01, "total": 0.02, "last_run": 1700000000u64},
            "changes": {"total": 1},
            "events": {"failure": 0, "success": 1, "total": 1},
        });
        let cluster = Map::from_iter([
            ("db_master".to_string(), json!("10.0.0.1:5432")),
            ("db_split_brain".to_string(), json!(false)),
            (
                "pgbackrest".to_string(),
                json!({"stanzas": {"main": {"status": "ok", "status_code": 0,
                    "last_full_age_s": 60, "redundancy": 1, "backups": []}}}),
            ),
        ]);
        let text = render(&s, &cluster);
        for line in [
            "# TYPE agent_last_run_timestamp_seconds gauge\nagent_last_run_timestamp_seconds 1700000000\n",
            "agent_last_run_duration_seconds 0.02\n",
            "agent_last_run_noop 0\n",
            "agent_resources{status=\"changed\"} 1\n",
            "agent_events{status=\"failure\"} 0\n",
            "agent_time_seconds{type=\"file\"} 0.004\n",
            "agent_db_master_info{db_master=\"10.0.0.1:5432\"} 1\n",
            "agent_db_split_brain 0\n",
            "agent_pgbackrest_last_full_age_seconds{stanza=\"main\"} 60\n",
            "agent_pgbackrest_redundancy{stanza=\"main\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("type=\"total\"") && !text.contains("db_master_stale"));
        assert!(!text.contains("last_diff_age"), "absent facts: no metric");
        // Every sample line is `name{labels} number`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
