//! `hiera.yaml` version 5: parsed once into serde structs that refuse unknown
//! keys, then validated into the hierarchy the lookups walk.
//!
//! Only the file-based backends ship (`data_hash: yaml_data | json_data`);
//! a level that asks for `lookup_key`, `data_dig`, `hiera3_backend` or another
//! `data_hash` function is refused at load, by name, rather than skipped: a
//! skipped level would silently change which value wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::data::Format;
use super::{interpolate, HieraError};
use crate::yaml::{self, Node};

/// `defaults:`: settings every hierarchy level inherits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    /// Directory of the data files, relative to hiera.yaml's directory
    /// (default `data`). May interpolate scope variables.
    datadir: Option<String>,
    /// The backend: `yaml_data` or `json_data`.
    data_hash: Option<String>,
    /// Not supported (a per-key backend such as `eyaml_lookup_key`).
    lookup_key: Option<String>,
    /// Not supported.
    data_dig: Option<String>,
    /// Not supported (a Hiera 3 backend).
    hiera3_backend: Option<String>,
    /// Backend options; accepted and ignored by the file backends.
    options: Option<BTreeMap<String, Value>>,
}

/// One `hierarchy:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    /// Shown by `--explain`; unique within the hierarchy.
    name: String,
    /// One data file, relative to the datadir; `%{...}` scope interpolation.
    path: Option<String>,
    /// Several data files, in priority order.
    paths: Option<Vec<String>>,
    /// Every file matching a glob (`*`, `**/`, `{a,b}`), sorted.
    glob: Option<String>,
    /// Several globs.
    globs: Option<Vec<String>>,
    /// `[variable, key, template]`: one path per element of the variable
    /// (an array or hash in scope), with `%{key}` bound to the element.
    mapped_paths: Option<Vec<String>>,
    /// Not supported (URIs are for lookup_key backends).
    uri: Option<String>,
    /// Not supported.
    uris: Option<Vec<String>>,
    /// Overrides the default datadir for this level.
    datadir: Option<String>,
    /// Overrides the default backend for this level.
    data_hash: Option<String>,
    lookup_key: Option<String>,
    data_dig: Option<String>,
    hiera3_backend: Option<String>,
    /// Backend options; ignored by the file backends.
    options: Option<BTreeMap<String, Value>>,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Must be 5.
    #[allow(dead_code)]
    version: Value,
    defaults: Option<RawDefaults>,
    /// Levels from highest priority to lowest. Default: one level "Common"
    /// reading `common.yaml`.
    hierarchy: Option<Vec<RawLevel>>,
    /// Used by Bolt plans only; validated, not used.
    plan_hierarchy: Option<Vec<RawLevel>>,
    /// Only valid in a module's hiera.yaml; refused here.
    default_hierarchy: Option<Value>,
}

/// Just the version, read first so a version 3 file gets a clear message
/// instead of a list of unknown keys.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<Value>,
}

/// Where a level's data files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Locations {
    Paths(Vec<String>),
    Globs(Vec<String>),
    Mapped {
        var: String,
        key: String,
        template: String,
    },
}

/// A validated hierarchy level.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    pub name: String,
    /// The datadir template (interpolated per lookup, then joined to the
    /// config's directory).
    pub datadir: String,
    pub format: Format,
    pub locations: Locations,
}

