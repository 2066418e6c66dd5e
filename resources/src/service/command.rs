//! The `command` service provider: the manifest gives the shell lines that
//! start, stop and query a service (`status` exits 0 when it runs), and
//! optionally restart and reload it. For hosts without systemd and for
//! programs that manage themselves (an app's own start script).
//!
//! A start line usually leaves a daemon behind, and the daemon inherits
//! the shell's stdout/stderr. Were those the runner's pipes, the runner
//! would wait for the daemon to exit before returning. So each line runs
//! with its output sent to a private temp file, read back for error
//! messages, and stdin from /dev/null.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Provider, Status};
use crate::core::{Context, ResourceError};
use crate::runner::Cmd;

#[derive(Debug)]
pub struct CommandService {
    pub start: String,
    pub stop: String,
    pub status: String,
    /// Default: stop, then start.
    pub restart: Option<String>,
    pub reload: Option<String>,
    pub timeout: Duration,
}

/// Output of one line: its exit status and what it printed (both streams).
struct LineOutput {
    status: i32,
    output: String,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Runs a shell line with `AGENT_ROOT` set, its output captured through a
/// temp file (see the module doc).
fn run_line(cx: &Context, line: &str, timeout: Duration) -> Result<LineOutput, ResourceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let out_path = std::env::temp_dir().join(format!(
        "agent-service-{}-{}.out",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out_path)
        .map_err(|e| ResourceError::io(&out_path, e))?;
    let script =
        format!("exec </dev/null >\"$AGENT_SERVICE_OUT\" 2>&1\nunset AGENT_SERVICE_OUT\n{line}");
    let mut cmd = Cmd::new(&["/bin/sh", "-c", &script]);
    cmd.env
        .push(("AGENT_ROOT".into(), cx.root.display().to_string()));
    cmd.env
        .push(("AGENT_SERVICE_OUT".into(), out_path.display().to_string()));
    cmd.timeout = Some(timeout);
    let result = cx.runner.output(&cmd);
    let output = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let status = result?.status;
    Ok(LineOutput {
        status,
        output: String::from_utf8_lossy(&output).trim().to_string(),
    })
}

impl CommandService {
    /// Runs a line that must succeed.
    fn must(&self, cx: &Context, what: &str, line: &str) -> Result<(), ResourceError> {
        let out = run_line(cx, line, self.timeout)?;
        if out.status != 0 {
            return Err(ResourceError::CommandFailed {
                cmd: format!("{what} command '{line}'"),
                status: format!("exit status {}", out.status),
                stderr: crate::redact::redact(&out.output).into_owned(),
            });
        }
        Ok(())
    }
}

impl Provider for CommandService {
    fn name(&self) -> &'static str {
        "command"
    }

    fn status(&self, cx: &Context) -> Result<Status, ResourceError> {
        let out = run_line(cx, &self.status, self.timeout)?;
        Ok(if out.status == 0 {
            Status::Running
        } else {
            Status::Stopped
        })
    }

    fn start(&self, cx: &Context) -> Result<(), ResourceError> {
        self.must(cx, "start", &self.start)
    }

    fn stop(&self, cx: &Context) -> Result<(), ResourceError> {
        self.must(cx, "stop", &self.stop)
    }

    fn restart(&self, cx: &Context) -> Result<(), ResourceError> {
        match &self.restart {
            Some(line) => self.must(cx, "restart", line),
            None => {
                self.stop(cx)?;
                self.start(cx)
            }
        }
    }

