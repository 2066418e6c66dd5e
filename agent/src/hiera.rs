//! Hiera v5 lookups (placeholder until the real module lands).

use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    First,
    Unique,
    Hash,
    Deep,
}

impl Merge {
    pub fn parse(s: &str) -> Option<Merge> {
        match s {
            "first" => Some(Merge::First),
            "unique" => Some(Merge::Unique),
            "hash" => Some(Merge::Hash),
            "deep" => Some(Merge::Deep),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub value: Value,
    pub sensitive: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HieraError {
    #[error("key not found: {key}")]
    NotFound { key: String, searched: Vec<String> },
}

#[derive(Debug)]
pub struct Hiera {}

impl Hiera {
    pub fn load(_config: &Path) -> Result<Hiera, HieraError> {
        Ok(Hiera {})
    }

    pub fn lookup(
        &self,
        key: &str,
        _scope: &Value,
        _merge: Option<Merge>,
    ) -> Result<Found, HieraError> {
        Err(HieraError::NotFound {
            key: key.into(),
            searched: vec![],
        })
    }

    pub fn explain(
        &self,
        key: &str,
        scope: &Value,
        merge: Option<Merge>,
        _show: bool,
    ) -> (Result<Found, HieraError>, String) {
        (self.lookup(key, scope, merge), String::new())
    }
}
