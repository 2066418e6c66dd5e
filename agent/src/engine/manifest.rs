//! The YAML front end: `site.yaml` classification (node → roles), manifest
//! files with `include`, and raw resource declarations with the file and line
//! they came from. It knows nothing about rendering or execution.
//!
//! ```yaml
//! # site.yaml
//! nodes:
//!   stash-server: [roles/stash_server]
//!   "/^production-db-standby\\d*$/": [roles/db_standby]
//! default: [roles/base]
//!
//! # roles/stash_server.yaml
//! include: [profiles/hosts]
//! resources:
//!   - file: /etc/motd
//!     content: "hello\n"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use resources::Location;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::engine::compile_error::{CompileError, CompileErrorKind as Kind};
use crate::yaml::{self, Data, Node};

/// `site.yaml`'s keys, checked by serde; the values are read from the
/// tree, where `nodes:` keeps its written order and every node its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read for validation only
struct RawSite {
    /// Node name or `/regex/` → a role or a list of roles.
    #[serde(default)]
    nodes: Option<BTreeMap<String, IgnoredAny>>,
    /// The roles of a node no entry names.
    #[serde(default)]
    default: Vec<String>,
}

/// A manifest's keys, checked by serde; resources are read from the tree.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    /// Other manifests, loaded first.
    #[serde(default)]
    include: Vec<String>,
    /// `- TYPE: TITLE` items.
    #[serde(default)]
    #[allow(dead_code)] // read for validation only
    resources: Option<Vec<IgnoredAny>>,
}

/// One `- TYPE: TITLE` entry as written, before rendering.
#[derive(Debug, Clone)]
pub struct RawResource {
    pub type_name: String,
    pub title: Node,
    /// Attributes and metaparameters, in written order.
    pub attrs: Vec<(String, Node)>,
    pub location: Location,
}

/// Everything the compiler needs from the manifests of one node.
#[derive(Debug)]
pub struct NodeManifests {
    pub roles: Vec<String>,
    pub resources: Vec<RawResource>,
    /// Every manifest file read, in load order.
    pub files: Vec<PathBuf>,
}

/// Reads and parses one manifest file into its tree and its checked keys,
/// turning a syntax or shape error into file:line.
fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<(T, Node), CompileError> {
    let at = |line| Location {
        file: path.into(),
        line,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CompileError::new(
            at(0),
            Kind::Unreadable {
                message: e.to_string(),
            },
        )
        .hint("check --manifests and the names in site.yaml / include")
    })?;
    let malformed = |line, e: &dyn fmt::Display| {
        let message = e.to_string();
        CompileError::new(at(line), Kind::Malformed { message }).hint(
            "manifests are YAML: `include: [...]` and `resources:` with `- TYPE: TITLE` items",
        )
    };
    let tree = yaml::parse(&text).map_err(|e| malformed(e.mark.line, &e))?;
    // An empty file is an empty manifest, as it always was.
    let empty = Node {
        mark: tree.mark,
        data: Data::Map(vec![]),
    };
    let tree = if tree.is_null() { empty } else { tree };
    let keys = yaml::from_node(&tree).map_err(|e| malformed(e.mark.map_or(0, |m| m.line), &e))?;
    Ok((keys, tree))
}

/// Loads `site.yaml` and the roles of `node` with everything they include.
pub fn load(manifests_dir: &Path, node: &str) -> Result<NodeManifests, CompileError> {
    let site_path = manifests_dir.join("site.yaml");
    let (site, tree) = read_yaml::<RawSite>(&site_path)?;
    let roles = classify(&site, &tree, node, &site_path)?;
    let mut out = NodeManifests {
        roles: roles.clone(),
        resources: vec![],
        files: vec![site_path.clone()],
    };
    let mut loaded = BTreeMap::new();
    for role in &roles {
        let mut chain = vec![];
        // A role site.yaml names: a missing one is its own read error.
        load_manifest(
            manifests_dir,
            role,
            &site_path,
            0,
            &mut chain,
            &mut loaded,
            &mut out,
        )?;
    }
    Ok(out)
}

