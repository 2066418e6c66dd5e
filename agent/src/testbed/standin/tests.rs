//! Tests of the stand-in against real PostgreSQL clusters. The signal and
//! daemon tests run the service in a child process: this test binary
//! re-executed on the `child_entry` test, which runs `standin::run` with the
//! options given (as JSON) in `STANDIN_TEST_CHILD` (the subcommand's flags
//! are the CLI's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use resources::pg::testing::{free_port, TestCluster, PASSWORD};
use resources::pg::{bin_cmd, Conn};
use resources::runner::Runner;

use super::*;

const CHILD_ENV: &str = "STANDIN_TEST_CHILD";
const APP_PASSWORD: &str = "standin-app-Pa55";

fn settings() -> crate::settings::Settings {
    crate::settings::Settings {
        root: None,
        state: crate::engine::state::StateDir::new("/nonexistent/state"),
        manifests: PathBuf::from("manifests"),
        hiera_config: PathBuf::from("hiera/hiera.yaml"),
        fact_opts: Default::default(),
        node: None,
    }
}

/// Not a test of its own: the entry point of the child processes.
#[test]
fn child_entry() {
    let Ok(json) = std::env::var(CHILD_ENV) else {
        return;
    };
    let opts: Options = serde_json::from_str(&json).unwrap();
    let code = match run(&settings(), opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code.into());
}

