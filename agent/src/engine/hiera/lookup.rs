//! The lookup engine: one [`Cx`] per top-level lookup walks the hierarchy,
//! reads data through the cache, interpolates what it finds, merges, digs
//! dotted keys, applies `lookup_options`, and records `--explain` lines.
//!
//! Nested lookups (`%{lookup('k')}`, `%{alias('k')}`) run in the same
//! context, so an interpolation loop is seen on the stack of keys in
//! progress and reported with its whole chain instead of overflowing.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::config::{Level, Locations};
use super::explain::Explain;
use super::interpolate::{self, dig, split_key, to_text, Resolver, Segment};
use super::merge::{Merge, MergeSpec};
use super::options::{KeyOptions, LookupOptions, LOOKUP_OPTIONS};
use super::{glob, Found, Hiera, HieraError};

/// The result of one (possibly nested) lookup.
pub(super) struct Outcome {
    pub value: Option<Value>,
    pub sensitive: bool,
    /// Every data file path the search considered, in order.
    pub searched: Vec<String>,
}

/// A data file a level resolved to for this scope.
struct Location {
    /// The template as written in hiera.yaml.
    original: String,
    path: PathBuf,
    exists: bool,
}

enum OptionsState {
    Unloaded,
    /// Being read: nested lookups meanwhile use no options (no recursion).
    Loading,
    Loaded(LookupOptions),
}

/// The state of one top-level lookup.
pub(super) struct Cx<'h> {
    hiera: &'h Hiera,
    scope: &'h dyn super::Scope,
    /// Keys (and `scope:` variables) being resolved: loop detection.
    stack: Vec<String>,
    /// Keys whose data is being interpolated: error context.
    ctx: Vec<String>,
    /// `mapped_paths` bindings, innermost last.
    locals: Vec<(String, Value)>,
    options: OptionsState,
    /// An alias brought a Sensitive value into the key being resolved.
    tainted: bool,
    /// Interpolating a hierarchy path (no calls, no explain lines).
    in_path: bool,
    /// Variables a path named that had no value (Puppet silently makes
    /// them empty strings: `os/Debian-.yaml`); warned about per level.
    unset_in_path: Vec<String>,
    pub ex: Option<Explain>,
}

