//! `agent dr`: the standby site of two (Gold / GoldDR, see
//! `failover::dr`). `agent dr status [--json]` prints the site's lag behind
//! Gold and fires `dr_lag` when it passes a bound from Hiera (exit 0 within
//! bounds, 1 over one or unreadable); `agent dr promote [--force] [--reason
//! TEXT]` turns this standby cluster into a writable one, refusing while
//! Gold's leader still answers (exit 1 with the reason; 0 when promoted or
//! already promoted). `agent dr switchover` (on GoldDR) and `agent dr
//! failback` (on Gold, the standby site after a switchover) move the
//! writable site planned, with no rewind and no lost row
//! (`failover::switchover`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::engine::report;
use crate::failover::dr::{self, DrSettings, PromoteRequest, Promoted};
use crate::failover::switchover::{self, Kind, SwitchRequest, Switched};
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
    /// Planned switchover, run on GoldDR's leader: stop writes on Gold,
    /// demote it to a standby cluster of this site, wait until this site
    /// has replayed all of Gold's WAL, promote this site, record an epoch,
    /// fire dr_switchover. Refuses (changing nothing) when Gold's leader
    /// does not answer or this site lags more than
    /// dr::switchover_max_lag_bytes.
    Switchover {
        #[command(flatten)]
        args: SwitchArgs,
    },
    /// The same the other way, run on Gold's leader once Gold is the
    /// standby site: GoldDR (dr::golddr_patroni or --peer) demoted, Gold
    /// writable again.
    Failback {
        #[command(flatten)]
        args: SwitchArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// The other site's Patroni REST API (host:port), instead of Hiera's
    /// dr::gold_patroni (switchover) or dr::golddr_patroni (failback).
    #[arg(long = "peer")]
    peer: Vec<String>,
    /// Why (recorded with the epoch and given to the hook).
    #[arg(long)]
    reason: Option<String>,
    /// How long to wait for a run holding the state dir's lock.
    #[arg(long, value_parser = settings::parse_duration, default_value = "60s")]
    lock_wait: Duration,
    #[command(flatten)]
    hooks: HookArgs,
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

fn switch(settings: &Settings, kind: Kind, args: SwitchArgs) -> Result<u8> {
    let key = match kind {
        Kind::Switchover => "dr::gold_patroni",
        Kind::Failback => "dr::golddr_patroni",
    };
    let (node, found) =
        watch::from_node_hiera(settings, |h, sc| DrSettings::load_with(h, sc, key, true))?;
    let mut s = found.ok_or_else(|| anyhow!("{node}: no Patroni settings in Hiera"))?;
    if !args.peer.is_empty() {
        s.gold_patroni = args
            .peer
            .iter()
            .map(|p| dr::base_url("--peer", p))
            .collect::<Result<_>>()?;
    }
    let _lock = settings.state.lock(args.lock_wait)?;
    let req = SwitchRequest {
        kind,
        reason: args
            .reason
            .unwrap_or_else(|| format!("planned {} (agent dr {})", kind.name(), kind.name())),
        node,
        hooks: dr::hooks(&args.hooks.hooks_dir, args.hooks.hook_timeout),
    };
    match switchover::switchover(&s, &settings.state, &req)? {
        Switched::Now {
            epoch,
            seconds,
            demoted,
            streaming,
        } => {
            report::print(&format!(
                "Notice: {} {}: {} is a writable primary after {seconds:.1} s; {demoted} is its standby cluster; \
                 demotion token {}; epoch {} recorded in {}",
                s.scope,
                kind.name(),
                epoch.leader,
                epoch.token.as_ref().map_or(String::new(), |t| t["demotion"].to_string()),
                epoch.epoch,
                settings.state.dir.join(dr::EPOCH_FILE).display()
            ));
            if let Err(why) = streaming {
                report::warn(&format!(
                    "Warning: {demoted} does not stream from this site yet: {why}; see its Patroni log"
                ));
                return Ok(1);
            }
            Ok(0)
        }
        Switched::Already(epoch) => {
            report::print(&format!(
                "Notice: {} is not a standby cluster (no standby_cluster in its configuration): already writable, nothing to {}{}",
                s.scope,
                kind.name(),
                epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default()
            ));
            Ok(0)
        }
    }
}

pub fn run(settings: &Settings, cmd: DrCommand) -> Result<u8> {
    match cmd {
        DrCommand::Switchover { args } => switch(settings, Kind::Switchover, args),
        DrCommand::Failback { args } => switch(settings, Kind::Failback, args),
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
