//! `agent graph`: the catalog's dependency graph in Graphviz dot.

use anyhow::Result;

use crate::engine::{self, report};
use crate::settings::Settings;

pub fn run(settings: &Settings) -> Result<u8> {
    let node = engine::compile(settings)?;
    report::print(&node.compiled.catalog.to_dot());
    Ok(0)
}
