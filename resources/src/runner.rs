//! The one way resources run commands: every command goes through
//! [`Runner`], which records it (tests and noop runs can see what ran),
//! enforces a timeout, and turns failures into typed errors.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::ResourceError;
use crate::redact;

/// A command to run.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    /// Program and arguments (no shell) — or `["/bin/sh", "-c", line]`.
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Run as this user (needs root; ignored when already that user).
    pub user: Option<String>,
    pub timeout: Option<Duration>,
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        Cmd {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            ..Default::default()
        }
    }

    /// A shell command line, run with `/bin/sh -c`.
    pub fn shell(line: &str) -> Self {
        Cmd::new(&["/bin/sh", "-c", line])
    }

    pub fn display(&self) -> String {
        redact::redact(&self.argv.join(" ")).into_owned()
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Runs commands and remembers which ran.
#[derive(Debug, Default)]
pub struct Runner {
    ran: Mutex<Vec<String>>,
}

impl Runner {
    /// Commands run so far, in order.
    pub fn history(&self) -> Vec<String> {
        self.ran.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs a command and returns its output whatever its exit status.
    pub fn output(&self, cmd: &Cmd) -> Result<Output, ResourceError> {
        self.ran
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.display());
        tracing::debug!(cmd = %cmd.display(), "running");
        let (program, args) = cmd
            .argv
            .split_first()
            .ok_or_else(|| ResourceError::Invalid("empty command".into()))?;
        let mut command = Command::new(program);
        command.args(args);
        if let Some(cwd) = &cmd.cwd {
            command.current_dir(cwd);
        }
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        if let Some(user) = &cmd.user {
            set_user(&mut command, user)?;
        }
        if cmd.timeout.is_some() {
            // Its own process group, so that a timeout ends the command and
            // everything it started (a script's `sleep 600` would otherwise
            // be reparented to PID 1 and run on).
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        command
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| ResourceError::CommandFailed {
            cmd: cmd.display(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        if let Some(input) = &cmd.stdin {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(input);
            }
        }
        // Read both pipes on threads so a chatty child cannot block on a full pipe.
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let started = Instant::now();
        let status = loop {
            match child
                .try_wait()
                .map_err(|e| ResourceError::io(program, e))?
            {
                Some(status) => break status,
                None => {
                    if let Some(limit) = cmd.timeout {
                        if started.elapsed() > limit {
                            // The group's id is the child's pid (see above).
                            if let Ok(pid) = i32::try_from(child.id()) {
                                let _ = nix::sys::signal::killpg(
                                    nix::unistd::Pid::from_raw(pid),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(ResourceError::CommandFailed {
                                cmd: cmd.display(),
                                status: format!("timeout after {:?}", limit),
                                stderr: String::new(),
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        Ok(Output {
            status: code,
            stdout,
            stderr,
        })
    }

    /// Runs a command; a non-zero exit is a [`ResourceError::CommandFailed`].
    pub fn run(&self, cmd: &Cmd) -> Result<Output, ResourceError> {
        let out = self.output(cmd)?;
        if !out.success() {
            return Err(ResourceError::CommandFailed {
                cmd: cmd.display(),
                status: format!("exit status {}", out.status),
                stderr: redact::redact(out.stderr.trim()).into_owned(),
            });
        }
        Ok(out)
    }
}

/// Makes the child run as `user` (uid, gid, supplementary groups, HOME),
/// unless we already are that user.
fn set_user(command: &mut Command, user: &str) -> Result<(), ResourceError> {
    use std::os::unix::process::CommandExt;
    let pw = nix::unistd::User::from_name(user)
        .map_err(|e| ResourceError::Failed(format!("looking up user {user}: {e}")))?
        .ok_or_else(|| ResourceError::Invalid(format!("no such user: {user}")))?;
    if nix::unistd::geteuid() == pw.uid {
        return Ok(());
    }
    command
        .env("HOME", &pw.dir)
        .env("USER", user)
        .env("LOGNAME", user);
    let name = std::ffi::CString::new(user).map_err(|e| ResourceError::Invalid(e.to_string()))?;
    // Resolved here, in the parent: after fork only raw syscalls are safe.
    let groups: Vec<libc::gid_t> = nix::unistd::getgrouplist(&name, pw.gid)
        .map_err(|e| ResourceError::Failed(format!("groups of user {user}: {e}")))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    let (uid, gid) = (pw.uid.as_raw(), pw.gid.as_raw());
    // std applies Command::uid/gid *before* pre_exec hooks, after which
    // setgroups is refused (EPERM); so the hook drops privileges itself, in
    // order: groups, gid, uid.
    // SAFETY: only async-signal-safe syscalls on memory owned by the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reports_failures() {
        let r = Runner::default();
        assert_eq!(r.run(&Cmd::shell("echo hi")).unwrap().stdout, "hi\n");
        let err = r.run(&Cmd::shell("echo boom >&2; exit 3")).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(err.to_string().contains("exit status 3"), "{err}");
        assert_eq!(r.history().len(), 2);
    }

    #[test]
    fn timeout_kills() {
        let r = Runner::default();
        let mut c = Cmd::shell("sleep 5");
        c.timeout = Some(Duration::from_millis(100));
        let err = r.run(&c).unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn a_timeout_kills_what_the_command_started_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let r = Runner::default();
        // The shell starts a background sleep, records its pid, and waits.
        let mut c = Cmd::shell(&format!(
            "sleep 300 & echo $! > {}; wait",
            pidfile.display()
        ));
        c.timeout = Some(Duration::from_millis(300));
        assert!(r.run(&c).unwrap_err().to_string().contains("timeout"));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with its group: gone (or a zombie being reaped) at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| !st.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
        };
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "the grandchild {pid} outlived the timeout");
    }
}
