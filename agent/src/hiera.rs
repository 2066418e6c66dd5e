//! Hiera v5 lookups (placeholder: see the module that replaces it).

use std::path::Path;

use serde_json::Value;

/// How values found at several levels combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    First,
    Unique,
    Hash,
    Deep,
}

/// A value found by a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub value: Value,
    /// `convert_to: Sensitive` applied: never print it.
    pub sensitive: bool,
}

/// A loaded hiera.yaml and its data.
#[derive(Debug)]
pub struct Hiera {}

impl Hiera {
    pub fn load(_config: &Path) -> anyhow::Result<Hiera> {
        Ok(Hiera {})
    }

    /// Looks `key` up with the variables of `scope` (facts, trusted, role...).
    pub fn lookup(&self, key: &str, _scope: &Value, _merge: Option<Merge>) -> anyhow::Result<Found> {
        anyhow::bail!("hiera not implemented: {key}")
    }
}
