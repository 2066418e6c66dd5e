//! External facts from the facts directory (`--facts-dir`), as Facter's
//! facts.d: `*.yaml`/`*.yml` and `*.json` files (a mapping of fact names to
//! values), `*.txt` files (`name=value` lines, values are strings), and
//! executables (any other file with an execute bit) whose standard output is
//! `name=value` lines, JSON or YAML — detected from the output itself.
//!
//! Files are read in name order and a later file's fact replaces an earlier
//! one's. Executables run concurrently (each under the time limit, killed
//! when it runs over) but are merged in name order too. A file that cannot
//! be read or parsed, or an executable that fails or times out, is a logged
//! error naming the file and contributes nothing: one broken fact must not
//! stop a run (`agent facts --strict` makes it one). Hidden files and editor backups (`name~`) are ignored.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resources::runner::{Cmd, Runner};
use serde_json::{Map, Value};

use crate::yaml::{Data, Node};

/// What the facts directory yielded.
#[derive(Debug, Default)]
pub struct External {
    /// The merged external facts.
    pub facts: Map<String, Value>,
    /// One line per skipped file, naming it (also logged as warnings).
    pub warnings: Vec<String>,
}

/// How a facts file is read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Yaml,
    Json,
    Txt,
    Exec,
}

/// Loads every external fact from `dir`; a missing directory has none.
pub fn load(dir: &Path, timeout: Duration, runner: &Runner) -> External {
    let mut out = External::default();
    let entries = match entries(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            warn(&mut out, dir, &format!("cannot list external facts: {e}"));
            return out;
        }
    };
    // Start every executable at once, then take results in name order.
    let results: Vec<Result<Map<String, Value>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .iter()
            .map(|(path, kind)| match kind {
                Kind::Exec => Some(scope.spawn(move || run(path, timeout, runner))),
                _ => None,
            })
            .collect();
        entries
            .iter()
            .zip(handles)
            .map(|((path, kind), handle)| match handle {
                Some(h) => h
                    .join()
                    .unwrap_or_else(|_| Err("fact runner panicked".into())),
                None => read_file(path, *kind),
            })
            .collect()
    });
    for ((path, _), result) in entries.iter().zip(results) {
        match result {
            Ok(facts) => out.facts.extend(facts),
            Err(e) => warn(&mut out, path, &e),
        }
    }
    out
}

fn warn(out: &mut External, path: &Path, problem: &str) {
    // An error, as Facter logs it, whatever the verbosity: the facts of
    // that file are missing from this run (`agent facts --strict` exits 1).
    tracing::error!(file = %path.display(), "external facts not loaded: {problem}");
    out.warnings.push(format!("{}: {problem}", path.display()));
}

/// The facts files of `dir` with their kind, in name order.
fn entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, Kind)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        // Follows symlinks: a link to a facts file is a facts file.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let kind = match ext.as_deref() {
            Some("yaml" | "yml") => Kind::Yaml,
            Some("json") => Kind::Json,
            Some("txt") => Kind::Txt,
            _ if meta.permissions().mode() & 0o111 != 0 => Kind::Exec,
            _ => {
                tracing::debug!(file = %path.display(), "ignored: not a facts file nor executable");
                continue;
            }
        };
        out.push((path, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn read_file(path: &Path, kind: Kind) -> Result<Map<String, Value>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    match kind {
        Kind::Yaml => parse_yaml(&text),
        Kind::Json => parse_json(&text),
        Kind::Txt => parse_kv(&text),
        Kind::Exec => unreachable!("executables are run, not read"),
    }
}

/// Runs one executable fact and parses what it printed.
fn run(path: &Path, timeout: Duration, runner: &Runner) -> Result<Map<String, Value>, String> {
    let mut cmd = Cmd::new(&[path.to_string_lossy()]);
    cmd.timeout = Some(timeout);
    let out = runner.run(&cmd).map_err(|e| e.to_string())?;
    if !out.stderr.trim().is_empty() {
        tracing::debug!(file = %path.display(), stderr = %out.stderr.trim(), "external fact wrote to stderr");
    }
    parse_output(&out.stdout)
}

/// An executable's output: JSON when it starts with `{`, `name=value`
/// lines when every line is one, else YAML.
pub fn parse_output(text: &str) -> Result<Map<String, Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    let kv_line = |line: &str| {
        line.split_once('=').is_some_and(|(k, _)| {
            let k = k.trim();
            !k.is_empty() && !k.contains(|c: char| c.is_whitespace() || c == ':')
        })
    };
    if meaningful_lines(text).all(|(_, line)| kv_line(line)) {
        return parse_kv(text);
    }
    parse_yaml(text)
}