impl<'h> Cx<'h> {
    pub(super) fn new(
        hiera: &'h Hiera,
        scope: &'h dyn super::Scope,
        ex: Option<Explain>,
    ) -> Cx<'h> {
        Cx {
            hiera,
            scope,
            stack: Vec::new(),
            ctx: Vec::new(),
            locals: Vec::new(),
            options: OptionsState::Unloaded,
            tainted: false,
            in_path: false,
            unset_in_path: Vec::new(),
            ex,
        }
    }

    /// The top-level lookup: a missing key is [`HieraError::NotFound`].
    pub(super) fn top(&mut self, key: &str, merge: Option<Merge>) -> Result<Found, HieraError> {
        let out = self.find(key, merge.map(MergeSpec::from))?;
        match out.value {
            Some(value) => Ok(Found {
                value,
                sensitive: out.sensitive,
            }),
            None => Err(HieraError::NotFound {
                key: key.to_string(),
                searched: out.searched,
            }),
        }
    }

    /// Looks `key` up; `merge` overrides `lookup_options`.
    pub(super) fn find(
        &mut self,
        key: &str,
        merge: Option<MergeSpec>,
    ) -> Result<Outcome, HieraError> {
        if let Some(pos) = self.stack.iter().position(|k| k == key) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(String::as_str).collect();
            chain.push(key);
            return Err(self.error(format!("interpolation loop: {}", chain.join(" -> "))));
        }
        self.note(|| format!("Searching for \"{key}\""));
        self.push();
        self.stack.push(key.to_string());
        let res = self.find_inner(key, merge);
        self.stack.pop();
        self.pop();
        res
    }

    fn find_inner(&mut self, key: &str, merge: Option<MergeSpec>) -> Result<Outcome, HieraError> {
        let segs = split_key(key).map_err(|msg| lookup_err(key, msg))?;
        let root = segs[0].to_string();
        let opts = self.key_options(&root)?;
        let spec = match merge {
            Some(m) => m,
            None => match opts.merge.clone() {
                Some(m) => {
                    self.note(|| "Using merge options from \"lookup_options\" hash".into());
                    m
                }
                None => MergeSpec::from(Merge::First),
            },
        };
        if let Some(ex) = &mut self.ex {
            ex.enter_key(opts.sensitive);
        }
        let outer_taint = std::mem::replace(&mut self.tainted, false);
        let res = self
            .search(&root, &spec)
            .and_then(|(v, searched)| Ok((self.sub_key(key, &segs, v)?, searched)));
        let tainted = std::mem::replace(&mut self.tainted, outer_taint);
        if let Some(ex) = &mut self.ex {
            ex.leave_key();
        }
        let (value, searched) = res?;
        let sensitive = opts.sensitive || tainted;
        if sensitive {
            if let Some(v) = &value {
                register_secrets(v);
            }
        }
        Ok(Outcome {
            value,
            sensitive,
            searched,
        })
    }

    /// Digs the segments after the root key (`a.b.0` → `b`, then `0`).
    fn sub_key(
        &mut self,
        key: &str,
        segs: &[Segment],
        v: Option<Value>,
    ) -> Result<Option<Value>, HieraError> {
        let Some(v) = v else { return Ok(None) };
        if segs.len() < 2 {
            return Ok(Some(v));
        }
        let rest: Vec<String> = segs[1..].iter().map(Segment::to_string).collect();
        self.note(|| format!("Sub key: \"{}\"", rest.join(".")));
        self.push();
        let dug = dig(v, &segs[1..], key).map_err(|msg| lookup_err(key, msg));
        match &dug {
            Ok(Some(v)) => {
                let last = rest.last().cloned().unwrap_or_default();
                if let Some(ex) = &mut self.ex {
                    ex.found(&last, v);
                }
            }
            Ok(None) => self.note(|| format!("No such key: \"{}\"", rest.join("."))),
            Err(_) => {}
        }
        self.pop();
        dug
    }

    /// `lookup_options` for `root`, reading and merging them on first use.
    fn key_options(&mut self, root: &str) -> Result<KeyOptions, HieraError> {
        if root == LOOKUP_OPTIONS {
            return Ok(KeyOptions::default());
        }
        if let OptionsState::Unloaded = self.options {
            self.options = OptionsState::Loading;
            // Puppet shows this search only with --explain-options.
            let ex = self.ex.take();
            let merged = self.search(LOOKUP_OPTIONS, &MergeSpec::from(Merge::Hash));
            self.ex = ex;
            let opts = LookupOptions::new(merged?.0).map_err(|m| lookup_err(LOOKUP_OPTIONS, m))?;
            self.options = OptionsState::Loaded(opts);
        }
        match &self.options {
            OptionsState::Loaded(o) => o.for_key(root).map_err(|m| lookup_err(root, m)),
            _ => Ok(KeyOptions::default()),
        }
    }

    /// Walks the hierarchy for `root`: the merged value and the paths searched.
    fn search(
        &mut self,
        root: &str,
        spec: &MergeSpec,
    ) -> Result<(Option<Value>, Vec<String>), HieraError> {
        let hiera = self.hiera;
        self.note(|| "Global Data Provider (hiera configuration version 5)".into());
        self.push();
        self.note(|| format!("Using configuration \"{}\"", hiera.config.path.display()));
        let merging = spec.strategy != Merge::First;
        if merging {
            self.note(|| format!("Merge strategy {}", spec.strategy));
            self.push();
            if let (Some(ex), Some(o)) = (&mut self.ex, spec.options_value()) {
                ex.plain_value("Options: ", &o);
            }
        }
        let mut found: Vec<Value> = Vec::new();
        let mut searched: Vec<String> = Vec::new();
        for level in &hiera.config.levels {
            self.note(|| format!("Hierarchy entry \"{}\"", level.name));
            self.push();
            self.ctx.push(root.to_string());
            let locations = self.locations(level);
            self.ctx.pop();
            for loc in locations? {
                searched.push(loc.path.display().to_string());
                self.note(|| format!("Path \"{}\"", loc.path.display()));
                self.push();
                self.note(|| format!("Original path: \"{}\"", loc.original));
                if loc.exists {
                    let data = hiera.cache.get(&loc.path, level.format)?;
                    match data.get(root) {
                        None => self.note(|| format!("No such key: \"{root}\"")),
                        Some(raw) => {
                            self.ctx.push(root.to_string());
                            let v = interpolate::interpolate_value(raw, self, true);
                            self.ctx.pop();
                            let v = v?;
                            if let Some(ex) = &mut self.ex {
                                ex.found(root, &v);
                            }
                            found.push(v);
                        }
                    }
                } else {
                    self.note(|| "Path not found".into());
                }
                self.pop();
                if !merging && !found.is_empty() {
                    break;
                }
            }
            self.pop();
            if !merging && !found.is_empty() {
                break;
            }
        }
        let merged = spec.merge_all(found).map_err(|m| lookup_err(root, m))?;
        if merging {
            if let (Some(ex), Some(v)) = (&mut self.ex, &merged) {
                ex.value("Merged result: ", v);
            }
            self.pop();
        }
        self.pop();
        Ok((merged, searched))
    }

    /// The data files of a level for this scope; a variable its paths name
    /// that has no value is a warning naming the level (once per run).
    fn locations(&mut self, level: &Level) -> Result<Vec<Location>, HieraError> {
        self.unset_in_path.clear();
        let out = self.level_locations(level);
        if !self.unset_in_path.is_empty() {
            let vars = std::mem::take(&mut self.unset_in_path);
            let mut warned = self.hiera.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.insert(level.name.clone()) {
                crate::engine::report::warn(&format!(
                    "Warning: {}: hierarchy level '{}': {} has no value; its path uses an empty string there",
                    self.hiera.config.path.display(),
                    level.name,
                    vars.iter().map(|v| format!("%{{{v}}}")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        out
    }

    fn level_locations(&mut self, level: &Level) -> Result<Vec<Location>, HieraError> {
        let datadir = self
            .hiera
            .config
            .root
            .join(self.interp_path(&level.datadir)?);
        let mut out = Vec::new();
        match &level.locations {
            Locations::Paths(paths) => {
                for p in paths {
                    let path = datadir.join(self.interp_path(p)?);
                    out.push(Location {
                        original: p.clone(),
                        exists: path.is_file(),
                        path,
                    });
                }
            }
            Locations::Globs(globs) => {
                for g in globs {
                    let pattern = self.interp_path(g)?;
                    let files =
                        glob::expand(&datadir, &pattern).map_err(|msg| HieraError::Config {
                            file: self.hiera.config.path.clone(),
                            line: None,
                            msg: format!("hierarchy '{}': {msg}", level.name),
                        })?;
                    out.extend(files.into_iter().map(|path| Location {
                        original: g.clone(),
                        path,
                        exists: true,
                    }));
                }
            }
            Locations::Mapped { var, key, template } => {
                let outer = std::mem::replace(&mut self.in_path, true);
                let value = self.var(var);
                self.in_path = outer;
                let elems = match value? {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items,
                    Some(Value::Object(map)) => {
                        map.into_iter().map(|(k, v)| json!([k, v])).collect()
                    }
                    Some(other) => vec![other],
                };
                for e in elems {
                    self.locals.push((key.clone(), e));
                    let rel = self.interp_path(template);
                    self.locals.pop();
                    let path = datadir.join(rel?);
                    out.push(Location {
                        original: template.clone(),
                        exists: path.is_file(),
                        path,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Interpolates a path template (scope variables only).
    fn interp_path(&mut self, template: &str) -> Result<String, HieraError> {
        if !interpolate::has_interpolation(template) {
            return Ok(template.to_string());
        }
        let outer = std::mem::replace(&mut self.in_path, true);
        let v = interpolate::interpolate_str(template, self, false);
        self.in_path = outer;
        Ok(to_text(&v?))
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(ex) = &mut self.ex {
            ex.line(&text());
        }
    }

    fn push(&mut self) {
        if let Some(ex) = &mut self.ex {
            ex.push();
        }
    }

    fn pop(&mut self) {
        if let Some(ex) = &mut self.ex {
            ex.pop();
        }
    }
}

impl Resolver for Cx<'_> {
    fn var(&mut self, path: &str) -> Result<Option<Value>, HieraError> {
        let segs = split_key(path).map_err(|m| self.error(m))?;
        let root = segs[0].to_string();
        let root = root.strip_prefix("::").unwrap_or(&root);
        let base = match self.locals.iter().rev().find(|(k, _)| k == root) {
            Some((_, v)) => Some(v.clone()),
            None => {
                let next = match segs.get(1) {
                    Some(Segment::Key(k)) => Some(k.as_str()),
                    _ => None,
                };
                self.scope.var(root, next)
            }
        };
        let value = match base {
            None => None,
            Some(v) => dig(v, &segs[1..], path).map_err(|m| self.error(m))?,
        };
        if self.in_path && value.is_none() && !self.unset_in_path.iter().any(|v| v == path) {
            self.unset_in_path.push(path.to_string());
        }
        if !self.in_path {
            self.note(|| "Global Scope".into());
            self.push();
            match &value {
                Some(v) => {
                    if let Some(ex) = &mut self.ex {
                        ex.found(path, v);
                    }
                }
                None => self.note(|| format!("No such key: \"{path}\"")),
            }
            self.pop();
        }
        let Some(value) = value else { return Ok(None) };
        // Puppet interpolates what a variable holds, too.
        let name = format!("scope:{path}");
        if self.stack.contains(&name) {
            return Err(self.error(format!("interpolation loop on variable '{path}'")));
        }
        self.stack.push(name);
        let allow_calls = !self.in_path;
        let res = interpolate::interpolate_value(&value, self, allow_calls);
        self.stack.pop();
        res.map(Some)
    }

    fn lookup(&mut self, key: &str, alias: bool) -> Result<Option<(Value, bool)>, HieraError> {
        let out = self.find(key, None)?;
        if alias && out.sensitive {
            self.tainted = true;
            if let Some(ex) = &mut self.ex {
                ex.taint_key();
            }
        }
        Ok(out.value.map(|v| (v, out.sensitive)))
    }

    fn error(&self, msg: String) -> HieraError {
        HieraError::Interpolation {
            key: self.ctx.last().cloned().unwrap_or_default(),
            msg,
        }
    }

    fn enter(&mut self, raw: &str) {
        if !self.in_path {
            self.note(|| format!("Interpolation on \"{raw}\""));
            self.push();
        }
    }

    fn leave(&mut self) {
        if !self.in_path {
            self.pop();
        }
    }
}

fn lookup_err(key: &str, msg: String) -> HieraError {
    HieraError::Lookup {
        key: key.to_string(),
        msg,
    }
}

/// Registers every string in a Sensitive value with the process-wide
/// redaction set, so no printing path can show it.
fn register_secrets(v: &Value) {
    match v {
        Value::String(s) => resources::redact::register(s),
        Value::Array(items) => items.iter().for_each(register_secrets),
        Value::Object(map) => map.values().for_each(register_secrets),
        _ => {}
    }
}
