//! Compilation: classified manifests + facts + Hiera → a [`Catalog`].
//! Pure: it reads manifests, templates and data, and never writes.
//!
//! Per raw resource: expand `for_each`, render the title and every string
//! with Handlebars, split off metaparameters, turn `template:` into
//! `content` and `source:` into a confined path, mark Sensitive attributes,
//! and let the type validate its attributes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use resources::core::TypeEnv;
use resources::{redact, registry, Decl, ResourceId};
use serde_json::{json, Map, Value};

use crate::engine::catalog::{Catalog, Entry, Meta};
use crate::engine::compile_error::{CompileError, CompileErrorKind as Kind, CompileErrors};
use crate::engine::facts::{Demand, Facts};
use crate::engine::hiera::{Hiera, Scope};
use crate::engine::manifest::{self, RawResource};
use crate::engine::render::{Lookups, Renderer, Vars};
use crate::yaml::{Data, Node};

/// What a compile needs.
pub struct Input<'a> {
    pub manifests_dir: &'a Path,
    pub node: &'a str,
    /// The node's manifests, read once by the caller (which took the roles
    /// from them for the cluster facts' Hiera scope).
    pub loaded: manifest::NodeManifests,
    /// Read as the manifests, templates and Hiera data ask.
    pub facts: &'a Arc<Facts>,
    pub hiera: Arc<Hiera>,
}

/// A compiled node.
pub struct Compiled {
    pub catalog: Catalog,
    pub roles: Vec<String>,
    /// Files read (manifests), for `validate`.
    pub files: Vec<PathBuf>,
}

/// The Hiera scope of a node: its facts at top level (legacy `%{::x}`) and
/// under `facts`, `trusted.certname`, and the role from site.yaml. Facts
/// are collected when a variable names them: Hiera reads
/// `%{facts.os.family}` as the `os` fact alone, and a hierarchy and data
/// that name no fact read none.
pub struct NodeScope {
    /// `trusted`, `role`, `roles`: above every fact.
    fixed: Map<String, Value>,
    facts: Arc<Facts>,
}

impl NodeScope {
    pub fn new(facts: Arc<Facts>, node: &str, roles: &[String]) -> NodeScope {
        let fixed = Map::from_iter([
            ("trusted".to_string(), json!({ "certname": node })),
            ("role".to_string(), json!(role_name(roles))),
            ("roles".to_string(), json!(roles)),
        ]);
        NodeScope { fixed, facts }
    }
}

impl Scope for NodeScope {
    fn var(&self, root: &str, next: Option<&str>) -> Option<Value> {
        if let Some(v) = self.fixed.get(root) {
            return Some(v.clone());
        }
        if root == "facts" {
            return Some(match next {
                // Only the member the path goes on to read.
                Some(name) => Value::Object(
                    self.facts
                        .get(name)
                        .map(|v| Map::from_iter([(name.to_string(), v)]))
                        .unwrap_or_default(),
                ),
                None => (*self.facts.all()).clone(),
            });
        }
        self.facts.get(root)
    }
}

/// The facts rendering `raw` may read: those of each string in its title
/// and attributes, and of its template (every fact when the template's
/// name is itself rendered).
fn resource_demand(raw: &RawResource, renderer: &mut Renderer) -> Demand {
    fn strings(v: &Node, renderer: &mut Renderer, d: &mut Demand) {
        match &v.data {
            Data::Scalar(_) => {
                if let Some(s) = v.as_str() {
                    d.merge(renderer.prepare_str(s));
                }
            }
            Data::Seq(items) => items.iter().for_each(|x| strings(x, renderer, d)),
            Data::Map(m) => m.iter().for_each(|(k, x)| {
                strings(k, renderer, d);
                strings(x, renderer, d);
            }),
        }
    }
    let mut d = Demand::none();
    strings(&raw.title, renderer, &mut d);
    for (key, value) in &raw.attrs {
        strings(value, renderer, &mut d);
        if key == "template" {
            match value.as_str() {
                Some(rel) if !rel.contains("{{") => d.merge(renderer.prepare_template(rel)),
                _ => d = Demand::All,
            }
        }
    }
    d
}

/// `roles/stash_server` → `stash_server`.
fn role_name(roles: &[String]) -> String {
    roles
        .first()
        .map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
        .unwrap_or_default()
}

/// The node's role, as the hierarchy sees it, from site.yaml alone.
pub fn classify(manifests_dir: &Path, node: &str) -> Result<Vec<String>, CompileError> {
    Ok(manifest::load(manifests_dir, node)?.roles)
}

