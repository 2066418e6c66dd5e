//! Handlebars rendering of manifest strings and templates: HTML escaping
//! off (a JDBC url's `&` stays `&`), strict mode (an unknown variable is an
//! error), a `lookup` helper backed by Hiera, and a cache so that a string
//! or template used by many resources is parsed once.
//!
//! Variables come as a [`Vars`] the caller builds once and updates in place
//! (only `item` changes between `for_each` items): `Handlebars::render` would
//! serialize the whole variable tree, every fact included, on each call,
//! which made rendering most of a compile's cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};

use crate::engine::facts::Demand;
use crate::engine::hiera::{Found, Hiera, HieraError, Scope};

/// The variables of a render (`facts`, `node`, `role`, `item`...), kept as
/// Handlebars' own context so rendering reads them without copying.
pub type Vars = Context;

/// Hiera lookups of one compile: the scope never changes during a compile,
/// so a key found once is remembered (a template used by many resources
/// looks the same keys up each time).
pub struct Lookups {
    hiera: Arc<Hiera>,
    scope: Arc<dyn Scope + Send + Sync>,
    found: Mutex<HashMap<String, Found>>,
}

impl Lookups {
    pub fn new(hiera: Arc<Hiera>, scope: Arc<dyn Scope + Send + Sync>) -> Self {
        Lookups {
            hiera,
            scope,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// `key` with the compile's scope and the key's own merge options.
    pub fn lookup(&self, key: &str) -> Result<Found, HieraError> {
        let memo = |m: &mut HashMap<String, Found>| m.get(key).cloned();
        if let Some(found) = memo(&mut self.found.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(found);
        }
        let found = self.hiera.lookup(key, &*self.scope, None)?;
        self.found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), found.clone());
        Ok(found)
    }
}

/// `{{lookup 'key'}}` / `{{lookup 'key' default='x'}}`: the Hiera value,
/// usable as text or as the argument of `#each`.
struct LookupHelper {
    lookups: Arc<Lookups>,
    /// Set when a Sensitive value was looked up during the current render.
    sensitive_seen: Arc<AtomicBool>,
}

impl HelperDef for LookupHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let key = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("lookup", 0))?;
        match self.lookups.lookup(key) {
            Ok(found) => {
                if found.sensitive {
                    self.sensitive_seen.store(true, Ordering::Relaxed);
                }
                Ok(ScopedJson::Derived(found.value))
            }
            Err(HieraError::NotFound { .. }) if h.hash_get("default").is_some() => Ok(
                ScopedJson::Derived(h.hash_get("default").expect("checked").value().clone()),
            ),
            Err(e) => Err(RenderErrorReason::Other(e.to_string()).into()),
        }
    }
}

/// `{{json VALUE}}`: the value as one line of JSON, which YAML reads as
/// well: a Hiera hash or list goes into a YAML or JSON config file whole,
/// its strings quoted (a plain `on` or `0755` cannot change type there).
struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("json", 0))?
            .value();
        Ok(ScopedJson::Derived(serde_json::Value::String(
            value.to_string(),
        )))
    }
}

/// Renders strings and template files for one compile.
pub struct Renderer {
    hb: Handlebars<'static>,
    /// Template text → registered name and the facts it may read.
    strings: HashMap<String, (String, Demand)>,
    /// Template file → the facts it may read (`None`: it does not parse;
    /// rendering it reports why).
    files: HashMap<String, Option<Demand>>,
    templates_dir: PathBuf,
    sensitive_seen: Arc<AtomicBool>,
}

/// A rendered value and whether a Sensitive value went into it.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    pub sensitive: bool,
}

