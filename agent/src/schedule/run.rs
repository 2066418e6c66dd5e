//! `agent run --schedule CRON [--splay D]`: drift correction as a
//! long-running loop. Applies at every fire time of a cron(8) schedule
//! (local time) plus a random splay, one run at a time (the state dir lock),
//! one log line per run, and a clean stop on SIGTERM/SIGINT: the resource in
//! hand finishes, the rest is skipped, and the report is written.

use std::hash::BuildHasher;
use std::time::Duration;

use anyhow::Result;
use chrono::Local;

use crate::engine::report;
use crate::engine::{apply_once, RunOptions};
use crate::schedule::signals;
use crate::settings::Settings;

/// A random duration in `0..=max` (not cryptographic: spreading load only).
pub fn random_splay(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    Duration::from_millis(r % (max.as_millis() as u64 + 1))
}

/// Time until the next fire time of `schedule`.
pub fn until_next(schedule: &cron::Schedule) -> Option<(chrono::DateTime<Local>, Duration)> {
    let now = Local::now();
    let next = schedule.after(&now).next()?;
    Some((next, (next - now).to_std().unwrap_or(Duration::ZERO)))
}

/// What `agent run` does, validated by the CLI.
pub struct Options {
    /// When to apply (local time).
    pub schedule: cron::Schedule,
    /// A random delay of up to this much after each fire time.
    pub splay: Duration,
    /// Apply once at start, before the first fire time.
    pub now: bool,
    /// Stop after this many runs.
    pub max_runs: Option<u64>,
}

pub fn run(settings: &Settings, args: Options) -> Result<u8> {
    let schedule = &args.schedule;
    signals::install();
    let mut runs = 0u64;
    let mut last_code = 0;
    let mut first = args.now;
    while !signals::stop_requested() {
        if !first {
            let Some((at, wait)) = until_next(schedule) else {
                anyhow::bail!("the schedule never fires again");
            };
            let splay = random_splay(args.splay);
            report::print(&format!(
                "Notice: next run at {} (+{} splay)",
                at.format("%Y-%m-%d %H:%M:%S %Z"),
                humantime::format_duration(splay)
            ));
            if !signals::sleep(wait + splay) {
                break;
            }
        }
        first = false;
        report::print(&format!(
            "Notice: scheduled run started at {}",
            Local::now().format("%Y-%m-%d %H:%M:%S")
        ));
        last_code = match apply_once(settings, RunOptions::real(Duration::from_secs(5))) {
            Ok(r) => r.exit_code(true),
            Err(e) => {
                report::print_errors("run", &[format!("{e:#}")]);
                1
            }
        };
        runs += 1;
        if args.max_runs.is_some_and(|m| runs >= m) {
            break;
        }
    }
    if signals::stop_requested() {
        report::print("Notice: stopped");
    }
    Ok(if last_code & 4 != 0 || last_code == 1 {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splay_stays_in_range_and_next_is_soon() {
        for _ in 0..100 {
            assert!(random_splay(Duration::from_secs(2)) <= Duration::from_secs(2));
        }
        assert_eq!(random_splay(Duration::ZERO), Duration::ZERO);
        let every_minute = resources::cron::schedule("* * * * *").unwrap();
        let (_, wait) = until_next(&every_minute).unwrap();
        assert!(wait <= Duration::from_secs(60));
    }
}
