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
use crate::mode;

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
        sensitive,
        encoding: p.encoding,
    }))
}

/// What `apply` does, as `check` decided.
#[derive(Debug)]
struct Steps {
    /// The new content, when it differs.
    rewrite: Option<Rewrite>,
    /// The declared mode, when only the mode differs.
    chmod: Option<(PathBuf, u32)>,
    /// The mode the file had, put back after a chown clears set-id bits.
    old_mode: Option<u32>,
}

impl Properties {
    fn plan(&self, cx: &Context) -> Result<(Vec<Change>, Steps), ResourceError> {
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
        let old_mode = match &file.old {
            Some(_) => Some(
                std::fs::metadata(&file.path)
                    .map_err(|e| ResourceError::io(&file.path, e))?
                    .mode()
                    & 0o7777,
            ),
            None => None,
        };
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
                chmod = Some((path, want));
            }
        }
        let steps = Steps {
            rewrite,
            chmod,
            old_mode,
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
            if let Some((path, mode)) = &steps.chmod {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| ResourceError::io(path, e))?;
            }
            return Ok(());
        };
        let path = &rewrite.path;
        let owner = match rewrite.creates() {
            false => std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid())),
            true => None,
        };
        let mode = match (self.mode, rewrite.creates()) {
            (Some(m), _) => Some(m),
            (None, false) => None, // keep the file's mode
            (None, true) if self.sensitive.is_empty() => Some(0o644),
            (None, true) => Some(0o600),
        };
        rewrite.write(cx, &self.id, "", mode)?;
        // The application user owns its config; replacing must not hand
        // it to root (a 0600 root file would lock the application out).
        if let Some((uid, gid)) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
            let meta = std::fs::metadata(path).map_err(|e| ResourceError::io(path, e))?;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| ResourceError::io(path, e))?;
                if let Some(m) = mode.or(steps.old_mode) {
                    // chown clears set-id bits; put the mode back.
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
                        .map_err(|e| ResourceError::io(path, e))?;
                }
            }
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        edited::autorequires(&self.path)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.path.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn decl(path: &str, attrs: serde_json::Value, sensitive: &[&str]) -> Decl {
        Decl {
            id: ResourceId::new("properties", path),
            attrs: attrs.as_object().unwrap().clone(),
            sensitive: sensitive.iter().map(|s| s.to_string()).collect(),
            location: Default::default(),
        }
    }

    fn sandbox() -> (tempfile::TempDir, Context) {
        crate::testing::sandbox(&["stash/shared"])
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn apply_is_idempotent_and_reports_per_key() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/stash-config.properties");
        let unmanaged = "#>>> Stash config\n#Mon Jan 01 00:00:00 UTC 2024\nsetup.displayName=Stash \\\n  Bench\r\n\njdbc.driver=org.postgresql.Driver\n";
        std::fs::write(
            &path,
            format!("{unmanaged}jdbc.url=jdbc\\:postgresql\\://old\\:5432/stash\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let attrs = json!({"values": {"jdbc.url": "jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2", "plugin.port": 7990, "ok": true}});
        let r = build(
            &decl("/stash/shared/stash-config.properties", attrs, &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let lines: Vec<String> = changes.iter().map(Change::line).collect();
        assert!(lines.contains(&"jdbc.url changed 'jdbc:postgresql://old:5432/stash' to 'jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2'".into()), "{lines:?}");
        assert!(
            lines.contains(&"plugin.port changed absent to '7990'".into()),
            "{lines:?}"
        );
        assert_eq!(changes.len(), 4, "three keys and the content");
        r.apply(&cx, plan).unwrap();
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "second check finds nothing"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{unmanaged}jdbc.url=jdbc:postgresql://192.0.2.1:5432/stash?a=1&b=2\nok=true\nplugin.port=7990\n"));
        assert_eq!(mode_of(&path), 0o640, "existing mode kept");

        let moded = build(
            &decl(
                "/stash/shared/stash-config.properties",
                json!({"mode": "0600"}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        assert_eq!(
            moded.check(&cx).unwrap().changes()[0].line(),
            "mode changed '0640' to '0600'"
        );
        moded.apply(&cx, moded.check(&cx).unwrap()).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert!(moded.check(&cx).unwrap().is_empty());
    }

    #[test]
    fn the_encoding_says_how_a_raw_non_ascii_line_reads() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/app.properties");
        std::fs::write(&path, "greeting=gr\u{fc}n\n").unwrap(); // raw UTF-8
        let with = |enc: Option<&str>| {
            let mut attrs = json!({"values": {"greeting": "gr\u{fc}n"}});
            if let Some(e) = enc {
                attrs["encoding"] = json!(e);
            }
            build(
                &decl("/stash/shared/app.properties", attrs, &[]),
                &TypeEnv::default(),
            )
            .unwrap()
        };
        // A UTF-8 reader (Stash) sees it in sync.
        assert!(with(None).check(&cx).unwrap().is_empty());
        assert!(with(Some("utf-8")).check(&cx).unwrap().is_empty());
        // Java's Properties.load(InputStream) reads ISO-8859-1: not in sync,
        // and the rewrite is ASCII both read alike.
        let latin = with(Some("iso-8859-1"));
        let plan = latin.check(&cx).unwrap();
        assert_eq!(
            plan.changes()[0].line(),
            "greeting changed 'gr\u{c3}\u{bc}n' to 'gr\u{fc}n'"
        );
        latin.apply(&cx, plan).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"greeting=gr\\u00FCn\n");
        assert!(latin.check(&cx).unwrap().is_empty());
        assert!(with(None).check(&cx).unwrap().is_empty());
        assert!(build(
            &decl("/x.properties", json!({"encoding": "ebcdic"}), &[]),
            &TypeEnv::default()
        )
        .is_err());
    }

    #[test]
    fn sensitive_values_are_redacted_and_new_files_private() {
        let (_dir, cx) = sandbox();
        let attrs = json!({"values": {"jdbc.password": "s3cr3t-prop-test", "jdbc.user": "stash"}});
        let r = build(
            &decl(
                "/stash/shared/new.properties",
                attrs,
                &["values.jdbc.password"],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        let plan = r.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        let pw = changes
            .iter()
            .find(|c| c.property == "jdbc.password")
            .unwrap();
        assert!(
            pw.sensitive && !pw.line().contains("s3cr3t"),
            "{}",
            pw.line()
        );
        let user = changes.iter().find(|c| c.property == "jdbc.user").unwrap();
        assert!(!user.sensitive);
        let content = changes.iter().find(|c| c.property == "content").unwrap();
        assert!(content.printable_diff().is_none(), "a new file has no diff");
        r.apply(&cx, plan).unwrap();
        let path = cx.root.join("stash/shared/new.properties");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "jdbc.password=s3cr3t-prop-test\njdbc.user=stash\n"
        );
        assert!(r.check(&cx).unwrap().is_empty());

        let plain = build(
            &decl(
                "/stash/shared/plain.properties",
                json!({"values": {"a": "1"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        plain.apply(&cx, plain.check(&cx).unwrap()).unwrap();
        assert_eq!(
            mode_of(&cx.root.join("stash/shared/plain.properties")),
            0o644
        );
        let nodir = build(
            &decl("/nodir/x.properties", json!({"values": {"a": "1"}}), &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        assert!(nodir
            .apply(&cx, nodir.check(&cx).unwrap())
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn remove_and_latin1_files_keep_other_bytes() {
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/l1.properties");
        let mut old = b"# caf\xe9\nname=caf\xe9\ngone=1\n".to_vec();
        std::fs::write(&path, &old).unwrap();
        let r = build(
            &decl(
                "/stash/shared/l1.properties",
                json!({"remove": ["gone"], "values": {"x": "é"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        r.apply(&cx, r.check(&cx).unwrap()).unwrap();
        assert!(r.check(&cx).unwrap().is_empty());
        old.truncate(old.len() - "gone=1\n".len());
        old.extend_from_slice(b"x=\\u00E9\n");
        assert_eq!(std::fs::read(&path).unwrap(), old);
        let only_remove = json!({"remove": ["gone"]});
        let r = build(
            &decl("/stash/shared/none.properties", only_remove, &[]),
            &TypeEnv::default(),
        )
        .unwrap();
        assert!(
            r.check(&cx).unwrap().is_empty(),
            "removing from a missing file is in sync"
        );
        let both = json!({"remove": ["a"], "values": {"a": "1"}});
        assert!(build(&decl("/x", both, &[]), &TypeEnv::default()).is_err());
        assert!(build(
            &decl("/x", json!({"ensure": "absent"}), &[]),
            &TypeEnv::default()
        )
        .is_err());
        assert!(build(
            &decl("/x", json!({"values": {"a": [1]}}), &[]),
            &TypeEnv::default()
        )
        .is_err());
    }

    #[test]
    fn replacing_keeps_the_owner() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a file away
        }
        let (_dir, cx) = sandbox();
        let path = cx.root.join("stash/shared/owned.properties");
        std::fs::write(&path, "a=1\n").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let r = build(
            &decl(
                "/stash/shared/owned.properties",
                json!({"values": {"a": "2"}}),
                &[],
            ),
            &TypeEnv::default(),
        )
        .unwrap();
        r.apply(&cx, r.check(&cx).unwrap()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (
                meta.uid(),
                meta.gid(),
                std::fs::read_to_string(&path).unwrap().as_str()
            ),
            (65534, 65534, "a=2\n")
        );
    }
}
