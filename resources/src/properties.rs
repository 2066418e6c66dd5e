//! `properties`: keys of a Java `.properties` file (Atlassian Stash's
//! `stash-config.properties`, where the JDBC url follows the database master).
//!
//! The file belongs to the application: the type changes only the keys it is
//! given and keeps every other line — comments, blank lines, other keys, their
//! odd escaping — byte for byte. Reading follows `java.util.Properties.load`
//! exactly ([`parse`]), so "in sync" means "the application would read the
//! same value", whatever escaping the file uses; writing escapes minimally so
//! a JDBC url stays readable. That reading and writing is the codec, in
//! `properties/codec.rs`; this file is the resource type.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::edited::{self, Current, Rewrite};
use crate::{accounts, mode};

mod codec;

use codec::{decode, encode};
pub use codec::{edit, escape_key, escape_value, items, lookup, parse, Item};

/// Attributes of `- properties: <absolute path of the file>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Keys to set: key → string, number or boolean (written as text).
    /// Mark the whole map or `values.<key>` Sensitive to hide values.
    #[serde(default)]
    values: BTreeMap<String, Value>,
    /// Keys to delete (every line of them).
    #[serde(default)]
    remove: Vec<String>,
    /// Octal mode (`"0640"`). Unset: an existing file keeps its mode; a new
    /// one is 0600 if it holds a Sensitive value, else 0644.
    mode: Option<String>,
    /// Owner of the file (user name or uid), as `file`'s: unset, an
    /// existing file keeps its owner and a new one is the agent's. A user
    /// that does not exist fails the check, before anything is written.
    owner: Option<String>,
    /// Group of the file (name or gid), like `owner`.
    group: Option<String>,
    /// Only `present` for now.
    #[serde(default)]
    ensure: Ensure,
    /// How the application reads the file, so that what is there is
    /// compared as it sees it: `utf-8` (the default: Stash and most
    /// applications read their config with a UTF-8 reader; a file that is
    /// not UTF-8 is read as ISO-8859-1) or `iso-8859-1` (Java's
    /// `Properties.load(InputStream)`: a raw `ü` written in UTF-8 reads
    /// as `Ã¼`, so it is not in sync). Values are always written as ASCII
    /// with `\uXXXX` escapes, which both read alike.
    #[serde(default)]
    encoding: Encoding,
}

/// `encoding:` of a properties file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "UTF-8", alias = "utf8")]
    Utf8,
    #[serde(
        rename = "iso-8859-1",
        alias = "ISO-8859-1",
        alias = "latin1",
        alias = "latin-1"
    )]
    Latin1,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Ensure {
    #[default]
    Present,
}

/// A typed `properties` resource.
#[derive(Debug)]
pub struct Properties {
    id: ResourceId,
    path: String,
    set: Vec<(String, String)>,
    remove: Vec<String>,
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    /// Keys whose values are Sensitive.
    sensitive: BTreeSet<String>,
    encoding: Encoding,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let Ensure::Present = p.ensure;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let path = id.title.clone();
    if !path.starts_with('/') {
        return Err(invalid(
            "the title must be the absolute path of the file".into(),
        ));
    }
    let mut set = Vec::with_capacity(p.values.len());
    for (key, value) in p.values {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid(format!(
                    "values.{key} must be a string, number or boolean"
                )))
            }
        };
        if key.is_empty() {
            return Err(invalid("property keys cannot be empty".into()));
        }
        if p.remove.contains(&key) {
            return Err(invalid(format!("'{key}' is both in values and in remove")));
        }
        set.push((key, text));
    }
    let sensitive = set
        .iter()
        .filter(|(k, _)| decl.is_sensitive("values") || decl.is_sensitive(&format!("values.{k}")))
        .map(|(k, _)| k.clone())
        .collect();
    let mode = p
        .mode
        .as_deref()
        .map(mode::parse_mode)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Box::new(Properties {
        id: id.clone(),
        path,
        set,
        remove: p.remove,
        mode,
        owner: p.owner,
        group: p.group,
        sensitive,
        encoding: p.encoding,
    }))
}

/// What `apply` does, as `check` decided.
#[derive(Debug)]
struct Steps {
    /// The new content, when it differs.
    rewrite: Option<Rewrite>,
    /// The file on disk.
    path: PathBuf,
    /// The declared mode, when it differs.
    chmod: Option<u32>,
    /// The mode the file had, put back after a chown clears set-id bits.
    old_mode: Option<u32>,
    /// The owner and group the file gets (declared, else kept): `None`
    /// for a new file with neither declared.
    ids: Option<(u32, u32)>,
    /// True when only the owner or group of the file differ.
    chown: bool,
}

/// uid and gid of a declared owner and group (`None` where not declared).
type Wanted = (Option<u32>, Option<u32>);

impl Properties {
    /// The declared owner and group, resolved; one that does not exist
    /// fails here, at check, before anything is written.
    fn wanted_ids(&self, cx: &Context) -> Result<Wanted, ResourceError> {
        let missing = |what: &str, name: &str| {
            ResourceError::Failed(format!(
                "{}: no such {what}: {name} (create it first: it must exist before the file)",
                self.id
            ))
        };
        let uid = match &self.owner {
            Some(o) => Some(accounts::resolve_user(cx, o)?.ok_or_else(|| missing("user", o))?),
            None => None,
        };
        let gid = match &self.group {
            Some(g) => Some(accounts::resolve_group(cx, g)?.ok_or_else(|| missing("group", g))?),
            None => None,
        };
        Ok((uid, gid))
    }

