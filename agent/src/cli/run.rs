//! `agent run`: drift correction on a cron schedule until stopped.

use std::time::Duration;

use anyhow::Result;

use crate::schedule::run::{self, Options};
use crate::settings::{self, Settings};

/// Flags of `agent run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Five-field cron expression or @hourly/@daily/@weekly...
    #[arg(long, default_value = "*/30 * * * *")]
    pub schedule: String,
    /// Random delay added to each run (e.g. 30s, 5m), so a fleet does not run at once.
    #[arg(long, value_parser = settings::parse_duration, default_value = "0s")]
    pub splay: Duration,
    /// Apply once now, then follow the schedule.
    #[arg(long)]
    pub now: bool,
    /// Stop after this many runs (tests, cron-driven one-shots).
    #[arg(long)]
    pub max_runs: Option<u64>,
}

pub fn run(settings: &Settings, args: RunArgs) -> Result<u8> {
    let schedule = resources::cron::schedule(&args.schedule)
        .map_err(|e| anyhow::anyhow!("--schedule '{}': {e}", args.schedule))?;
    run::run(
        settings,
        Options {
            schedule,
            splay: args.splay,
            now: args.now,
            max_runs: args.max_runs,
        },
    )
}
