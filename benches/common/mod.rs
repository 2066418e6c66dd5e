//! What the benches share: the `RUNS`-style settings, and running the
//! agent as a whole process the way a user does, with its wall time, CPU
//! time and peak RSS from `wait4`.

#![allow(dead_code)] // each bench uses its part

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A number from the environment (`RUNS=20`), else `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Sorted figures of repeated runs.
pub struct Figures {
    pub times: Vec<Duration>,
    /// user + system CPU time of each run, sorted: steadier than wall time
    /// on a busy machine.
    pub cpu: Vec<Duration>,
    pub peak_rss_kib: i64,
}

impl Figures {
    pub fn median(&self) -> Duration {
        self.times[self.times.len() / 2]
    }

    pub fn median_cpu(&self) -> Duration {
        self.cpu[self.cpu.len() / 2]
    }
}

/// Runs the agent `runs` times with `args`, calling `before` ahead of each
/// run, and checks each exit code.
pub fn measure(runs: usize, mut before: impl FnMut(), args: &[String], expect: i32) -> Figures {
    measure_each(
        runs,
        |_| {
            before();
            args.to_vec()
        },
        expect,
    )
}

/// Runs the agent `runs` times, run `i` with the arguments `args_of(i)`
/// returns (whatever it prepares is outside the timing), and checks each
/// exit code.
pub fn measure_each(
    runs: usize,
    mut args_of: impl FnMut(usize) -> Vec<String>,
    expect: i32,
) -> Figures {
    let mut times = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    let mut peak = 0;
    for i in 0..runs.max(1) {
        let args = args_of(i);
        let r = run(&args);
        assert_eq!(r.code, expect, "agent {args:?} exited {}", r.code);
        times.push(r.wall);
        cpu.push(r.cpu);
        peak = peak.max(r.peak_rss_kib);
    }
    times.sort();
    cpu.sort();
    Figures {
        times,
        cpu,
        peak_rss_kib: peak,
    }
}

/// One finished agent process.
pub struct RunResult {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: i64,
    pub code: i32,
}

/// Runs the agent once; CPU time and peak RSS come from wait4's rusage.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
pub fn run(args: &[String]) -> RunResult {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("AGENT_LOG")
        // cargo bench points the loader at its own library dirs, which a
        // user's run does not search (a millisecond of failed opens).
        .env_remove("LD_LIBRARY_PATH")
        .spawn()
        .expect("agent starts");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage are valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let elapsed = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    RunResult {
        wall: elapsed,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss,
        code,
    }
}
