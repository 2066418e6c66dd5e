//! `agent stash-standin` (hidden): the stand-in Stash of the tests and the
//! demo, heartbeats through its jdbc.url.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::settings::Settings;
use crate::testbed::standin::{self, Options};

/// Flags of `agent stash-standin`.
#[derive(Debug, Args, Clone)]
pub struct StandinArgs {
    /// Stash's `stash-config.properties` (jdbc.url, jdbc.user, jdbc.password),
    /// read once at start. Under --root, an absolute path is a node path.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Append the log here (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Write the pid here; removed on a clean exit.
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Milliseconds between two heartbeat writes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Detach (fork, setsid) once the config is read and the pidfile is
    /// written; the foreground process exits 0 then, or 1 with the reason.
    #[arg(long, requires = "pidfile")]
    pub daemonize: bool,
}

pub fn run(settings: &Settings, args: StandinArgs) -> Result<u8> {
    standin::run(
        settings,
        Options {
            config: args.config,
            log: args.log,
            pidfile: args.pidfile,
            interval: Duration::from_millis(args.interval_ms),
            daemonize: args.daemonize,
        },
    )
}
