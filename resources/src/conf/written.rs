//! Which `replace: false` keys the agent has written: such a key is set
//! once — when missing, or while the value there is not one the agent put
//! (Debian's sentinel.conf ships `sentinel monitor mymaster 127.0.0.1 ...`)
//! — and from then on its value is the daemon's (Sentinel moves the master
//! there after a failover).
//!
//! The record is one small file, `conf_written`, in the state dir beside
//! the backup store, one JSON array `[path, section, key]` a line,
//! rewritten atomically once the write it records is committed.

use std::path::PathBuf;

use crate::core::{Context, ResourceError};

/// The file's name in the state dir.
const FILE_NAME: &str = "conf_written";

/// The record of one context's state dir.
#[derive(Debug, Clone)]
pub struct Written {
    path: PathBuf,
}

impl Written {
    /// The record kept beside `cx`'s backup store.
    pub fn of(cx: &Context) -> Written {
        let backup = cx.backup.dir();
        let state = backup.parent().unwrap_or(backup);
        Written {
            path: state.join(FILE_NAME),
        }
    }

    /// One key's line.
    fn line(path: &str, section: Option<&str>, key: &str) -> String {
        serde_json::json!([path, section, key]).to_string()
    }

    fn lines(&self) -> Result<Vec<String>, ResourceError> {
        Ok(match crate::atomic::read_optional(&self.path)? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        })
    }

    /// True when the agent wrote the key in the file.
    pub fn contains(
        &self,
        path: &str,
        section: Option<&str>,
        key: &str,
    ) -> Result<bool, ResourceError> {
        Ok(self.lines()?.contains(&Self::line(path, section, key)))
    }

    /// Notes that the agent wrote the key.
    pub fn record(
        &self,
        path: &str,
        section: Option<&str>,
        key: &str,
    ) -> Result<(), ResourceError> {
        let line = Self::line(path, section, key);
        let mut lines = self.lines()?;
        if lines.contains(&line) {
            return Ok(());
        }
        lines.push(line);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ResourceError::io(dir, e))?;
        }
        let mut text = lines.join("\n");
        text.push('\n');
        crate::atomic::write_atomic(&self.path, text.as_bytes(), Some(0o644))
    }
}
