//! Tests of `install-timer`: the cron → OnCalendar converter checked
//! against the `cron` crate through `systemd-analyze calendar`, and the
//! written units and cron.d entry, under --root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use cron::TimeUnitSpec;

use super::*;

#[test]
fn common_cron_forms_convert() {
    for (cron, systemd) in [
        ("*/30 * * * *", "*-*-* *:00/30:00"),
        ("15 3 * * *", "*-*-* 03:15:00"),
        (
            "0,30 8-18 * * 1-5",
            "Mon,Tue,Wed,Thu,Fri *-*-* 08..18:00,30:00",
        ),
        ("5 */6 * * 0", "Sun *-*-* 00/6:05:00"),
        ("0 0 1 */3 *", "*-01/3-01 00:00:00"),
        ("0 12 * jan,jul *", "*-01,07-* 12:00:00"),
        ("0 8-18/2 * * sat,SUN", "Sat,Sun *-*-* 08..18/2:00:00"),
        ("0 0 * * 7", "Sun *-*-* 00:00:00"),
        ("0 0 * * */2", "Tue,Thu,Sat,Sun *-*-* 00:00:00"),
        ("0 0 * * 5-7", "Fri,Sat,Sun *-*-* 00:00:00"),
        ("@hourly", "*-*-* *:00:00"),
        ("@daily", "*-*-* 00:00:00"),
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("@monthly", "*-*-01 00:00:00"),
        ("@yearly", "*-01-01 00:00:00"),
    ] {
        assert_eq!(cron_to_oncalendar(cron).as_deref(), Ok(systemd), "{cron}");
    }
}

#[test]
fn what_cannot_be_converted_is_refused_with_the_reason() {
    for (cron, why) in [
        ("0 0 1 * 1", "either matches"),
        ("@reboot", "OnBootSec"),
        ("@often", "unknown shorthand"),
        ("5/10 * * * *", "a step needs * or a range"),
        ("0 18-8 * * *", "runs backwards"),
        ("61 * * * *", "61 is outside 0-59"),
        ("0 0 * * 8", "bad value '8'"),
        ("*/0 * * * *", "step 0"),
        ("* * * *", "expected 5 fields"),
    ] {
        let e = cron_to_oncalendar(cron).unwrap_err();
        assert!(e.contains(why), "{cron}: {e}");
    }
}

fn systemd_analyze() -> Option<&'static str> {
    Path::new("/usr/bin/systemd-analyze")
        .exists()
        .then_some("/usr/bin/systemd-analyze")
}

