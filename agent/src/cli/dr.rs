//! `agent dr`: the standby site of two (Gold / GoldDR, see
//! `failover::dr`). `agent dr status [--json]` prints the site's lag behind
//! Gold and fires `dr_lag` when it passes a bound from Hiera (exit 0 within
//! bounds, 1 over one or unreadable); `agent dr promote [--force] [--reason
//! TEXT]` turns this standby cluster into a writable one, refusing while
//! Gold's leader still answers (exit 1 with the reason; 0 when promoted or
//! already promoted).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::engine::report;
use crate::failover::dr::{self, DrSettings, PromoteRequest, Promoted};
use crate::failover::watch;
use crate::settings::{self, Settings};

#[derive(Debug, clap::Subcommand)]
pub enum DrCommand {
    /// The site's lag behind Gold (and the epoch); fires dr_lag when a
    /// bound of Hiera (dr::lag_alert_bytes, dr::lag_alert_s) is passed.
    /// Exit 0 within bounds, 1 otherwise.
    Status {
        /// The `dr` fact as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        hooks: HookArgs,
    },
    /// Promote this standby cluster (GoldDR): remove standby_cluster through
    /// Patroni's REST API, wait for a writable leader, record a new epoch,
    /// fire dr_promoted. Refuses while Gold's leader answers, unless --force.
    Promote {
        /// Promote even though Gold's leader answers: two writable
        /// primaries (a split brain) until Gold is stopped.
        #[arg(long)]
        force: bool,
        /// Why (recorded with the epoch and given to the hook).
        #[arg(long, default_value = "promoted by hand (agent dr promote)")]
        reason: String,
        /// How long to wait for a run holding the state dir's lock (one
        /// promotion, one apply at a time).
        #[arg(long, value_parser = settings::parse_duration, default_value = "60s")]
        lock_wait: Duration,
        #[command(flatten)]
        hooks: HookArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct HookArgs {
    /// Executables run on dr_lag and dr_promoted (as `agent watch`'s hooks).
    #[arg(long, default_value = "/etc/agent/hooks.d")]
    pub hooks_dir: PathBuf,
    /// Time limit of one hook.
    #[arg(long, value_parser = settings::parse_duration, default_value = "10s")]
    pub hook_timeout: Duration,
}

fn load(settings: &Settings) -> Result<(String, DrSettings)> {
    let (node, found) = watch::from_node_hiera(settings, DrSettings::load)?;
    let s = found.ok_or_else(|| {
        anyhow!(
            "{node} is no standby site: set patroni::standby_cluster (Gold's leader) and \
             dr::gold_patroni (Gold's Patroni REST addresses) in its Hiera\n\
             hint: patroni::standby_cluster: {{host: 10.0.1.10, port: 5432}}\n      \
             dr::gold_patroni: ['10.0.1.10:8008']"
        )
    })?;
    Ok((node, s))
}

pub fn run(settings: &Settings, cmd: DrCommand) -> Result<u8> {
    match cmd {
        DrCommand::Status { json, hooks } => {
            let (node, s) = load(settings)?;
            let facts = dr::facts(&s, &settings.state);
            let hooks = dr::hooks(&hooks.hooks_dir, hooks.hook_timeout);
            let over = dr::check_lag(&s, &settings.state, &facts, &node, &hooks);
            if json {
                report::print(&serde_json::to_string_pretty(&facts)?);
            } else {
                let show = |k: &str| match &facts[k] {
                    serde_json::Value::Null => "unknown".to_string(),
                    serde_json::Value::String(v) => v.clone(),
                    v => v.to_string(),
                };
                report::print(&format!(
                    "{}: standby {} of {}, lag {} bytes, {} s, epoch {}",
                    s.scope,
                    show("standby"),
                    show("gold"),
                    show("lag_bytes"),
                    show("lag_s"),
                    show("epoch")
                ));
            }
            for k in ["error", "gold_error"] {
                if let Some(e) = facts[k].as_str() {
                    report::warn(&format!("Warning: {e}"));
                }
            }
            if let Some(why) = &over {
                report::warn(&format!("Warning: {why}"));
            }
            let known = facts["lag_bytes"].is_number() || facts["standby"] == false;
            Ok(if over.is_none() && known { 0 } else { 1 })
        }
        DrCommand::Promote {
            force,
            reason,
            lock_wait,
            hooks,
        } => {
            let (node, s) = load(settings)?;
            // A second promotion waits and then finds nothing to promote.
            let _lock = settings.state.lock(lock_wait)?;
            let req = PromoteRequest {
                force,
                reason,
                node,
                hooks: dr::hooks(&hooks.hooks_dir, hooks.hook_timeout),
            };
            match dr::promote(&s, &settings.state, &req)? {
                Promoted::Now(e) => {
                    let forced = if e.forced { " (FORCED)" } else { "" };
                    report::print(&format!(
                        "Notice: {} promoted{forced}: {} is a writable primary; epoch {} recorded in {}",
                        s.scope,
                        e.leader,
                        e.epoch,
                        settings.state.dir.join(dr::EPOCH_FILE).display()
                    ));
                    if e.forced {
                        report::warn(&format!(
                            "Warning: promoted while Gold's leader answers: two writable primaries until Gold is stopped ({})",
                            e.reason
                        ));
                    }
                }
                Promoted::Already(epoch) => report::print(&format!(
                    "Notice: {} is not a standby cluster (no standby_cluster in its configuration): nothing to promote{}",
                    s.scope,
                    epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default()
                )),
            }
            Ok(0)
        }
    }
}
