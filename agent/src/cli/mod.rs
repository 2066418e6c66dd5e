//! The command line: clap's definitions and the dispatch, one file per
//! subcommand. Raw flags become validated [`Settings`] before anything
//! runs; exit codes are decided in [`main`] alone. Nothing imports this
//! module: it calls the engine, the failover side, the schedule and the
//! test bed.

mod apply;
pub mod backup;
mod demo;
mod facts;
mod graph;
mod install_timer;
mod lookup;
mod run;
mod stash_standin;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::engine::report;
use crate::settings::{self, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Masterless configuration agent for HA PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Prefix every managed path with DIR (sandboxes, tests, image building).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// State dir: lock, last report, backups (default /var/lib/agent, or <root>/var/lib/agent).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Manifests dir (default ./manifests, then /etc/agent/manifests).
    #[arg(long, global = true, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// hiera.yaml (default ./hiera/hiera.yaml, then /etc/agent/hiera.yaml).
    #[arg(long, global = true, value_name = "FILE")]
    pub hiera_config: Option<PathBuf>,
    /// External facts dir.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/etc/agent/facts.d"
    )]
    pub facts_dir: PathBuf,
    /// Node name (trusted.certname); default: the hostname fact.
    #[arg(long, global = true)]
    pub node: Option<String>,
    /// More logging (-v info, -vv debug, -vvv trace); AGENT_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile the node's catalog and converge the system to it.
    Apply {
        /// Report what would change; change nothing anywhere.
        #[arg(long)]
        noop: bool,
        /// Exit 0 no change, 2 changes, 4 failures, 6 both.
        #[arg(long)]
        detailed_exitcodes: bool,
        /// How long to wait for another run's lock (`5`, `500ms`, `1m`).
        #[arg(long, default_value = "5", value_parser = settings::parse_duration)]
        lock_wait: std::time::Duration,
        /// Print nothing when nothing changed and nothing failed (cron).
        #[arg(long)]
        quiet: bool,
        /// Manage only resources with one of these tags (comma-separated;
        /// a resource's tags: its `tags:`, its type, its manifest's name),
        /// and what they require.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Leave resources with one of these tags alone.
        #[arg(long = "skip_tags", alias = "skip-tags", value_delimiter = ',')]
        skip_tags: Vec<String>,
    },
    /// Print facts (all, or the named dotted ones).
    Facts(facts::FactsArgs),
    /// Look a key up in Hiera as the node would.
    Lookup {
        key: String,
        /// Show every hierarchy level searched.
        #[arg(long)]
        explain: bool,
        #[arg(long, value_parser = ["first", "unique", "hash", "deep"])]
        merge: Option<String>,
        /// Print Sensitive values in clear.
        #[arg(long)]
        show_sensitive: bool,
    },
    /// Compile without applying; non-zero exit on any error.
    Validate,
    /// Print the catalog's dependency graph in Graphviz dot.
    Graph,
    /// The backup store: list, restore or prune saved versions of files.
    #[command(subcommand)]
    Backup(crate::cli::backup::BackupCommand),
    /// Drift correction: apply on a cron schedule until stopped.
    Run(run::RunArgs),
    /// Re-evaluate watched facts (db_master) and apply as soon as one changes.
    Watch(watch::WatchArgs),
    /// A throw-away two-node cluster on loopback, failed over, with timings.
    Demo(demo::DemoArgs),
    /// Install drift correction: a systemd timer, or a cron.d entry without systemd.
    InstallTimer(install_timer::InstallTimerArgs),
    /// The stand-in Stash (tests and the demo): heartbeats through jdbc.url.
    #[command(hide = true)]
    StashStandin(stash_standin::StandinArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error exits 1, as Puppet's: clap's own 2 would read as
        // "changes" under --detailed-exitcodes. --help and --version: 0.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    init_logging(cli.global.verbose);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report::print_errors("agent", &[format!("{e:#}")]);
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let g = cli.global;
    let settings = Settings::resolve(settings::Raw {
        root: g.root,
        state_dir: g.state_dir,
        manifests: g.manifests,
        hiera_config: g.hiera_config,
        facts_dir: g.facts_dir,
        node: g.node,
    })?;
    match cli.command {
        Command::Apply {
            noop,
            detailed_exitcodes,
            lock_wait,
            quiet,
            tags,
            skip_tags,
        } => apply::run(
            &settings,
            crate::engine::RunOptions {
                noop,
                lock_wait,
                quiet,
                tags,
                skip_tags,
            },
            detailed_exitcodes,
        ),
        Command::Facts(args) => facts::run(&settings, args),
        Command::Lookup {
            key,
            explain,
            merge,
            show_sensitive,
        } => lookup::run(&settings, &key, explain, merge.as_deref(), show_sensitive),
        Command::Validate => validate::run(&settings),
        Command::Graph => graph::run(&settings),
        Command::Backup(cmd) => backup::run(&settings, cmd),
        Command::Run(args) => run::run(&settings, args),
        Command::Watch(args) => watch::run(&settings, args),
        Command::Demo(args) => demo::run(&settings, args),
        Command::InstallTimer(args) => install_timer::run(&settings, args),
        Command::StashStandin(args) => stash_standin::run(&settings, args),
    }
}

/// tracing to stderr, through the redactor.
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_target(false)
        // Colour only on a terminal: a log piped into a file or a pager
        // carries no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // AGENT_LOG directives need EnvFilter, whose parser compiles regexes
    // (a third of a millisecond); without them a plain per-crate level
    // does. As before, AGENT_LOG that does not parse falls back to -v.
    let directives = std::env::var("AGENT_LOG")
        .ok()
        .and_then(|d| EnvFilter::try_new(d).ok());
    let registry = tracing_subscriber::registry().with(fmt);
    let _ = match directives {
        Some(filter) => registry.with(filter).try_init(),
        None => {
            let level = match verbose {
                0 => LevelFilter::WARN,
                1 => LevelFilter::INFO,
                2 => LevelFilter::DEBUG,
                _ => LevelFilter::TRACE,
            };
            // -v levels are the agent's own: libraries stay at warnings
            // (handlebars alone logs a debug line per rendered expression).
            let targets = Targets::new()
                .with_target("agent", level)
                .with_target("resources", level)
                .with_default(LevelFilter::WARN);
            registry.with(targets).try_init()
        }
    };
}

/// A writer that redacts secrets from each log write.
struct RedactingWriter<W: std::io::Write>(W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(resources::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