/// Elapse times systemd computes: (weekday 0 = Sun, month, day, hour, minute).
fn elapses(on_calendar: &str, n: usize) -> Vec<(u32, u32, u32, u32, u32)> {
    let out = Command::new(systemd_analyze().unwrap())
        .args([
            "calendar",
            &format!("--iterations={n}"),
            &format!("{on_calendar} UTC"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{on_calendar}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("Next elapse: ").or_else(|| {
                l.strip_prefix("Iter. #")
                    .and_then(|r| r.split_once(": ").map(|x| x.1))
            })?;
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let wd = days.iter().position(|d| *d == parts[0]).unwrap() as u32;
            let date: Vec<u32> = parts[1].split('-').map(|x| x.parse().unwrap()).collect();
            let time: Vec<u32> = parts[2].split(':').map(|x| x.parse().unwrap()).collect();
            Some((wd, date[1], date[2], time[0], time[1]))
        })
        .collect()
}

/// Every time systemd picks is one cron would pick, and over enough
/// iterations systemd uses every minute and hour cron would use.
#[test]
fn converted_calendars_fire_when_cron_would() {
    if systemd_analyze().is_none() {
        return;
    }
    // The cron form, and the same schedule in the cron crate's syntax
    // (a seconds field, weekdays by name).
    for (cron, crate_form, iterations) in [
        ("*/30 * * * *", "0 */30 * * * *", 100),
        ("15 3 * * *", "0 15 3 * * *", 30),
        ("0,30 8-18 * * 1-5", "0 0,30 8-18 * * Mon-Fri", 300),
        ("5 */6 * * 0", "0 5 */6 * * Sun", 40),
        ("0 8-18/2 * * sat,sun", "0 0 8-18/2 * * Sat,Sun", 60),
        ("0 0 1 */3 *", "0 0 0 1 */3 *", 8),
        ("0 0 * * */2", "0 0 0 * * Sun,Tue,Thu,Sat", 40),
        ("@weekly", "0 0 0 * * Sun", 10),
        ("@hourly", "0 0 * * * *", 60),
    ] {
        let on_calendar = cron_to_oncalendar(cron).unwrap();
        let s = cron::Schedule::from_str(crate_form).unwrap();
        let times = elapses(&on_calendar, iterations);
        assert_eq!(times.len(), iterations, "{cron}");
        let (mut minutes, mut hours) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        for &(wd, month, day, hour, minute) in &times {
            assert!(s.minutes().includes(minute), "{cron}: minute {minute}");
            assert!(s.hours().includes(hour), "{cron}: hour {hour}");
            assert!(s.days_of_month().includes(day), "{cron}: day {day}");
            assert!(s.months().includes(month), "{cron}: month {month}");
            // The crate numbers weekdays 1-7 from Sunday.
            assert!(s.days_of_week().includes(wd + 1), "{cron}: weekday {wd}");
            minutes.insert(minute);
            hours.insert(hour);
        }
        let want_minutes: std::collections::BTreeSet<u32> =
            (0..=59).filter(|&v| s.minutes().includes(v)).collect();
        let want_hours: std::collections::BTreeSet<u32> =
            (0..=23).filter(|&v| s.hours().includes(v)).collect();
        assert_eq!(minutes, want_minutes, "{cron}");
        assert_eq!(hours, want_hours, "{cron}");
    }
}

/// `systemd-analyze verify` of `units`, where the host has it. Only
/// complaints naming `ours` count: the host's own units may be noisy.
fn verify_units(units: &[PathBuf], ours: &str) {
    let Some(sa) = systemd_analyze() else {
        return;
    };
    let out = Command::new(sa)
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let mentioned: Vec<&str> = err.lines().filter(|l| l.contains(ours)).collect();
    assert!(out.status.success() && mentioned.is_empty(), "{err}");
}

/// Settings over a new temp root with the usual /etc/agent layout; keep
/// the `TempDir` alive as long as them.
fn sandbox(node: Option<&str>) -> (tempfile::TempDir, crate::settings::Settings) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("etc/agent/manifests")).unwrap();
    std::fs::write(root.join("etc/agent/hiera.yaml"), "version: 5\n").unwrap();
    let settings = crate::settings::Settings {
        state: crate::engine::state::StateDir::new(root.join("var/lib/agent")),
        manifests: root.join("etc/agent/manifests"),
        hiera_config: root.join("etc/agent/hiera.yaml"),
        fact_opts: Default::default(),
        node: node.map(str::to_string),
        root: Some(root),
    };
    (dir, settings)
}

fn args(scheduler: Scheduler, schedule: &str, splay: &str, agent: &Path) -> Options {
    Options {
        schedule: schedule.into(),
        splay: crate::settings::parse_duration(splay).unwrap(),
        agent_path: Some(agent.to_path_buf()),
        scheduler,
        watch: false,
        run_timeout: std::time::Duration::from_secs(3600),
    }
}

fn real_agent_path() -> PathBuf {
    // Any real executable: systemd-analyze verify checks ExecStart exists.
    std::env::current_exe().unwrap()
}

