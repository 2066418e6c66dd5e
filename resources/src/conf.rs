//! `conf`: one setting in a line-oriented config file that belongs to
//! someone else — `redis.conf`, `sentinel.conf`, `pgpool.conf`, an ini
//! file — keeping every other line (comments, order, blank lines) byte for
//! byte. `pg_conf` generalized: the syntaxes and the edit are the codec in
//! `conf/format.rs`; reading, comparing and the staged, backed-up write are
//! the loop every file-editing type shares ([`crate::edited`]). Several
//! `conf` resources on one file build on each other's staged content, so
//! a run writes the file once.
//!
//! A daemon that rewrites its own file (Sentinel: `myid`, epochs, known
//! replicas, and the master's address after a failover) is not fought:
//! lines no resource names are never looked at, and a `replace: false`
//! key is written once — when missing, or while its value is not one the
//! agent wrote (a packaged default) — and from then on its value is the
//! daemon's: a different one is neither drift nor a change
//! (`conf/written.rs` remembers which keys the agent wrote).
//!
//! The file keeps its owner and mode (Sentinel must be able to rewrite
//! it); `validate_cmd` checks the whole new file before it is written.

use std::os::unix::fs::MetadataExt;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::attr::Ensure;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{self, Current, Rewrite};
use crate::validate::ValidateCmd;
use written::Written;

mod format;
mod written;

pub use format::{edit, redis_quote, split_args, Format, Key, Outcome, Value};

/// Attributes of `- conf: <path>:<key>` (or any title with `path` and
/// `key`, or with `path` and the key as title).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The file (absolute node path). Unset: the title is `<path>:<key>`.
    path: Option<String>,
    /// The key (`maxmemory`, `sentinel monitor mymaster`, `num_init_children`).
    /// Unset: the title (or the part after `path:`).
    key: Option<String>,
    /// The syntax: `redis`, `pgpool` or `ini`. Required.
    format: Format,
    /// ini only: the `[section]` the key is in (unset: before any header).
    section: Option<String>,
    /// The value: string, number or boolean (written yes/no for redis,
    /// on/off for pgpool, true/false for ini). For redis a string is the
    /// arguments after the key (`127.0.0.1 6379 2`). Required when present.
    /// Mark it Sensitive to keep it out of every output.
    value: Option<Json>,
    /// `present` (default) or `absent` (every line of the key removed).
    #[serde(default)]
    ensure: Ensure,
    /// `false`: "managed once", for files the daemon rewrites itself
    /// (Sentinel's `sentinel monitor` after a failover): the key is written
    /// when missing, or when the agent never wrote it (a packaged default
    /// is replaced once); after that, whatever value the daemon puts there
    /// is left alone. Default true.
    #[serde(default = "yes")]
    replace: bool,
    /// A command that checks the whole new file before it replaces the old
    /// one: `%` is the path of a temp file holding it (with the edits of
    /// the `conf` of that file applied earlier in the run). A non-zero exit
    /// changes nothing and fails the resource with the command's output.
    validate_cmd: Option<String>,
    /// What stands for the temp file in `validate_cmd` (default `%`).
    validate_replacement: Option<String>,
}

fn yes() -> bool {
    true
}

/// A typed `conf` resource.
#[derive(Debug)]
pub struct Conf {
    id: ResourceId,
    path: String,
    key: Key,
    /// `None`: ensure absent.
    value: Option<Value>,
    replace: bool,
    sensitive: bool,
    validate: Option<ValidateCmd>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let (path, key) = match (p.path, p.key) {
        (Some(path), Some(key)) => (path, key),
        (Some(path), None) => (path, id.title.clone()),
        (None, None) => match id.title.split_once(':') {
            Some((path, key)) if !key.trim().is_empty() => (path.to_string(), key.trim().to_string()),
            _ => {
                return Err(invalid(
                    "the title must be <path>:<key> (e.g. /etc/redis/redis.conf:maxmemory), or give path (and key)".into(),
                ))
            }
        },
        (None, Some(_)) => {
            return Err(invalid(
                "key is given without path: give path too, or make the title <path>:<key>".into(),
            ))
        }
    };
    if !path.starts_with('/') {
        return Err(invalid(format!("path '{path}' must be an absolute path")));
    }
    let key = Key::new(p.format, &key, p.section.as_deref()).map_err(invalid)?;
    let value = match (p.ensure, p.value) {
        (Ensure::Absent, Some(_)) => {
            return Err(invalid("value is given with ensure: absent".into()))
        }
        (Ensure::Absent, None) => None,
        (Ensure::Present, None) => {
            return Err(invalid("value is required when ensure is present".into()))
        }
        (Ensure::Present, Some(v)) => {
            let v = match v {
                Json::String(s) => Value::Str(s),
                Json::Number(n) => Value::Num(n.to_string()),
                Json::Bool(b) => Value::Bool(b),
                other => {
                    return Err(invalid(format!(
                        "value must be a string, number or boolean, not {other}"
                    )))
                }
            };
            v.validate(p.format).map_err(invalid)?;
            Some(v)
        }
    };
    let sensitive = decl.is_sensitive("value");
    if let (true, Some(Value::Str(s))) = (sensitive, &value) {
        crate::redact::register(s);
        for (arg, _) in split_args(s).unwrap_or_default() {
            crate::redact::register(&arg);
        }
    }
    let validate = ValidateCmd::new(id, p.validate_cmd, p.validate_replacement)?;
    Ok(Box::new(Conf {
        id: id.clone(),
        path,
        key,
        value,
        replace: p.replace,
        sensitive,
        validate,
    }))
}

