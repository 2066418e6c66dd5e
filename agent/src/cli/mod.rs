//! The command line: clap's definitions and the dispatch, one file per
//! subcommand. Raw flags become validated [`Settings`] before anything
//! runs; exit codes are decided in [`main`] alone. Nothing imports this
//! module: it calls the engine, the failover side, the schedule and the
//! test bed.

mod apply;
pub mod backup;
mod cluster;
mod completions;
mod demo;
mod describe;
mod dr;
mod facts;
mod fence;
mod graph;
mod install_timer;
mod logging;
mod lookup;
mod pgbackrest;
mod resource;
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

/// `agent --version`: the package version, the git commit and the build
/// date (stamped by build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("AGENT_GIT_COMMIT"),
    ", built ",
    env!("AGENT_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version = VERSION,
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
    /// External facts dir (facts.d; `--external-dir` as Facter spells it).
    #[arg(
        long,
        visible_alias = "external-dir",
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
    /// Where logs go: console (stderr), syslog, json (JSON lines on
    /// stderr) or a file path (JSON lines when it ends in .json).
    #[arg(long, global = true, value_name = "DEST", default_value = "console")]
    pub logdest: logging::LogDest,
    /// Colour in logs and in the report's lines: auto (on a terminal
    /// only), always, never.
    #[arg(long, global = true, value_enum, default_value_t = logging::Color::Auto)]
    pub color: logging::Color,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile the node's catalog and converge the system to it.
    Apply(apply::ApplyArgs),
    /// Print facts (all, or the named dotted ones).
    Facts(facts::FactsArgs),
    /// Look keys up in Hiera as the node would (the first found, as `puppet lookup`).
    Lookup(lookup::LookupArgs),
    /// Print the current state of resources as manifest YAML (`puppet resource`).
    Resource(resource::ResourceArgs),
    /// The resource types and their attributes (`puppet describe`).
    Describe(describe::DescribeArgs),
    /// Compile without applying; non-zero exit on any error.
    Validate,
    /// Print the catalog's dependency graph in Graphviz dot.
    Graph,
    /// The backup store: list, restore or prune saved versions of files.
    #[command(subcommand)]
    Backup(crate::cli::backup::BackupCommand),
    /// Drift correction: apply on a cron schedule until stopped.
    Run(run::RunArgs),
    /// The clusters as plusmoin shows them: `agent cluster status [--json] [--fresh]`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Two sites: a standby cluster's lag (`agent dr status`) and its promotion (`agent dr promote`).
    #[command(subcommand)]
    Dr(dr::DrCommand),
    /// Re-evaluate watched facts (db_master) and apply as soon as one changes.
    Watch(watch::WatchArgs),
    /// A throw-away two-node cluster on loopback, failed over, with timings.
    Demo(demo::DemoArgs),
    /// pgBackRest's repository: `agent pgbackrest check` (Barman's check).
    #[command(subcommand)]
    Pgbackrest(pgbackrest::PgbackrestCommand),
    /// Patroni's watchdog where there is no watchdog device: fence a primary whose Patroni froze or died.
    Fence(fence::FenceArgs),
    /// Install drift correction: a systemd timer, or a cron.d entry without systemd.
    InstallTimer(install_timer::InstallTimerArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (or write one per subcommand with --dir).
    Man(completions::ManArgs),
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
    let implied = match &cli.command {
        Command::Apply(a) => a.verbosity(),
        _ => 0,
    };
    let verbose = cli.global.verbose.max(implied);
    logging::init_report(cli.global.color);
    if let Err(e) = logging::init(verbose, &cli.global.logdest, cli.global.color) {
        report::print_errors("agent", &[format!("{e:#}")]);
        return ExitCode::from(1);
    }
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
        Command::Apply(args) => apply::run(settings, args),
        Command::Facts(args) => facts::run(&settings, args),
        Command::Lookup(args) => lookup::run(&settings, args),
        Command::Resource(args) => resource::run(&settings, args),
        Command::Describe(args) => describe::run(args),
        Command::Validate => validate::run(&settings),
        Command::Graph => graph::run(&settings),
        Command::Backup(cmd) => backup::run(&settings, cmd),
        Command::Run(args) => run::run(&settings, args),
        Command::Cluster(cmd) => cluster::run(&settings, cmd),
        Command::Dr(cmd) => dr::run(&settings, cmd),
        Command::Watch(args) => watch::run(&settings, args),
        Command::Demo(args) => demo::run(&settings, args),
        Command::Pgbackrest(cmd) => pgbackrest::run(&settings, cmd),
        Command::Fence(args) => fence::run(args),
        Command::InstallTimer(args) => install_timer::run(&settings, args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::StashStandin(args) => stash_standin::run(&settings, args),
    }
}