#[test]
fn systemd_units_are_written_under_root_verified_and_idempotent() {
    let (_dir, s) = sandbox(Some("stash-server"));
    let root = s.root.clone().unwrap();
    let agent = real_agent_path();
    let a = args(Scheduler::Systemd, "*/30 * * * *", "5m", &agent);
    let changes = install(&s, &a).unwrap();
    assert_eq!(
        changes,
        vec![
            format!("{SERVICE_PATH}: created"),
            format!("{TIMER_PATH}: created")
        ]
    );
    let service = std::fs::read_to_string(root.join("etc/systemd/system/agent.service")).unwrap();
    let timer = std::fs::read_to_string(root.join("etc/systemd/system/agent.timer")).unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    // Node paths: the root prefix is gone, the run reads what the install read.
    assert_eq!(
        exec,
        format!(
            "{} apply --manifests /etc/agent/manifests --hiera-config /etc/agent/hiera.yaml \
             --state-dir /var/lib/agent --node stash-server",
            agent.display()
        )
    );
    assert!(service.contains("\nType=oneshot\n"), "{service}");
    // Daemons a run starts outlive it; a run is bounded (runtimeout).
    assert!(service.contains("\nKillMode=process\n"), "{service}");
    assert!(service.contains("\nTimeoutStartSec=3600\n"), "{service}");
    assert!(timer.contains("\nOnCalendar=*-*-* *:00/30:00\n"), "{timer}");
    assert!(timer.contains("\nRandomizedDelaySec=300\n"), "{timer}");
    assert!(timer.contains("\nPersistent=true\n"), "{timer}");
    assert!(timer.contains("\nWantedBy=timers.target\n"), "{timer}");

    let unit_dir = root.join("etc/systemd/system");
    verify_units(
        &[unit_dir.join("agent.service"), unit_dir.join("agent.timer")],
        "agent.",
    );

    // Second run: nothing to do, nothing backed up.
    assert!(install(&s, &a).unwrap().is_empty());
    assert!(!s.state.dir.join("backup/index.jsonl").exists());

    // A new schedule replaces the timer only, keeping the old one in the store.
    let a2 = args(Scheduler::Systemd, "@daily", "0", &agent);
    assert_eq!(
        install(&s, &a2).unwrap(),
        vec![format!("{TIMER_PATH}: updated")]
    );
    let idx = std::fs::read_to_string(s.state.dir.join("backup/index.jsonl")).unwrap();
    assert!(idx.contains("agent.timer"), "{idx}");
    let timer = std::fs::read_to_string(root.join("etc/systemd/system/agent.timer")).unwrap();
    assert!(
        timer.contains("\nOnCalendar=*-*-* 00:00:00\nRandomizedDelaySec=0\n"),
        "{timer}"
    );
}

#[test]
fn a_cron_d_entry_is_written_where_there_is_no_systemd() {
    let (_dir, s) = sandbox(None);
    let root = s.root.clone().unwrap();
    let agent = PathBuf::from("/usr/local/bin/agent");
    let a = args(Scheduler::Cron, "*/30 * * * *", "90s", &agent);
    assert_eq!(
        install(&s, &a).unwrap(),
        vec![format!("{CRON_PATH}: created")]
    );
    let text = std::fs::read_to_string(root.join("etc/cron.d/agent")).unwrap();
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(entries.len(), 1, "{text}");
    let fields: Vec<&str> = entries[0].splitn(7, ' ').collect();
    assert_eq!(fields.len(), 7, "{text}");
    resources::cron::validate_schedule(&fields[..5].join(" ")).unwrap();
    assert_eq!(fields[5], "root");
    assert_eq!(
        fields[6],
        "sleep $(shuf -i 0-90 -n 1) && /usr/local/bin/agent apply --manifests /etc/agent/manifests \
         --hiera-config /etc/agent/hiera.yaml --state-dir /var/lib/agent --lock-wait 0 --quiet"
    );
    assert!(install(&s, &a).unwrap().is_empty());

    // Moving to systemd removes the cron entry: one scheduler, one run.
    let changes = install(&s, &args(Scheduler::Systemd, "@hourly", "0", &agent)).unwrap();
    assert!(
        changes.contains(&format!("{CRON_PATH}: removed")),
        "{changes:?}"
    );
    assert!(!root.join("etc/cron.d/agent").exists());
}

