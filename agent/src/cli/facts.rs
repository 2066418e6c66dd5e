//! `agent facts [NAME…]`: print all facts, or the named dotted ones; only
//! the sources the names need are read.

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::engine::facts;
use crate::engine::report;
use crate::settings::Settings;

pub fn run(settings: &Settings, names: &[String], json: bool, yaml: bool) -> Result<u8> {
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
            crate::yaml::to_string(v)
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