/// A validated hiera.yaml.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub path: PathBuf,
    /// hiera.yaml's directory: relative datadirs start here.
    pub root: PathBuf,
    pub levels: Vec<Level>,
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Config, HieraError> {
        let text = std::fs::read_to_string(path).map_err(|e| HieraError::Config {
            file: path.to_path_buf(),
            line: None,
            msg: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, HieraError> {
        let fail = |line: Option<usize>, msg: String| HieraError::Config {
            file: path.to_path_buf(),
            line,
            msg,
        };
        let tree = yaml::parse(text).map_err(|e| fail(Some(e.mark.line), e.describe()))?;
        let de_err = |e: yaml::DeError| fail(e.mark.map(|m| m.line), e.message);
        // The line of a top-level key.
        let key_line = |key: &str| tree.entry(key).map(|(k, _)| k.mark.line);
        // Only the version first: a version 3 file gets a clear message
        // instead of a list of unknown keys.
        let version = match tree.entries() {
            Some(_) => {
                yaml::from_node::<VersionOnly>(&tree)
                    .map_err(de_err)?
                    .version
            }
            None => None,
        };
        match version {
            None => {
                return Err(fail(
                    None,
                    "no `version: 5`; only Hiera version 5 configuration is supported".into(),
                ))
            }
            Some(v) if !is_five(&v) => {
                return Err(fail(
                    key_line("version"),
                    format!(
                        "version {} is not supported; only Hiera version 5 configuration is",
                        yaml::to_string(&v).trim()
                    ),
                ));
            }
            Some(_) => {}
        }
        let raw: RawConfig = yaml::from_node(&tree).map_err(de_err)?;
        if raw.default_hierarchy.is_some() {
            return Err(fail(
                key_line("default_hierarchy"),
                "'default_hierarchy' is only allowed in a module's hiera.yaml".into(),
            ));
        }
        let defaults = raw.defaults;
        let default_fn = match &defaults {
            None => Some(Backend::Data("yaml_data".into())),
            Some(d) => {
                let fns = backends(&d.data_hash, &d.lookup_key, &d.data_dig, &d.hiera3_backend);
                if fns.len() > 1 {
                    return Err(fail(
                        key_line("defaults"),
                        "only one of data_hash, lookup_key, data_dig or hiera3_backend can be defined in defaults".into(),
                    ));
                }
                reserved_options(&d.options, "defaults", tree.get("defaults"))
                    .map_err(|(l, m)| fail(l, m))?;
                fns.into_iter().next()
            }
        };
        let default_datadir = defaults
            .as_ref()
            .and_then(|d| d.datadir.clone())
            .unwrap_or_else(|| "data".into());
        let raw_levels = raw.hierarchy.unwrap_or_else(|| {
            vec![RawLevel {
                name: "Common".into(),
                path: Some("common.yaml".into()),
                paths: None,
                glob: None,
                globs: None,
                mapped_paths: None,
                uri: None,
                uris: None,
                datadir: None,
                data_hash: None,
                lookup_key: None,
                data_dig: None,
                hiera3_backend: None,
                options: None,
            }]
        });
        let level_nodes = |key: &str| -> Vec<&Node> {
            match tree.get(key).map(|h| &h.data) {
                Some(yaml::Data::Seq(items)) => items.iter().collect(),
                _ => Vec::new(),
            }
        };
        let hierarchy_nodes = level_nodes("hierarchy");
        let mut levels: Vec<Level> = Vec::new();
        for (i, raw) in raw_levels.into_iter().enumerate() {
            let node = hierarchy_nodes.get(i).copied();
            let level = validate_level(raw, &default_fn, &default_datadir, node)
                .map_err(|(l, m)| fail(l, m))?;
            if levels.iter().any(|l| l.name == level.name) {
                let line = node.and_then(|n| n.get("name")).map(|n| n.mark.line);
                return Err(fail(
                    line,
                    format!("hierarchy name '{}' is defined more than once", level.name),
                ));
            }
            levels.push(level);
        }
        let plan_nodes = level_nodes("plan_hierarchy");
        for (i, raw) in raw
            .plan_hierarchy
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            validate_level(
                raw,
                &default_fn,
                &default_datadir,
                plan_nodes.get(i).copied(),
            )
            .map_err(|(l, m)| fail(l, m))?;
        }
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Config {
            path: path.to_path_buf(),
            root,
            levels,
        })
    }
}

fn is_five(v: &Value) -> bool {
    v.as_u64() == Some(5) || v.as_str().map(str::trim) == Some("5")
}

/// A level's data provider function.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    Data(String),
    Other(&'static str, String),
}

fn backends(
    data_hash: &Option<String>,
    lookup_key: &Option<String>,
    data_dig: &Option<String>,
    hiera3: &Option<String>,
) -> Vec<Backend> {
    let mut out = Vec::new();
    if let Some(f) = data_hash {
        out.push(Backend::Data(f.clone()));
    }
    for (kind, v) in [
        ("lookup_key", lookup_key),
        ("data_dig", data_dig),
        ("hiera3_backend", hiera3),
    ] {
        if let Some(f) = v {
            out.push(Backend::Other(kind, f.clone()));
        }
    }
    out
}

type LevelError = (Option<usize>, String);

