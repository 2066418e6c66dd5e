//! `agent install-timer`: schedule `agent apply`, as a systemd timer or a
//! cron.d entry where PID 1 is not systemd.

use std::path::PathBuf;

use anyhow::Result;

use crate::schedule::timer::{self, Options, Scheduler};
use crate::settings::{self, Settings};

/// Flags of `agent install-timer`.
#[derive(Debug, clap::Args, Clone)]
pub struct InstallTimerArgs {
    /// When to run, in cron syntax: 5 fields (`*/30 * * * *`) or a
    /// shorthand (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`).
    #[arg(long, default_value = "*/30 * * * *")]
    pub schedule: String,
    /// Random delay before each run, so that nodes do not all run at once:
    /// seconds, or a number with s, m or h (`90`, `5m`, `1h`).
    #[arg(long, default_value = "0", value_parser = settings::parse_duration)]
    pub splay: std::time::Duration,
    /// The agent binary the schedule runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub agent_path: Option<PathBuf>,
    /// systemd timer or cron.d entry; auto: systemd when PID 1 is systemd
    /// (/run/systemd/system exists), else cron.
    #[arg(long, default_value = "auto", value_parser = ["auto", "systemd", "cron"])]
    pub scheduler: String,
    /// Install `agent watch` as a service instead (systemd unit with
    /// Restart=on-failure, or a cron-supervised entry without systemd):
    /// it applies as soon as db_master changes, and on --schedule.
    #[arg(long)]
    pub watch: bool,
    /// The longest one scheduled apply may run (TimeoutStartSec).
    #[arg(long, default_value = "1h", value_parser = settings::parse_duration)]
    pub run_timeout: std::time::Duration,
}

pub fn run(settings: &Settings, args: InstallTimerArgs) -> Result<u8> {
    let scheduler = match args.scheduler.as_str() {
        "systemd" => Scheduler::Systemd,
        "cron" => Scheduler::Cron,
        _ => Scheduler::Auto,
    };
    timer::run(
        settings,
        Options {
            schedule: args.schedule,
            splay: args.splay,
            agent_path: args.agent_path,
            scheduler,
            watch: args.watch,
            run_timeout: args.run_timeout,
        },
    )
}
