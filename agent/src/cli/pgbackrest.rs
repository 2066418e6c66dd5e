//! `agent pgbackrest check`: pgBackRest's repository held to limits, one
//! line per check (OK/FAILED, the value, the limit), exit 1 when one fails,
//! as Barman's `check`. The logic is in [`crate::pgbackrest`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::engine::hiera::HieraError;
use crate::engine::{compile, facts, report};
use crate::pgbackrest::{self, Health, Limits};
use crate::settings::{parse_duration, Settings};

#[derive(Debug, clap::Subcommand)]
pub enum PgbackrestCommand {
    /// Check the repository: stanza status, last full backup's age, newest
    /// archived WAL's age, redundancy; exit 1 when a check fails.
    Check(CheckArgs),
}

/// Flags of `agent pgbackrest check`; each limit defaults to the node's
/// Hiera `pgbackrest::check::<name>`, else the value shown.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The stanza to check (default: every stanza in the repository).
    #[arg(long)]
    pub stanza: Option<String>,
    /// The newest full backup may not be older (default 8d).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_full_age: Option<Duration>,
    /// The newest WAL segment in the repository may not be older (default 5m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_wal_age: Option<Duration>,
    /// At least this many full backups (default 1).
    #[arg(long, value_name = "N")]
    pub min_redundancy: Option<usize>,
    /// Print JSON: `{"ok": bool, "checks": [{stanza, check, ok, value, limit}]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(settings: &Settings, cmd: PgbackrestCommand) -> Result<u8> {
    match cmd {
        PgbackrestCommand::Check(args) => check(settings, args),
    }
}

fn check(settings: &Settings, args: CheckArgs) -> Result<u8> {
    let config = pgbackrest::config_path(settings.root.as_deref());
    if !config.is_file() {
        bail!(
            "no pgBackRest configuration at {}: this node has no pgBackRest role \
             (roles/pgbackrest_export, _pull_backup, _import) or it was never applied",
            config.display()
        );
    }
    let limits = limits(settings, &args)?;
    let health = Health::read(settings.root.as_deref())?.with_context(|| {
        format!(
            "{} exists but no `pgbackrest` binary is on PATH (install the pgbackrest package)",
            config.display()
        )
    })?;
    let stanzas: Vec<(&String, &pgbackrest::StanzaHealth)> = match &args.stanza {
        Some(s) => vec![health.stanzas.get_key_value(s).with_context(|| {
            format!(
                "stanza {s} is not in the repository (pgbackrest info lists: {})",
                names(&health)
            )
        })?],
        None if health.stanzas.is_empty() => {
            bail!("the repository holds no stanza ({})", config.display())
        }
        None => health.stanzas.iter().collect(),
    };
    let lines: Vec<pgbackrest::CheckLine> = stanzas
        .into_iter()
        .flat_map(|(name, h)| pgbackrest::check(name, h, &limits))
        .collect();
    let ok = lines.iter().all(|l| l.ok);
    if args.json {
        report::print(&serde_json::to_string_pretty(
            &json!({"ok": ok, "checks": lines}),
        )?);
    } else {
        for l in &lines {
            report::print(&l.to_string());
        }
    }
    Ok(u8::from(!ok))
}

fn names(h: &Health) -> String {
    if h.stanzas.is_empty() {
        return "none".into();
    }
    h.stanzas.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The flags, else the node's `pgbackrest::check::*` in Hiera, else the
/// defaults.
fn limits(settings: &Settings, args: &CheckArgs) -> Result<Limits> {
    let mut limits = Limits::default();
    let hiera_value = |key: &str| -> Result<Option<Value>> {
        if !settings.hiera_config.exists() {
            return Ok(None);
        }
        let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
        let node = settings.node_name(&facts)?;
        let scope = compile::NodeScope::new(facts, &node, &settings.roles(&node)?);
        match settings.hiera()?.lookup(key, &scope, None) {
            Ok(f) => Ok(Some(f.value)),
            Err(HieraError::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("looking up {key}"))),
        }
    };
    let duration = |key: &str, v: Value| -> Result<Duration> {
        match &v {
            Value::Number(n) => n.as_f64().map(Duration::from_secs_f64),
            Value::String(s) => parse_duration(s).ok(),
            _ => None,
        }
        .with_context(|| format!("Hiera {key}: {v} is not a duration (e.g. 8d, 5m, 300)"))
    };
    limits.max_full_age = match args.max_full_age {
        Some(d) => d,
        None => match hiera_value("pgbackrest::check::max_full_age")? {
            Some(v) => duration("pgbackrest::check::max_full_age", v)?,
            None => limits.max_full_age,
        },
    };
    limits.max_wal_age = match args.max_wal_age {
        Some(d) => d,
        None => match hiera_value("pgbackrest::check::max_wal_age")? {
            Some(v) => duration("pgbackrest::check::max_wal_age", v)?,
            None => limits.max_wal_age,
        },
    };
    limits.min_redundancy = match args.min_redundancy {
        Some(n) => n,
        None => match hiera_value("pgbackrest::check::min_redundancy")? {
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str()?.parse().ok())
                .with_context(|| {
                    format!("Hiera pgbackrest::check::min_redundancy: {v} is not a count")
                })? as usize,
            None => limits.min_redundancy,
        },
    };
    Ok(limits)
}
