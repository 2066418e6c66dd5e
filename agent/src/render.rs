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
use serde_json::Value;

use crate::hiera::{Found, Hiera, HieraError};

/// The variables of a render (`facts`, `node`, `role`, `item`...), kept as
/// Handlebars' own context so rendering reads them without copying.
pub type Vars = Context;

/// Hiera lookups of one compile: the scope never changes during a compile,
/// so a key found once is remembered (a template used by many resources
/// looks the same keys up each time).
pub struct Lookups {
    hiera: Arc<Hiera>,
    scope: Arc<Value>,
    found: Mutex<HashMap<String, Found>>,
}

impl Lookups {
    pub fn new(hiera: Arc<Hiera>, scope: Arc<Value>) -> Self {
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
        let found = self.hiera.lookup(key, &self.scope, None)?;
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

/// Renders strings and template files for one compile.
pub struct Renderer {
    hb: Handlebars<'static>,
    /// Template text → registered name.
    strings: HashMap<String, String>,
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
        Renderer {
            hb,
            strings: HashMap::new(),
            templates_dir,
            sensitive_seen,
        }
    }

    /// Renders a manifest string with `ctx` (facts, node, item...).
    pub fn render_str(&mut self, text: &str, ctx: &Vars) -> Result<Rendered, String> {
        if !text.contains("{{") {
            return Ok(Rendered {
                text: text.to_string(),
                sensitive: false,
            });
        }
        let name = match self.strings.get(text) {
            Some(n) => n.clone(),
            None => {
                let name = format!("string #{}", self.strings.len() + 1);
                self.hb.register_template_string(&name, text).map_err(|e| {
                    format!("template syntax error: {}", describe_template_error(&e))
                })?;
                self.strings.insert(text.to_string(), name.clone());
                name
            }
        };
        self.render_named(&name, ctx)
    }

    /// Renders a template file under the templates dir.
    pub fn render_template(&mut self, rel: &str, ctx: &Vars) -> Result<Rendered, String> {
        let key = format!("template {rel}");
        if !self.hb.has_template(&key) {
            let path = confine_template(&self.templates_dir, rel)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
            self.hb.register_template_string(&key, text).map_err(|e| {
                format!(
                    "template syntax error in {}: {}",
                    path.display(),
                    describe_template_error(&e)
                )
            })?;
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
/// path, no symlink out).
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
    Ok(canon)
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
        Some(l) if l > 1 => format!("{reason} at line {l} of the template"),
        _ => reason,
    }
}
