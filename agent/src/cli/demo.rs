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
}

pub fn run(settings: &Settings, args: DemoArgs) -> Result<u8> {
    demo::run(
        settings,
        Options {
            interval: args.interval,
            keep: args.keep,
            dir: args.dir,
        },
    )
}
