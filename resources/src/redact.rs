//! Sensitive values: a process-wide set of secrets that every printing path
//! (report, logs, diffs, errors) passes its text through.
//!
//! Types also mark changes sensitive themselves; this set is the second line
//! of defence so that a secret that found its way into any string is still
//! printed as `[redacted]`.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The text printed in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// Registers a secret; empty strings are ignored.
pub fn register(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// True when no secret is registered (printing paths may then skip the
/// redactor).
pub fn none_registered() -> bool {
    SECRETS.read().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// True when `text` holds any registered secret.
pub fn contains_secret(text: &str) -> bool {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    secrets.iter().any(|s| text.contains(s.as_str()))
}

/// `text` with every registered secret replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        out = out.replace(s.as_str(), REDACTED);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced() {
        register("hunter2-redact-test");
        assert_eq!(redact("pw=hunter2-redact-test;"), "pw=[redacted];");
        assert!(contains_secret("xhunter2-redact-testx"));
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