const META: &[&str] = &[
    "require",
    "before",
    "notify",
    "subscribe",
    "tags",
    "noop",
    "skip_if",
    "for_each",
];

/// Compiles the node's catalog.
pub fn compile(input: Input<'_>) -> Result<Compiled, CompileErrors> {
    let loaded = input.loaded;
    let scope = Arc::new(NodeScope::new(
        input.facts.clone(),
        input.node,
        &loaded.roles,
    ));
    let lookups = Arc::new(Lookups::new(input.hiera.clone(), scope.clone()));
    let mut renderer = Renderer::new(lookups.clone(), input.manifests_dir.join("templates"));
    // Every string and template is parsed first, to learn which facts
    // rendering may read: those are collected now, the rest never.
    let mut demand = Demand::none();
    for raw in &loaded.resources {
        demand.merge(resource_demand(raw, &mut renderer));
    }
    let facts = input.facts.demand(&demand);
    // Built once: each resource only sets or removes `item` in it.
    let mut vars = Vars::from(json!({
        "facts": *facts,
        "node": { "name": input.node, "roles": loaded.roles, "role": role_name(&loaded.roles) },
        "role": role_name(&loaded.roles),
    }));
    // Types read facts (os.family for a provider) through the same source.
    let env = TypeEnv::new(input.facts.clone());
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    let cx = CompileCx {
        renderer: &mut renderer,
        lookups: &lookups,
        hiera: &input.hiera,
        scope: &scope,
        files_dir: input.manifests_dir.join("files"),
        env: &env,
    };
    let mut cx = cx;
    for raw in &loaded.resources {
        match cx.expand(raw, &mut vars) {
            Ok(mut built) => entries.append(&mut built),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(CompileErrors(errors));
    }
    let catalog = Catalog::build(entries).map_err(CompileErrors)?;
    Ok(Compiled {
        catalog,
        roles: loaded.roles,
        files: loaded.files,
    })
}

struct CompileCx<'a> {
    renderer: &'a mut Renderer,
    /// Remembered lookups (strings); `for_each` lists go to `hiera` directly
    /// so that a long list is not kept twice.
    lookups: &'a Lookups,
    hiera: &'a Hiera,
    scope: &'a NodeScope,
    files_dir: PathBuf,
    env: &'a TypeEnv,
}

