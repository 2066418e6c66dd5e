//! The anchor benchmark: the shared anchor workload (`benches/anchor/`, 1108
//! resources) timed as whole processes, the way `puppet apply` and
//! `cf-agent` were timed on a machine of this kind, and printed beside their
//! figures and our targets.
//!
//! `cargo bench --bench anchor` runs the scenarios (first run on an empty
//! root, no-op run, `--noop` on the converged root, fixed start-up with a
//! one-resource catalog, `agent facts`): median / min / max over `RUNS`
//! (default 10) runs and the peak RSS from `wait4`.
//!
//! `SCALE=10000,100000 cargo bench --bench anchor` (or `-- --scale
//! 10000,100000`) runs the same generator with N plain files (N/100
//! directories of 100) instead, beside the 1k baseline: first-run and no-op
//! time, time and RSS per resource, against the scaling targets.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{env_num, measure, measure_each, Figures};

fn main() {
    let runs: usize = env_num("RUNS", 10);
    let scale: Option<Vec<usize>> = scale_arg().map(|s| {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| x.trim().parse().expect("SCALE is a list of numbers"))
            .collect()
    });
    let dir = tempfile::tempdir().unwrap();
    match scale {
        Some(sizes) => scale_mode(dir.path(), &sizes),
        None => anchor_mode(dir.path(), runs),
    }
}

/// `SCALE=...` or `--scale ...` (cargo bench passes `--bench` too: ignored).
fn scale_arg() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scale") {
        return args.get(i + 1).cloned();
    }
    std::env::var("SCALE").ok().filter(|s| !s.is_empty())
}

/// The anchor site and where one run of it writes.
#[derive(Clone)]
struct Site {
    manifests: PathBuf,
    hiera: PathBuf,
    root: PathBuf,
    state: PathBuf,
    facts_dir: PathBuf,
}

impl Site {
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for (flag, p) in [
            ("--root", &self.root),
            ("--state-dir", &self.state),
            ("--manifests", &self.manifests),
            ("--hiera-config", &self.hiera),
            ("--facts-dir", &self.facts_dir),
        ] {
            a.push(flag.into());
            a.push(p.display().to_string());
        }
        a.push("--node".into());
        a.push("anchor-node".into());
        a
    }
}

fn anchor_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/anchor")
}

/// The committed anchor site, run into `tmp`.
fn anchor_site(tmp: &Path) -> Site {
    let facts_dir = tmp.join("facts.d");
    std::fs::create_dir_all(&facts_dir).unwrap();
    Site {
        manifests: anchor_dir().join("manifests"),
        hiera: anchor_dir().join("hiera/hiera.yaml"),
        root: tmp.join("anchor-root"),
        state: tmp.join("anchor-state"),
        facts_dir,
    }
}

