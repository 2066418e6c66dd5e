//! Facts (placeholder: see the module that replaces it).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Where and how facts are gathered.
#[derive(Debug, Clone)]
pub struct FactOptions {
    /// External facts directory (`--facts-dir`, default /etc/agent/facts.d).
    pub facts_dir: PathBuf,
    /// Time limit for one executable external fact.
    pub exec_timeout: Duration,
}

impl Default for FactOptions {
    fn default() -> Self {
        FactOptions {
            facts_dir: PathBuf::from("/etc/agent/facts.d"),
            exec_timeout: Duration::from_secs(10),
        }
    }
}

/// Gathers every fact of this node as one JSON object.
pub fn collect(_opts: &FactOptions) -> anyhow::Result<Value> {
    Ok(serde_json::json!({}))
}

/// A fact by dotted name (`os.release.major`).
pub fn get_path<'a>(facts: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut v = facts;
    for part in dotted.split('.') {
        v = v.get(part)?;
    }
    Some(v)
}