impl CompileCx<'_> {
    /// One raw resource → one entry per `for_each` item (or just one).
    /// `vars` holds no `item` before and after.
    fn expand(&mut self, raw: &RawResource, vars: &mut Vars) -> Result<Vec<Entry>, CompileError> {
        let at = |message| CompileError::new(raw.location.clone(), Kind::ForEach { message });
        let Some((_, for_each)) = raw.attrs.iter().find(|(k, _)| k == "for_each") else {
            return Ok(vec![self.build(raw, vars)?]);
        };
        let items = self.items(for_each, vars).map_err(at)?;
        let mut out = Vec::with_capacity(items.len());
        let mut result = Ok(());
        for item in items {
            set_item(vars, Some(item));
            match self.build(raw, vars) {
                Ok(e) => out.push(e),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        set_item(vars, None);
        result.map(|()| out)
    }

    /// The items of `for_each`: a YAML list; a string that is exactly
    /// `{{lookup 'key'}}` (a list, or a hash → `{key, value}` items); a
    /// string rendering to an inclusive range `A..B` (items A, A+1, ... B);
    /// or a mapping of names to any of those, a matrix: one item per
    /// combination, `{name: value, ...}`, the first name varying slowest.
    fn items(&mut self, v: &Node, vars: &Vars) -> Result<Vec<Value>, String> {
        match &v.data {
            Data::Map(m) => {
                let mut items = vec![Map::new()];
                for (name, axis) in m {
                    let Some(name) = name.as_str().map(str::to_string) else {
                        return Err(format!(
                            "for_each: matrix name {} is not a string",
                            name.to_json()
                        ));
                    };
                    if matches!(axis.data, Data::Map(_)) {
                        return Err(format!(
                            "for_each: matrix axis '{name}' must be a list, a range or a lookup"
                        ));
                    }
                    let values = self
                        .items(axis, vars)
                        .map_err(|e| format!("matrix axis '{name}': {e}"))?;
                    // The limit is on what is built: the product of the
                    // axes, checked before any of it is allocated.
                    let count = items.len().saturating_mul(values.len());
                    if count > MAX_ITEMS {
                        return Err(format!(
                            "for_each: the matrix makes {} x {} = {count} items, more than {MAX_ITEMS}",
                            items.len(),
                            values.len()
                        ));
                    }
                    let mut next = Vec::with_capacity(items.len() * values.len());
                    for item in &items {
                        for v in &values {
                            let mut combo = item.clone();
                            combo.insert(name.clone(), v.clone());
                            next.push(combo);
                        }
                    }
                    items = next;
                }
                Ok(items.into_iter().map(Value::Object).collect())
            }
            Data::Seq(seq) => Ok(seq.iter().map(Node::to_json).collect()),
            Data::Scalar(_) => {
                let Some(s) = v.as_str() else {
                    return Err(format!("for_each must be a list, got {}", v.to_json()));
                };
                if let Some(key) = whole_lookup(s) {
                    return self.lookup_items(&key);
                }
                let text = self.renderer.render_str(s, vars)?.text;
                let (from, to) = parse_range(&text).ok_or_else(|| {
                    format!(
                        "for_each must be a list, a range like \"1..50\", a matrix or \
                         exactly {{{{lookup 'key'}}}}, got '{text}'"
                    )
                })?;
                if to.saturating_sub(from) >= MAX_ITEMS as i64 {
                    return Err(format!("for_each: range {text} is longer than {MAX_ITEMS}"));
                }
                Ok((from..=to).map(Value::from).collect())
            }
        }
    }

    /// The items of a Hiera list or hash.
    fn lookup_items(&self, key: &str) -> Result<Vec<Value>, String> {
        let found = self
            .hiera
            .lookup(key, self.scope, None)
            .map_err(|e| e.to_string())?;
        match found.value {
            Value::Array(a) => Ok(a),
            Value::Object(o) => Ok(o
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()),
            other => Err(format!(
                "for_each: hiera key '{key}' is {other}, not a list or hash"
            )),
        }
    }

    fn build(&mut self, raw: &RawResource, ctx: &Vars) -> Result<Entry, CompileError> {
        let loc = &raw.location;
        let at = |kind| CompileError::new(loc.clone(), kind);
        let type_name = raw.type_name.to_ascii_lowercase();
        let constructor = registry::lookup(&type_name).ok_or_else(|| {
            at(Kind::UnknownType {
                type_name: raw.type_name.clone(),
            })
            .hint(format!("known types: {}", registry::names().join(", ")))
        })?;
        let (title, _) = self
            .render_value(&raw.title.to_json(), ctx)
            .map_err(|message| {
                at(Kind::Render {
                    subject: "title".into(),
                    message,
                })
            })?;
        let title = match title {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            _ => return Err(at(Kind::Title { type_name })),
        };
        let title = registry::normalize_title(&type_name, &title).map_err(|e| {
            at(Kind::Structure {
                message: format!("{type_name}: {e}"),
            })
        })?;
        let id = ResourceId::new(&type_name, &title);
        let attribute = |message: String| {
            at(Kind::Attribute {
                id: id.clone(),
                message,
            })
        };
        let mut attrs = Map::new();
        let mut sensitive = BTreeSet::new();
        let mut meta = Meta::default();
        for (key, value) in &raw.attrs {
            if key == "for_each" {
                continue;
            }
            let (v, secret) = self
                .render_value(&value.to_json(), ctx)
                .map_err(|message| {
                    at(Kind::Render {
                        subject: format!("{id}: attribute '{key}'"),
                        message,
                    })
                })?;
            if META.contains(&key.as_str()) {
                self.meta(&mut meta, key, v).map_err(|message| {
                    at(Kind::Metaparameter {
                        id: id.clone(),
                        message,
                    })
                })?;
                continue;
            }
            match key.as_str() {
                "template" => {
                    let Value::String(rel) = v else {
                        return Err(attribute("template must be a string".into()));
                    };
                    if raw.attrs.iter().any(|(k, _)| k == "content") {
                        return Err(attribute(
                            "give either content or template, not both".into(),
                        ));
                    }
                    let r = self.renderer.render_template(&rel, ctx).map_err(|e| {
                        let message = e.to_string();
                        // The hint fits the error: where templates are only
                        // when the template was not found.
                        let hint = if message.contains("No such file")
                            || message.contains("cannot read template")
                            || message.contains("must be relative")
                        {
                            "templates live under manifests/templates/"
                        } else if message.contains("unknown variable") {
                            "variables: facts.*, node.name, node.roles, role, item (in for_each); \
                             {{lookup 'key'}} for Hiera data"
                        } else {
                            "Handlebars syntax: {{expr}}, {{#if}}…{{/if}}, {{#each}}…{{/each}}"
                        };
                        at(Kind::Template {
                            id: id.clone(),
                            message,
                        })
                        .hint(hint)
                    })?;
                    if r.sensitive || redact::contains_secret(&r.text) {
                        sensitive.insert("content".to_string());
                    }
                    attrs.insert("content".into(), Value::String(r.text));
                    continue;
                }
                "source" => {
                    let Value::String(rel) = v else {
                        return Err(attribute("source must be a string".into()));
                    };
                    let path = crate::engine::render::confine_template(&self.files_dir, &rel)
                        .map_err(|e| {
                            attribute(format!("source: {e}"))
                                .hint("sources live under manifests/files/")
                        })?;
                    attrs.insert("source".into(), Value::String(path.display().to_string()));
                    continue;
                }
                _ => {}
            }
            if secret || key == "password" || contains_secret_value(&v) {
                mark_sensitive(&mut sensitive, key, &v);
            }
            attrs.insert(key.clone(), v);
        }
        let decl = Decl {
            id: id.clone(),
            attrs,
            sensitive,
            location: loc.clone(),
        };
        let resource = constructor(&decl, self.env).map_err(|e| {
            // An unknown attribute: point at its own line, and name what
            // the compiler takes besides the type's attributes.
            let text = e.to_string();
            let typo = text
                .split("unknown field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next());
            let line = typo
                .and_then(|name| raw.attrs.iter().find(|(k, _)| k == name))
                .map_or(loc.line, |(_, v)| v.mark.line);
            let hint = match typo {
                Some(_) => format!(
                    "see the `{type_name}` row of the resource table in README.md; every type \
                     also takes `template` (content from manifests/templates/) and the \
                     metaparameters {}",
                    META.join(", ")
                ),
                None => format!("see the `{type_name}` row of the resource table in README.md"),
            };
            CompileError::new(
                resources::Location {
                    file: loc.file.clone(),
                    line,
                },
                Kind::Invalid(e),
            )
            .hint(hint)
        })?;
        Ok(Entry::new(id, resource, meta, loc.clone()))
    }

    fn meta(&self, meta: &mut Meta, key: &str, v: Value) -> Result<(), String> {
        let list = |v: Value| -> Result<Vec<String>, String> {
            match v {
                Value::String(s) => Ok(vec![s]),
                Value::Array(a) => a
                    .into_iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("{key}: expected strings"))
                    })
                    .collect(),
                other => Err(format!("{key}: expected a string or a list, got {other}")),
            }
        };
        let refs = |v: Value| -> Result<Vec<ResourceId>, String> {
            list(v)?
                .iter()
                .map(|r| {
                    let id = ResourceId::parse(r).ok_or_else(|| {
                        format!("{key}: '{r}' is not a reference like type[title]")
                    })?;
                    // The same spelling the referenced resource's id has.
                    let title = registry::normalize_title(&id.type_name, &id.title)
                        .map_err(|e| format!("{key}: '{r}': {e}"))?;
                    Ok(ResourceId::new(id.type_name, title))
                })
                .collect()
        };
        match key {
            "require" => meta.require = refs(v)?,
            "before" => meta.before = refs(v)?,
            "notify" => meta.notify = refs(v)?,
            "subscribe" => meta.subscribe = refs(v)?,
            "tags" => meta.tags = list(v)?,
            // A rendered string ("{{#if facts.x}}true{{else}}false{{/if}}") counts too.
            "noop" => {
                meta.noop = match &v {
                    Value::Bool(b) => *b,
                    Value::String(s) if s.trim() == "true" => true,
                    Value::String(s) if s.trim() == "false" || s.trim().is_empty() => false,
                    other => return Err(format!("noop: expected true or false, got {other}")),
                }
            }
            // What it renders to is the reason; empty: managed as usual.
            "skip_if" => {
                meta.skip_if = match &v {
                    Value::String(s) if s.trim().is_empty() => None,
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Bool(false) | Value::Null => None,
                    other => {
                        return Err(format!(
                            "skip_if: expected a string (the reason) or nothing, got {other}"
                        ))
                    }
                }
            }
            _ => unreachable!("META lists the handled keys"),
        }
        Ok(())
    }

    /// Renders every string inside `v`; true when a Sensitive value went in.
    fn render_value(&mut self, v: &Value, ctx: &Vars) -> Result<(Value, bool), String> {
        Ok(match v {
            Value::String(s) => {
                // A string that is exactly one lookup yields the Hiera value
                // itself, with its type: a hash for `settings`, a list for `rules`.
                if let Some(key) = whole_lookup(s) {
                    let found = self.lookups.lookup(&key).map_err(|e| e.to_string())?;
                    return Ok((found.value, found.sensitive));
                }
                let r = self.renderer.render_str(s, ctx)?;
                (Value::String(r.text), r.sensitive)
            }
            Value::Array(a) => {
                let mut any = false;
                let mut out = Vec::with_capacity(a.len());
                for x in a {
                    let (x, s) = self.render_value(x, ctx)?;
                    any |= s;
                    out.push(x);
                }
                (Value::Array(out), any)
            }
            Value::Object(o) => {
                let mut any = false;
                let mut out = Map::new();
                for (k, x) in o {
                    let (x, s) = self.render_value(x, ctx)?;
                    any |= s;
                    out.insert(k.clone(), x);
                }
                (Value::Object(out), any)
            }
            other => (other.clone(), false),
        })
    }
}

