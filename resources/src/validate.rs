//! `validate_cmd`: Puppet's check of a file's new content by the daemon's
//! own checker (`haproxy -c -f %`, `visudo -cf %`, `nginx -t -c %`), shared
//! by `file` and `conf`.
//!
//! The new content is written to a private temp directory (mode 0700, the
//! file 0600, under the target's own file name so a checker that looks at
//! the name sees the real one), `%` (or `validate_replacement`) in the
//! command is replaced by that file's path, and the line runs with
//! `/bin/sh -c` through the one runner. A non-zero exit refuses the
//! content: the resource fails with the command's first lines of output
//! and nothing is written — the types call [`ValidateCmd::check`] in
//! `apply` before the backup store or the stager sees anything. A `--noop`
//! run does not validate: nothing would be written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::core::{Context, ResourceError, ResourceId};
use crate::redact;
use crate::runner::Cmd;

/// What stands for the temp file's path in the command, unless
/// `validate_replacement` says otherwise (Puppet's default).
pub const DEFAULT_REPLACEMENT: &str = "%";

/// How long a checker may run before the content counts as refused.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How many lines of the checker's output the failure shows.
const SHOWN_LINES: usize = 20;

/// A validated `validate_cmd` (with its replacement marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateCmd {
    cmd: String,
    replacement: String,
}

impl ValidateCmd {
    /// The check declared by `validate_cmd` and `validate_replacement`;
    /// `None` when there is none. A command without the marker could only
    /// check the old file (or nothing): refused at compile time.
    pub fn new(
        id: &ResourceId,
        cmd: Option<String>,
        replacement: Option<String>,
    ) -> Result<Option<ValidateCmd>, ResourceError> {
        let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
        let Some(cmd) = cmd else {
            return match replacement {
                Some(_) => Err(invalid(
                    "validate_replacement is given without validate_cmd".into(),
                )),
                None => Ok(None),
            };
        };
        let replacement = replacement.unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string());
        if cmd.trim().is_empty() {
            return Err(invalid("validate_cmd is empty".into()));
        }
        if cmd.contains(['\n', '\r', '\0']) {
            return Err(invalid("validate_cmd must be one line".into()));
        }
        if replacement.is_empty() || replacement.contains(char::is_whitespace) {
            return Err(invalid(
                "validate_replacement must be a non-empty marker without spaces".into(),
            ));
        }
        if !cmd.contains(&replacement) {
            return Err(invalid(format!(
                "validate_cmd '{cmd}' has no '{replacement}' where the path of the new content \
                 goes (hint: `haproxy -c -f {replacement}`; set validate_replacement to use \
                 another marker)"
            )));
        }
        Ok(Some(ValidateCmd { cmd, replacement }))
    }

    /// The command line with the marker replaced by `path`: as is, as
    /// Puppet does (so `"%"` in the command works), unless the path needs
    /// quoting for the shell (the temp file's name is chosen so it never
    /// does, unless the temp dir's own path is odd).
    fn line(&self, path: &Path) -> String {
        let path = path.to_string_lossy();
        let plain = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,@".contains(&b));
        let path = if plain {
            path.into_owned()
        } else {
            shell_quote(&path)
        };
        self.cmd.replace(&self.replacement, &path)
    }

    /// Runs the check on `content`, the new content of `node_path`: `Ok`
    /// when the checker accepts it; else the resource's failure, with the
    /// checker's output (temp path shown as `node_path`, secrets redacted).
    pub fn check(
        &self,
        cx: &Context,
        id: &ResourceId,
        node_path: &str,
        content: &[u8],
    ) -> Result<(), ResourceError> {
        let dir = tempfile::Builder::new()
            .prefix("agent-validate.")
            .tempdir()
            .map_err(|e| ResourceError::io(std::env::temp_dir(), e))?;
        // The target's own name when it is a plain one, so a checker that
        // looks at the name (an extension) sees the real one.
        let name = Path::new(node_path)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+,@".contains(&b))
            })
            .unwrap_or("content");
        let tmp = dir.path().join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(content))
            .map_err(|e| ResourceError::io(&tmp, e))?;
        let mut cmd = Cmd::shell(&self.line(&tmp));
        cmd.env
            .push(("AGENT_ROOT".into(), cx.root.display().to_string()));
        cmd.timeout = Some(TIMEOUT);
        tracing::debug!(resource = %id, file = node_path, "validating the new content");
        let out = cx.runner.output(&cmd);
        let tmp_text = tmp.display().to_string();
        let refused = |status: String, text: &str| {
            let shown: Vec<&str> = text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .take(SHOWN_LINES)
                .collect();
            let shown = shown.join("\n").replace(&tmp_text, node_path);
            ResourceError::Failed(format!(
                "{id}: validate_cmd `{}` refused the new content of {node_path} ({status}); \
                 nothing was changed:\n{}",
                self.cmd,
                redact::redact(&shown)
            ))
        };
        match out {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(refused(
                format!("exit {}", out.status),
                &format!("{}\n{}", out.stdout, out.stderr),
            )),
            Err(e) => Err(refused("did not finish".into(), &e.to_string())),
        }
    }
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