/// Exact name first, then `/regex/` patterns in written order, then `default`.
fn classify(
    site: &RawSite,
    tree: &Node,
    node: &str,
    site_path: &Path,
) -> Result<Vec<String>, CompileError> {
    let at = |line| Location {
        file: site_path.into(),
        line,
    };
    let roles_of = |v: &Node| -> Result<Vec<String>, CompileError> {
        if let Some(role) = v.as_str() {
            return Ok(vec![role.to_string()]);
        }
        match &v.data {
            Data::Seq(seq) => seq
                .iter()
                .map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| structure(at(r.mark.line), "role names must be strings"))
                })
                .collect(),
            _ => Err(structure(
                at(v.mark.line),
                "a node maps to a role name or a list of them",
            )),
        }
    };
    let entries = tree
        .get("nodes")
        .and_then(Node::entries)
        .unwrap_or_default();
    for (k, v) in entries {
        if k.as_str() == Some(node) {
            return roles_of(v);
        }
    }
    for (k, v) in entries {
        let Some(pat) = k.as_str() else { continue };
        if pat.len() >= 2 && pat.starts_with('/') && pat.ends_with('/') {
            let re = regex::Regex::new(&pat[1..pat.len() - 1])
                .map_err(|e| structure(at(k.mark.line), format!("bad node pattern {pat}: {e}")))?;
            if re.is_match(node) {
                return roles_of(v);
            }
        }
    }
    if site.default.is_empty() {
        return Err(CompileError::new(
            at(1),
            Kind::Unclassified {
                node: node.to_string(),
            },
        )
        .hint("add the node under `nodes:` or give a `default:` list of roles"));
    }
    Ok(site.default.clone())
}

fn load_manifest(
    dir: &Path,
    name: &str,
    from: &Path,
    from_line: usize,
    chain: &mut Vec<String>,
    loaded: &mut BTreeMap<String, ()>,
    out: &mut NodeManifests,
) -> Result<(), CompileError> {
    if let Some(pos) = chain.iter().position(|n| n == name) {
        let mut cycle: Vec<_> = chain[pos..].to_vec();
        cycle.push(name.to_string());
        return Err(CompileError::new(
            Location {
                file: from.into(),
                line: 0,
            },
            Kind::IncludeCycle { chain: cycle },
        )
        .hint("a manifest may not include itself, directly or through others"));
    }
    if loaded.contains_key(name) {
        return Ok(()); // included twice: like Puppet's include, once is enough
    }
    let path = manifest_path(dir, name).ok_or_else(|| {
        CompileError::new(
            Location {
                file: from.into(),
                line: 0,
            },
            Kind::BadManifestName {
                name: name.to_string(),
            },
        )
    })?;
    if from_line > 0 && !path.is_file() {
        // A missing include: said where it is included.
        return Err(CompileError::new(
            Location {
                file: from.into(),
                line: from_line,
            },
            Kind::Unreadable {
                message: format!("includes {name}, but {} does not exist", path.display()),
            },
        )
        .hint("an include names a manifest under --manifests, without .yaml"));
    }
    let (raw, tree) = read_yaml::<RawManifest>(&path)?;
    chain.push(name.to_string());
    let include_lines: Vec<usize> = match tree.get("include").map(|i| &i.data) {
        Some(Data::Seq(items)) => items.iter().map(|n| n.mark.line).collect(),
        Some(_) => tree
            .get("include")
            .map(|n| vec![n.mark.line])
            .unwrap_or_default(),
        None => vec![],
    };
    for (k, inc) in raw.include.iter().enumerate() {
        let line = include_lines.get(k).copied().unwrap_or(1).max(1);
        load_manifest(dir, inc, &path, line, chain, loaded, out)?;
    }
    chain.pop();
    loaded.insert(name.to_string(), ());
    out.files.push(path.clone());
    let file: std::sync::Arc<Path> = path.as_path().into();
    let items = match tree.get("resources").map(|r| &r.data) {
        Some(Data::Seq(items)) => items.as_slice(),
        _ => &[],
    };
    for item in items {
        let location = Location {
            file: file.clone(),
            line: item.mark.line,
        };
        out.resources.push(raw_resource(item, location)?);
    }
    Ok(())
}