/// Sets (or, with `None`, removes) the `item` variable of `for_each`.
fn set_item(vars: &mut Vars, item: Option<Value>) {
    if let Value::Object(map) = vars.data_mut() {
        match item {
            Some(v) => {
                map.insert("item".into(), v);
            }
            None => {
                map.remove("item");
            }
        }
    }
}

/// Marks `key` sensitive, and for a map attribute the entries that hold a
/// secret as `key.sub` (so `values.jdbc.password` is hidden but `values.jdbc.url` is not).
fn mark_sensitive(sensitive: &mut BTreeSet<String>, key: &str, v: &Value) {
    match v {
        Value::Object(o) => {
            let mut any = false;
            for (k, x) in o {
                if contains_secret_value(x) || k == "password" || k.ends_with(".password") {
                    sensitive.insert(format!("{key}.{k}"));
                    any = true;
                }
            }
            if !any {
                sensitive.insert(key.to_string());
            }
        }
        other => {
            if key == "password" {
                if let Some(s) = other.as_str() {
                    redact::register(s);
                }
            }
            sensitive.insert(key.to_string());
        }
    }
}

fn contains_secret_value(v: &Value) -> bool {
    match v {
        Value::String(s) => redact::contains_secret(s),
        Value::Array(a) => a.iter().any(contains_secret_value),
        Value::Object(o) => o.values().any(contains_secret_value),
        _ => false,
    }
}

