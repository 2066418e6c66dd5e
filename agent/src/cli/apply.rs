//! `agent apply`: compile the node's catalog and converge to it, like
//! `puppet apply`, with the flags Puppet users type: `-t`/`--test`,
//! `-d`/`--debug`, `-e`/`--execute`, `--summarize`, `--evaltrace`; the exit
//! code is Puppet's (`--detailed-exitcodes`). Logging flags (`--logdest`,
//! `--color`, and the verbosity `-t`/`-d` imply) are read by [`super::main`]
//! before anything runs.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::engine::{self, apply::Status, report};
use crate::settings::{self, Settings};

/// Flags of `agent apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Report what would change; change nothing anywhere.
    #[arg(long)]
    pub noop: bool,
    /// Exit 0 no change, 2 changes, 4 failures, 6 both.
    #[arg(long)]
    pub detailed_exitcodes: bool,
    /// Puppet's --test: --detailed-exitcodes and -v (info logs) at once.
    #[arg(short = 't', long)]
    pub test: bool,
    /// Debug logs (as -vv).
    #[arg(short, long)]
    pub debug: bool,
    /// Apply these resources instead of the node's roles: a YAML list as
    /// written under `resources:` in a manifest (`- file: /tmp/x` then its
    /// attributes). Hiera and facts are the node's.
    #[arg(short, long, value_name = "YAML", allow_hyphen_values = true)]
    pub execute: Option<String>,
    /// After the run, print Puppet's summary: resources, events, changes
    /// and the time spent per resource type.
    #[arg(long)]
    pub summarize: bool,
    /// After the run, print how long each resource took to evaluate.
    #[arg(long)]
    pub evaltrace: bool,
    /// Write the run's metrics for Prometheus' node_exporter textfile
    /// collector to PATH (atomically, mode 0644): last run time and
    /// duration, resources and events by status, time per type, noop,
    /// db_master, split brain and pgBackRest's health (the `pgbackrest`
    /// fact) when the run read them. Without PATH:
    /// `<state dir>/agent.prom`.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub metrics_file: Option<Option<std::path::PathBuf>>,
    /// How long to wait for another run's lock (`5`, `500ms`, `1m`).
    #[arg(long, default_value = "5", value_parser = settings::parse_duration)]
    pub lock_wait: std::time::Duration,
    /// Print nothing when nothing changed and nothing failed (cron).
    #[arg(long)]
    pub quiet: bool,
    /// Manage only resources with one of these tags (comma-separated;
    /// a resource's tags: its `tags:`, its type, its manifest's name),
    /// and what they require.
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Leave resources with one of these tags alone.
    #[arg(long = "skip_tags", alias = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
}

impl ApplyArgs {
    /// The log verbosity the flags imply (`-t`: info, `-d`: debug).
    pub fn verbosity(&self) -> u8 {
        match (self.debug, self.test) {
            (true, _) => 2,
            (false, true) => 1,
            _ => 0,
        }
    }
}

pub fn run(mut settings: Settings, args: ApplyArgs) -> Result<u8> {
    let opts = engine::RunOptions {
        noop: args.noop,
        lock_wait: args.lock_wait,
        quiet: args.quiet,
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
    };
    // `-e`: a site of one role holding the given resources, in a private
    // temp dir that goes when the run ends.
    let execute_dir = match &args.execute {
        Some(yaml) => Some(execute_site(yaml)?),
        None => None,
    };
    if let Some(dir) = &execute_dir {
        settings.manifests = dir.path().to_path_buf();
    }
    // What Puppet's -t says first: which configuration is applied.
    tracing::info!(
        manifests = %settings.manifests.display(),
        hiera = %settings.hiera_config.display(),
        "applying configuration{}",
        if args.execute.is_some() { " from -e" } else { "" }
    );
    let result = engine::apply_once(&settings, opts)?;
    if args.evaltrace {
        for (id, status, seconds) in &result.evaluated {
            let what = match status {
                Status::Unchanged => "in sync",
                Status::Changed => "changed",
                Status::Noop => "out of sync (noop)",
                Status::Failed => "failed",
                Status::Skipped => "skipped",
            };
            report::print(&format!(
                "Info: {id}: Evaluated in {seconds:.4} seconds ({what})"
            ));
        }
    }
    if args.summarize {
        report::print(&summarize(&result.run_summary));
    }
    if let Some(path) = &args.metrics_file {
        let path = path
            .clone()
            .unwrap_or_else(|| settings.state.dir.join("agent.prom"));
        let text = engine::metrics::render(&result.run_summary, &result.cluster_facts);
        resources::atomic::write_atomic(&path, text.as_bytes(), Some(0o644))
            .with_context(|| format!("--metrics-file {}", path.display()))?;
    }
    Ok(result.exit_code(args.detailed_exitcodes || args.test))
}