fn spawn_child(opts: &Options) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "testbed::standin::tests::child_entry",
            "--exact",
            "--test-threads=1",
            "--nocapture",
            "--quiet",
        ])
        .env(CHILD_ENV, serde_json::to_string(opts).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn write_config(path: &Path, url: &str, user: &str, password: &str) {
    std::fs::write(
        path,
        format!(
            "jdbc.driver=org.postgresql.Driver\njdbc.url={}\njdbc.user={user}\njdbc.password={password}\n",
            resources::properties::escape_value(url)
        ),
    )
    .unwrap();
}

/// A primary with the application's login role and database.
fn app_cluster(dir: &Path) -> TestCluster {
    let c = TestCluster::primary(dir, "127.0.0.1");
    let mut client = c.conn().connect().unwrap();
    client
        .batch_execute(&format!(
            "create role stashuser login password '{APP_PASSWORD}'"
        ))
        .unwrap();
    client
        .batch_execute("create database stashdb owner stashuser")
        .unwrap();
    c
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Runs `serve` on a thread until the returned handle is stopped.
struct Serving {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    fn start(cfg: StandinConfig, log: &Path) -> Serving {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sink = LogSink::open(Some(log)).unwrap();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            serve(&cfg, &mut sink, Duration::from_millis(50), &s);
        });
        Serving {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn rows(conn: Conn, writer_like: &str) -> i64 {
    conn.connect()
        .ok()
        .and_then(|mut c| {
            c.query_one(
                "select count(*) from heartbeat where writer like $1",
                &[&writer_like],
            )
            .ok()
        })
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn rfc3339_times() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let t = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
    assert_eq!(rfc3339(t(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
    assert_eq!(rfc3339(t(1_709_251_199, 999)), "2024-02-29T23:59:59.999Z");
    assert_eq!(rfc3339(t(4_102_444_800, 0)), "2100-01-01T00:00:00.000Z");
}

#[test]
fn writes_heartbeat_rows_and_logs_each_write() {
    let dir = tempfile::tempdir().unwrap();
    let c = app_cluster(&dir.path().join("pg"));
    let conf = dir.path().join("stash-config.properties");
    let url = format!("jdbc:postgresql://127.0.0.1:{}/stashdb", c.port);
    write_config(&conf, &url, "stashuser", APP_PASSWORD);
    let log = dir.path().join("log/standin.log");
    let serving = Serving::start(load_config(&conf).unwrap(), &log);
    let app = Conn::new("127.0.0.1", c.port, "stashuser", Some(APP_PASSWORD)).db("stashdb");
    let pid = std::process::id();
    poll("3 heartbeat rows", Duration::from_secs(20), || {
        (rows(app.clone(), &format!("stash-standin pid {pid} %")) >= 3).then_some(())
    });
    serving.stop();
    let text = read(&log);
    let at = format!("127.0.0.1:{}/stashdb", c.port);
    let line_re = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (started: .*|connected to .*|wrote seq=\d+ to .*|stopped)$",
    )
    .unwrap();
    for line in text.lines() {
        assert!(line_re.is_match(line), "odd line {line:?} in\n{text}");
    }
    assert!(text.contains(&format!(" wrote seq=1 to {at}\n")), "{text}");
    assert!(text.contains(&format!(" wrote seq=3 to {at}\n")), "{text}");
    assert!(text.trim_end().ends_with(" stopped"), "{text}");
    assert!(!text.contains(APP_PASSWORD));
    // Every logged write is a row, in order.
    let mut client = app.connect().unwrap();
    let seqs: Vec<i64> = client
        .query(
            "select seq from heartbeat where writer like $1 order by id",
            &[&format!("stash-standin pid {pid} %")],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let logged = text.matches(" wrote seq=").count();
    assert_eq!(seqs, (1..=logged as i64).collect::<Vec<_>>());
}

#[test]
fn an_unreachable_server_is_logged_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let conf = dir.path().join("c.properties");
    write_config(
        &conf,
        &format!("jdbc:postgresql://127.0.0.1:{port}/stashdb"),
        "stashuser",
        "x-unused-pw-standin",
    );
    let log = dir.path().join("standin.log");
    let serving = Serving::start(load_config(&conf).unwrap(), &log);
    poll("two errors", Duration::from_secs(10), || {
        (read(&log).matches(" error: ").count() >= 2).then_some(())
    });
    serving.stop();
    let text = read(&log);
    assert!(
        text.contains(&format!(
            "error: no server reachable among 127.0.0.1:{port}: 127.0.0.1:{port}/stashdb: connecting to host=127.0.0.1 port={port}"
        )),
        "{text}"
    );
    assert!(!text.contains("wrote"), "{text}");
}

#[test]
fn a_bad_url_is_an_error_naming_it_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("stash-config.properties");
    write_config(
        &conf,
        "jdbc:postgresql://db1:54x2/stashdb",
        "stashuser",
        "pw-x9",
    );
    let pidfile = dir.path().join("standin.pid");
    let args = Options {
        config: conf.clone(),
        log: Some(dir.path().join("log")),
        pidfile: Some(pidfile.clone()),
        interval: Duration::from_millis(100),
        daemonize: true,
    };
    let e = format!("{:#}", run(&settings(), args).unwrap_err());
    assert!(e.contains("'jdbc:postgresql://db1:54x2/stashdb'"), "{e}");
    assert!(e.contains("bad port '54x2'"), "{e}");
    assert!(e.contains(&conf.display().to_string()), "{e}");
    assert!(!pidfile.exists());
    assert!(!dir.path().join("log").exists());
}

/// Turns a stopped test cluster into a hot standby (no upstream: it only
/// has to answer `pg_is_in_recovery()` with true until promoted).
fn make_standby(c: &TestCluster) {
    c.stop();
    std::fs::write(c.datadir.join("standby.signal"), "").unwrap();
    c.start();
}

fn promote(c: &TestCluster) {
    let d = c.datadir.display().to_string();
    Runner::default()
        .run(&bin_cmd(&c.bindir, "pg_ctl", &["-D", &d, "-w", "promote"]))
        .unwrap();
}

#[test]
fn a_multi_host_url_goes_to_the_primary_and_follows_a_switch() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCluster::primary(&dir.path().join("a"), "127.0.0.1");
    let b = TestCluster::primary(&dir.path().join("b"), "127.0.0.1");
    make_standby(&b);
    let conf = dir.path().join("stash-config.properties");
    // The standby first: the url's order must not decide, recovery must.
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{},127.0.0.1:{}/postgres?targetServerType=primary",
        b.port, a.port
    );
    write_config(&conf, &url, "postgres", PASSWORD);
    let at_a = format!("127.0.0.1:{}/postgres", a.port);
    let at_b = format!("127.0.0.1:{}/postgres", b.port);
    let log = dir.path().join("standin.log");
    let serving = Serving::start(load_config(&conf).unwrap(), &log);
    poll("writes to a", Duration::from_secs(20), || {
        read(&log)
            .contains(&format!("wrote seq=2 to {at_a}"))
            .then_some(())
    });
    assert!(!read(&log).contains(&format!("to {at_b}")));

    // Failover: the primary dies, the standby is promoted.
    a.stop();
    promote(&b);
    poll(
        "writes to b after reconnecting",
        Duration::from_secs(30),
        || {
            read(&log)
                .lines()
                .any(|l| l.contains(" wrote seq=") && l.ends_with(&format!(" to {at_b}")))
                .then_some(())
        },
    );
    serving.stop();
    let text = read(&log);
    assert!(text.contains("error: writing seq="), "{text}");
    let after_switch = &text[text.find(&format!("connected to {at_b}")).unwrap()..];
    assert!(after_switch.contains("wrote seq="), "{text}");

    // A restarted stand-in (a new process reads the same url) goes to b at once.
    let log2 = dir.path().join("standin2.log");
    let serving = Serving::start(load_config(&conf).unwrap(), &log2);
    poll("a restart writing to b", Duration::from_secs(20), || {
        read(&log2)
            .contains(&format!("wrote seq=1 to {at_b}\n"))
            .then_some(())
    });
    serving.stop();
    assert!(!read(&log2).contains("error"), "{}", read(&log2));
    assert!(rows(b.conn(), "stash-standin %") >= 2);
}

fn app_setup(dir: &Path) -> (TestCluster, Options, PathBuf, PathBuf) {
    let c = app_cluster(&dir.join("pg"));
    let conf = dir.join("stash-config.properties");
    write_config(
        &conf,
        &format!("jdbc:postgresql://127.0.0.1:{}/stashdb", c.port),
        "stashuser",
        APP_PASSWORD,
    );
    let pidfile = dir.join("run/standin.pid");
    let log = dir.join("standin.log");
    let opts = Options {
        config: conf,
        log: Some(log.clone()),
        pidfile: Some(pidfile.clone()),
        interval: Duration::from_millis(50),
        daemonize: false,
    };
    (c, opts, pidfile, log)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    poll("the child to exit", limit, || child.try_wait().unwrap())
}

#[test]
fn sigterm_stops_it_cleanly_and_removes_the_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, argv, pidfile, log) = app_setup(dir.path());
    let mut child = spawn_child(&argv);
    poll("a write", Duration::from_secs(20), || {
        read(&log).contains(" wrote seq=2 ").then_some(())
    });
    assert_eq!(read(&pidfile).trim(), child.id().to_string());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!pidfile.exists());
    assert!(read(&log).trim_end().ends_with(" stopped"));
}