/// The most resources one `for_each` makes (a range, or a matrix's product):
/// a typo like `1..10000000` is an error, not a run that eats the machine.
/// The largest (100,000 files) was measured at 76 MB of RSS to validate and
/// 146 MB for a `--noop` run.
pub const MAX_ITEMS: usize = 100_000;

/// `A..B` (integers, B ≥ A, spaces allowed around each part).
fn parse_range(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.split_once("..")?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b >= a).then_some((a, b))
}

/// The key of a string that is exactly `{{lookup 'key'}}`.
fn whole_lookup(s: &str) -> Option<String> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner.strip_prefix("lookup")?;
    if !args.starts_with(char::is_whitespace) {
        return None;
    }
    let args = args.trim_start();
    let key = args.strip_prefix(['\'', '"'])?.strip_suffix(['\'', '"'])?;
    (!key.is_empty() && !key.contains(['\'', '"'])).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lookup_accepts_only_one_bare_lookup() {
        assert_eq!(whole_lookup("{{lookup 'a::b'}}").as_deref(), Some("a::b"));
        assert_eq!(whole_lookup("{{ lookup \"k\" }}").as_deref(), Some("k"));
        for not in [
            "{{lookup 'k' default='x'}}",
            "{{lookup 'k'}}/x",
            "{{lookupk'}}",
            "{{lookup ''}}",
            "{{lookup k}}",
            "x{{lookup 'k'}}",
        ] {
            assert_eq!(whole_lookup(not), None, "{not}");
        }
    }

    #[test]
    fn ranges_are_inclusive_and_ascending() {
        assert_eq!(parse_range("1..50"), Some((1, 50)));
        assert_eq!(parse_range(" 0 .. 9 "), Some((0, 9)));
        assert_eq!(parse_range("-2..-2"), Some((-2, -2)));
        for not in ["9..1", "1...3", "a..b", "1..", "..3", "1-3", "1..2..3"] {
            assert_eq!(parse_range(not), None, "{not}");
        }
    }
}

