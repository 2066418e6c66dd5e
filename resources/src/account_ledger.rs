//! Which users and groups the agent created: the `user` and `group` types
//! change or remove only those (unless told `manage_existing: true`), so a
//! manifest naming an account that the installer, a package or a person
//! made never rewrites or deletes it by surprise.
//!
//! The record is one small file, `created_accounts`, in the state dir
//! beside the backup store (`<state>/backup`'s parent), one line per
//! account: `user <name>` or `group <name>`. It is rewritten atomically
//! after each create or remove. It lives in the state dir rather than in the
//! account itself (a GECOS marker, say) because it must not show in, or be
//! lost with, fields the manifest manages.

use std::path::PathBuf;

use crate::core::{Context, ResourceError};

/// The file's name in the state dir.
const FILE_NAME: &str = "created_accounts";

/// Which database an account is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

/// The record of one context's state dir.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The record kept beside `cx`'s backup store.
    pub fn of(cx: &Context) -> Ledger {
        let backup = cx.backup.dir();
        let state = backup.parent().unwrap_or(backup);
        Ledger {
            path: state.join(FILE_NAME),
        }
    }

    /// Where the record is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn lines(&self) -> Result<Vec<String>, ResourceError> {
        Ok(match crate::atomic::read_optional(&self.path)? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .filter(|l| !l.trim().is_empty())
                .collect(),
            None => Vec::new(),
        })
    }

    /// True when the agent created `name`.
    pub fn contains(&self, kind: Kind, name: &str) -> Result<bool, ResourceError> {
        let line = format!("{} {name}", kind.word());
        Ok(self.lines()?.contains(&line))
    }

    /// Notes that the agent created `name`.
    pub fn record(&self, kind: Kind, name: &str) -> Result<(), ResourceError> {
        let line = format!("{} {name}", kind.word());
        let mut lines = self.lines()?;
        if !lines.contains(&line) {
            lines.push(line);
            self.write(&lines)?;
        }
        Ok(())
    }

    /// Forgets `name` (removed: a later account of that name is new).
    pub fn forget(&self, kind: Kind, name: &str) -> Result<(), ResourceError> {
        let line = format!("{} {name}", kind.word());
        let mut lines = self.lines()?;
        let before = lines.len();
        lines.retain(|l| *l != line);
        if lines.len() != before {
            self.write(&lines)?;
        }
        Ok(())
    }

    fn write(&self, lines: &[String]) -> Result<(), ResourceError> {
        // The state dir's own mode is the engine's business: only made
        // when missing (a unit test's context), never tightened here.
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ResourceError::io(dir, e))?;
        }
        let mut text = lines.join("\n");
        text.push('\n');
        crate::atomic::write_atomic(&self.path, text.as_bytes(), Some(0o644))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_forgets_by_kind() {
        let (dir, cx) = crate::testing::sandbox(&[]);
        let ledger = Ledger::of(&cx);
        assert_eq!(ledger.path(), dir.path().join("state").join(FILE_NAME));
        assert!(!ledger.contains(Kind::User, "app").unwrap());
        ledger.record(Kind::User, "app").unwrap();
        ledger.record(Kind::User, "app").unwrap();
        ledger.record(Kind::Group, "staff").unwrap();
        assert!(ledger.contains(Kind::User, "app").unwrap());
        assert!(!ledger.contains(Kind::Group, "app").unwrap());
        assert_eq!(
            std::fs::read_to_string(ledger.path()).unwrap(),
            "user app\ngroup staff\n"
        );
        ledger.forget(Kind::User, "app").unwrap();
        assert!(!ledger.contains(Kind::User, "app").unwrap());
        assert!(ledger.contains(Kind::Group, "staff").unwrap());
    }
}