impl Renderer {
    pub fn new(lookups: Arc<Lookups>, templates_dir: PathBuf) -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let sensitive_seen = Arc::new(AtomicBool::new(false));
        hb.register_helper(
            "lookup",
            Box::new(LookupHelper {
                lookups,
                sensitive_seen: sensitive_seen.clone(),
            }),
        );
        hb.register_helper("json", Box::new(JsonHelper));
        Renderer {
            hb,
            strings: HashMap::new(),
            files: HashMap::new(),
            templates_dir,
            sensitive_seen,
        }
    }

    /// Parses and keeps a manifest string (once per distinct text) and
    /// tells which facts rendering it may read. A string that does not
    /// parse reads none: rendering it reports the syntax error.
    pub fn prepare_str(&mut self, text: &str) -> Demand {
        if !text.contains("{{") {
            return Demand::none();
        }
        match self.register_str(text) {
            Ok(_) => self.strings[text].1.clone(),
            Err(_) => Demand::none(),
        }
    }

    fn register_str(&mut self, text: &str) -> Result<String, String> {
        if let Some((name, _)) = self.strings.get(text) {
            return Ok(name.clone());
        }
        let name = format!("string #{}", self.strings.len() + 1);
        check_nesting(text)?;
        let template = handlebars::Template::compile(text)
            .map_err(|e| format!("template syntax error: {}", describe_template_error(&e)))?;
        refuse_partials(&template)?;
        let demand = fact_demand(&template);
        self.hb.register_template(&name, template);
        self.strings
            .insert(text.to_string(), (name.clone(), demand));
        Ok(name)
    }

    /// [`Renderer::prepare_str`] for a template file.
    pub fn prepare_template(&mut self, rel: &str) -> Demand {
        if let Some(d) = self.files.get(rel) {
            return d.clone().unwrap_or_else(Demand::none);
        }
        let demand = self.register_template(rel).ok();
        self.files.insert(rel.to_string(), demand.clone());
        demand.unwrap_or_else(Demand::none)
    }

    fn register_template(&mut self, rel: &str) -> Result<Demand, String> {
        let key = format!("template {rel}");
        let path = confine_template(&self.templates_dir, rel)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
        check_nesting(&text).map_err(|e| format!("{e} (in {})", path.display()))?;
        let mut template = handlebars::Template::compile(&text).map_err(|e| {
            format!(
                "template syntax error in {}: {}",
                path.display(),
                describe_template_error(&e)
            )
        })?;
        refuse_partials(&template).map_err(|e| format!("{e} (in {})", path.display()))?;
        template.name = Some(key.clone());
        let demand = fact_demand(&template);
        self.hb.register_template(&key, template);
        Ok(demand)
    }

    /// Renders a manifest string with `ctx` (facts, node, item...).
    pub fn render_str(&mut self, text: &str, ctx: &Vars) -> Result<Rendered, String> {
        if !text.contains("{{") {
            return Ok(Rendered {
                text: text.to_string(),
                sensitive: false,
            });
        }
        let name = self.register_str(text)?;
        self.render_named(&name, ctx)
    }

    /// Renders a template file under the templates dir.
    pub fn render_template(&mut self, rel: &str, ctx: &Vars) -> Result<Rendered, String> {
        let key = format!("template {rel}");
        if !self.hb.has_template(&key) {
            self.register_template(rel)?;
        }
        self.render_named(&key, ctx)
            .map_err(|e| format!("{e} (in {})", self.templates_dir.join(rel).display()))
    }

    fn render_named(&self, name: &str, ctx: &Vars) -> Result<Rendered, String> {
        self.sensitive_seen.store(false, Ordering::Relaxed);
        let text = self
            .hb
            .render_with_context(name, ctx)
            .map_err(|e| describe_render_error(&e))?;
        Ok(Rendered {
            text,
            sensitive: self.sensitive_seen.load(Ordering::Relaxed),
        })
    }
}

/// A template path must stay inside the templates dir (no `..`, no absolute
/// path, no symlink out) and name a regular file.
pub fn confine_template(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "template path '{rel}' must be relative to {} without '..'",
            dir.display()
        ));
    }
    let full = dir.join(p);
    let canon_dir =
        std::fs::canonicalize(dir).map_err(|e| format!("templates dir {}: {e}", dir.display()))?;
    let canon =
        std::fs::canonicalize(&full).map_err(|e| format!("template {}: {e}", full.display()))?;
    if !canon.starts_with(&canon_dir) {
        return Err(format!(
            "template {} resolves outside {}",
            full.display(),
            dir.display()
        ));
    }
    // A FIFO or a device would block the read (holding the run lock) or
    // never end: only regular files are read.
    let meta = std::fs::metadata(&canon).map_err(|e| format!("{}: {e}", full.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", full.display()));
    }
    Ok(canon)
}

