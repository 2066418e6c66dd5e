//! Kill -9 torture: `agent apply` (the real binary) is SIGKILLed at random
//! moments while it converges a catalog of 200+ files (up to 1 MiB), three
//! hosts entries and two .properties files over a sandbox that holds other
//! content. After every kill each managed file must be byte for byte its
//! old or its new content (never empty, never partial); the lock must not
//! be stuck (every run uses `--lock-wait 0`); temp files a kill left must
//! be gone after the next complete run, which exits 2 (0 when the killed
//! run had already converged everything) and the one after it 0.
//!
//! A second test does the same to `pg_hba` against a real PostgreSQL:
//! killed at the swap, the next run must never call a file the server
//! rejects converged (see its doc).
//!
//! `TORTURE_KILLS` (default 50) sets the number of kills, `TORTURE_SEED`
//! the seed. The long version:
//! `TORTURE_KILLS=1000 cargo test --release --test torture -- --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, HIERA_YAML};
use resources::atomic::TEMP_MARK;

const FILES: usize = 220;
const DIRS: usize = 8;
const HOSTS: usize = 3;

/// splitmix64: small, deterministic, good enough to pick sizes and times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        // Not UTF-8 (0xff never is): no text diff, as for real binaries.
        out[0] = 0xff;
        out
    }
    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "alpha", "beta", "gamma", "delta", "wal", "standby", "stash", "jdbc",
        ];
        let mut out = String::new();
        while out.len() < n {
            out.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
            out.push(if self.below(8) == 0 { '\n' } else { ' ' });
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// One managed file: where, what it holds before (`None` = missing) and after.
struct Managed {
    rel: String,
    old: Option<Vec<u8>>,
    new: Vec<u8>,
}

struct Fixture {
    sb: Sandbox,
    files: Vec<Managed>,
    hosts_old: String,
    /// Every content the hosts file may have: each subset of the entries applied.
    hosts_states: BTreeSet<String>,
    props: Vec<(String, String, String)>,
}

/// A sandbox on tmpfs when there is one: fsync is then free, so the
/// default run fits the normal suite. A SIGKILL tests the same thing there
/// (the kernel's rename is atomic either way); what fsync adds, surviving a
/// power cut, no kill can test.
fn sandbox() -> Sandbox {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() && std::env::var_os("TORTURE_ON_DISK").is_none() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let sb = Sandbox::in_dir(dir);
    fs::create_dir_all(sb.site().join("manifests/files")).unwrap();
    sb
}

fn fixture(rng: &mut Rng) -> Fixture {
    let sb = sandbox();
    let mut manifest = String::from("resources:\n  - file: /srv\n    ensure: directory\n");
    for d in 0..DIRS {
        manifest.push_str(&format!("  - file: /srv/d{d}\n    ensure: directory\n"));
    }
    let mut files = vec![];
    for i in 0..FILES {
        let rel = format!("srv/d{}/f{i}", i % DIRS);
        let kind = rng.below(100);
        let (old, new) = if i == 0 {
            (rng.bytes(1 << 20), rng.bytes(1 << 20)) // exactly 1 MiB
        } else if kind < 75 {
            let (a, b) = (rng.below(4096) as usize + 1, rng.below(4096) as usize + 1);
            (rng.text(a), rng.text(b))
        } else if kind < 97 {
            let (a, b) = (
                4096 + rng.below(60_000) as usize,
                4096 + rng.below(60_000) as usize,
            );
            (rng.bytes(a), rng.bytes(b))
        } else {
            let (a, b) = (
                rng.below(1 << 20) as usize + 1,
                rng.below(1 << 20) as usize + 1,
            );
            (rng.bytes(a), rng.bytes(b))
        };
        if new[0] == 0xff {
            fs::write(sb.site().join(format!("manifests/files/f{i}")), &new).unwrap();
            manifest.push_str(&format!("  - file: /{rel}\n    source: f{i}\n"));
        } else {
            let text = String::from_utf8(new.clone()).unwrap().replace('\n', "\\n");
            manifest.push_str(&format!("  - file: /{rel}\n    content: \"{text}\"\n"));
        }
        // Every 20th file does not exist yet: missing or new, never half.
        let old = (i % 20 != 7).then_some(old);
        files.push(Managed { rel, old, new });
    }
    let mut hosts_old =
        String::from("127.0.0.1\tlocalhost\n# keep this comment\n::1 ip6-localhost\n");
    let mut entries = vec![];
    for h in 0..HOSTS {
        hosts_old.push_str(&format!("192.168.9.{h} db{h} old-alias\n"));
        manifest.push_str(&format!(
            "  - host: db{h}\n    ip: 10.9.0.{h}\n    host_aliases: [db{h}.internal]\n"
        ));
        entries.push(resources::host::Entry {
            ip: format!("10.9.0.{h}").parse().unwrap(),
            name: format!("db{h}"),
            aliases: vec![format!("db{h}.internal")],
            comment: None,
        });
    }
    hosts_old.push_str("10.0.0.99 unmanaged\n");
    let mut hosts_states = BTreeSet::new();
    for mask in 0..(1u32 << HOSTS) {
        let mut text = hosts_old.clone();
        for (h, e) in entries.iter().enumerate() {
            if mask & (1 << h) != 0 {
                text = resources::host::edit(&text, &e.name, Some(e));
            }
        }
        hosts_states.insert(text);
    }
    let mut props = vec![];
    for p in 0..2 {
        let rel = format!("srv/app{p}.properties");
        let old = format!("# Stash config\njdbc.url=jdbc:postgresql://old:5432/db{p}\njdbc.user=stash\nother=kept\n");
        let set = vec![
            (
                "jdbc.url".to_string(),
                format!("jdbc:postgresql://new{p}:5432/db?ssl=true&x=1"),
            ),
            ("jdbc.user".to_string(), format!("stash{p}")),
        ];
        let new = resources::properties::edit(&old, &set, &[]);
        manifest.push_str(&format!(
            "  - properties: /{rel}\n    values:\n      jdbc.url: \"{}\"\n      jdbc.user: \"{}\"\n",
            set[0].1, set[1].1
        ));
        props.push((rel, old, new));
    }
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("hiera/data/common.yaml", "x: 1\n")
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file("manifests/roles/r.yaml", &manifest);
    let fx = Fixture {
        sb,
        files,
        hosts_old,
        hosts_states,
        props,
    };
    reset(&fx);
    fx
}

/// Puts the old content back everywhere (a fresh start for the next kills).
fn reset(fx: &Fixture) {
    let root = fx.sb.root();
    for d in 0..DIRS {
        fs::create_dir_all(root.join(format!("srv/d{d}"))).unwrap();
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    for f in &fx.files {
        match &f.old {
            Some(old) => fs::write(root.join(&f.rel), old).unwrap(),
            None => {
                let _ = fs::remove_file(root.join(&f.rel));
            }
        }
    }
    fs::write(root.join("etc/hosts"), &fx.hosts_old).unwrap();
    for (rel, old, _) in &fx.props {
        fs::write(root.join(rel), old).unwrap();
    }
}

/// Checks every managed file is old or new; how many are not new yet.
fn check_states(fx: &Fixture, after: &str) -> usize {
    let root = fx.sb.root();
    let mut pending = 0;
    for f in &fx.files {
        let have = fs::read(root.join(&f.rel)).ok();
        if have.as_deref() == Some(f.new.as_slice()) {
            continue;
        }
        pending += 1;
        assert!(
            have == f.old,
            "{after}: /{} is torn: {} bytes, old {:?} bytes, new {} bytes",
            f.rel,
            have.as_ref().map_or(0, Vec::len),
            f.old.as_ref().map(Vec::len),
            f.new.len()
        );
    }
    let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
    assert!(
        fx.hosts_states.contains(&hosts),
        "{after}: /etc/hosts is torn:\n{hosts}"
    );
    let all_hosts = fx
        .hosts_states
        .iter()
        .max_by_key(|s| s.matches("10.9.0.").count());
    pending += usize::from(Some(&hosts) != all_hosts);
    for (rel, old, new) in &fx.props {
        let have = fs::read_to_string(root.join(rel)).unwrap();
        assert!(
            have == *old || have == *new,
            "{after}: /{rel} is torn:\n{have}"
        );
        pending += usize::from(have != *new);
    }
    pending
}

/// Managed items: files, the hosts file, the properties files.
fn items(fx: &Fixture) -> usize {
    fx.files.len() + 1 + fx.props.len()
}

/// Temp files left anywhere under the root.
fn temps(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(TEMP_MARK))
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn spawn(sb: &Sandbox) -> Child {
    sb.command(&["apply", "--detailed-exitcodes", "--lock-wait", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts")
}

fn apply_to_end(sb: &Sandbox) -> i32 {
    let out = spawn(sb).wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 2,
        "a complete run failed ({code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    code
}

#[derive(Default, Debug)]
struct Counts {
    kills: usize,
    finished_before_kill: usize,
    torn: usize,
    temps_seen: usize,
    temps_planted: usize,
    converges: usize,
    runs_to_converge_max: usize,
}

/// Runs apply to the end until it exits 0: the first exits 2 (0 when the
/// tree had converged already), the next 0; no temp file is left.
fn converge(fx: &Fixture, counts: &mut Counts, why: &str) {
    let done = check_states(fx, why) == 0;
    let first = apply_to_end(&fx.sb);
    assert_eq!(first, if done { 0 } else { 2 }, "{why}: first complete run");
    let mut runs = 1;
    if first == 2 {
        assert_eq!(
            apply_to_end(&fx.sb),
            0,
            "{why}: the run after it changes nothing"
        );
        runs += 1;
    }
    assert_eq!(check_states(fx, "after converging"), 0, "not converged");
    let left = temps(&fx.sb.root());
    assert!(
        left.is_empty(),
        "temp files left after a complete run: {left:?}"
    );
    counts.converges += 1;
    counts.runs_to_converge_max = counts.runs_to_converge_max.max(runs);
}

/// Index entries of the backup store whose blob is not there: `agent
/// backup restore` would fail on them.
fn dangling_index_entries(sb: &Sandbox) -> Vec<String> {
    let store = sb.state().join("backup");
    let Ok(index) = fs::read_to_string(store.join("index.jsonl")) else {
        return vec![];
    };
    index
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["sha256"].as_str().map(str::to_string))
        .filter(|sha| sha.len() < 2 || !store.join(&sha[..2]).join(sha).is_file())
        .collect()
}

#[test]
fn kill_9_at_random_moments_never_tears_a_file() {
    let kills: usize = std::env::var("TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = Rng(seed);
    let fx = fixture(&mut rng);
    let started = Instant::now();

    // Measure a whole run from the old state and a run with nothing to do
    // (start-up and compile); kill times spread over what is left to do.
    let t = Instant::now();
    assert_eq!(apply_to_end(&fx.sb), 2);
    let full = t.elapsed().as_secs_f64();
    assert_eq!(check_states(&fx, "the measured run"), 0);
    let t = Instant::now();
    assert_eq!(apply_to_end(&fx.sb), 0);
    let idle = t.elapsed().as_secs_f64().min(full);
    reset(&fx);
    let bytes: usize = fx.files.iter().map(|f| f.new.len()).sum();
    println!(
        "torture: {} files ({} MiB), a full run takes {:.0} ms (a no-op {:.0} ms); {kills} kills, seed {seed:#x}",
        fx.files.len(),
        bytes >> 20,
        full * 1e3,
        idle * 1e3
    );

    let mut counts = Counts::default();
    let mut pending = items(&fx);
    while counts.kills < kills {
        if pending == 0 {
            reset(&fx);
            pending = items(&fx);
        }
        let span = idle + (full - idle) * pending as f64 / items(&fx) as f64;
        let delay = Duration::from_secs_f64(span * rng.below(1000) as f64 / 1000.0);
        let mut child = spawn(&fx.sb);
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            // It finished first: a complete run like any other.
            let code = status.code().unwrap_or(-1);
            assert!(code == 0 || code == 2, "run before the kill exited {code}");
            counts.finished_before_kill += 1;
        } else {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            counts.kills += 1;
        }
        pending = check_states(&fx, &format!("kill {} after {delay:?}", counts.kills));
        assert_eq!(
            dangling_index_entries(&fx.sb),
            Vec::<String>::new(),
            "kill {}: backup index entries naming no blob",
            counts.kills
        );
        counts.temps_seen += temps(&fx.sb.root())
            .iter()
            .filter(|p| !p.to_string_lossy().contains(".planted"))
            .count();
        // On tmpfs a kill rarely lands inside a write: leave what it would
        // leave (a half-written temp beside a file not converged yet), so
        // that the cleaning by the next run is always exercised.
        if let Some(f) = fx
            .files
            .iter()
            .find(|f| fs::read(fx.sb.root().join(&f.rel)).ok().as_deref() != Some(f.new.as_slice()))
        {
            let p = fx.sb.root().join(&f.rel);
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let tmp = p.with_file_name(format!(".{name}{TEMP_MARK}.planted{}", counts.kills));
            fs::write(tmp, &f.new[..f.new.len() / 2]).unwrap();
            counts.temps_planted += 1;
        }
        // Mostly keep killing the partly converged tree; sometimes converge
        // and start over from the old content.
        if rng.below(6) == 0 {
            let why = format!("after kill {}", counts.kills);
            converge(&fx, &mut counts, &why);
            pending = 0;
        }
    }
    converge(&fx, &mut counts, "at the end");
    println!(
        "torture: {} kills ({} runs finished before their kill), {} torn files, \
         {} temp files seen after kills and {} planted (all removed by the next run), \
         {} convergences, at most {} runs to converge, {:.1} s",
        counts.kills,
        counts.finished_before_kill,
        counts.torn,
        counts.temps_seen,
        counts.temps_planted,
        counts.converges,
        counts.runs_to_converge_max,
        started.elapsed().as_secs_f64()
    );
}

/// Rules a pg_hba target holds, and whether the server accepts them.
struct HbaTarget {
    name: &'static str,
    rules: &'static [&'static str],
    accepted: bool,
}

const HBA_TARGETS: &[HbaTarget] = &[
    HbaTarget {
        name: "A",
        rules: &["host all all 127.0.0.0/8 scram-sha-256"],
        accepted: true,
    },
    HbaTarget {
        name: "B",
        rules: &[
            "host stashdb stashuser 127.0.0.0/8 scram-sha-256",
            "host replication replicator 127.0.0.0/8 scram-sha-256",
        ],
        accepted: true,
    },
    // The agent accepts it, the server does not (clientcert needs hostssl).
    HbaTarget {
        name: "rejected",
        rules: &["host all all 127.0.0.1/32 md5 clientcert=verify-full"],
        accepted: false,
    },
];

impl HbaTarget {
    /// The file the agent writes for these rules.
    fn content(&self) -> String {
        let mut rules = resources::pg_hba::default_rules("postgres");
        rules.extend(
            self.rules
                .iter()
                .map(|l| resources::pg_hba::HbaRule::parse(l).unwrap()),
        );
        resources::pg_hba::render("/pg/data", &rules)
    }

    /// Points the site at these rules.
    fn select(&self, sb: &Sandbox) {
        let mut data = format!("pw: {}\nhba_rules:\n", resources::pg::testing::PASSWORD);
        for r in self.rules {
            data.push_str(&format!("  - '{r}'\n"));
        }
        sb.site_file("hiera/data/common.yaml", &data);
    }
}

/// Intents a killed pg_hba run left in the state dir (not the temp file
/// of one it was writing when killed: that one never took effect).
fn pending_intents(sb: &Sandbox) -> usize {
    fs::read_dir(sb.state().join("pending-validation"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("hba-"))
                .count()
        })
        .unwrap_or(0)
}

/// Errors the server finds in the pg_hba.conf on disk.
fn hba_errors(c: &resources::pg::testing::TestCluster) -> Vec<String> {
    let mut db = c
        .conn()
        .connect()
        .expect("the server answers the agent's rule");
    db.query(
        "select coalesce(error, '') from pg_hba_file_rules where error is not null",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Waits until `path` is another file than `ino` (the agent swapped its
/// new content in) or the child exited; true for a swap.
fn wait_for_swap(path: &Path, ino: u64, child: &mut Child) -> bool {
    use std::os::unix::fs::MetadataExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if fs::metadata(path).is_ok_and(|m| m.ino() != ino) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "the run neither swapped nor ended"
        );
        std::hint::spin_loop();
    }
}

/// pg_hba against a real PostgreSQL 15, kill -9 at random moments and
/// right when the file is swapped in (then again up to 3 ms later: between
/// the swap and the server's verdict, between a rejection and the restore
/// of the previous file). After every kill the file is the previous or the
/// wanted content, owned by the server's OS user; the next complete run
/// leaves the wanted content when the server accepts it (exit 2, or 0 when
/// the killed run had finished its work) and the previous one, with a
/// failure (exit 4), when it rejects it: never a rejected file called
/// converged. The server reads every result (`pg_hba_file_rules`) and
/// restarts on it. `TORTURE_HBA_KILLS` (default 60) sets the kills.
#[test]
fn kill_9_during_pg_hba_apply_never_leaves_a_rejected_file_converged() {
    use std::os::unix::fs::MetadataExt;
    let kills: usize = std::env::var("TORTURE_HBA_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(0x9ba5eed);
    let sb = Sandbox::new();
    let cluster = resources::pg::testing::TestCluster::primary(&sb.root().join("pg"), "127.0.0.1");
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            &format!(
                "resources:\n  - pg_hba: /pg/data\n    rules: \"{{{{lookup 'hba_rules'}}}}\"\n    host: 127.0.0.1\n    port: {}\n    superuser_password: \"{{{{lookup 'pw'}}}}\"\n",
                cluster.port
            ),
        );
    let hba = cluster.datadir.join("pg_hba.conf");
    let server_uid = nix::unistd::geteuid().is_root().then(|| {
        nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("the postgres OS user")
            .uid
            .as_raw()
    });

    // Start from the agent's file for A.
    HBA_TARGETS[0].select(&sb);
    assert_eq!(apply_exit(&sb), 2);
    let mut accepted = 0usize; // index into HBA_TARGETS of the file in force
    let t = Instant::now();
    HBA_TARGETS[1].select(&sb);
    assert_eq!(apply_exit(&sb), 2);
    let full = t.elapsed();
    HBA_TARGETS[0].select(&sb);
    assert_eq!(apply_exit(&sb), 2);

    let (mut done, mut at_swap, mut finished) = (0, 0, 0);
    let (mut rejected_in_place, mut pending_seen, mut restarts) = (0, 0, 0);
    while done < kills {
        // Another target than the file in force, so there is a swap to hit.
        let choice = loop {
            let i = rng.below(HBA_TARGETS.len() as u64) as usize;
            if i != accepted {
                break i;
            }
        };
        let target = &HBA_TARGETS[choice];
        target.select(&sb);
        let before = fs::metadata(&hba).unwrap().ino();
        let mut child = spawn(&sb);
        let wait_swap = rng.below(2) == 0;
        let alive = if wait_swap {
            let swapped = wait_for_swap(&hba, before, &mut child);
            if swapped {
                let extra = match rng.below(3) {
                    0 => 0,
                    _ => rng.below(3000),
                };
                std::thread::sleep(Duration::from_micros(extra));
            }
            swapped
        } else {
            std::thread::sleep(full.mul_f64(rng.below(1000) as f64 / 1000.0));
            true
        };
        if alive && child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            done += 1;
            at_swap += usize::from(wait_swap);
        } else {
            child.wait().unwrap();
            finished += 1;
        }
        let what = format!(
            "kill {done} ({} → {}, {})",
            HBA_TARGETS[accepted].name,
            target.name,
            if wait_swap {
                "at the swap"
            } else {
                "at a random time"
            }
        );

        // Right after the kill: old or new, never torn, the server's own.
        let have = fs::read_to_string(&hba).unwrap();
        let old = HBA_TARGETS[accepted].content();
        let new = target.content();
        assert!(
            have == old || have == new,
            "{what}: pg_hba.conf is torn:\n{have}"
        );
        if let Some(uid) = server_uid {
            assert_eq!(
                fs::metadata(&hba).unwrap().uid(),
                uid,
                "{what}: not the server's file"
            );
        }
        let pending = pending_intents(&sb);
        pending_seen += usize::from(pending > 0);
        if have == new && !target.accepted {
            rejected_in_place += 1;
            assert!(
                pending > 0,
                "{what}: a rejected file in place with no intent"
            );
        }
        assert_eq!(
            dangling_index_entries(&sb),
            Vec::<String>::new(),
            "{what}: backup index entries naming no blob"
        );

        // The next complete run.
        let code = apply_exit(&sb);
        let have_after = fs::read_to_string(&hba).unwrap();
        if target.accepted {
            let expected = if have == new && pending == 0 { 0 } else { 2 };
            assert_eq!(code, expected, "{what}: the next run");
            assert_eq!(have_after, new, "{what}: the wanted file");
            accepted = choice;
        } else {
            assert_eq!(
                code, 4,
                "{what}: the next run must fail, not call the rejected file converged"
            );
            assert_eq!(have_after, old, "{what}: the previous file back");
        }
        assert_eq!(
            pending_intents(&sb),
            0,
            "{what}: an intent left after a complete run"
        );
        assert_eq!(
            hba_errors(&cluster),
            Vec::<String>::new(),
            "{what}: the server rejects the file left"
        );
        if target.accepted {
            assert_eq!(apply_exit(&sb), 0, "{what}: converged");
        }
        if done % 15 == 0 {
            // What the server will read at its next start: it starts.
            cluster.stop();
            cluster.start();
            restarts += 1;
        }
    }
    cluster.stop();
    cluster.start();
    assert_eq!(hba_errors(&cluster), Vec::<String>::new());
    println!(
        "torture pg_hba: {done} kills ({at_swap} at the swap), {finished} runs finished first, \
         {rejected_in_place} rejected files in place after a kill (each rolled back by the next run), \
         {pending_seen} intents pending after a kill, {restarts} restarts, 0 rejected files called converged"
    );
}

/// Runs apply to its end; its exit code.
fn apply_exit(sb: &Sandbox) -> i32 {
    let out = spawn(sb).wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        [0, 2, 4].contains(&code),
        "apply exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    code
}
