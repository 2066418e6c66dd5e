//! `agent validate`: compile only, print the lints; any error exits non-zero.

use anyhow::Result;

use crate::engine::{self, lint, report};
use crate::settings::Settings;

pub fn run(settings: &Settings) -> Result<u8> {
    let engine::Node {
        name: node,
        compiled,
        ..
    } = engine::compile(settings)?;
    for w in lint::lint(&compiled.catalog) {
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