#[cfg(test)]
mod lazy_facts_tests {
    use super::*;
    use crate::engine::facts::FactOptions;

    /// A site of one role whose manifest is `manifest`, with a Hiera whose
    /// hierarchy is `levels`.
    fn site(dir: &Path, manifest: &str, levels: &str) -> (PathBuf, Arc<Hiera>) {
        let m = dir.join("manifests");
        std::fs::create_dir_all(m.join("roles")).unwrap();
        std::fs::create_dir_all(m.join("templates")).unwrap();
        std::fs::create_dir_all(dir.join("hiera/data")).unwrap();
        std::fs::write(m.join("site.yaml"), "default: [roles/r]\n").unwrap();
        std::fs::write(m.join("roles/r.yaml"), manifest).unwrap();
        std::fs::write(
            m.join("templates/t.hbs"),
            "host={{facts.networking.hostname}}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("hiera/hiera.yaml"),
            format!("version: 5\nhierarchy:\n{levels}"),
        )
        .unwrap();
        std::fs::write(dir.join("hiera/data/common.yaml"), "greeting: hello\n").unwrap();
        let hiera = Arc::new(Hiera::load(&dir.join("hiera/hiera.yaml")).unwrap());
        (m, hiera)
    }

    /// [`site`] compiled for node `n1` with facts read on demand.
    fn compile_site(dir: &Path, manifest: &str, levels: &str) -> (Compiled, Arc<Facts>) {
        let (m, hiera) = site(dir, manifest, levels);
        std::fs::create_dir_all(dir.join("facts.d")).unwrap();
        let facts = Arc::new(Facts::new(FactOptions {
            facts_dir: dir.join("facts.d"),
            ..FactOptions::default()
        }));
        let c = compile(Input {
            manifests_dir: &m,
            node: "n1",
            loaded: manifest::load(&m, "n1").unwrap(),
            facts: &facts,
            hiera,
        })
        .unwrap();
        (c, facts)
    }

    fn collected(facts: &Facts) -> Vec<String> {
        let view = facts.demand(&Demand::none());
        view.as_object().unwrap().keys().cloned().collect()
    }

    /// The content the file resource `title` writes, applied under a root.
    fn content(c: &Compiled, title: &str) -> String {
        let root = tempfile::tempdir().unwrap();
        let cx = resources::Context::new(
            root.path().to_path_buf(),
            resources::backup::BackupStore::new(&root.path().join(".state")),
        );
        let entry = c
            .catalog
            .entries
            .iter()
            .find(|e| e.id.title == title)
            .unwrap();
        let plan = entry.resource.check(&cx).unwrap();
        entry.resource.apply(&cx, plan).unwrap();
        std::fs::read_to_string(root.path().join(title.trim_start_matches('/'))).unwrap()
    }

    #[test]
    fn a_site_that_names_no_fact_reads_none() {
        let dir = tempfile::tempdir().unwrap();
        let (c, facts) = compile_site(
            dir.path(),
            "resources:\n  - file: /a\n    content: \"{{lookup 'greeting'}} {{node.name}}\\n\"\n",
            "  - name: common\n    path: common.yaml\n",
        );
        assert_eq!(content(&c, "/a"), "hello n1\n");
        assert_eq!(collected(&facts), Vec::<String>::new());
    }

    #[test]
    fn the_facts_named_by_hiera_manifests_and_templates_are_read_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let (c, facts) = compile_site(
            dir.path(),
            "resources:\n  - file: /a\n    content: \"{{facts.kernel}} {{lookup 'greeting'}}\\n\"\n  \
             - file: /b\n    template: t.hbs\n",
            "  - name: os\n    path: \"os/%{facts.os.family}.yaml\"\n  - name: common\n    path: common.yaml\n",
        );
        let all = crate::engine::facts::collect(&FactOptions {
            facts_dir: dir.path().join("facts.d"),
            ..FactOptions::default()
        })
        .unwrap();
        assert_eq!(
            content(&c, "/a"),
            format!("{} hello\n", all["kernel"].as_str().unwrap())
        );
        assert_eq!(
            content(&c, "/b"),
            format!("host={}\n", all["networking"]["hostname"].as_str().unwrap())
        );
        let got = collected(&facts);
        for name in ["kernel", "os", "networking"] {
            assert!(got.iter().any(|n| n == name), "{name} in {got:?}");
        }
        for name in ["identity", "memory", "postgresql", "agent", "pgbackrest"] {
            assert!(!got.iter().any(|n| n == name), "{name} not in {got:?}");
        }
    }
}
