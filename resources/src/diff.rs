//! The `content` change of a file, for people: digests of the old and new
//! content and, when both are text, a unified diff (hidden when the content
//! is sensitive).

use std::path::Path;

use similar::TextDiff;

use crate::core::Change;

/// A `content` change from `old` to `new`, with a unified diff when both are
/// text. `sensitive` hides values and diff.
///
/// A file that did not exist gets no diff, as in Puppet: the change line
/// names the new content's digest, and a first run of a thousand files
/// does not print each of them whole.
pub fn content_change(path: &Path, old: Option<&[u8]>, new: &[u8], sensitive: bool) -> Change {
    let digest = |b: &[u8]| format!("{{sha256}}{}", crate::backup::sha256_hex(b));
    let from = old.map(digest);
    let to = Some(digest(new));
    let mut change = Change::new("content", from, to).sensitive(sensitive);
    let Some(old) = old else {
        return change;
    };
    if let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(old), std::str::from_utf8(new)) {
        let name = path.display().to_string();
        let diff = TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            .context_radius(3)
            .header(&name, &name)
            .to_string();
        change = change.with_diff(diff);
    }
    change
}

/// The `content` change of a file a line-editing type (host, cron...)
/// rewrites: one change when `new` is `Some`, none otherwise.
pub fn edited_content(node_path: &str, old: Option<&[u8]>, new: Option<&str>) -> Vec<Change> {
    new.map(|new| content_change(Path::new(node_path), old, new.as_bytes(), false))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_unified() {
        let c = content_change(Path::new("/x"), Some(b"a\nb\n"), b"a\nc\n", false);
        let d = c.diff.unwrap();
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
        let s = content_change(Path::new("/x"), Some(b"a\n"), b"secret\n", true);
        assert!(!s.printable_diff().unwrap().contains("secret"));
        // A new file: its digest, no diff (Puppet's "defined content").
        let n = content_change(Path::new("/x"), None, b"a\nb\n", false);
        assert!(n.diff.is_none());
        assert!(
            n.line().starts_with("content changed absent to '{sha256}"),
            "{}",
            n.line()
        );
    }
}