/// `roles/x` → `<dir>/roles/x.yaml`; none for a name that leaves the dir.
fn manifest_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    let file = if name.ends_with(".yaml") || name.ends_with(".yml") {
        dir.join(name)
    } else {
        dir.join(format!("{name}.yaml"))
    };
    Some(file)
}

fn structure(location: Location, message: impl Into<String>) -> CompileError {
    CompileError::new(
        location,
        Kind::Structure {
            message: message.into(),
        },
    )
}

fn raw_resource(item: &Node, location: Location) -> Result<RawResource, CompileError> {
    let Some(entries) = item.entries() else {
        return Err(structure(
            location,
            format!("a resource is a mapping, not {}", item.kind()),
        )
        .hint("write `- TYPE: TITLE` then the attributes"));
    };
    let mut entries = entries.iter();
    let Some((type_key, title)) = entries.next() else {
        return Err(structure(location, "empty resource").hint("write `- TYPE: TITLE`"));
    };
    let Some(type_name) = type_key.as_str().map(str::to_string) else {
        return Err(structure(location, "resource type must be a string")
            .hint("write `- TYPE: TITLE` as the first line of the item"));
    };
    let mut attrs = Vec::new();
    for (k, v) in entries {
        let Some(k) = k.as_str() else {
            return Err(structure(location, "attribute names must be strings"));
        };
        attrs.push((k.to_string(), v.clone()));
    }
    Ok(RawResource {
        type_name,
        title: title.clone(),
        attrs,
        location,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn site(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
    }

    #[test]
    fn classifies_exact_regex_default() {
        let d = tempfile::tempdir().unwrap();
        site(
            d.path(),
            &[
                (
                    "site.yaml",
                    "nodes:\n  a: [roles/a]\n  \"/^db\\\\d+$/\": roles/db\ndefault: [roles/base]\n",
                ),
                (
                    "roles/a.yaml",
                    "include: [profiles/p]\nresources:\n  - file: /a\n",
                ),
                ("roles/db.yaml", "resources: []\n"),
                ("roles/base.yaml", "{}\n"),
                (
                    "profiles/p.yaml",
                    "resources:\n\n  # c\n  - file: /p\n    content: x\n  - exec: y\n",
                ),
            ],
        );
        let a = load(d.path(), "a").unwrap();
        assert_eq!(a.roles, vec!["roles/a"]);
        let ids: Vec<_> = a
            .resources
            .iter()
            .map(|r| (r.title.as_str().unwrap(), r.location.line))
            .collect();
        assert_eq!(ids, vec![("/p", 4), ("y", 6), ("/a", 3)]);
        assert_eq!(load(d.path(), "db12").unwrap().roles, vec!["roles/db"]);
        assert_eq!(load(d.path(), "other").unwrap().roles, vec!["roles/base"]);
    }

    #[test]
    fn include_cycle_and_malformed_yaml_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        site(
            d.path(),
            &[
                ("site.yaml", "default: [a]\n"),
                ("a.yaml", "include: [b]\n"),
                ("b.yaml", "include: [a]\n"),
            ],
        );
        let err = load(d.path(), "n").unwrap_err().to_string();
        assert!(err.contains("include cycle: a -> b -> a"), "{err}");
        site(
            d.path(),
            &[("a.yaml", "resources:\n  - file: /x\n   bad: [\n")],
        );
        let err = load(d.path(), "n").unwrap_err();
        let at = err.location.clone().unwrap();
        assert!(at.file.ends_with("a.yaml"));
        assert_eq!(at.line, 3, "{err}");
        assert!(matches!(*err.kind, Kind::Malformed { .. }), "{err:?}");
    }
}