/// Non-blank, non-comment lines, trimmed, with their 1-based number.
fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `name=value` lines; values are strings, as Facter keeps them.
pub fn parse_kv(text: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (n, line) in meaningful_lines(text) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: expected name=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("line {n}: empty fact name"));
        }
        out.insert(key.to_string(), Value::String(value.trim().to_string()));
    }
    Ok(out)
}

/// A JSON object of facts.
pub fn parse_json(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))? {
        Value::Object(map) => Ok(map),
        other => Err(format!(
            "expected a JSON object of facts, got {}",
            kind_name(&other)
        )),
    }
}

/// A YAML mapping of facts (an empty document has none).
pub fn parse_yaml(text: &str) -> Result<Map<String, Value>, String> {
    let doc = crate::yaml::parse(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match yaml_to_json(&doc)? {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => Err(format!(
            "expected a YAML mapping of facts, got {}",
            kind_name(&other)
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// YAML to JSON; scalar mapping keys become strings (`1: x` → `"1"`), so
/// any plain YAML facts file is accepted, but a fact must have a JSON form.
fn yaml_to_json(node: &Node) -> Result<Value, String> {
    Ok(match &node.data {
        Data::Scalar(s) => {
            // resolve() makes `.inf` and `.nan` null; a fact says so instead.
            if s.is_non_finite() {
                return Err(format!("{} has no JSON form", s.text));
            }
            s.resolve()
        }
        Data::Seq(items) => Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Data::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match &k.data {
                    Data::Scalar(s) if !s.resolve().is_null() => s.text.clone(),
                    _ => return Err("a fact name must be a string".into()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn every_kind_in_name_order_with_failures_as_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "10-base.yaml", "role: db\nnested: {a: 1, b: [x, y]}\n1: one\nbase: &b {k: v}\nmerged: {<<: *b, z: 2}\n", 0o644);
        write(d, "20-over.json", r#"{"role": "app", "n": 3}"#, 0o644);
        write(
            d,
            "30-plain.txt",
            "# comment\n\ncolor = blue\nempty=\nurl=http://x/?a=b\n",
            0o644,
        );
        write(d, "40-kv", "#!/bin/sh\necho dc=par1\necho 'n=4'\n", 0o755);
        write(d, "41-json", "#!/bin/sh\necho '{\"j\": [1, 2]}'\n", 0o755);
        write(
            d,
            "42-yaml",
            "#!/bin/sh\nprintf 'y:\\n  z: true\\n'\n",
            0o755,
        );
        write(d, "43-empty", "#!/bin/sh\n", 0o755);
        write(
            d,
            "50-slow",
            "#!/bin/sh\necho slow=1\nexec sleep 10\n",
            0o755,
        );
        write(d, "51-fails", "#!/bin/sh\necho fail=1\nexit 3\n", 0o755);
        write(d, "60-bad.yaml", "role: [unclosed\n", 0o644);
        write(d, "61-bad.json", "{\"role\": ", 0o644);
        write(d, "62-bad.txt", "ok=1\nnot a pair\n", 0o644);
        write(d, "63-list.yaml", "- a\n- b\n", 0o644);
        write(d, "70-notes.md", "role: ignored\n", 0o644);
        write(d, ".hidden.yaml", "role: hidden\n", 0o644);
        write(d, "80-backup.yaml~", "role: backup\n", 0o644);
        fs::create_dir(d.join("90-dir.yaml")).unwrap();

        let runner = Runner::default();
        let started = Instant::now();
        let ext = load(d, Duration::from_millis(500), &runner);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed-out fact was killed: {:?}",
            started.elapsed()
        );

        let f = Value::Object(ext.facts);
        assert_eq!(
            f["role"],
            json!("app"),
            "20-over.json comes after 10-base.yaml"
        );
        assert_eq!(f["nested"], json!({"a": 1, "b": ["x", "y"]}));
        assert_eq!(f["1"], json!("one"));
        assert_eq!(f["merged"], json!({"k": "v", "z": 2}));
        assert_eq!(
            f["n"],
            json!("4"),
            "40-kv overrides 20-over.json, as a string"
        );
        assert_eq!(
            (f["color"].clone(), f["empty"].clone()),
            (json!("blue"), json!(""))
        );
        assert_eq!(f["url"], json!("http://x/?a=b"), "split on the first '='");
        assert_eq!(
            (f["dc"].clone(), f["j"].clone(), f["y"].clone()),
            (json!("par1"), json!([1, 2]), json!({"z": true}))
        );
        for absent in ["slow", "fail", "ok"] {
            assert!(
                f.get(absent).is_none(),
                "{absent} must come from a skipped file"
            );
        }

        let warned: Vec<&str> = ext
            .warnings
            .iter()
            .map(|w| {
                Path::new(w.split(':').next().unwrap())
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            warned,
            [
                "50-slow",
                "51-fails",
                "60-bad.yaml",
                "61-bad.json",
                "62-bad.txt",
                "63-list.yaml"
            ],
            "{:#?}",
            ext.warnings
        );
        assert!(ext.warnings[0].contains("timeout"), "{}", ext.warnings[0]);
        assert!(
            ext.warnings[1].contains("exit status 3"),
            "{}",
            ext.warnings[1]
        );
        assert!(ext.warnings[4].contains("line 2"), "{}", ext.warnings[4]);
        assert_eq!(
            runner.history().len(),
            6,
            "only the executables ran: {:?}",
            runner.history()
        );
    }

    #[test]
    fn missing_directory_is_no_facts() {
        let dir = tempfile::tempdir().unwrap();
        let ext = load(
            &dir.path().join("nope"),
            Duration::from_secs(1),
            &Runner::default(),
        );
        assert!(ext.facts.is_empty() && ext.warnings.is_empty());
    }

    #[test]
    fn a_file_instead_of_a_directory_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("facts.d");
        fs::write(&file, "").unwrap();
        let ext = load(&file, Duration::from_secs(1), &Runner::default());
        assert!(ext.facts.is_empty());
        assert_eq!(ext.warnings.len(), 1);
        assert!(ext.warnings[0].contains("facts.d"));
    }

    #[test]
    fn output_detection() {
        assert_eq!(
            parse_output("a=1\nb = two\n").unwrap(),
            parse_kv("a=1\nb=two").unwrap()
        );
        assert_eq!(
            Value::Object(parse_output("  {\"a\": 1}\n").unwrap()),
            json!({"a": 1})
        );
        assert_eq!(
            Value::Object(parse_output("a: b=c\nd: 2\n").unwrap()),
            json!({"a": "b=c", "d": 2})
        );
        assert_eq!(
            Value::Object(parse_output("---\nlist: [1]\n").unwrap()),
            json!({"list": [1]})
        );
        assert!(parse_output("").unwrap().is_empty());
        assert!(
            parse_output("just words").is_err(),
            "a bare string is no facts"
        );
        assert!(parse_output("{broken").is_err());
    }
}
