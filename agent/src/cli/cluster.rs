//! `agent cluster status [--json] [--fresh]`: plusmoin's `status`. Each
//! cluster's master, slaves with their lag, lost nodes with the reason,
//! split brain, and the clusterless nodes; a table for people or, with
//! `--json`, the document of `failover::status::Status`. Read from the
//! running watcher's persisted state (it has the lag hysteresis and the
//! heartbeat), else — or with `--fresh` — probed now. Exit 0 when every
//! cluster has a master, 1 otherwise.

use anyhow::Result;

use crate::engine::report;
use crate::failover::{dbmaster, watch};
use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Each cluster's master, slaves (with lag), lost and clusterless nodes;
    /// exit 0 when every cluster has a master, 1 otherwise.
    Status {
        /// The status as JSON: {"clusters":[{name, master, slaves, lost, split_brain}], "clusterless":[...]}.
        #[arg(long)]
        json: bool,
        /// Probe the nodes now, even while an `agent watch` keeps the status.
        #[arg(long)]
        fresh: bool,
    },
}

pub fn run(settings: &Settings, cmd: ClusterCommand) -> Result<u8> {
    let ClusterCommand::Status { json, fresh } = cmd;
    let persisted = if fresh || !watch::watcher_running(&settings.state) {
        None
    } else {
        watch::read_persisted(&settings.state)
    };
    let (status, seen) = match persisted {
        Some(p) => (p.status, Some(p.updated)),
        None => {
            let (_, clusters) = watch::cluster_settings(settings)?;
            let clusters = clusters.ok_or_else(|| {
                anyhow::anyhow!(
                    "no clusters for this node: set db_clusters (or db_cluster::nodes) in Hiera\n\
                     hint: db_clusters: {{db: {{nodes: ['10.0.0.1:5432', '10.0.0.2:5432']}}}}"
                )
            })?;
            (dbmaster::probe_source(&clusters)?.0, None)
        }
    };
    if json {
        report::print(&serde_json::to_string_pretty(&status)?);
    } else {
        let source = match seen {
            Some(t) => {
                let when = chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                format!("as agent watch saw it at {when}")
            }
            None => "probed now".to_string(),
        };
        report::print(&format!("{}({source})", status.table()));
    }
    Ok(if status.all_have_a_master() { 0 } else { 1 })
}