fn anchor_mode(tmp: &Path, runs: usize) {
    let site = anchor_site(tmp);
    let apply = site.args(&["apply", "--detailed-exitcodes"]);
    // The first runs go last: each leaves a thousand new files for the
    // kernel to write back, which would slow whatever runs next. One
    // converges the root for the no-op runs; then the disk settles.
    measure(1, || {}, &apply, 2);
    settle();
    let noop_run = measure(runs, || {}, &apply, 0);
    let dry = measure(
        runs,
        || {},
        &site.args(&["apply", "--noop", "--detailed-exitcodes"]),
        0,
    );
    // Fixed cost: one converged resource, same flags.
    let tiny = tmp.join("tiny");
    write_files(
        &tiny,
        &[
            ("manifests/site.yaml", "default: [one]\n".into()),
            (
                "manifests/one.yaml",
                "resources:\n  - file: /\n    ensure: directory\n".into(),
            ),
            (
                "hiera/hiera.yaml",
                "version: 5\nhierarchy:\n  - name: common\n    path: common.yaml\n".into(),
            ),
            ("hiera/data/common.yaml", "x: 1\n".into()),
        ],
    );
    let one = Site {
        manifests: tiny.join("manifests"),
        hiera: tiny.join("hiera/hiera.yaml"),
        root: tmp.join("tiny-root"),
        state: tmp.join("tiny-state"),
        facts_dir: site.facts_dir.clone(),
    };
    let startup = measure(
        runs,
        || {},
        &one.args(&["apply", "--detailed-exitcodes"]),
        0,
    );
    let facts = measure(
        runs,
        || {},
        // A Hiera with no db_cluster (the one-resource site's): core and
        // external facts only, what facter prints (db_master has its own bench).
        &[
            "facts".to_string(),
            "--facts-dir".into(),
            site.facts_dir.display().to_string(),
            "--hiera-config".into(),
            one.hiera.display().to_string(),
        ],
        0,
    );

    // Each first run, and each floor run beside it, gets a root and a state
    // dir never used before, and nothing is deleted until all are done:
    // ext4 without a journal (this machine's) skips inodes freed in the last
    // 60 s (6 min while their table block is dirty) and scans past each
    // of them from the start of the block group at every allocation, so a
    // `rm -rf` of the last run's 1058 inodes made the next run's creations
    // quadratic (1.2-1.4 s, all of it kernel CPU in `recently_deleted`). A
    // node's first run does not follow the deletion of its own tree.
    settle();
    let fresh = tmp.join("fresh");
    let mut floor = Vec::with_capacity(runs);
    let mut durable = Vec::with_capacity(runs);
    let first = measure_each(
        runs,
        |i| {
            floor.push(fs_floor(&fresh.join(format!("floor-{i}")), false));
            settle();
            durable.push(fs_floor(&fresh.join(format!("durable-{i}")), true));
            settle();
            Site {
                root: fresh.join(format!("root-{i}")),
                state: fresh.join(format!("state-{i}")),
                ..site.clone()
            }
            .args(&["apply", "--detailed-exitcodes"])
        },
        2,
    );
    let _ = std::fs::remove_dir_all(&fresh);
    floor.sort();
    durable.sort();

    println!("anchor workload: 1108 resources (1042 files, 16 dirs), {runs} runs each, whole process, median [min-max]");
    println!(
        "{:<22} {:>26} {:>9} {:>10} | {:>13} {:>15} | {:>8}",
        "scenario", "agent (wall)", "CPU", "peak RSS", "puppet 7.23", "cf-agent 3.21", "target"
    );
    row(
        "first run (new root)",
        &first,
        "4.95 s",
        "0.25-0.40 s",
        "<= 100 ms",
    );
    println!(
        "{:<22} {:>26} {:>9} {:>10} | this disk, not the agent: 16 mkdir + 1042 x (create, write, rename), no sync",
        "  fs floor of it",
        format!(
            "{} [{}-{}]",
            fmt_d(floor[floor.len() / 2]),
            fmt_d(floor[0]),
            fmt_d(floor[floor.len() - 1])
        ),
        "",
        ""
    );
    println!(
        "{:<22} {:>26} {:>9} {:>10} | the same, durable as the agent writes: + one syncfs before the renames, + fsync of each dir",
        "  durable fs floor",
        format!(
            "{} [{}-{}]",
            fmt_d(durable[durable.len() / 2]),
            fmt_d(durable[0]),
            fmt_d(durable[durable.len() - 1])
        ),
        "",
        ""
    );
    row("no-op run", &noop_run, "2.54 s", "0.162 s", "<= 40 ms");
    row("--noop on converged", &dry, "2.50 s", "-", "-");
    row("fixed start-up", &startup, "1.25 s", "0.036 s", "<= 5 ms");
    row("agent facts", &facts, "facter 0.271 s", "-", "<= 10 ms");
    let peak = [&first, &noop_run, &dry, &startup]
        .iter()
        .map(|f| f.peak_rss_kib)
        .max()
        .unwrap_or(0);
    println!(
        "peak RSS over the apply scenarios: {:.1} MiB (puppet 97-127 MiB, cf-agent 22.7 MiB, facter 24.5 MiB; target <= 10 MiB)",
        peak as f64 / 1024.0
    );
}

fn scale_mode(tmp: &Path, sizes: &[usize]) {
    let runs = env_num("RUNS", 3);
    // whole directories of 100 files
    let mut sizes: Vec<usize> = sizes.iter().map(|n| n.div_ceil(100).max(1) * 100).collect();
    if !sizes.contains(&1000) {
        sizes.insert(0, 1000);
    }
    println!("scale: the anchor workload with N plain files in N/100 dirs; first run once, no-op median of {runs}");
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>12} {:>12} {:>22} {:>26}",
        "files",
        "resources",
        "first run",
        "no-op",
        "no-op CPU",
        "no-op/res",
        "peak RSS first/no-op",
        "RSS growth/res first/no-op"
    );
    let mut base: Option<(f64, i64, i64, usize)> = None;
    for n in sizes {
        let site = scaled_site(&tmp.join(format!("n{n}")), n);
        let resources = n + n.div_ceil(100) + 98;
        let apply = site.args(&["apply", "--detailed-exitcodes"]);
        let first = measure(1, settle, &apply, 2);
        let noop = measure(runs, || {}, &apply, 0);
        let noop_s = noop.median().as_secs_f64();
        let (rss_first, rss_noop) = (first.peak_rss_kib, noop.peak_rss_kib);
        let growth = match base {
            Some((_, f0, n0, res0)) if resources > res0 => {
                let per = |rss: i64, rss0: i64| (rss - rss0) as f64 / (resources - res0) as f64;
                format!("{:.2} / {:.2} KiB", per(rss_first, f0), per(rss_noop, n0))
            }
            _ => "-".into(),
        };
        println!(
            "{:>8} {:>10} {:>10.3} s {:>9.1} ms {:>9.1} ms {:>9.1} us {:>9.1} / {:>5.1} MiB {:>26}",
            n,
            resources,
            first.median().as_secs_f64(),
            noop_s * 1e3,
            noop.median_cpu().as_secs_f64() * 1e3,
            noop_s * 1e6 / resources as f64,
            rss_first as f64 / 1024.0,
            rss_noop as f64 / 1024.0,
            growth
        );
        if let Some((base_s, _, _, _)) = base {
            println!(
                "{:>8} no-op is {:.1}x the 1k no-op (target for 100k: <= 120x); RSS growth target <= 1 KiB/resource",
                "",
                noop_s / base_s
            );
        } else {
            base = Some((noop_s, rss_first, rss_noop, resources));
        }
        // Trees are removed at the end, all at once: a deletion would slow
        // the next size's first run (see anchor_mode).
    }
}

