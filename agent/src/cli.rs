//! The command line: raw flags (clap) become validated [`Settings`] before
//! anything runs; each subcommand is one function; exit codes are decided in
//! [`main`] alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::compile::{self, CompileErrors};
use crate::hiera::{Hiera, Merge};
use crate::report::{self, Printer, Report, Summary};
use crate::state::{self, StateDir};
use crate::{apply, facts};

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
        /// Seconds to wait for another run's lock.
        #[arg(long, default_value_t = 5.0)]
        lock_wait: f64,
    },
    /// Print facts (all, or the named dotted ones).
    Facts {
        names: Vec<String>,
        #[arg(long, conflicts_with = "yaml")]
        json: bool,
        #[arg(long)]
        yaml: bool,
    },
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
    Backup(crate::backup_cmd::BackupCommand),
    /// Drift correction: apply on a cron schedule until stopped.
    Run(crate::daemon::RunArgs),
    /// Re-evaluate watched facts (db_master) and apply as soon as one changes.
    Watch(crate::watch::WatchArgs),
    /// A throw-away two-node cluster on loopback, failed over, with timings.
    Demo(crate::demo::DemoArgs),
    /// Install drift correction: a systemd timer, or a cron.d entry without systemd.
    InstallTimer(crate::timer::InstallTimerArgs),
    /// The stand-in Stash (tests and the demo): heartbeats through jdbc.url.
    #[command(hide = true)]
    StashStandin(crate::standin::StandinArgs),
}

/// Validated settings shared by the subcommands.
pub struct Settings {
    pub root: Option<PathBuf>,
    pub state: StateDir,
    pub manifests: PathBuf,
    pub hiera_config: PathBuf,
    pub fact_opts: facts::FactOptions,
    pub node: Option<String>,
}

impl Settings {
    pub fn from_global(g: &Global) -> Result<Settings> {
        let root = match &g.root {
            Some(r) => {
                std::fs::create_dir_all(r)
                    .with_context(|| format!("creating root {}", r.display()))?;
                Some(std::fs::canonicalize(r).with_context(|| format!("root {}", r.display()))?)
            }
            None => None,
        };
        let state = StateDir::new(
            g.state_dir
                .clone()
                .unwrap_or_else(|| state::default_state_dir(root.as_deref())),
        );
        let manifests = g
            .manifests
            .clone()
            .unwrap_or_else(|| first_existing("manifests", "/etc/agent/manifests"));
        let hiera_config = g
            .hiera_config
            .clone()
            .unwrap_or_else(|| first_existing("hiera/hiera.yaml", "/etc/agent/hiera.yaml"));
        let fact_opts = facts::FactOptions {
            facts_dir: g.facts_dir.clone(),
            ..Default::default()
        };
        Ok(Settings {
            root,
            state,
            manifests,
            hiera_config,
            fact_opts,
            node: g.node.clone(),
        })
    }

    /// `--node`, else the `networking.hostname` fact (the only fact read).
    pub fn node_name(&self, facts: &facts::Facts) -> Result<String> {
        if let Some(n) = &self.node {
            return Ok(n.clone());
        }
        facts
            .get("networking")
            .and_then(|n| n.get("hostname")?.as_str().map(str::to_string))
            .context("no --node given and no networking.hostname fact")
    }

    pub fn hiera(&self) -> Result<Arc<Hiera>> {
        Ok(Arc::new(Hiera::load(&self.hiera_config).with_context(
            || format!("loading {}", self.hiera_config.display()),
        )?))
    }

    /// The node's roles from site.yaml (none when there is no site).
    pub fn roles(&self, node: &str) -> Result<Vec<String>> {
        if !self.manifests.join("site.yaml").exists() {
            return Ok(vec![]);
        }
        compile::classify(&self.manifests, node).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Adds `db_master` & co. (see `dbmaster`) on top of `facts`; returns
    /// the split-brain error, which leaves `db_master` unset.
    pub fn add_cluster_facts(
        &self,
        facts: &Arc<facts::Facts>,
        node: &str,
        hiera: &Hiera,
        persist: bool,
    ) -> Result<Option<String>> {
        let scope = compile::NodeScope::new(facts.clone(), node, &self.roles(node)?);
        let (cluster, error) = crate::dbmaster::cluster_facts(hiera, &scope, &self.state, persist)?;
        facts.extend(cluster);
        Ok(error)
    }

    pub fn root_path(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from("/"))
    }
}

