//! Hiera data files: parsing (`yaml_data`, `json_data`) into JSON values and
//! the per-run cache that keeps each file parsed once.
//!
//! A data file is a hash of keys; an empty file is an empty hash, as in
//! Puppet. A file that does not parse, or is not a hash, is an error naming
//! the file and, when the parser knows it, the line: a broken file must stop
//! the run rather than silently hide its keys. YAML scalars are typed as
//! Puppet types them (see [`crate::yaml::yaml11`]): a plain `yes` is true,
//! `0755` is 493, a quoted one stays a string.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::HieraError;

/// The backend of a hierarchy level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

/// One parsed data file: its top-level keys.
pub(crate) type DataMap = Map<String, Value>;

/// Parsed data files by path, shared by every lookup of a [`super::Hiera`].
#[derive(Debug, Default)]
pub(crate) struct DataCache {
    files: Mutex<HashMap<PathBuf, Arc<DataMap>>>,
}

impl DataCache {
    /// The parsed contents of `path`, read and parsed on first use only.
    pub(crate) fn get(&self, path: &Path, format: Format) -> Result<Arc<DataMap>, HieraError> {
        if let Some(hit) = self.lock().get(path) {
            return Ok(Arc::clone(hit));
        }
        // Parse outside the lock: files are small, and a second thread parsing
        // the same file at once only wastes a little work.
        let text = std::fs::read_to_string(path).map_err(|e| HieraError::Data {
            file: path.to_path_buf(),
            line: None,
            msg: format!("cannot read: {e}"),
        })?;
        let parsed = Arc::new(parse(&text, path, format)?);
        tracing::debug!(file = %path.display(), keys = parsed.len(), "hiera data loaded");
        self.lock().insert(path.to_path_buf(), Arc::clone(&parsed));
        Ok(parsed)
    }

    /// How many files have been parsed (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<DataMap>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parses a data file's text.
pub(crate) fn parse(text: &str, path: &Path, format: Format) -> Result<DataMap, HieraError> {
    let err = |line: Option<usize>, msg: String| HieraError::Data {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let value = match format {
        Format::Yaml => {
            let tree =
                crate::yaml::parse(text).map_err(|e| err(Some(e.mark.line), e.describe()))?;
            // Typed as Puppet types it: YAML 1.1 for plain scalars.
            tree.to_json_with(crate::yaml::yaml11::resolve)
        }
        Format::Json => {
            if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(text).map_err(|e| err(Some(e.line()), e.to_string()))?
            }
        }
    };
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => Err(err(
            None,
            format!(
                "file does not contain a valid {} hash (its top level is {})",
                match format {
                    Format::Yaml => "YAML",
                    Format::Json => "JSON",
                },
                super::merge::kind(&other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_parse_to_the_same_hash() {
        let p = Path::new("x");
        let y = parse("a: 1\nb: [x, {c: ~}]\n2: two\n", p, Format::Yaml).unwrap();
        assert_eq!(
            Value::Object(y),
            json!({"a": 1, "b": ["x", {"c": null}], "2": "two"})
        );
        let j = parse(r#"{"a": 1}"#, p, Format::Json).unwrap();
        assert_eq!(Value::Object(j), json!({"a": 1}));
        assert!(parse("", p, Format::Yaml).unwrap().is_empty());
        assert!(parse("---\n", p, Format::Yaml).unwrap().is_empty());
    }

    #[test]
    fn yaml_data_is_typed_as_puppet_types_it() {
        let y = parse(
            "a: yes\nb: 'yes'\nc: 0755\nd: \"0755\"\ne: Off\nf: 1e3\ng: [on, y, 1_000]\n",
            Path::new("t.yaml"),
            Format::Yaml,
        )
        .unwrap();
        assert_eq!(
            Value::Object(y),
            json!({"a": true, "b": "yes", "c": 493, "d": "0755", "e": false, "f": "1e3",
                   "g": [true, "y", 1000]})
        );
    }

    #[test]
    fn yaml_merge_keys_apply() {
        let y = parse(
            "base: &b {x: 1}\nnode:\n  <<: *b\n  y: 2\n",
            Path::new("m"),
            Format::Yaml,
        );
        assert_eq!(Value::Object(y.unwrap())["node"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let e = parse(
            "a: 1\nb: [unclosed\nc: 3\n",
            Path::new("/d/common.yaml"),
            Format::Yaml,
        )
        .unwrap_err();
        match &e {
            HieraError::Data { file, line, .. } => {
                assert_eq!(file, Path::new("/d/common.yaml"));
                assert!(matches!(line, Some(3) | Some(4)), "{e}");
            }
            other => panic!("{other}"),
        }
        let e = parse("{\n\"a\": 1,\n}", Path::new("/d/x.json"), Format::Json).unwrap_err();
        assert!(e.to_string().starts_with("/d/x.json:3:"), "{e}");
        let e = parse("- a\n- b\n", Path::new("/d/l.yaml"), Format::Yaml).unwrap_err();
        assert!(e.to_string().contains("valid YAML hash"), "{e}");
        let e = parse("a: 1\na: 2\n", Path::new("/d/dup.yaml"), Format::Yaml).unwrap_err();
        assert!(e.to_string().contains("/d/dup.yaml:"), "{e}");
    }

    #[test]
    fn cache_reads_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "k: v1\n").unwrap();
        let cache = DataCache::default();
        assert_eq!(cache.get(&f, Format::Yaml).unwrap()["k"], json!("v1"));
        std::fs::write(&f, "k: v2\n").unwrap();
        assert_eq!(cache.get(&f, Format::Yaml).unwrap()["k"], json!("v1"));
        assert_eq!(cache.len(), 1);
    }
}