    fn reload(&self, cx: &Context) -> Result<(), ResourceError> {
        match &self.reload {
            Some(line) => self.must(cx, "reload", line),
            // build refuses `restart: reload` without a reload line.
            None => self.restart(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decl, sandbox};
    use super::super::{build_with, Ensure, Service, Steps};
    use crate::core::{Change, Context, Plan, Resource, ResourceError};
    use serde_json::json;

    /// A tiny daemon: a `sleep` whose pid is kept in `<root>/pidfile`; each
    /// start appends to `<root>/starts`.
    fn daemon(extra: serde_json::Value) -> serde_json::Value {
        let mut v = json!({
            "provider": "command",
            "start": "echo start >> \"$AGENT_ROOT/starts\"; sleep 1000 & echo $! > \"$AGENT_ROOT/pidfile\"",
            "stop": "kill $(cat \"$AGENT_ROOT/pidfile\") && rm -f \"$AGENT_ROOT/pidfile\"",
            "status": "test -f \"$AGENT_ROOT/pidfile\" && kill -0 $(cat \"$AGENT_ROOT/pidfile\")",
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    }

    /// Kills the test daemon whatever happens.
    struct Reaper<'a>(&'a Context);
    impl Drop for Reaper<'_> {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.root.join("pidfile")) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::SIGKILL,
                    );
                }
            }
        }
    }

    fn read(cx: &Context, name: &str) -> String {
        std::fs::read_to_string(cx.root.join(name)).unwrap_or_default()
    }

    fn service(title: &str, attrs: serde_json::Value) -> Service {
        build_with(&decl(title, attrs), false).unwrap()
    }

    #[test]
    fn starts_idempotently_refreshes_and_stops() {
        let (_dir, cx) = sandbox();
        let _reaper = Reaper(&cx);
        let s = service("app", daemon(json!({"ensure": "running"})));
        let plan = s.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].line(), "ensure changed 'stopped' to 'running'");
        s.apply(&cx, plan).unwrap();
        let first_pid = read(&cx, "pidfile");
        assert!(
            !first_pid.is_empty(),
            "started, pid written under AGENT_ROOT"
        );
        assert!(s.check(&cx).unwrap().is_empty(), "idempotent");
        assert_eq!(read(&cx, "starts").lines().count(), 1);

        // Refresh: default restart = stop then start: a new daemon.
        s.refresh(&cx).unwrap();
        assert_eq!(read(&cx, "starts").lines().count(), 2);
        assert_ne!(read(&cx, "pidfile"), first_pid);
        assert!(s.check(&cx).unwrap().is_empty());

        let stopped = service("app", daemon(json!({"ensure": "stopped"})));
        let plan = stopped.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes[0].line(), "ensure changed 'running' to 'stopped'");
        stopped.apply(&cx, plan).unwrap();
        assert!(stopped.check(&cx).unwrap().is_empty());
        assert!(!cx.root.join("pidfile").exists());
        // Refreshing a service meant to be stopped does not start it.
        stopped.refresh(&cx).unwrap();
        assert!(!cx.root.join("pidfile").exists());
        // Nor does refreshing an unmanaged, stopped one.
        service("app", daemon(json!({}))).refresh(&cx).unwrap();
        assert_eq!(read(&cx, "starts").lines().count(), 2);

        let history = cx.runner.history().join("\n");
        assert!(
            history.contains("kill -0"),
            "status ran through the runner: {history}"
        );
    }

    #[test]
    fn apply_follows_the_typed_steps_not_the_change_lines() {
        let (_dir, cx) = sandbox();
        let _reaper = Reaper(&cx);
        let s = service("app", daemon(json!({"ensure": "running"})));
        // The line says "stopped", the step starts it: only the step is read.
        let steps = Steps {
            run: Some(Ensure::Running),
            enable: None,
        };
        let line = Change::new("ensure", Some("running".into()), Some("stopped".into()));
        s.apply(&cx, Plan::new(vec![line], steps)).unwrap();
        assert_eq!(read(&cx, "starts").lines().count(), 1);
        assert!(s.check(&cx).unwrap().is_empty(), "started");
        // A plan without steps of this type is refused, and nothing runs.
        let before = cx.runner.history().len();
        let err = s.apply(&cx, Plan::in_sync()).unwrap_err();
        assert!(matches!(err, ResourceError::Failed(_)), "{err}");
        assert_eq!(cx.runner.history().len(), before);
    }

    #[test]
    fn refresh_starts_a_stopped_service_meant_to_run() {
        let (_dir, cx) = sandbox();
        let _reaper = Reaper(&cx);
        let s = service("app", daemon(json!({"ensure": "running"})));
        s.refresh(&cx).unwrap();
        assert!(s.check(&cx).unwrap().is_empty());
        assert_eq!(read(&cx, "starts").lines().count(), 1);
    }

    #[test]
    fn reload_and_custom_restart() {
        let (_dir, cx) = sandbox();
        let _reaper = Reaper(&cx);
        let reloading = service(
            "app",
            daemon(
                json!({"ensure": "running", "restart": "reload", "reload": "echo r >> \"$AGENT_ROOT/reloads\""}),
            ),
        );
        reloading.apply(&cx, reloading.check(&cx).unwrap()).unwrap();
        let pid = read(&cx, "pidfile");
        reloading.refresh(&cx).unwrap();
        reloading.refresh(&cx).unwrap();
        assert_eq!(read(&cx, "reloads").lines().count(), 2);
        assert_eq!(read(&cx, "pidfile"), pid, "reload keeps the process");
        assert_eq!(read(&cx, "starts").lines().count(), 1);

        let custom = service(
            "app",
            daemon(json!({"restart": "echo c >> \"$AGENT_ROOT/restarts\""})),
        );
        custom.refresh(&cx).unwrap();
        assert_eq!(read(&cx, "restarts").lines().count(), 1);
        assert_eq!(
            read(&cx, "starts").lines().count(),
            1,
            "custom line instead of stop+start"
        );
    }

    #[test]
    fn failed_start_reports_its_output() {
        let (_dir, cx) = sandbox();
        let s = service(
            "app",
            json!({"provider": "command", "ensure": "running", "start": "echo 'port 80 in use' >&2; exit 7",
                   "stop": "true", "status": "false"}),
        );
        let err = s.apply(&cx, s.check(&cx).unwrap()).unwrap_err().to_string();
        assert!(err.contains("port 80 in use"), "{err}");
        assert!(err.contains("exit status 7"), "{err}");
    }
}
