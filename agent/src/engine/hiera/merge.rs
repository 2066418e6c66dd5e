//! Merge strategies: how the values found for one key at several hierarchy
//! levels combine into one (`first`, `unique`, `hash`, `deep`).
//!
//! The rules are Puppet's (`Puppet::Pops::MergeStrategy` and the `deep_merge`
//! gem it uses), so a lookup answers here what `puppet lookup` answers on the
//! same data. Values arrive in priority order: index 0 is the highest level.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// How values found at several levels combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The value of the highest-priority level that has the key (the default).
    First,
    /// Arrays and scalars from every level, flattened, duplicates removed,
    /// higher priority first.
    Unique,
    /// Top-level keys of every level's hash; higher priority wins per key.
    Hash,
    /// Recursive hash merge; arrays at the same place are unioned (lower
    /// priority elements first), like Puppet's `deep`.
    Deep,
}

impl Merge {
    /// Parses `first`, `unique`, `hash` or `deep`.
    pub fn parse(s: &str) -> Result<Merge, String> {
        match s.trim() {
            "first" => Ok(Merge::First),
            "unique" => Ok(Merge::Unique),
            "hash" => Ok(Merge::Hash),
            "deep" => Ok(Merge::Deep),
            other => Err(format!(
                "unknown merge strategy '{other}' (expected first, unique, hash or deep)"
            )),
        }
    }

    /// The strategy's name as written in data and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Merge::First => "first",
            Merge::Unique => "unique",
            Merge::Hash => "hash",
            Merge::Deep => "deep",
        }
    }
}

impl FromStr for Merge {
    type Err = String;
    fn from_str(s: &str) -> Result<Merge, String> {
        Merge::parse(s)
    }
}

