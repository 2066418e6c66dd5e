//! The `content` change of a file, for people: digests of the old and new
//! content and, when both are text, a unified diff (hidden when the content
//! is sensitive).

use std::path::Path;
use std::time::Duration;

use similar::TextDiff;

/// The largest content (either side) that is diffed: a line diff is
/// quadratic at worst (a 100k-line file took 9 s, an 82 MB log eleven
/// minutes); beyond this the change names both digests and the line counts.
pub const DIFF_MAX_BYTES: usize = 1 << 20;

/// The longest a diff may compute before it settles for a coarser one.
pub const DIFF_DEADLINE: Duration = Duration::from_millis(500);

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
    // Binary content (a NUL byte, or not UTF-8) is never diffed.
    fn text(b: &[u8]) -> Option<&str> {
        std::str::from_utf8(b).ok().filter(|_| !b.contains(&0))
    }
    if let (Some(old_text), Some(new_text)) = (text(old), text(new)) {
        if old.len().max(new.len()) > DIFF_MAX_BYTES {
            return change.with_diff(format!(
                "diff omitted: {} lines -> {} lines (over the {} KiB diff budget)\n",
                old_text.lines().count(),
                new_text.lines().count(),
                DIFF_MAX_BYTES / 1024
            ));
        }
        let name = path.display().to_string();
        let diff = TextDiff::configure()
            .timeout(DIFF_DEADLINE)
            .diff_lines(old_text, new_text)
            .unified_diff()
            .context_radius(3)
            .header(&name, &name)
            .to_string();
        change = change.with_diff(diff);
    }
    change
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

    #[test]
    fn large_and_binary_contents_are_not_diffed() {
        let big_old: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let big_new: String = (0..100_000).map(|i| format!("line {}\n", i * 7)).collect();
        let c = content_change(
            Path::new("/x"),
            Some(big_old.as_bytes()),
            big_new.as_bytes(),
            false,
        );
        let d = c.diff.clone().unwrap();
        assert!(
            d.starts_with("diff omitted: 100000 lines -> 100000 lines"),
            "{d}"
        );
        assert!(c.line().contains("{sha256}"), "{}", c.line());
        let bin = content_change(Path::new("/x"), Some(b"a\0b"), b"a\0c", false);
        assert!(bin.diff.is_none());
    }
}