#[test]
fn odd_paths_are_quoted_for_systemd_and_sh() {
    let argv: Vec<String> = ["/opt/my agent/agent", "apply", "--node", "50%$x'y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unit = service_unit(&argv, 60);
    assert!(
        unit.contains("ExecStart=\"/opt/my agent/agent\" apply --node \"50%%$$x'y\"\n"),
        "{unit}"
    );
    let cron = cron_file("@daily", &argv, 0);
    assert!(
        cron.contains("@daily root '/opt/my agent/agent' apply --node '50\\%$x'\\''y'\n"),
        "{cron}"
    );
}

#[test]
fn bad_schedules_are_refused_before_writing() {
    let (_dir, s) = sandbox(None);
    let agent = PathBuf::from("/usr/local/bin/agent");
    let e = install(&s, &args(Scheduler::Cron, "*/30 * * *", "0", &agent)).unwrap_err();
    assert!(
        format!("{e:#}").contains("bad --schedule '*/30 * * *'"),
        "{e:#}"
    );
    let e = install(&s, &args(Scheduler::Systemd, "0 0 1 * 1", "0", &agent)).unwrap_err();
    assert!(format!("{e:#}").contains("cannot convert"), "{e:#}");
    assert!(!s.root.unwrap().join("etc/cron.d").exists());
}

#[test]
fn watch_is_installed_as_a_supervised_service_in_place_of_the_timer() {
    let (_dir, s) = sandbox(Some("stash-server"));
    let root = s.root.clone().unwrap();
    let agent = real_agent_path();
    install(&s, &args(Scheduler::Systemd, "*/30 * * * *", "0", &agent)).unwrap();
    let mut w = args(Scheduler::Systemd, "*/30 * * * *", "0", &agent);
    w.watch = true;
    let changes = install(&s, &w).unwrap();
    assert_eq!(
        changes,
        vec![
            format!("{SERVICE_PATH}: removed"),
            format!("{TIMER_PATH}: removed"),
            format!("{WATCH_SERVICE_PATH}: created"),
        ]
    );
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/agent-watch.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert_eq!(
        exec,
        format!(
            "{} watch --schedule \"*/30 * * * *\" --manifests /etc/agent/manifests \
             --hiera-config /etc/agent/hiera.yaml --state-dir /var/lib/agent --node stash-server",
            agent.display()
        )
    );
    for line in [
        "Restart=on-failure",
        "KillMode=process",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.contains(&format!("\n{line}\n")), "{line}: {unit}");
    }
    verify_units(
        &[root.join("etc/systemd/system/agent-watch.service")],
        "agent-watch",
    );
    assert!(install(&s, &w).unwrap().is_empty());

    // Without systemd: cron starts one watcher a minute unless one runs.
    let mut c = args(
        Scheduler::Cron,
        "@hourly",
        "0",
        Path::new("/usr/local/bin/agent"),
    );
    c.watch = true;
    let changes = install(&s, &c).unwrap();
    assert!(
        changes.contains(&format!("{WATCH_CRON_PATH}: created")),
        "{changes:?}"
    );
    let text = std::fs::read_to_string(root.join("etc/cron.d/agent-watch")).unwrap();
    let entry = text
        .lines()
        .find(|l| l.starts_with("* * * * * root "))
        .unwrap();
    assert!(
        entry.contains(
            "root flock -n /run/agent-watch.lock /usr/local/bin/agent watch --schedule @hourly "
        ),
        "{entry}"
    );
    assert!(
        entry.ends_with(">>/var/log/agent-watch.log 2>&1"),
        "{entry}"
    );
}
