//! `agent demo`: a throw-away cluster on loopback, failed over, with timings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::settings::{self, Settings};
use crate::testbed::demo::{self, Options};

/// Flags of `agent demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Watch interval of the stash node's `agent watch`.
    #[arg(long, value_parser = settings::parse_duration, default_value = "250ms")]
    pub interval: Duration,
    /// Keep the cluster's files (not its processes) for a look afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Where to build it (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A seed stack instead of the default Stash failover: `patroni` (3 etcd,
    /// 3 Patroni nodes, the Stash stand-in following db_master from etcd,
    /// four faults) or `plusmoin` (lag, a lost slave and its return, as
    /// plusmoin sees them).
    #[arg(value_parser = ["patroni", "plusmoin"])]
    pub scenario: Option<String>,
    /// With the patroni scenario: print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(settings: &Settings, args: DemoArgs) -> Result<u8> {
    if args.json && args.scenario.as_deref() != Some("patroni") {
        anyhow::bail!("--json is for `agent demo patroni` (the other scenarios print a timeline)");
    }
    let options = Options {
        interval: args.interval,
        keep: args.keep,
        dir: args.dir.clone(),
    };
    match args.scenario.as_deref() {
        Some("patroni") => crate::testbed::patroni_demo::run(
            settings,
            crate::testbed::patroni_demo::DemoOptions {
                json: args.json,
                keep: args.keep,
                dir: args.dir,
            },
        ),
        Some("plusmoin") => crate::testbed::plusmoin::run(settings, options),
        _ => demo::run(settings, options),
    }
}
