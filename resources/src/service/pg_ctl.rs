//! The `pg_ctl` service provider: one PostgreSQL data directory, driven by
//! `pg_ctl` run as the postgres OS user (`pg::bin_cmd`). For hosts or
//! clusters without a systemd unit, and for the demo's loopback clusters.
//!
//! `pg_ctl status` exits 0 when a server runs, 3 when none does, 4 when
//! there is no data directory — which only `pg_cluster` can fix, so it is
//! reported as such. Start and restart always pass `-l LOGFILE`: without it
//! the server would keep pg_ctl's output pipes open. When they fail, the
//! lines the server wrote to the log during the attempt are the reason
//! (`FATAL: ...`), so the error carries them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Provider, Status};
use crate::core::{Context, ResourceError};
use crate::pg;

#[derive(Debug)]
pub struct PgCtl {
    /// Node path of the data directory.
    pub datadir: String,
    /// Node path of the server log.
    pub logfile: String,
    pub bindir: PathBuf,
    /// Extra server options, passed with `-o`.
    pub options: Option<String>,
    pub timeout: Duration,
}

/// Lines of log kept in an error.
const LOG_LINES: usize = 15;

impl PgCtl {
    fn disk_paths(&self, cx: &Context) -> Result<(String, PathBuf), ResourceError> {
        Ok((
            cx.path(&self.datadir)?.display().to_string(),
            cx.path(&self.logfile)?,
        ))
    }

