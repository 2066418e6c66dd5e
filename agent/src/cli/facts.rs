//! `agent facts [NAME…]`: print all facts, or the named dotted ones; only
//! the sources the names need are read.

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::engine::facts;
use crate::engine::report;
use crate::failover::{dbmaster, redis};
use crate::settings::Settings;

/// Flags of `agent facts`.
#[derive(Debug, clap::Args)]
pub struct FactsArgs {
    /// Facts to print, dotted for nested ones (`os.release.major`); one
    /// prints its value, several `name => value` in the order asked; none,
    /// every fact.
    pub names: Vec<String>,
    /// Print JSON.
    #[arg(short, long, conflicts_with = "yaml")]
    pub json: bool,
    /// Print YAML.
    #[arg(short, long)]
    pub yaml: bool,
    /// With no names: list Facter's legacy flat facts too
    /// (`operatingsystemrelease`, `ipaddress_eth0`, ...). By name they
    /// always resolve.
    #[arg(long)]
    pub show_legacy: bool,
    /// Print how long each source of facts took (on stderr, so the facts
    /// on stdout stay parseable).
    #[arg(short, long)]
    pub timing: bool,
    /// Exit 1 when an external fact fails (bad YAML or JSON, a script that
    /// exits non-zero or times out), as Facter's --strict; without it the
    /// failure is logged as an error and its facts are missing.
    #[arg(long)]
    pub strict: bool,
    /// Read no external facts (facts.d) at all.
    #[arg(long)]
    pub no_external_facts: bool,
}

pub fn run(settings: &Settings, args: FactsArgs) -> Result<u8> {
    let FactsArgs {
        names,
        json,
        yaml,
        show_legacy,
        timing,
        strict,
        no_external_facts,
    } = args;
    let names = &names[..];
    // Named facts: only their sources are read (`agent facts os.family`
    // does not look for postmasters).
    let mut opts = settings.fact_opts.clone();
    opts.external = !no_external_facts;
    let facts = Arc::new(facts::Facts::new(opts));
    let code = print_facts(settings, &facts, names, json, yaml, show_legacy)?;
    if timing {
        for (source, took) in facts.timings() {
            report::warn(&format!(
                "facts from {source}: took {:.3} ms",
                took.as_secs_f64() * 1000.0
            ));
        }
    }
    let failed = facts.external_errors();
    if strict && !failed.is_empty() {
        report::print_errors(
            "agent",
            &[format!(
                "{} external facts file(s) failed to load (--strict; see the errors above)",
                failed.len()
            )],
        );
        return Ok(1);
    }
    Ok(code)
}

/// Prints what was asked; 1 when a named fact has no value.
fn print_facts(
    settings: &Settings,
    facts: &Arc<facts::Facts>,
    names: &[String],
    json: bool,
    yaml: bool,
    show_legacy: bool,
) -> Result<u8> {
    let mut demand = facts::Demand::none();
    for n in names {
        demand.add(n.split('.').next().unwrap_or(n));
    }
    if names.is_empty() {
        demand = facts::Demand::All;
    }
    // The cluster facts cost a network probe: a late source, asked only
    // when they are named (or all are printed).
    let wants_cluster = names.is_empty()
        || names
            .iter()
            .map(|n| n.split('.').next().unwrap_or(n))
            .any(|n| dbmaster::FACT_NAMES.contains(&n) || redis::FACT_NAMES.contains(&n));
    let cluster = if wants_cluster && settings.hiera_config.exists() {
        let node = settings.node_name(facts)?;
        let roles = settings.roles(&node)?;
        Some(settings.cluster_facts(facts, &node, &roles, settings.hiera()?))
    } else {
        None
    };
    let all = facts.demand(&demand);
    let cluster_error = cluster.as_ref().and_then(|c| c.error());
    if let Some(e) = cluster_error
        .as_ref()
        .filter(|_| !names.iter().any(|n| n == "db_master"))
    {
        report::print_errors("db_master", std::slice::from_ref(e));
    }
    let redis_error = cluster.as_ref().and_then(|c| c.redis_error());
    if let Some(e) = redis_error
        .as_ref()
        .filter(|_| !names.iter().any(|n| n == "redis_master"))
    {
        report::print_errors("redis_master", std::slice::from_ref(e));
    }
    let render = |v: &Value| -> String {
        if yaml {
            crate::yaml::to_string(v)
        } else if json || !v.is_string() {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.as_str().unwrap_or_default().to_string()
        }
    };
    if names.is_empty() {
        let mut all = (*all).clone();
        if let (false, Value::Object(map)) = (show_legacy, &mut all) {
            map.retain(|name, _| !facts::legacy::is_legacy(name));
        }
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
    // What is known is printed even when a name is not (in a split brain,
    // `db_split_brain` is the answer the caller needs); the exit names the
    // rest.
    if names.len() == 1 && !json && !yaml {
        if let Some(v) = picked.get(&names[0]) {
            report::print(&render(v));
        }
    } else if json || yaml {
        report::print(&render(&Value::Object(picked)));
    } else {
        // Facter's form, in the order asked.
        for n in names {
            let Some(v) = picked.get(n) else { continue };
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            report::print(&format!("{n} => {v}"));
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    let mut errors = Vec::new();
    if let Some(e) = cluster_error.filter(|_| missing.iter().any(|n| n == "db_master")) {
        missing.retain(|n| n != "db_master");
        errors.push(format!("db_master has no value: {e}"));
    }
    if let Some(e) = redis_error.filter(|_| missing.iter().any(|n| n == "redis_master")) {
        missing.retain(|n| n != "redis_master");
        errors.push(format!("redis_master has no value: {e}"));
    }
    if !missing.is_empty() {
        errors.push(format!(
            "no such fact: {} (try `agent facts` to list them)",
            missing.join(", ")
        ));
    }
    report::print_errors("agent", &errors);
    Ok(1)
}