/// How deep blocks (`{{#if}}` in `{{#each}}` ...) and subexpressions
/// (`(lookup (concat ...))`) may nest: far beyond any real template, far
/// below what overflows the parser's stack (a 20,000-deep nest aborted the
/// process).
pub const MAX_TEMPLATE_NESTING: usize = 64;

/// Refuses a template nested deeper than [`MAX_TEMPLATE_NESTING`], before
/// the (recursive) parser sees it. Counts `{{#`/`{{^` against `{{/`, and
/// open parentheses inside a mustache; over-counting (a `{{#` in a comment)
/// only makes the check stricter.
fn check_nesting(text: &str) -> Result<(), String> {
    let too_deep = |line: usize| {
        Err(format!(
            "template nested deeper than {MAX_TEMPLATE_NESTING} blocks or subexpressions at line {line}"
        ))
    };
    let (mut blocks, mut parens, mut inside, mut line) = (0usize, 0usize, false, 1usize);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                inside = true;
                parens = 0;
                let mut j = i + 2;
                while matches!(bytes.get(j), Some(b'{' | b'~' | b' ')) {
                    j += 1;
                }
                match bytes.get(j) {
                    Some(b'#' | b'^') => blocks += 1,
                    Some(b'/') => blocks = blocks.saturating_sub(1),
                    _ => {}
                }
                if blocks > MAX_TEMPLATE_NESTING {
                    return too_deep(line);
                }
                i = j;
                continue;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => inside = false,
            b'(' if inside => {
                parens += 1;
                if parens > MAX_TEMPLATE_NESTING {
                    return too_deep(line);
                }
            }
            b')' if inside => parens = parens.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Partials (`{{> name}}`) and inline partials (`{{#*inline}}`): none is
/// registered, and an inline one can include itself, recursing until the
/// stack overflows. A template includes no other.
fn refuse_partials(template: &handlebars::Template) -> Result<(), String> {
    use handlebars::template::TemplateElement as E;
    fn walk(t: &handlebars::Template) -> Result<(), String> {
        for e in &t.elements {
            match e {
                E::PartialExpression(_) | E::PartialBlock(_) => {
                    return Err("partials ({{> name}}) are not supported: a template \
                                includes no other; use a resource per file"
                        .to_string())
                }
                E::DecoratorExpression(_) | E::DecoratorBlock(_) => {
                    return Err("decorators and inline partials ({{#*inline}}) are not \
                                supported"
                        .to_string())
                }
                E::HelperBlock(h) => {
                    for sub in h.template.iter().chain(h.inverse.iter()) {
                        walk(sub)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(template)
}

fn describe_template_error(e: &handlebars::TemplateError) -> String {
    match e.pos() {
        Some((line, col)) => format!("{} at line {line}, column {col}", e.reason()),
        None => e.reason().to_string(),
    }
}

fn describe_render_error(e: &RenderError) -> String {
    let reason = match e.reason() {
        RenderErrorReason::MissingVariable(Some(var)) => {
            format!("unknown variable '{var}' (strict mode)")
        }
        other => other.to_string(),
    };
    let reason = resources::redact::redact(&reason).into_owned();
    match e.line_no {
        Some(l) => format!("{reason} at line {l} of the template"),
        None => reason,
    }
}

/// The facts a template may read: each `facts.NAME...` path gives NAME;
/// anything that could reach the whole `facts` object (`facts` alone, or
/// the root context itself: `this` or `.` outside any block that changes
/// the context, `@root`, a climb with `..`) gives [`Demand::All`]. Over-
/// asking is harmless (a fact read for nothing); under-asking would render
/// a fact as missing, so every doubt asks for all.
pub fn fact_demand(template: &handlebars::Template) -> Demand {
    let mut demand = Demand::none();
    walk_template(template, 0, &mut demand);
    demand
}

fn walk_template(t: &handlebars::Template, depth: usize, d: &mut Demand) {
    for e in &t.elements {
        walk_element(e, depth, d);
    }
}

fn walk_element(e: &handlebars::template::TemplateElement, depth: usize, d: &mut Demand) {
    use handlebars::template::TemplateElement as E;
    match e {
        E::RawString(_) | E::Comment(_) => {}
        E::Expression(h) | E::HtmlExpression(h) | E::HelperBlock(h) => walk_helper(h, depth, d),
        // Decorators and partials are not used here (and the enum may
        // grow): assume the worst.
        _ => *d = Demand::All,
    }
}

fn walk_helper(h: &handlebars::template::HelperTemplate, depth: usize, d: &mut Demand) {
    use handlebars::template::Parameter;
    walk_param(&h.name, depth, d);
    for p in h.params.iter().chain(h.hash.values()) {
        walk_param(p, depth, d);
    }
    // `if` and `unless` render their blocks in the same context; `each`,
    // `with` (and any other block) in another one, where `this` is no
    // longer the root.
    let same_context = matches!(&h.name, Parameter::Name(n) if n == "if" || n == "unless");
    if let Some(t) = &h.template {
        walk_template(t, if same_context { depth } else { depth + 1 }, d);
    }
    if let Some(t) = &h.inverse {
        walk_template(t, depth, d);
    }
}

fn walk_param(p: &handlebars::template::Parameter, depth: usize, d: &mut Demand) {
    use handlebars::template::Parameter;
    match p {
        Parameter::Name(raw) => path_demand(raw, depth, d),
        Parameter::Path(handlebars::Path::Relative((_, raw)))
        | Parameter::Path(handlebars::Path::Local((_, _, raw))) => path_demand(raw, depth, d),
        Parameter::Literal(_) => {}
        Parameter::Subexpression(s) => walk_element(&s.element, depth, d),
        _ => *d = Demand::All,
    }
}

/// The demand of one path as written (`facts.os.family`, `../facts.[os]`,
/// `@root.facts`, `this`...).
fn path_demand(raw: &str, depth: usize, d: &mut Demand) {
    let sep = |c: char| c == '.' || c == '/';
    let mut rest = raw.trim();
    let mut at_root = depth == 0;
    loop {
        if let Some(r) = rest.strip_prefix("@root") {
            rest = r.trim_start_matches(sep);
            at_root = true;
        } else if let Some(r) = rest.strip_prefix("..") {
            rest = r.trim_start_matches(sep);
            at_root = true;
        } else if let Some(r) = rest
            .strip_prefix("this")
            .filter(|r| r.is_empty() || r.starts_with(sep))
        {
            rest = r.trim_start_matches(sep);
        } else if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else {
            break;
        }
    }
    if rest.is_empty() || rest == "." {
        if at_root {
            *d = Demand::All;
        }
        return;
    }
    let (first, after) = first_segment(rest);
    if first != "facts" {
        return;
    }
    match after.map(first_segment) {
        Some((name, _)) if !name.is_empty() => d.add(name),
        _ => *d = Demand::All,
    }
}

/// `a.b.c` → (`a`, Some(`b.c`)); `[a b].c` → (`a b`, Some(`c`)).
fn first_segment(path: &str) -> (&str, Option<&str>) {
    let (seg, rest) = match path.strip_prefix('[') {
        Some(inner) => match inner.find(']') {
            Some(end) => (&inner[..end], &inner[end + 1..]),
            None => (inner, ""),
        },
        None => match path.find(['.', '/']) {
            Some(i) => (&path[..i], &path[i..]),
            None => (path, ""),
        },
    };
    let rest = rest.trim_start_matches(['.', '/']);
    (seg, (!rest.is_empty()).then_some(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_puts_a_value_whole_into_a_config_file() {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(JsonHelper));
        let vars =
            serde_json::json!({"v": {"p": {"a": "on", "n": [1, true, "0755"]}}, "s": "x\"y"});
        let out = hb
            .render_template("dcs: {{json v}}\ns: {{json s}}", &vars)
            .unwrap();
        assert_eq!(
            out,
            "dcs: {\"p\":{\"a\":\"on\",\"n\":[1,true,\"0755\"]}}\ns: \"x\\\"y\""
        );
        assert!(hb.render_template("{{json}}", &vars).is_err());
    }

    #[test]
    fn deep_nesting_and_partials_are_refused_before_they_recurse() {
        let deep = format!(
            "{}x{}",
            "{{#if a}}".repeat(20_000),
            "{{/if}}".repeat(20_000)
        );
        let e = check_nesting(&deep).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
        let parens = format!(
            "{{{{lookup {}'k'{}}}}}",
            "(concat ".repeat(500),
            ")".repeat(500)
        );
        assert!(check_nesting(&parens).is_err());
        let fine = format!("{}x{}", "{{#if a}}".repeat(64), "{{/if}}".repeat(64));
        check_nesting(&fine).unwrap();
        check_nesting("{{#each (lookup 'k')}}{{this}}{{/each}}\n{{#if x}}a{{else}}b{{/if}}")
            .unwrap();

        let recursive = "{{#*inline 'p'}}a{{> p}}{{/inline}}{{> p}}";
        let t = handlebars::Template::compile(recursive).unwrap();
        assert!(refuse_partials(&t).unwrap_err().contains("inline partials"));
        let t = handlebars::Template::compile("{{#if a}}{{> other}}{{/if}}").unwrap();
        assert!(refuse_partials(&t).unwrap_err().contains("partials"));
    }

    fn demand(text: &str) -> Demand {
        fact_demand(&handlebars::Template::compile(text).expect("parses"))
    }

    fn names(list: &[&str]) -> Demand {
        let mut d = Demand::none();
        list.iter().for_each(|n| d.add(n));
        d
    }

    #[test]
    fn a_template_asks_for_the_facts_it_names() {
        for (text, want) in [
            ("{{facts.os.family}}", &["os"][..]),
            ("{{facts.[os].family}} {{facts/kernel}}", &["os", "kernel"]),
            (
                "{{#if facts.db_master}}{{facts.db_master}}{{else}}x{{/if}}",
                &["db_master"],
            ),
            (
                "{{#if (eq facts.db_master (lookup 'k'))}}a{{/if}}",
                &["db_master"],
            ),
            (
                "{{#each facts.networking.interfaces}}{{@key}}={{this.ip}}{{/each}}",
                &["networking"],
            ),
            (
                "{{#each (lookup 'rules')}}{{this.type}} {{../facts.os.name}}{{/each}}",
                &["os"],
            ),
            (
                "{{#each (lookup 'rules')}}{{@root.facts.kernel}}{{/each}}",
                &["kernel"],
            ),
            (
                "{{#each (lookup 'rules')}}{{this}} {{this.a}} {{@index}}{{/each}}",
                &[],
            ),
            ("{{lookup 'x'}} {{node.name}} {{item.key}} {{role}}", &[]),
            ("plain {{! a comment about facts }} text", &[]),
        ] {
            assert_eq!(demand(text), names(want), "{text}");
        }
    }

    #[test]
    fn whatever_may_reach_the_whole_facts_object_asks_for_all() {
        for text in [
            "{{facts}}",
            "{{json facts}}",
            "{{#with facts}}{{os.family}}{{/with}}",
            "{{#each facts}}{{@key}}{{/each}}",
            "{{#each this}}{{@key}}{{/each}}",
            "{{this}}",
            "{{this.facts}}",
            "{{#each (lookup 'x')}}{{@root}}{{/each}}",
            "{{#each (lookup 'x')}}{{#each ../this}}{{/each}}{{/each}}",
            "{{#each (lookup 'x')}}{{#each @root.facts}}{{/each}}{{/each}}",
            "{{#if x}}{{this}}{{/if}}",
        ] {
            assert_eq!(demand(text), Demand::All, "{text}");
        }
    }
}