    /// Runs `pg_ctl -D DATADIR ARGS...`; on failure the error carries pg_ctl's
    /// output and what the server logged since `log_offset`.
    fn pg_ctl(&self, cx: &Context, args: &[&str], with_server: bool) -> Result<(), ResourceError> {
        let (datadir, logfile) = self.disk_paths(cx)?;
        let log = logfile.display().to_string();
        let secs = self.timeout.as_secs().to_string();
        let mut argv: Vec<&str> = vec!["-D", &datadir];
        if with_server {
            argv.extend(["-l", &log]);
        }
        argv.extend(["-w", "-t", &secs]);
        argv.extend_from_slice(args);
        if let (true, Some(o)) = (with_server, &self.options) {
            argv.extend(["-o", o]);
        }
        let mut cmd = pg::bin_cmd(&self.bindir, "pg_ctl", &argv);
        // pg_ctl gives up by itself after -t; leave it room to say so.
        cmd.timeout = Some(self.timeout + Duration::from_secs(30));
        let log_offset = file_len(&logfile);
        let out = cx.runner.output(&cmd)?;
        if out.success() {
            return Ok(());
        }
        let mut detail = [out.stderr.trim(), out.stdout.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        if with_server {
            let tail = log_tail(&logfile, log_offset);
            if !tail.is_empty() {
                detail.push_str(&format!("\nlast lines of {}:\n{tail}", self.logfile));
            }
        }
        Err(ResourceError::CommandFailed {
            cmd: cmd.display(),
            status: format!("exit status {}", out.status),
            stderr: crate::redact::redact(&detail).into_owned(),
        })
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines written to `path` after `offset` (all of the file's last
/// lines if it was rotated or truncated meanwhile).
fn log_tail(path: &Path, offset: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let offset = if file_len(path) < offset { 0 } else { offset };
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
}

impl Provider for PgCtl {
    fn name(&self) -> &'static str {
        "pg_ctl"
    }

    fn status(&self, cx: &Context) -> Result<Status, ResourceError> {
        let (datadir, _) = self.disk_paths(cx)?;
        let cmd = pg::bin_cmd(&self.bindir, "pg_ctl", &["-D", &datadir, "status"]);
        let out = cx.runner.output(&cmd)?;
        match out.status {
            0 => Ok(Status::Running),
            3 => Ok(Status::Stopped),
            4 => Ok(Status::Missing(format!(
                "no PostgreSQL data directory at {} ({}): declare the pg_cluster that creates it, and require it",
                self.datadir,
                out.stderr.trim()
            ))),
            n => Err(ResourceError::CommandFailed {
                cmd: cmd.display(),
                status: format!("exit status {n}"),
                stderr: out.stderr.trim().to_string(),
            }),
        }
    }

    fn start(&self, cx: &Context) -> Result<(), ResourceError> {
        self.pg_ctl(cx, &["start"], true)
    }

    fn stop(&self, cx: &Context) -> Result<(), ResourceError> {
        self.pg_ctl(cx, &["-m", "fast", "stop"], false)
    }

    fn restart(&self, cx: &Context) -> Result<(), ResourceError> {
        self.pg_ctl(cx, &["-m", "fast", "restart"], true)
    }

    fn reload(&self, cx: &Context) -> Result<(), ResourceError> {
        let (datadir, _) = self.disk_paths(cx)?;
        cx.runner
            .run(&pg::bin_cmd(
                &self.bindir,
                "pg_ctl",
                &["-D", &datadir, "reload"],
            ))
            .map(drop)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.datadir.clone(), self.logfile.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::super::build_with;
    use super::super::tests::decl;
    use super::*;
    use crate::backup::BackupStore;
    use crate::core::Resource;
    use crate::pg::testing::TestCluster;
    use serde_json::json;

    #[test]
    fn log_tail_reads_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "old 1\nold 2\n").unwrap();
        let at = file_len(&p);
        std::fs::write(&p, "old 1\nold 2\nFATAL: new\n").unwrap();
        assert_eq!(log_tail(&p, at), "FATAL: new");
        std::fs::write(&p, "rotated\n").unwrap();
        assert_eq!(log_tail(&p, at), "rotated");
        assert_eq!(log_tail(&dir.path().join("none"), 0), "");
    }

    fn postmaster_pid(datadir: &Path) -> String {
        std::fs::read_to_string(datadir.join("postmaster.pid"))
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// The cluster lives in `<base>/data`; the run's root is `<base>`, so
    /// the manifest names it `/data`.
    fn cluster() -> (tempfile::TempDir, TestCluster, Context) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("root");
        let c = TestCluster::primary(&base, "127.0.0.1");
        c.stop();
        let cx = Context::new(&base, BackupStore::new(&dir.path().join("state")));
        (dir, c, cx)
    }

    fn pg_service(attrs: serde_json::Value) -> super::super::Service {
        let mut v = json!({"provider": "pg_ctl", "datadir": "/data", "timeout": 30});
        v.as_object_mut()
            .unwrap()
            .extend(attrs.as_object().unwrap().clone());
        build_with(&decl("postgresql", v), false).unwrap()
    }

    #[test]
    fn starts_refreshes_and_stops_a_real_cluster() {
        let (_dir, c, cx) = cluster();
        let s = pg_service(json!({"ensure": "running"}));
        let plan = s.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].line(), "ensure changed 'stopped' to 'running'");
        s.apply(&cx, plan).unwrap();
        assert!(s.check(&cx).unwrap().is_empty(), "idempotent");
        c.conn().connect().expect("server answers after start");
        let pid = postmaster_pid(&c.datadir);
        assert!(!pid.is_empty());

        s.refresh(&cx).unwrap();
        let new_pid = postmaster_pid(&c.datadir);
        assert!(
            !new_pid.is_empty() && new_pid != pid,
            "restarted: {pid} -> {new_pid}"
        );
        c.conn().connect().expect("server answers after restart");

        let history = cx.runner.history().join("\n");
        assert!(history.contains(" status"), "{history}");
        assert!(history.contains("-w -t 30 -m fast restart"), "{history}");

        let stopped = pg_service(json!({"ensure": "stopped"}));
        let plan = stopped.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes[0].line(), "ensure changed 'running' to 'stopped'");
        stopped.apply(&cx, plan).unwrap();
        assert!(stopped.check(&cx).unwrap().is_empty());
        assert!(c.conn().connect().is_err(), "server stopped");
        stopped.refresh(&cx).unwrap();
        assert!(
            c.conn().connect().is_err(),
            "refresh does not start a stopped service"
        );
    }

    #[test]
    fn failed_start_carries_the_server_complaint() {
        let (_dir, c, cx) = cluster();
        let s = pg_service(json!({"ensure": "running", "options": "-c nonsense_setting=1"}));
        let err = s.apply(&cx, s.check(&cx).unwrap()).unwrap_err();
        assert!(
            matches!(err, ResourceError::CommandFailed { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("nonsense_setting"), "{text}");
        assert!(c.conn().connect().is_err());

        // No data directory: running is impossible (and said so), stopped holds.
        let missing = build_with(
            &decl(
                "pg",
                json!({"provider": "pg_ctl", "datadir": "/nowhere", "ensure": "running"}),
            ),
            false,
        )
        .unwrap();
        let err = missing.check(&cx).unwrap_err().to_string();
        assert!(err.contains("pg_cluster"), "{err}");
        let stopped = build_with(
            &decl(
                "pg",
                json!({"provider": "pg_ctl", "datadir": "/nowhere", "ensure": "stopped"}),
            ),
            false,
        )
        .unwrap();
        assert!(stopped.check(&cx).unwrap().is_empty());
    }
}
