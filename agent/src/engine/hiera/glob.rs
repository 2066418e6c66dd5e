//! File globs for `glob:` / `globs:` hierarchy levels.
//!
//! Ruby's `Dir.glob` dialect, as Hiera uses it: `*` and `?` within one path
//! component, `**/` for any depth of directories, `{a,b}` alternatives and
//! `[...]` classes. Matches are returned sorted so the level's priority order
//! is stable from run to run.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

/// Files under `datadir` matching `pattern` (relative to `datadir` unless
/// absolute), sorted.
pub(crate) fn expand(datadir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = datadir.join(pattern);
    let full_text = full.to_string_lossy().into_owned();
    let re = Regex::new(&to_regex(&full_text)?)
        .map_err(|e| format!("invalid glob \"{pattern}\": {e}"))?;

    // Walk only from the deepest directory that has no wildcard in it.
    let mut base = PathBuf::new();
    let mut depth = 0usize;
    let mut recursive = false;
    let mut in_literal_prefix = true;
    for comp in full.components() {
        let text = comp.as_os_str().to_string_lossy();
        let wild = text.contains(['*', '?', '[', '{']);
        if in_literal_prefix && !wild {
            base.push(comp);
            continue;
        }
        in_literal_prefix = false;
        if !matches!(comp, Component::CurDir) {
            depth += 1;
        }
        recursive |= text.contains("**");
    }
    if in_literal_prefix {
        // No wildcard at all: the pattern names one file.
        return Ok(if full.is_file() { vec![full] } else { vec![] });
    }
    let mut walker = walkdir::WalkDir::new(&base).follow_links(true).min_depth(1);
    if !recursive {
        walker = walker.max_depth(depth);
    }
    let mut out: Vec<PathBuf> = walker
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .filter(|p| re.is_match(&p.to_string_lossy()))
        .collect();
    out.sort();
    Ok(out)
}

/// Translates a glob into an anchored regex.
fn to_regex(glob: &str) -> Result<String, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    let mut braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') && chars.get(i + 2) == Some(&'/') => {
                re.push_str("(?:[^/]*/)*");
                i += 2;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            ',' if braces > 0 => re.push('|'),
            '[' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(|| format!("unclosed '[' in glob \"{glob}\""))?;
                let class: String = chars[i + 1..i + 1 + end].iter().collect();
                let class = class
                    .strip_prefix('!')
                    .map_or(class.clone(), |c| format!("^{c}"));
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\"));
                re.push(']');
                i += end + 1;
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(format!("unclosed '{{' in glob \"{glob}\""));
    }
    re.push('$');
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x: 1\n").unwrap();
    }

    fn names(root: &Path, got: Vec<PathBuf>) -> Vec<String> {
        got.iter()
            .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn star_question_braces_classes() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "svc/b.yaml",
            "svc/a.yaml",
            "svc/a.json",
            "svc/deep/c.yaml",
            "x1.yaml",
            "x2.yaml",
        ] {
            touch(d.path(), f);
        }
        let r = d.path();
        assert_eq!(
            names(r, expand(r, "svc/*.yaml").unwrap()),
            ["svc/a.yaml", "svc/b.yaml"]
        );
        assert_eq!(
            names(r, expand(r, "svc/**/*.yaml").unwrap()),
            ["svc/a.yaml", "svc/b.yaml", "svc/deep/c.yaml"]
        );
        assert_eq!(
            names(r, expand(r, "svc/a.{json,yaml}").unwrap()),
            ["svc/a.json", "svc/a.yaml"]
        );
        assert_eq!(names(r, expand(r, "x[!1].yaml").unwrap()), ["x2.yaml"]);
        assert_eq!(
            names(r, expand(r, "x?.yaml").unwrap()),
            ["x1.yaml", "x2.yaml"]
        );
        assert!(expand(r, "none/*.yaml").unwrap().is_empty());
        assert_eq!(names(r, expand(r, "x1.yaml").unwrap()), ["x1.yaml"]);
        assert!(expand(r, "a{b").is_err());
    }
}
