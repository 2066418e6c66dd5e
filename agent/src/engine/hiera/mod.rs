//! Hiera version 5 lookups, answering as `puppet lookup` does on the same
//! `hiera.yaml` and data.
//!
//! - [`config`]: hiera.yaml v5, validated at load (unsupported backends are
//!   refused by name, errors carry file and line).
//! - [`data`]: YAML/JSON data files, parsed once per [`Hiera`] and cached.
//! - [`interpolate`]: `%{facts.x}`, `%{::var}`, `%{lookup('k')}`,
//!   `%{alias('k')}`, `%{literal('%')}`, `%{scope('x')}` in paths and values.
//! - [`merge`]: first / unique / hash / deep.
//! - [`options`]: `lookup_options` (merge and `convert_to: Sensitive`).
//! - [`lookup`]: the engine; [`explain`]: the `--explain` text.
//!
//! Everything here reads; nothing writes. A Sensitive value is returned
//! flagged and its strings are registered with `resources::redact`.

mod config;
mod data;
mod explain;
mod glob;
mod interpolate;
mod lookup;
mod merge;
mod options;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use merge::Merge;

/// A value found by a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub value: Value,
    /// `convert_to: Sensitive` applied (or an `alias` of a Sensitive key):
    /// never print it. Its strings are already registered for redaction.
    pub sensitive: bool,
}

/// Why a lookup or a load failed.
#[derive(Debug, thiserror::Error)]
pub enum HieraError {
    /// hiera.yaml is unreadable, malformed or uses what is not supported.
    #[error("{}: {msg}", at(file, *line))]
    Config {
        file: PathBuf,
        line: Option<usize>,
        msg: String,
    },
    /// A data file is unreadable or malformed.
    #[error("{}: {msg}", at(file, *line))]
    Data {
        file: PathBuf,
        line: Option<usize>,
        msg: String,
    },
    /// No level of the hierarchy has the key.
    #[error("{}", not_found(key, searched))]
    NotFound { key: String, searched: Vec<String> },
    /// A `%{...}` in the value of `key` (or in a hierarchy path while
    /// looking `key` up) failed, e.g. an interpolation loop.
    #[error("interpolation in \"{key}\" failed: {msg}")]
    Interpolation { key: String, msg: String },
    /// The values found cannot be combined as asked (a hash merge meeting a
    /// string, a bad `lookup_options` entry, digging into a scalar...).
    #[error("lookup of \"{key}\" failed: {msg}")]
    Lookup { key: String, msg: String },
}

fn at(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

fn not_found(key: &str, searched: &[String]) -> String {
    let mut s = format!("hiera: no value for key \"{key}\"");
    if searched.is_empty() {
        s.push_str(" (the hierarchy resolved to no data files for this node)");
    } else {
        s.push_str("; searched, highest priority first:");
        for p in searched {
            s.push_str("\n  ");
            s.push_str(p);
        }
    }
    let root = key.split('.').next().unwrap_or(key);
    s.push_str(&format!(
        "\nhint: define \"{root}\" in one of these files (common.yaml for a default), \
         or run `agent lookup {key} --explain` to see what each level holds"
    ));
    s
}

/// A loaded hiera.yaml and its data cache.
#[derive(Debug)]
pub struct Hiera {
    config: config::Config,
    cache: data::DataCache,
    /// Levels already warned about (a variable of their path has no
    /// value): said once per run, not once per lookup.
    warned: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Hiera {
    /// Reads and validates `config` (a hiera.yaml of version 5). Data files
    /// are read lazily, on first use, then kept.
    pub fn load(config: &Path) -> Result<Hiera, HieraError> {
        let config = config::Config::load(config)?;
        tracing::debug!(
            config = %config.path.display(),
            levels = config.levels.len(),
            "hiera configuration loaded"
        );
        Ok(Hiera {
            warned: Default::default(),
            config,
            cache: data::DataCache::default(),
        })
    }

    /// The hiera.yaml this was loaded from.
    pub fn config_path(&self) -> &Path {
        &self.config.path
    }

    /// The hierarchy level names, highest priority first.
    pub fn level_names(&self) -> Vec<&str> {
        self.config.levels.iter().map(|l| l.name.as_str()).collect()
    }

    /// Looks `key` up with the variables of `scope` (an object holding
    /// `facts`, `trusted`, `role`, legacy top-level facts...). `merge`
    /// overrides the key's `lookup_options`; without either, first found.
    pub fn lookup(
        &self,
        key: &str,
        scope: &dyn Scope,
        merge: Option<Merge>,
    ) -> Result<Found, HieraError> {
        lookup::Cx::new(self, scope, None).top(key, merge)
    }

    /// Like [`Hiera::lookup`], plus the `puppet lookup --explain` style
    /// account of every level searched. Sensitive values read
    /// `Sensitive [value redacted]` unless `show_sensitive`.
    pub fn explain(
        &self,
        key: &str,
        scope: &dyn Scope,
        merge: Option<Merge>,
        show_sensitive: bool,
    ) -> (Result<Found, HieraError>, String) {
        let mut cx = lookup::Cx::new(self, scope, Some(explain::Explain::new(show_sensitive)));
        let res = cx.top(key, merge);
        let text = cx
            .ex
            .take()
            .map(explain::Explain::finish)
            .unwrap_or_default();
        if show_sensitive {
            return (res, text);
        }
        // A Sensitive value interpolated into another key's string is caught
        // here: its text was registered when it was found.
        let text = resources::redact::redact(&text).into_owned();
        (res, text)
    }

    /// How many data files have been parsed so far.
    pub fn cached_files(&self) -> usize {
        self.cache.len()
    }
}

/// Where interpolation finds scope variables (`%{facts.os.family}`,
/// `%{::role}`, `%{trusted.certname}`): a JSON object, or a scope that
/// reads facts only when a variable names them.
pub trait Scope {
    /// The variable `root`. `next` is the segment after it (`os` in
    /// `facts.os.family`): a lazy scope may answer `facts` with just that
    /// member, which is all the lookup will read of it.
    fn var(&self, root: &str, next: Option<&str>) -> Option<Value>;
}

impl Scope for Value {
    fn var(&self, root: &str, _next: Option<&str>) -> Option<Value> {
        self.get(root).cloned()
    }
}