fn first_existing(local: &str, system: &str) -> PathBuf {
    if Path::new(local).exists() {
        PathBuf::from(local)
    } else {
        PathBuf::from(system)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let settings = Settings::from_global(&cli.global)?;
    match cli.command {
        Command::Apply {
            noop,
            detailed_exitcodes,
            lock_wait,
        } => cmd_apply(
            &settings,
            noop,
            detailed_exitcodes,
            Duration::from_secs_f64(lock_wait),
        ),
        Command::Facts { names, json, yaml } => cmd_facts(&settings, &names, json, yaml),
        Command::Lookup {
            key,
            explain,
            merge,
            show_sensitive,
        } => cmd_lookup(&settings, &key, explain, merge.as_deref(), show_sensitive),
        Command::Validate => cmd_validate(&settings),
        Command::Backup(cmd) => crate::backup_cmd::run(&settings, cmd),
        Command::Run(args) => crate::daemon::run(&settings, args),
        Command::Watch(args) => crate::watch::run(&settings, args),
        Command::Demo(args) => crate::demo::run(&settings, args),
        Command::InstallTimer(args) => crate::timer::run(&settings, args),
        Command::StashStandin(args) => crate::standin::run(&settings, args),
        Command::Graph => {
            let (compiled, _) = compile_node(&settings, false)?;
            report::print(&compiled.catalog.to_dot());
            Ok(0)
        }
    }
}

/// facts → Hiera → compile; compile errors are printed and become exit 1.
fn compile_node(settings: &Settings, persist: bool) -> Result<(compile::Compiled, String)> {
    // Facts are collected as the node name, Hiera and the manifests ask.
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let hiera = settings.hiera()?;
    if let Some(e) = settings.add_cluster_facts(&facts, &node, &hiera, persist)? {
        report::print_errors("db_master", &[e]);
    }
    let compiled = compile::compile(compile::Input {
        manifests_dir: &settings.manifests,
        node: &node,
        facts: &facts,
        hiera,
    })
    .map_err(|e: CompileErrors| {
        anyhow::anyhow!("{e}").context(format!("compiling the catalog for {node}"))
    })?;
    Ok((compiled, node))
}

/// What one apply did.
pub struct ApplyResult {
    pub node: String,
    pub summary: Summary,
}

impl ApplyResult {
    pub fn exit_code(&self, detailed: bool) -> u8 {
        self.summary.exit_code(detailed)
    }
}

/// One whole run: facts, compile, preflight, lock, apply, report. Used by
/// `apply` and by the long-running modes (`run`, `watch`).
pub fn apply_once(settings: &Settings, noop: bool, lock_wait: Duration) -> Result<ApplyResult> {
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (compiled, node) = compile_node(settings, !noop)?;
    tracing::debug!(elapsed = ?started.elapsed(), "compiled");
    let cx = resources::Context::new(
        settings.root_path(),
        resources::backup::BackupStore::new(&settings.state.dir),
    );
    if let Err(errors) = apply::preflight(&compiled.catalog, &cx) {
        anyhow::bail!(
            "refusing to apply, nothing was changed:\n{}",
            errors.join("\n")
        );
    }
    // noop writes nothing, not even the state dir.
    let lock = if noop {
        None
    } else {
        Some(settings.state.lock(lock_wait)?)
    };
    let outcomes = apply::apply(
        &compiled.catalog,
        &cx,
        apply::Options { noop },
        &mut Printer::new(true),
    );
    tracing::debug!(elapsed = ?started.elapsed(), "applied");
    let summary = Summary::of(&outcomes, started.elapsed().as_secs_f64());
    if let Some(lock) = &lock {
        let report = Report {
            node: &node,
            roles: &compiled.roles,
            noop,
            started_at,
            summary: &summary,
            entries: &compiled.catalog.entries,
            resources: &outcomes,
        };
        settings
            .state
            .replace_locked(lock, "last_run_report.json", |w| report.write_json(w))?;
        // Retention of the backup store, under the run lock; never in noop.
        let max_age = Duration::from_secs(resources::backup::DEFAULT_MAX_AGE_DAYS * 86_400);
        let keep = Some(resources::backup::DEFAULT_KEEP_PER_PATH);
        match resources::backup::prune(&cx.backup, keep, Some(max_age)) {
            Ok(s) if s.entries_removed + s.blobs_removed > 0 => tracing::info!(
                "backup retention: {} versions and {} blobs removed",
                s.entries_removed,
                s.blobs_removed
            ),
            Ok(_) => {}
            Err(e) => report::warn(&format!("Warning: backup retention failed: {e}")),
        }
    }
    report::print_summary(&node, &summary, noop);
    Ok(ApplyResult { node, summary })
}

fn cmd_apply(settings: &Settings, noop: bool, detailed: bool, lock_wait: Duration) -> Result<u8> {
    Ok(apply_once(settings, noop, lock_wait)?.exit_code(detailed))
}

fn cmd_facts(settings: &Settings, names: &[String], json: bool, yaml: bool) -> Result<u8> {
    // Named facts: only their sources are read (`agent facts os.family`
    // does not look for postmasters).
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let mut demand = facts::Demand::none();
    for n in names {
        demand.add(n.split('.').next().unwrap_or(n));
    }
    if names.is_empty() {
        demand = facts::Demand::All;
    }
    // The cluster facts cost a network probe: only when asked for (or all).
    if (names.is_empty() || names.iter().any(|n| n.starts_with("db_")))
        && settings.hiera_config.exists()
    {
        let node = settings.node_name(&facts)?;
        let hiera = settings.hiera()?;
        if let Some(e) = settings.add_cluster_facts(&facts, &node, &hiera, true)? {
            if names.iter().any(|n| n == "db_master") {
                anyhow::bail!("db_master has no value: {e}");
            }
            report::print_errors("db_master", &[e]);
        }
    }
    let all = facts.demand(&demand);
    let render = |v: &Value| -> String {
        if yaml {
            serde_yaml::to_string(v).unwrap_or_default()
        } else if json || !v.is_string() {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.as_str().unwrap_or_default().to_string()
        }
    };
    if names.is_empty() {
        report::print(&render(&all));
        return Ok(0);
    }
    let mut missing = Vec::new();
    let mut picked = serde_json::Map::new();
    for n in names {
        match facts::get_path(&all, n) {
            Some(v) => {
                picked.insert(n.clone(), v.clone());
            }
            None => missing.push(n.clone()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "no such fact: {} (try `agent facts` to list them)",
            missing.join(", ")
        );
    }
    if names.len() == 1 && !json && !yaml {
        report::print(&render(&picked[&names[0]]));
    } else if json || yaml {
        report::print(&render(&Value::Object(picked)));
    } else {
        for (k, v) in picked {
            let v = if let Value::String(s) = v {
                s
            } else {
                serde_json::to_string(&v).unwrap_or_default()
            };
            report::print(&format!("{k} => {v}"));
        }
    }
    Ok(0)
}

fn cmd_lookup(
    settings: &Settings,
    key: &str,
    explain: bool,
    merge: Option<&str>,
    show: bool,
) -> Result<u8> {
    // Only the facts the hierarchy and the data interpolate are read.
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    let node = settings.node_name(&facts)?;
    let scope = compile::NodeScope::new(facts, &node, &settings.roles(&node)?);
    let hiera = settings.hiera()?;
    let merge = merge
        .map(|m| Merge::parse(m).map_err(|e| anyhow::anyhow!("bad --merge: {e}")))
        .transpose()?;
    let (found, explanation) = if explain {
        let (r, text) = hiera.explain(key, &scope, merge, show);
        (r, Some(text))
    } else {
        (hiera.lookup(key, &scope, merge), None)
    };
    if let Some(text) = explanation {
        if show {
            report::print_raw(&text)
        } else {
            report::print(&text)
        }
    }
    let found = found?;
    if explain {
        return Ok(0);
    }
    let text = match &found.value {
        _ if found.sensitive && !show => "Sensitive [value redacted]".to_string(),
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    };
    if show {
        report::print_raw(&text)
    } else {
        report::print(&text)
    }
    Ok(0)
}

fn cmd_validate(settings: &Settings) -> Result<u8> {
    let (compiled, node) = compile_node(settings, false)?;
    for w in crate::lint::lint(&compiled.catalog) {
        report::warn(&format!("Warning: {w}"));
    }
    report::print(&format!(
        "OK: {} resources compiled for {node} (roles: {}) from {} manifest files",
        compiled.catalog.entries.len(),
        compiled.roles.join(", "),
        compiled.files.len()
    ));
    Ok(0)
}

/// tracing to stderr, through the redactor.
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_target(false);
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
