//! `agent fence --patroni-config PATH [--after DUR] [--interval DUR]`: the
//! agent as Patroni's watchdog on a database node (see `failover::fence`).
//! Runs until SIGTERM/SIGINT; each fence is one line on stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::engine::report;
use crate::failover::fence::{self, Target};
use crate::schedule::signals;
use crate::settings::parse_duration;

#[derive(Debug, clap::Args)]
pub struct FenceArgs {
    /// Patroni's configuration file (its REST API, data dir and bootstrap ttl are read from it).
    #[arg(long, value_name = "PATH")]
    pub patroni_config: PathBuf,
    /// Silence of Patroni's REST API after which a primary is fenced
    /// (default: half of ttl - loop_wait).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub after: Option<Duration>,
    /// How often Patroni's REST API is asked.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "500ms")]
    pub interval: Duration,
}

pub fn run(args: FenceArgs) -> Result<u8> {
    signals::install();
    let mut target = Target::from_config(&args.patroni_config)?;
    let from = if target.refresh_timing() {
        "the cluster's /config"
    } else {
        "bootstrap.dcs"
    };
    let after = args.after.unwrap_or_else(|| target.default_after());
    target.check(after, args.interval)?;
    report::warn(&format!(
        "agent fence: Patroni at {} (data dir {}): fence after {:.1} s + interval {:.1} s + stop {} s + margin {} s < ttl {} s - loop_wait {} s (from {from})",
        target.rest,
        target.data_dir.display(),
        after.as_secs_f64(),
        args.interval.as_secs_f64(),
        fence::STOP_TIME.as_secs(),
        fence::MARGIN.as_secs(),
        target.ttl.as_secs(),
        target.loop_wait.as_secs(),
    ));
    fence::run(&target, after, args.interval, |e| {
        match e {
        fence::Event::Fenced(f) => report::warn(&f.to_string()),
        fence::Event::Paused(true) => report::warn(
            "the cluster is paused (maintenance mode): a silent Patroni will not be fenced",
        ),
        fence::Event::Paused(false) => {
            report::warn("the cluster is no longer paused: fencing again")
        }
        fence::Event::HeldPaused { silent_for } => report::warn(&format!(
            "not fenced: Patroni silent for {:.1} s while PostgreSQL is a primary, but the cluster is paused (maintenance mode)",
            silent_for.as_secs_f64()
        )),
    }
    })?;
    Ok(0)
}