fn validate_level(
    raw: RawLevel,
    default_fn: &Option<Backend>,
    default_datadir: &str,
    node: Option<&Node>,
) -> Result<Level, LevelError> {
    let name = raw.name;
    // Errors point at the level's name, or at the key they are about.
    let name_line = || node.and_then(|n| n.get("name")).map(|n| n.mark.line);
    let key_at = |key: &str| node.and_then(|n| n.entry(key)).map(|(k, _)| k.mark.line);
    let near = |key: &str| key_at(key).or_else(name_line);
    let fns = backends(
        &raw.data_hash,
        &raw.lookup_key,
        &raw.data_dig,
        &raw.hiera3_backend,
    );
    if fns.len() > 1 {
        return Err((
            name_line(),
            format!("only one of data_hash, lookup_key, data_dig or hiera3_backend can be defined in hierarchy '{name}'"),
        ));
    }
    let Some(backend) = fns.into_iter().next().or_else(|| default_fn.clone()) else {
        let msg = format!("hierarchy '{name}' has no data provider function");
        return Err((name_line(), format!("{msg} (add `data_hash: yaml_data`)")));
    };
    let format = match &backend {
        Backend::Data(f) if f == "yaml_data" => Format::Yaml,
        Backend::Data(f) if f == "json_data" => Format::Json,
        Backend::Data(f) => {
            return Err((
                near("data_hash"),
                format!("hierarchy '{name}': data_hash '{f}' is not supported (only yaml_data and json_data are)"),
            ))
        }
        Backend::Other(kind, f) => {
            return Err((
                near(kind),
                format!("hierarchy '{name}': backend `{kind}: {f}` is not supported (only data_hash: yaml_data and json_data are)"),
            ))
        }
    };
    reserved_options(&raw.options, &format!("hierarchy '{name}'"), node)?;
    let mut specs: Vec<(&str, Locations)> = Vec::new();
    if let Some(p) = raw.path {
        specs.push(("path", Locations::Paths(vec![p])));
    }
    if let Some(p) = raw.paths {
        specs.push(("paths", Locations::Paths(p)));
    }
    if let Some(g) = raw.glob {
        specs.push(("glob", Locations::Globs(vec![g])));
    }
    if let Some(g) = raw.globs {
        specs.push(("globs", Locations::Globs(g)));
    }
    if let Some(m) = raw.mapped_paths {
        let [var, key, template] = <[String; 3]>::try_from(m).map_err(|_| {
            (
                near("mapped_paths"),
                format!("hierarchy '{name}': mapped_paths must be [variable, key, template]"),
            )
        })?;
        specs.push(("mapped_paths", Locations::Mapped { var, key, template }));
    }
    if raw.uri.is_some() || raw.uris.is_some() {
        return Err((
            key_at("uri").or_else(|| key_at("uris")).or_else(name_line),
            format!("hierarchy '{name}': uri/uris are only for lookup_key backends, which are not supported"),
        ));
    }
    if specs.len() > 1 {
        return Err((
            name_line(),
            format!("only one of path, paths, glob, globs or mapped_paths can be defined in hierarchy '{name}'"),
        ));
    }
    let Some((key, locations)) = specs.pop() else {
        return Err((
            name_line(),
            format!("hierarchy '{name}' needs one of path, paths, glob, globs or mapped_paths"),
        ));
    };
    let templates: Vec<&String> = match &locations {
        Locations::Paths(p) | Locations::Globs(p) => p.iter().collect(),
        Locations::Mapped { template, .. } => vec![template],
    };
    if templates.is_empty() || templates.iter().any(|t| t.is_empty()) {
        return Err((
            near(key),
            format!("hierarchy '{name}': {key} must not be empty"),
        ));
    }
    let datadir = raw.datadir.unwrap_or_else(|| default_datadir.to_string());
    for t in templates.into_iter().chain(std::iter::once(&datadir)) {
        if let Some(call) = interpolate::first_call(t) {
            return Err((
                near(key),
                format!("hierarchy '{name}': interpolation using method syntax is not allowed in paths: {call}"),
            ));
        }
    }
    Ok(Level {
        name,
        datadir,
        format,
        locations,
    })
}