fn sh(line: &str) -> bool {
    Command::new("/bin/sh")
        .args(["-c", line])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn daemonized_it_detaches_and_the_service_lines_drive_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, mut argv, pidfile, log) = app_setup(dir.path());
    argv.daemonize = true;
    let mut starter = spawn_child(&argv);
    let status = wait_exit(&mut starter, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    // The pidfile is there when the start line returns, naming the daemon.
    let pid: i32 = read(&pidfile).trim().parse().unwrap();
    assert_ne!(pid, starter.id() as i32);
    let p = pidfile.display();
    assert!(sh(&format!("kill -0 $(cat {p})")));
    poll("daemon writes", Duration::from_secs(20), || {
        read(&log).contains(" wrote seq=2 ").then_some(())
    });

    // A second start is refused while the first runs.
    let mut again = spawn_child(&argv);
    let out = poll("the second start", Duration::from_secs(10), || {
        again.try_wait().unwrap()
    });
    assert!(!out.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(again.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!("already runs as pid {pid}")),
        "{stderr}"
    );

    assert!(sh(&format!("kill $(cat {p})")));
    poll("the pidfile to go", Duration::from_secs(10), || {
        (!pidfile.exists()).then_some(())
    });
    assert!(!sh(&format!("kill -0 $(cat {p})")));
    poll("the daemon to exit", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    });
    assert!(read(&log).trim_end().ends_with(" stopped"));
}

#[test]
fn an_outage_is_retried_every_100ms_for_3s_then_backs_off_to_2s() {
    let now = Instant::now();
    assert_eq!(next_backoff(MIN_BACKOFF, now), MIN_BACKOFF);
    assert_eq!(next_backoff(Duration::from_millis(800), now), MIN_BACKOFF);
    let long_ago = now.checked_sub(Duration::from_secs(4)).unwrap();
    assert_eq!(
        next_backoff(MIN_BACKOFF, long_ago),
        Duration::from_millis(200)
    );
    assert_eq!(
        next_backoff(Duration::from_millis(1500), long_ago),
        MAX_BACKOFF
    );
}
