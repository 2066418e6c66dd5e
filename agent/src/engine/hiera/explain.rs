//! The `--explain` text: a record of what a lookup searched and found, in the
//! layout of `puppet lookup --explain` (two-space indents, "Hierarchy entry",
//! "Original path", "Path not found", "No such key", "Found key ... value").
//!
//! Values of Sensitive keys print as `Sensitive [value redacted]` unless the
//! caller asked to see them.

use serde_json::Value;

use super::interpolate::SENSITIVE_TEXT;

/// The explanation being written.
#[derive(Debug, Default)]
pub(crate) struct Explain {
    out: String,
    depth: usize,
    /// Print Sensitive values instead of redacting them.
    pub show_sensitive: bool,
    /// One entry per lookup in progress: whether its values are Sensitive.
    sensitive: Vec<bool>,
}

impl Explain {
    pub(crate) fn new(show_sensitive: bool) -> Explain {
        Explain {
            show_sensitive,
            ..Explain::default()
        }
    }

    /// One line at the current depth.
    pub(crate) fn line(&mut self, text: &str) {
        self.indent();
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// `label` followed by a value, redacted when the current key is Sensitive.
    pub(crate) fn value(&mut self, label: &str, v: &Value) {
        self.labelled(label, v, self.redacting());
    }

    /// `label` followed by a value that is never secret (merge options).
    pub(crate) fn plain_value(&mut self, label: &str, v: &Value) {
        self.labelled(label, v, false);
    }

    fn labelled(&mut self, label: &str, v: &Value, redact: bool) {
        self.indent();
        self.out.push_str(label);
        if redact {
            self.out.push_str(SENSITIVE_TEXT);
        } else {
            let indent = "  ".repeat(self.depth);
            dump_value(&mut self.out, &indent, v);
        }
        self.out.push('\n');
    }

    /// `Found key: "k" value: ...`
    pub(crate) fn found(&mut self, key: &str, v: &Value) {
        self.value(&format!("Found key: \"{key}\" value: "), v);
    }

    pub(crate) fn push(&mut self) {
        self.depth += 1;
    }

    pub(crate) fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Enters a lookup whose values are (or are not) Sensitive.
    pub(crate) fn enter_key(&mut self, sensitive: bool) {
        self.sensitive.push(sensitive);
    }

    /// Marks the lookup in progress Sensitive (an alias brought one in).
    pub(crate) fn taint_key(&mut self) {
        if let Some(last) = self.sensitive.last_mut() {
            *last = true;
        }
    }

    pub(crate) fn leave_key(&mut self) {
        self.sensitive.pop();
    }

    fn redacting(&self) -> bool {
        !self.show_sensitive && self.sensitive.last().copied().unwrap_or(false)
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Puppet's explain value layout: scalars inline, hashes as `"k" => v` and
/// arrays one element a line, each nesting two spaces deeper.
pub(crate) fn dump_value(out: &mut String, indent: &str, v: &Value) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let inner = format!("{indent}  ");
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&inner);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(" => ");
                dump_value(out, &inner, v);
            }
            out.push('\n');
            out.push_str(indent);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            let inner = format!("{indent}  ");
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&inner);
                dump_value(out, &inner, v);
            }
            out.push('\n');
            out.push_str(indent);
            out.push(']');
        }
        Value::Null => out.push_str("nil"),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_laid_out_like_puppet() {
        let mut s = String::new();
        dump_value(&mut s, "  ", &json!({"a": [1, "x"], "b": {}}));
        assert_eq!(
            s,
            "{\n    \"a\" => [\n      1,\n      \"x\"\n    ],\n    \"b\" => {}\n  }"
        );
    }

    #[test]
    fn sensitive_keys_are_redacted_unless_shown() {
        let mut e = Explain::new(false);
        e.push();
        e.enter_key(true);
        e.found("pw", &json!("hunter2-explain"));
        e.leave_key();
        e.found("db", &json!("stashdb"));
        let text = e.finish();
        assert_eq!(
            text,
            "  Found key: \"pw\" value: Sensitive [value redacted]\n  Found key: \"db\" value: \"stashdb\"\n"
        );
        let mut e = Explain::new(true);
        e.enter_key(true);
        e.found("pw", &json!("hunter2-explain"));
        assert!(e.finish().contains("hunter2-explain"));
    }
}