impl Conf {
    /// True when the agent wrote this `replace: false` key before.
    fn written_once(&self, cx: &Context) -> Result<bool, ResourceError> {
        if self.replace {
            return Ok(false);
        }
        Written::of(cx).contains(&self.path, self.key.section.as_deref(), &self.key.name)
    }
}

/// What `apply` writes, as `check` decided.
#[derive(Debug)]
struct Steps {
    rewrite: Rewrite,
    /// The file's owner (uid, gid), kept; `None` for a new file.
    owner: Option<(u32, u32)>,
    /// A new file holding a Sensitive value: 0600.
    mode: Option<u32>,
}

impl Resource for Conf {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let file = Current::read(cx, &self.path)?;
        if file.missing() && self.value.is_none() {
            return Ok(Plan::in_sync());
        }
        // Managed once: a value there is replaced until the agent wrote it.
        let replace = self.replace || !self.written_once(cx)?;
        let (new, outcome) = edit(
            file.text(&self.id)?,
            &self.key,
            self.value.as_ref(),
            replace,
        );
        let change = match outcome {
            Outcome::InSync => return Ok(Plan::in_sync()),
            Outcome::Set { from } => Change::new(
                self.key.label(),
                from,
                self.value.as_ref().map(|v| v.text(self.key.format)),
            ),
            Outcome::Removed { from } => Change::new(self.key.label(), Some(from), None),
        };
        // The owner of what is there now (a temp staged by an earlier
        // `conf` of this file in the run carries it already).
        let owner = match &file.old {
            Some(_) => {
                let at = cx.stager().current_path(&file.path);
                let meta = std::fs::metadata(&at).map_err(|e| ResourceError::io(&at, e))?;
                Some((meta.uid(), meta.gid()))
            }
            None => None,
        };
        let mode = (file.missing() && self.sensitive).then_some(0o600);
        let Some(rewrite) = file.into_rewrite(new.into_bytes()) else {
            return Ok(Plan::in_sync());
        };
        let steps = Steps {
            rewrite,
            owner,
            mode,
        };
        Ok(Plan::new(vec![change.sensitive(self.sensitive)], steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        // Refused before anything — the backup store, the stager — is
        // touched, and before a file changed since check is noticed:
        // neither writes.
        if let Some(v) = &self.validate {
            steps.rewrite.ready(cx, &self.id, "")?;
            v.check(cx, &self.id, &self.path, &steps.rewrite.new)?;
        }
        steps
            .rewrite
            .write_owned(cx, &self.id, "", steps.mode, steps.owner)?;
        if let (false, Some(value)) = (self.replace, &self.value) {
            // Recorded once the write is durable (a run killed before has
            // not written it, and the next one writes it again), and only
            // if the file then holds the value: a commit that failed for
            // this file leaves the key to be written by the next run.
            let written = Written::of(cx);
            let (node, file) = (self.path.clone(), steps.rewrite.path.clone());
            let (key, value) = (self.key.clone(), value.clone());
            let id = self.id.clone();
            cx.stager().after_commit(move || {
                let text = std::fs::read(&file).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                if edit(&text, &key, Some(&value), true).1 != Outcome::InSync {
                    tracing::warn!(resource = %id, "{node} does not hold the value written; not recorded");
                    return;
                }
                if let Err(e) = written.record(&node, key.section.as_deref(), &key.name) {
                    tracing::warn!(resource = %id, "recording the key as written: {e}");
                }
            });
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        edited::autorequires(&self.path)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.path.clone()]
    }

    /// It rewrites one file in place (temp and rename).
    fn keeps_dirs(&self) -> bool {
        true
    }

    /// It reads and rewrites its file through the stager.
    fn stages_writes(&self) -> bool {
        true
    }

    /// It reads one file (and the owner of what it read).
    fn check_only_reads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