/// A manifests dir whose site gives every node the role `execute`, made of
/// `yaml` (a resource list, or a whole manifest with `resources:`).
fn execute_site(yaml: &str) -> Result<tempfile::TempDir> {
    let tree = crate::yaml::parse(yaml).map_err(|e| {
        anyhow::anyhow!(
            "-e/--execute: line {}: {}\nhint: give a YAML list of resources, \
             e.g. -e '- file: /tmp/x\n  content: hi'",
            e.mark.line,
            e.describe()
        )
    })?;
    let manifest = match tree.data {
        crate::yaml::Data::Seq(_) => {
            let mut text = String::from("resources:\n");
            for line in yaml.lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
            text
        }
        _ => yaml.to_string(),
    };
    let dir = tempfile::Builder::new()
        .prefix("agent-execute-")
        .tempdir()
        .context("-e/--execute: cannot make a temp dir")?;
    std::fs::write(dir.path().join("site.yaml"), "default: [execute]\n")?;
    std::fs::write(dir.path().join("execute.yaml"), manifest)?;
    Ok(dir)
}

/// Puppet's `--summarize` block, from the run summary (Puppet's schema).
pub fn summarize(s: &Value) -> String {
    let mut out = String::new();
    let title = |t: &str| t.replace('_', " ");
    let section = |out: &mut String, name: &str, rows: Vec<(String, String)>| {
        out.push_str(name);
        out.push_str(":\n");
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max(16);
        for (k, v) in rows {
            out.push_str(&format!("  {k:>width$}: {v}\n"));
        }
    };
    let count = |path: &[&str]| -> String {
        let mut v = s;
        for p in path {
            v = &v[p];
        }
        v.as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "0".into())
    };
    section(
        &mut out,
        "Changes",
        vec![("Total".into(), count(&["changes", "total"]))],
    );
    section(
        &mut out,
        "Events",
        ["failure", "noop", "success", "total"]
            .iter()
            .map(|k| (capital(&title(k)), count(&["events", k])))
            .collect(),
    );
    section(
        &mut out,
        "Resources",
        [
            "changed",
            "failed",
            "failed_to_restart",
            "out_of_sync",
            "restarted",
            "skipped",
            "total",
        ]
        .iter()
        .map(|k| (capital(&title(k)), count(&["resources", k])))
        .collect(),
    );
    let mut times: Vec<(String, String)> = s["time"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "last_run" && *k != "total")
                .map(|(k, v)| {
                    (
                        capital(&title(k)),
                        format!("{:.2}", v.as_f64().unwrap_or(0.0)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    times.push((
        "Total".into(),
        format!("{:.2}", s["time"]["total"].as_f64().unwrap_or(0.0)),
    ));
    times.push(("Last run".into(), count(&["time", "last_run"])));
    section(&mut out, "Time", times);
    section(
        &mut out,
        "Version",
        vec![
            ("Config".into(), count(&["version", "config"])),
            (
                "Puppet".into(),
                s["version"]["puppet"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        ],
    );
    out
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_reads_as_puppets() {
        let s = json!({
            "version": {"config": 1700000000u64, "puppet": "agent 0.1.0"},
            "resources": {"changed": 1, "failed": 0, "failed_to_restart": 0, "out_of_sync": 1,
                          "restarted": 0, "skipped": 0, "total": 3},
            "time": {"file": 0.004, "config_retrieval": 0.01, "total": 0.02, "last_run": 1700000000u64},
            "changes": {"total": 1},
            "events": {"failure": 0, "noop": 0, "success": 1, "total": 1},
        });
        let text = summarize(&s);
        for line in [
            "Changes:\n             Total: 1\n",
            "       Out of sync: 1\n",
            "Time:\n  Config retrieval: 0.01\n              File: 0.00\n             Total: 0.02\n",
            "Version:\n            Config: 1700000000\n            Puppet: agent 0.1.0\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
