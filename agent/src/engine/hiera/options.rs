//! `lookup_options`: per-key settings kept in the data itself.
//!
//! The `lookup_options` hashes of every level are hash-merged (higher level
//! wins per key), as Puppet does, then each entry is validated when a key
//! asks for it. An entry's name is a key, or a regex when it starts with `^`;
//! an exact name wins over patterns, patterns are tried in order.

use regex::Regex;
use serde_json::{Map, Value};

use super::merge::MergeSpec;

/// The data key that holds the options.
pub(crate) const LOOKUP_OPTIONS: &str = "lookup_options";

/// What `lookup_options` says about one key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KeyOptions {
    /// `merge:` — used when the caller gives no merge.
    pub merge: Option<MergeSpec>,
    /// `convert_to: Sensitive`.
    pub sensitive: bool,
}

/// The merged `lookup_options` of a hierarchy, split into exact names and
/// compiled patterns.
#[derive(Debug, Default)]
pub(crate) struct LookupOptions {
    exact: Map<String, Value>,
    patterns: Vec<(Regex, Value)>,
}

impl LookupOptions {
    /// Builds from the merged hash; an invalid pattern is an error.
    pub(crate) fn new(merged: Option<Value>) -> Result<LookupOptions, String> {
        let map = match merged {
            None | Some(Value::Null) => return Ok(LookupOptions::default()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(format!(
                    "lookup_options must be a hash, got {}",
                    super::merge::kind(&other)
                ))
            }
        };
        let mut out = LookupOptions::default();
        for (k, v) in map {
            if k.starts_with('^') {
                let re = Regex::new(&k).map_err(|e| {
                    format!("lookup_options pattern \"{k}\" is not a valid regex: {e}")
                })?;
                out.patterns.push((re, v));
            } else {
                out.exact.insert(k, v);
            }
        }
        Ok(out)
    }

    /// The options for `root_key` (the first segment of a dotted key).
    pub(crate) fn for_key(&self, root_key: &str) -> Result<KeyOptions, String> {
        let entry = self.exact.get(root_key).or_else(|| {
            self.patterns
                .iter()
                .find(|(re, _)| re.is_match(root_key))
                .map(|(_, v)| v)
        });
        match entry {
            None | Some(Value::Null) => Ok(KeyOptions::default()),
            Some(v) => {
                parse_entry(v).map_err(|m| format!("lookup_options for \"{root_key}\": {m}"))
            }
        }
    }
}

fn parse_entry(v: &Value) -> Result<KeyOptions, String> {
    let Value::Object(map) = v else {
        return Err(format!("expected a hash, got {}", super::merge::kind(v)));
    };
    let mut out = KeyOptions::default();
    for (k, v) in map {
        match k.as_str() {
            "merge" => out.merge = Some(MergeSpec::from_value(v)?),
            "convert_to" => out.sensitive = parse_convert_to(v)?,
            other => {
                return Err(format!(
                    "unknown option \"{other}\" (expected merge or convert_to)"
                ))
            }
        }
    }
    Ok(out)
}

/// `convert_to: Sensitive` or `convert_to: [Sensitive]`; other types are not
/// supported because values stay JSON here.
fn parse_convert_to(v: &Value) -> Result<bool, String> {
    let name = match v {
        Value::String(s) => s.as_str(),
        Value::Array(items) if items.len() == 1 => items[0].as_str().unwrap_or_default(),
        _ => "",
    };
    match name {
        "Sensitive" => Ok(true),
        _ => Err(format!(
            "convert_to {v} is not supported (only \"Sensitive\" is)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hiera::Merge;
    use serde_json::json;

    #[test]
    fn exact_names_beat_patterns() {
        let o = LookupOptions::new(Some(json!({
            "^profile::.*::users$": {"merge": "unique"},
            "profile::db::users": {"merge": {"strategy": "deep", "merge_hash_arrays": true}},
            "^.*::password$": {"convert_to": "Sensitive"},
            "pgsql_server::password": {"convert_to": ["Sensitive"]},
        })))
        .unwrap();
        let k = o.for_key("profile::db::users").unwrap();
        assert_eq!(k.merge.as_ref().map(|m| m.strategy), Some(Merge::Deep));
        let k = o.for_key("profile::web::users").unwrap();
        assert_eq!(k.merge.map(|m| m.strategy), Some(Merge::Unique));
        assert!(o.for_key("pgsql_server::password").unwrap().sensitive);
        assert!(o.for_key("app::password").unwrap().sensitive);
        assert_eq!(o.for_key("other").unwrap(), KeyOptions::default());
    }

    #[test]
    fn bad_entries_are_errors_naming_the_key() {
        let o = LookupOptions::new(Some(json!({
            "a": {"convert_to": "Integer"},
            "b": {"merge": "sideways"},
            "c": {"mrege": "deep"},
        })))
        .unwrap();
        assert!(o.for_key("a").unwrap_err().contains("\"a\""));
        assert!(o.for_key("b").unwrap_err().contains("sideways"));
        assert!(o.for_key("c").unwrap_err().contains("mrege"));
        assert!(LookupOptions::new(Some(json!({"^(": {}}))).is_err());
        assert!(LookupOptions::new(Some(json!(["x"]))).is_err());
    }
}