impl fmt::Display for Merge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of the `deep` strategy (`{strategy: deep, merge_hash_arrays: true}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeepOptions {
    /// Arrays whose elements are all hashes merge element by element (by
    /// index) instead of being unioned.
    pub merge_hash_arrays: bool,
    /// Every merged array is sorted.
    pub sort_merged_arrays: bool,
    /// A higher-level array item `<prefix>x` removes `x` from lower levels; a
    /// bare `<prefix>` item empties them.
    pub knockout_prefix: Option<String>,
}

/// A strategy with its options: what a `merge` argument or a
/// `lookup_options` entry resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSpec {
    pub strategy: Merge,
    pub deep: DeepOptions,
}

impl From<Merge> for MergeSpec {
    fn from(strategy: Merge) -> MergeSpec {
        MergeSpec {
            strategy,
            deep: DeepOptions::default(),
        }
    }
}

impl MergeSpec {
    /// Reads the `merge` of a `lookup_options` entry: a strategy name or a
    /// hash with `strategy` and, for `deep`, its options.
    pub(crate) fn from_value(v: &Value) -> Result<MergeSpec, String> {
        let map = match v {
            Value::String(s) => return Merge::parse(s).map(MergeSpec::from),
            Value::Object(map) => map,
            other => {
                return Err(format!(
                    "merge must be a strategy name or a hash with 'strategy', got {other}"
                ))
            }
        };
        let strategy = match map.get("strategy") {
            Some(Value::String(s)) => Merge::parse(s)?,
            _ => return Err("the merge hash must name its 'strategy' as a string".into()),
        };
        let mut spec = MergeSpec::from(strategy);
        for (k, v) in map {
            let flag = || {
                v.as_bool()
                    .ok_or_else(|| format!("merge option '{k}' must be a boolean"))
            };
            match (strategy, k.as_str()) {
                (_, "strategy") => {}
                (Merge::Deep, "merge_hash_arrays") => spec.deep.merge_hash_arrays = flag()?,
                (Merge::Deep, "sort_merged_arrays") => spec.deep.sort_merged_arrays = flag()?,
                (Merge::Deep, "merge_debug") => {}
                (Merge::Deep, "knockout_prefix") => {
                    spec.deep.knockout_prefix = match v {
                        Value::Null => None,
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        _ => return Err("knockout_prefix must be a non-empty string".into()),
                    }
                }
                _ => {
                    return Err(format!(
                        "merge option '{k}' is not valid for strategy '{strategy}'"
                    ))
                }
            }
        }
        Ok(spec)
    }

    /// The non-default options, for `--explain` ("Options: {...}").
    pub(crate) fn options_value(&self) -> Option<Value> {
        let mut m = Map::new();
        if self.deep.merge_hash_arrays {
            m.insert("merge_hash_arrays".into(), Value::Bool(true));
        }
        if self.deep.sort_merged_arrays {
            m.insert("sort_merged_arrays".into(), Value::Bool(true));
        }
        if let Some(p) = &self.deep.knockout_prefix {
            m.insert("knockout_prefix".into(), Value::String(p.clone()));
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }

    /// Combines the values found, highest priority first. `None` when nothing
    /// was found; an error when a value has the wrong shape for the strategy.
    pub(crate) fn merge_all(&self, mut values: Vec<Value>) -> Result<Option<Value>, String> {
        if values.is_empty() {
            return Ok(None);
        }
        let merged = match self.strategy {
            Merge::First => values.swap_remove(0),
            Merge::Unique => unique(values)?,
            Merge::Hash => {
                let mut it = values.into_iter();
                let first = it.next().unwrap_or(Value::Null);
                it.try_fold(first, hash_merge)?
            }
            Merge::Deep => {
                let mut it = values.into_iter();
                let first = it.next().unwrap_or(Value::Null);
                it.fold(first, |higher, lower| deep_merge(higher, lower, &self.deep))
            }
        };
        Ok(Some(merged))
    }
}

/// Unique merge: every value flattened into one array, first occurrence kept.
fn unique(values: Vec<Value>) -> Result<Value, String> {
    if values.len() > 1 {
        if let Some(h) = values.iter().find(|v| v.is_object()) {
            return Err(format!(
                "a unique merge combines arrays and scalars, but one level has a hash: {h}"
            ));
        }
    }
    let mut out = Vec::new();
    for v in values {
        flatten_into(v, &mut out);
    }
    Ok(Value::Array(dedup(out)))
}

fn flatten_into(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| flatten_into(i, out)),
        other => out.push(other),
    }
}

/// Removes later duplicates, keeping order (Ruby's `Array#|`).
fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Hash merge of two levels: the lower hash with the higher one's keys on top.
fn hash_merge(higher: Value, lower: Value) -> Result<Value, String> {
    match (higher, lower) {
        (Value::Object(h), Value::Object(mut l)) => {
            l.extend(h);
            Ok(Value::Object(l))
        }
        (h, l) => {
            let bad = if h.is_object() { l } else { h };
            Err(format!(
                "a hash merge combines hashes, but one level has {}: {bad}",
                kind(&bad)
            ))
        }
    }
}

/// The `deep_merge` gem's `deep_merge!(source, dest)` with Puppet's options:
/// `source` is the higher-priority value, `dest` the lower one.
pub(crate) fn deep_merge(source: Value, dest: Value, opts: &DeepOptions) -> Value {
    // A higher-level undef never removes a lower value; a lower undef/false
    // is simply replaced.
    if source.is_null() {
        return dest;
    }
    if matches!(dest, Value::Null | Value::Bool(false)) {
        return source;
    }
    match source {
        Value::Object(src) => match dest {
            Value::Object(mut d) => {
                for (k, sv) in src {
                    let merged = match d.remove(&k) {
                        Some(dv) if !matches!(dv, Value::Null | Value::Bool(false)) => {
                            deep_merge(sv, dv, opts)
                        }
                        _ => deep_merge(sv.clone(), sv, opts),
                    };
                    d.insert(k, merged);
                }
                Value::Object(d)
            }
            // An empty hash has no key to overwrite with: the gem leaves dest.
            other if src.is_empty() => other,
            other => overwrite(Value::Object(src), other, opts),
        },
        Value::Array(mut src) => {
            let mut dest = dest;
            if let Some(prefix) = &opts.knockout_prefix {
                let bare = Value::String(prefix.clone());
                if src.contains(&bare) {
                    dest = cleared(dest);
                    src.retain(|v| v != &bare);
                }
            }
            let Value::Array(mut d) = dest else {
                return overwrite(Value::Array(src), dest, opts);
            };
            if let Some(prefix) = &opts.knockout_prefix {
                src.retain(
                    |item| match item.as_str().and_then(|s| s.strip_prefix(prefix)) {
                        Some(stripped) => {
                            d.retain(|x| x.as_str() != Some(stripped) && x != item);
                            false
                        }
                        None => true,
                    },
                );
            }
            let mut merged = if opts.merge_hash_arrays
                && src.iter().all(Value::is_object)
                && d.iter().all(Value::is_object)
            {
                let extra = src.len().saturating_sub(d.len());
                let mut src_it = src.into_iter();
                let mut list: Vec<Value> = d
                    .into_iter()
                    .map(|dv| {
                        let sv = src_it.next().unwrap_or_else(|| Value::Object(Map::new()));
                        deep_merge(sv, dv, opts)
                    })
                    .collect();
                list.extend(src_it.take(extra));
                list
            } else {
                d.extend(src);
                dedup(d)
            };
            if opts.sort_merged_arrays {
                merged.sort_by(compare);
            }
            Value::Array(merged)
        }
        scalar => overwrite(scalar, dest, opts),
    }
}

/// The gem's `overwrite_unmergeables`: the source replaces dest, except that
/// a source carrying the knockout prefix deletes dest (leaves "").
fn overwrite(source: Value, _dest: Value, opts: &DeepOptions) -> Value {
    let Some(prefix) = &opts.knockout_prefix else {
        return source;
    };
    let knocked = match &source {
        Value::String(s) => s.starts_with(prefix.as_str()),
        Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))),
        _ => false,
    };
    if knocked {
        Value::String(String::new())
    } else {
        source
    }
}