/// Refuses the option keys Puppet reserves; the error points at `options:`
/// in `node` (the defaults or the level).
fn reserved_options(
    options: &Option<BTreeMap<String, Value>>,
    what: &str,
    node: Option<&Node>,
) -> Result<(), LevelError> {
    for key in ["path", "uri"] {
        if options.as_ref().is_some_and(|o| o.contains_key(key)) {
            return Err((
                node.and_then(|n| n.entry("options"))
                    .map(|(k, _)| k.mark.line),
                format!("{what}: option key '{key}' is reserved by Puppet"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, HieraError> {
        Config::parse(text, Path::new("/etc/agent/hiera.yaml"))
    }

    fn err_at(text: &str) -> (Option<usize>, String) {
        match parse(text).unwrap_err() {
            HieraError::Config { file, line, msg } => {
                assert_eq!(file, Path::new("/etc/agent/hiera.yaml"));
                (line, msg)
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn full_v5_config_validates() {
        let c = parse(
            r#"
version: 5
defaults:
  datadir: data
  data_hash: yaml_data
hierarchy:
  - name: "Per-node data"
    path: "nodes/%{trusted.certname}.yaml"
  - name: "JSON roles"
    datadir: jdata
    data_hash: json_data
    paths: ["roles/%{role}.json", "roles/default.json"]
  - name: "Services"
    mapped_paths: [facts.services, service, "services/%{service}.yaml"]
  - name: "Globbed"
    glob: "extra/*.yaml"
    options: {ignored: true}
  - name: "Common"
    path: common.yaml
"#,
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/etc/agent"));
        let names: Vec<_> = c.levels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Per-node data",
                "JSON roles",
                "Services",
                "Globbed",
                "Common"
            ]
        );
        assert_eq!(c.levels[1].format, Format::Json);
        assert_eq!(c.levels[1].datadir, "jdata");
        assert_eq!(c.levels[0].datadir, "data");
        assert!(
            matches!(&c.levels[2].locations, Locations::Mapped { key, .. } if key == "service")
        );
        assert_eq!(
            c.levels[3].locations,
            Locations::Globs(vec!["extra/*.yaml".into()])
        );
    }

    #[test]
    fn defaults_apply_when_absent() {
        let c = parse("version: 5\n").unwrap();
        assert_eq!(c.levels.len(), 1);
        assert_eq!(
            c.levels[0].locations,
            Locations::Paths(vec!["common.yaml".into()])
        );
        assert_eq!(c.levels[0].format, Format::Yaml);
    }

    #[test]
    fn only_version_5() {
        let (_, msg) = err_at(":backends: [yaml]\n:hierarchy: [common]\n");
        assert!(msg.contains("version 5"), "{msg}");
        let (line, msg) = err_at("# hiera\nversion: 3\n");
        assert_eq!(line, Some(2));
        assert!(msg.contains("version 3 is not supported"), "{msg}");
    }

    #[test]
    fn unsupported_backends_are_named_with_line() {
        let text = "version: 5\nhierarchy:\n  - name: common\n    path: common.yaml\n  - name: secrets\n    lookup_key: eyaml_lookup_key\n    path: secrets.eyaml\n";
        let (line, msg) = err_at(text);
        assert_eq!(line, Some(6));
        assert!(msg.contains("lookup_key: eyaml_lookup_key"), "{msg}");
        let (_, msg) = err_at(
            "version: 5\ndefaults:\n  data_dig: my_dig\nhierarchy:\n  - name: a\n    path: a\n",
        );
        assert!(msg.contains("data_dig: my_dig"), "{msg}");
        let (_, msg) =
            err_at("version: 5\nhierarchy:\n  - name: a\n    hiera3_backend: mongo\n    path: a\n");
        assert!(msg.contains("hiera3_backend: mongo"), "{msg}");
        let (_, msg) =
            err_at("version: 5\nhierarchy:\n  - name: a\n    data_hash: hocon_data\n    path: a\n");
        assert!(msg.contains("hocon_data"), "{msg}");
    }

    #[test]
    fn structural_errors_carry_lines() {
        let (line, msg) = err_at("version: 5\nhierarchy:\n  - name: a\n    pth: a.yaml\n");
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("unknown field `pth`"), "{msg}");
        let (line, msg) =
            err_at("version: 5\nhierarchy:\n  - name: a\n    path: a\n  - name: a\n    path: b\n");
        assert_eq!(line, Some(5));
        assert!(msg.contains("more than once"), "{msg}");
        let (_, msg) = err_at("version: 5\nhierarchy:\n  - name: a\n    path: a\n    glob: b\n");
        assert!(msg.contains("only one of path"), "{msg}");
        let (_, msg) = err_at("version: 5\nhierarchy:\n  - name: a\n");
        assert!(msg.contains("needs one of path"), "{msg}");
        let (_, msg) =
            err_at("version: 5\nhierarchy:\n  - name: a\n    path: \"%{lookup('x')}.yaml\"\n");
        assert!(msg.contains("not allowed"), "{msg}");
        let (_, msg) =
            err_at("version: 5\ndefaults:\n  datadir: d\nhierarchy:\n  - name: a\n    path: a\n");
        assert!(msg.contains("no data provider function"), "{msg}");
        let (line, _) = err_at("version: 5\nhierarchy: [\n");
        assert!(line.is_some());
    }

    #[test]
    fn lines_come_from_the_parsed_nodes() {
        let (line, msg) = err_at(
            "version: 5\nhierarchy:\n  - name: a\n    path: a\n    options:\n      path: x\n",
        );
        assert_eq!(line, Some(5), "{msg}");
        let (line, msg) = err_at(
            "version: 5\nhierarchy:\n  - name: a\n    path: a\n  - name: b\n    uris: [x]\n    path: b\n",
        );
        assert_eq!(line, Some(6), "{msg}");
        // A name in a comment, in flow style, with regex characters: each
        // fooled a search of the text, none fools the parser.
        let (line, msg) = err_at(
            "version: 5\n# name: 'a.b'\nhierarchy:\n  - {name: 'a.b', path: x}\n\n  - name: \"a.b\"\n    path: y\n",
        );
        assert_eq!(line, Some(6), "{msg}");
    }
}