    fn plan(&self, cx: &Context) -> Result<(Vec<Change>, Steps), ResourceError> {
        let (want_uid, want_gid) = self.wanted_ids(cx)?;
        let file = Current::read(cx, &self.path)?;
        // Read as the application reads it (see `encoding`): ISO-8859-1
        // when declared so, or when the file is not UTF-8.
        let (text, latin1) = match (&file.old, self.encoding) {
            (Some(bytes), Encoding::Latin1) => (bytes.iter().map(|&b| b as char).collect(), true),
            (Some(bytes), Encoding::Utf8) => decode(bytes),
            (None, enc) => (String::new(), enc == Encoding::Latin1),
        };
        let pairs = parse(&text);
        let new = encode(&edit(&text, &self.set, &self.remove), latin1);
        let mut changes = Vec::new();
        for (key, value) in &self.set {
            let current = lookup(&pairs, key);
            if current != Some(value.as_str()) {
                let change = Change::new(key, current.map(str::to_string), Some(value.clone()));
                changes.push(change.sensitive(self.sensitive.contains(key)));
            }
        }
        for key in &self.remove {
            if let Some(current) = lookup(&pairs, key) {
                changes.push(Change::new(key, Some(current.to_string()), None));
            }
        }
        let meta = match &file.old {
            Some(_) => {
                Some(std::fs::metadata(&file.path).map_err(|e| ResourceError::io(&file.path, e))?)
            }
            None => None,
        };
        let old_mode = meta.as_ref().map(|m| m.mode() & 0o7777);
        let ids = match &meta {
            Some(m) => Some((want_uid.unwrap_or(m.uid()), want_gid.unwrap_or(m.gid()))),
            None if want_uid.is_some() || want_gid.is_some() => Some((
                want_uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                want_gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
            )),
            None => None,
        };
        let mut chown = false;
        if let Some(m) = &meta {
            if want_uid.is_some_and(|u| u != m.uid()) {
                chown = true;
                changes.push(Change::new(
                    "owner",
                    Some(accounts::user_label(m.uid())),
                    self.owner.clone(),
                ));
            }
            if want_gid.is_some_and(|g| g != m.gid()) {
                chown = true;
                changes.push(Change::new(
                    "group",
                    Some(accounts::group_label(m.gid())),
                    self.group.clone(),
                ));
            }
        }
        let path = file.path.clone();
        // Only removals on a missing file: nothing to write, no file to create.
        let rewrite = if file.missing() && self.set.is_empty() {
            None
        } else {
            file.rewrite(new, !self.sensitive.is_empty())
        };
        let rewrite = rewrite.map(|(change, rewrite)| {
            changes.push(change);
            rewrite
        });
        let mut chmod = None;
        if let (Some(want), Some(have)) = (self.mode, old_mode) {
            if want != have {
                changes.push(Change::new(
                    "mode",
                    Some(format!("{have:04o}")),
                    Some(format!("{want:04o}")),
                ));
                chmod = Some(want);
            }
        }
        let steps = Steps {
            path,
            rewrite,
            chmod,
            old_mode,
            ids,
            chown,
        };
        Ok((changes, steps))
    }
}

impl Resource for Properties {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let (changes, steps) = self.plan(cx)?;
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        let Some(rewrite) = &steps.rewrite else {
            // Only attributes: ownership first (chown clears set-id bits),
            // then the mode.
            let path = &steps.path;
            let io = |e| ResourceError::io(path, e);
            if let (true, Some((uid, gid))) = (steps.chown, steps.ids) {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io)?;
            }
            if let Some(m) = steps.chmod.or(steps.old_mode.filter(|_| steps.chown)) {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).map_err(io)?;
            }
            return Ok(());
        };
        let mode = match (self.mode, rewrite.creates()) {
            (Some(m), _) => Some(m),
            (None, false) => steps.old_mode, // keep the file's mode
            (None, true) if self.sensitive.is_empty() => Some(0o644),
            (None, true) => Some(0o600),
        };
        // The application user owns its config: the new file is its own
        // (declared, else the old file's owner) before it is renamed in —
        // a root-owned 0600 file would lock the application out. Only root
        // can give files away; anyone else writes as themselves.
        let owner = steps.ids.filter(|&(uid, gid)| {
            nix::unistd::geteuid().is_root()
                || (uid, gid)
                    != (
                        nix::unistd::geteuid().as_raw(),
                        nix::unistd::getegid().as_raw(),
                    )
                    && (self.owner.is_some() || self.group.is_some())
        });
        rewrite.write_owned(cx, &self.id, "", mode, owner)
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = edited::autorequires(&self.path);
        if let Some(owner) = &self.owner {
            ids.push(ResourceId::new("user", owner));
        }
        if let Some(group) = &self.group {
            ids.push(ResourceId::new("group", group));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        vec![self.path.clone()]
    }
}

#[cfg(test)]
mod tests;