/// `clear_or_nil`: containers emptied, strings made "", anything else undef.
fn cleared(v: Value) -> Value {
    match v {
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Map::new()),
        Value::String(_) => Value::String(String::new()),
        _ => Value::Null,
    }
}

/// A total order for `sort_merged_arrays`: numbers, then strings, then the
/// rest by their JSON text (Ruby would refuse mixed types; we stay total).
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (Value::String(_), _) => Ordering::Less,
        (_, Value::String(_)) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// "a String", "an Array"... for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "undef",
        Value::Bool(_) => "a Boolean",
        Value::Number(_) => "a Number",
        Value::String(_) => "a String",
        Value::Array(_) => "an Array",
        Value::Object(_) => "a Hash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> MergeSpec {
        MergeSpec::from_value(&v).unwrap()
    }

    #[test]
    fn parse_names_and_rejects_unknown() {
        assert_eq!(Merge::parse("deep"), Ok(Merge::Deep));
        assert_eq!("unique".parse::<Merge>(), Ok(Merge::Unique));
        assert!(Merge::parse("deeper").unwrap_err().contains("deeper"));
        assert_eq!(Merge::Hash.to_string(), "hash");
    }

    #[test]
    fn merge_option_hash_is_validated() {
        let s = spec(json!({"strategy": "deep", "merge_hash_arrays": true}));
        assert_eq!(s.strategy, Merge::Deep);
        assert!(s.deep.merge_hash_arrays);
        assert!(MergeSpec::from_value(&json!({"merge_hash_arrays": true})).is_err());
        let e = MergeSpec::from_value(&json!({"strategy": "hash", "merge_hash_arrays": true}));
        assert!(e.unwrap_err().contains("not valid for strategy 'hash'"));
    }

    #[test]
    fn unique_flattens_and_keeps_priority_order() {
        let got = MergeSpec::from(Merge::Unique)
            .merge_all(vec![
                json!(["b", ["c"]]),
                json!("a"),
                json!(["a", "b", "d"]),
            ])
            .unwrap();
        assert_eq!(got, Some(json!(["b", "c", "a", "d"])));
        let single = MergeSpec::from(Merge::Unique).merge_all(vec![json!("x")]);
        assert_eq!(single.unwrap(), Some(json!(["x"])));
        let bad = MergeSpec::from(Merge::Unique).merge_all(vec![json!(["a"]), json!({"k": 1})]);
        assert!(bad.is_err());
    }

    #[test]
    fn hash_merge_is_top_level_only() {
        let got = MergeSpec::from(Merge::Hash)
            .merge_all(vec![
                json!({"a": {"x": 1}, "b": 2}),
                json!({"a": {"y": 1}, "c": 3}),
            ])
            .unwrap();
        assert_eq!(got, Some(json!({"a": {"x": 1}, "b": 2, "c": 3})));
        let bad = MergeSpec::from(Merge::Hash).merge_all(vec![json!({"a": 1}), json!("s")]);
        assert!(bad.unwrap_err().contains("a String"));
    }

    #[test]
    fn deep_merge_recurses_and_unions_arrays() {
        let got = MergeSpec::from(Merge::Deep)
            .merge_all(vec![
                json!({"a": {"x": 1, "l": ["high"]}, "s": "high"}),
                json!({"a": {"y": 2, "l": ["low", "high"]}, "s": "low", "n": null}),
            ])
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            json!({"a": {"x": 1, "y": 2, "l": ["low", "high"]}, "s": "high", "n": null})
        );
    }

    #[test]
    fn deep_merge_hash_arrays_merges_by_index() {
        let s = spec(json!({"strategy": "deep", "merge_hash_arrays": true}));
        let got = s
            .merge_all(vec![
                json!({"x": [{"a": 1}]}),
                json!({"x": [{"b": 2}, {"c": 3}]}),
            ])
            .unwrap();
        assert_eq!(got, Some(json!({"x": [{"a": 1, "b": 2}, {"c": 3}]})));
        let plain = MergeSpec::from(Merge::Deep)
            .merge_all(vec![json!({"x": [{"a": 1}]}), json!({"x": [{"b": 2}]})])
            .unwrap();
        assert_eq!(plain, Some(json!({"x": [{"b": 2}, {"a": 1}]})));
    }

    #[test]
    fn deep_merge_knockout_and_sort() {
        let s =
            spec(json!({"strategy": "deep", "knockout_prefix": "--", "sort_merged_arrays": true}));
        let got = s
            .merge_all(vec![
                json!({"x": ["--b", "z"]}),
                json!({"x": ["c", "b", "a"]}),
            ])
            .unwrap();
        assert_eq!(got, Some(json!({"x": ["a", "c", "z"]})));
        let cleared = s
            .merge_all(vec![json!({"x": ["--", "n"]}), json!({"x": ["o"]})])
            .unwrap();
        assert_eq!(cleared, Some(json!({"x": ["n"]})));
    }
}
