//! `agent lookup KEY`: a Hiera lookup as the node sees it, like `puppet
//! lookup` (with `--explain`, every level searched).

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use crate::engine::hiera::Merge;
use crate::engine::{compile, facts, report};
use crate::settings::Settings;

pub fn run(
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
        other => crate::yaml::to_string(other),
    };
    if show {
        report::print_raw(&text)
    } else {
        report::print(&text)
    }
    Ok(0)
}