/// The anchor site with `n` plain files: its ranges `d` in `0..9` (dirs)
/// and files per dir stretched to n/100 dirs of 100.
fn scaled_site(tmp: &Path, n: usize) -> Site {
    let site_dir = tmp.join("site");
    copy_tree(&anchor_dir(), &site_dir);
    let last = format!("\"0..{}\"", n.div_ceil(100) - 1);
    for profile in ["anchor_dirs.yaml", "anchor_files.yaml"] {
        let p = site_dir.join("manifests/profiles").join(profile);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"0..9\""), "{profile} has the range 0..9");
        std::fs::write(&p, text.replace("\"0..9\"", &last)).unwrap();
    }
    let facts_dir = tmp.join("facts.d");
    std::fs::create_dir_all(&facts_dir).unwrap();
    Site {
        manifests: site_dir.join("manifests"),
        hiera: site_dir.join("hiera/hiera.yaml"),
        root: tmp.join("root"),
        state: tmp.join("state"),
        facts_dir,
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn write_files(base: &Path, files: &[(&str, String)]) {
    for (rel, text) in files {
        let p = base.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// What this disk needs to create the workload's tree with the least a
/// program can do: 16 directories, then per file a temp file, its bytes,
/// a rename, into `root`, which must not exist yet. With `durable`, as
/// crash-safe as the agent makes it: every temp synced (one `syncfs`)
/// before the first rename, then each directory fsynced. The agent's first
/// run pays the durable floor plus its own work.
fn fs_floor(root: &Path, durable: bool) -> Duration {
    use std::io::Write as _;
    let body = "# managed by the anchor workload\nid=d0-n0\ndir=d0\nindex=0\npayload=lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\n";
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    settle();
    let started = Instant::now();
    let mut dirs = vec![root.to_path_buf()];
    for d in ["files", "etc", "etc/cron.d", "etc/postgresql", "app"] {
        dirs.push(root.join(d));
    }
    for d in 0..10 {
        dirs.push(root.join(format!("files/d{d}")));
    }
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let mut temps = Vec::with_capacity(1042);
    for i in 0..1042 {
        let dir = &dirs[6 + i % 10];
        let tmp = dir.join(format!(".f{i}.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        drop(f);
        if durable {
            temps.push((tmp, dir.join(format!("f{i}"))));
        } else {
            std::fs::rename(&tmp, dir.join(format!("f{i}"))).unwrap();
        }
    }
    if durable {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(root).unwrap();
        // SAFETY: a valid descriptor for the duration of the call.
        assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0);
        for (tmp, target) in &temps {
            std::fs::rename(tmp, target).unwrap();
        }
        for d in &dirs {
            std::fs::File::open(d).unwrap().sync_all().unwrap();
        }
    }
    started.elapsed()
}

/// Lets the kernel write back what earlier runs left dirty (`sync`, then a
/// pause), so that it does not compete with the next scenario.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_millis(500));
}

/// `1.23 s` or `45.6 ms`.
fn fmt_d(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn row(name: &str, f: &Figures, puppet: &str, cf: &str, target: &str) {
    let ms = |d: &Duration| fmt_d(*d);
    let ours = format!(
        "{} [{}-{}]",
        ms(&f.median()),
        ms(&f.times[0]),
        ms(f.times.last().unwrap())
    );
    println!(
        "{:<22} {:>26} {:>9} {:>6.1} MiB | {:>13} {:>15} | {:>8}",
        name,
        ours,
        ms(&f.median_cpu()),
        f.peak_rss_kib as f64 / 1024.0,
        puppet,
        cf,
        target
    );
}
