//! `agent watch`: re-evaluate watched facts (db_master, redis_master...) and apply as soon as
//! one changes; fire hooks on cluster events.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::failover::hooks::Hooks;
use crate::failover::watch::{self, Options};
use crate::settings::{self, Settings};

/// Flags of `agent watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// How often the watched facts are re-evaluated.
    #[arg(long, value_parser = settings::parse_duration, default_value = "250ms")]
    pub interval: Duration,
    /// A fact to watch besides db_master (repeatable; dotted names work):
    /// `--fact redis_master` repoints Redis clients after a Sentinel
    /// failover. On a node without a database cluster, only these.
    #[arg(long = "fact")]
    pub facts: Vec<String>,
    /// Fallback drift-correction schedule (cron expression).
    #[arg(long, default_value = "*/30 * * * *")]
    pub schedule: String,
    /// Executables run on cluster events (agent_up, heartbeat, master_down, master_up, slave_down, slave_up; dr_lag on a standby site).
    #[arg(long, default_value = "/etc/agent/hooks.d")]
    pub hooks_dir: PathBuf,
    /// Time limit of one hook.
    #[arg(long, value_parser = settings::parse_duration, default_value = "10s")]
    pub hook_timeout: Duration,
    /// How often the heartbeat hook runs.
    #[arg(long, value_parser = settings::parse_duration, default_value = "10s")]
    pub heartbeat: Duration,
    /// A change within this long of the one before is applied only once the
    /// facts held still this long (a flapping primary restarts the
    /// application at most twice; a failover after a quiet spell is
    /// followed at once).
    #[arg(long, value_parser = settings::parse_duration, default_value = "10s")]
    pub flap_hold: Duration,
    /// Stop after this long (tests and demos).
    #[arg(long, value_parser = settings::parse_duration)]
    pub max_time: Option<Duration>,
}

pub fn run(settings: &Settings, args: WatchArgs) -> Result<u8> {
    let schedule = resources::cron::schedule(&args.schedule)
        .map_err(|e| anyhow::anyhow!("--schedule '{}': {e}", args.schedule))?;
    watch::run(
        settings,
        Options {
            interval: args.interval,
            facts: args.facts,
            schedule,
            hooks: Hooks {
                dir: args.hooks_dir,
                timeout: args.hook_timeout,
            },
            heartbeat: args.heartbeat,
            flap_hold: args.flap_hold,
            max_time: args.max_time,
        },
    )
}
