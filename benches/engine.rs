//! Engine benchmark (whole process, as a user runs it): apply 1000 file
//! resources into an empty sandbox, apply again as a no-op, and `agent
//! facts`. Prints median / min / max over the runs and the peak RSS, beside
//! the targets. Run with `cargo bench --bench engine` (RUNS=N to change).

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use common::{env_num, measure, measure_each, Figures};

const FILES: usize = 1000;

fn main() {
    let runs = env_num("RUNS", 10);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site);
    let args = |extra: &[&str], run: usize| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for (flag, p) in [
            ("--root", &dir.path().join(format!("root-{run}"))),
            ("--state-dir", &dir.path().join(format!("state-{run}"))),
            ("--manifests", &site.join("manifests")),
            ("--hiera-config", &site.join("hiera/hiera.yaml")),
        ] {
            a.push(flag.into());
            a.push(p.display().to_string());
        }
        a.push("--node".into());
        a.push("bench-node".into());
        a
    };

    // Each first run gets a root never used before, and nothing is deleted
    // until the end: on ext4 without a journal, inodes freed in the last
    // minute are skipped by a scan at every allocation, and deleting the
    // last run's tree made the next one's creations quadratic (see
    // benches/anchor.rs).
    let first = measure_each(runs, |i| args(&["apply", "--detailed-exitcodes"], i), 2);
    let apply = args(&["apply", "--detailed-exitcodes"], 0);
    let noop_run = measure(runs, || {}, &apply, 0);
    let dry = measure(
        runs,
        || {},
        &args(&["apply", "--noop", "--detailed-exitcodes"], 0),
        0,
    );
    // The bench site's Hiera names no db_cluster: no db_master probe here
    // (it has its own bench), as facter prints core facts only.
    let facts_args = [
        "facts".to_string(),
        "--hiera-config".into(),
        site.join("hiera/hiera.yaml").display().to_string(),
    ];
    let facts = measure(runs, || {}, &facts_args, 0);

    println!("engine benchmark: {FILES} file resources, {runs} runs each, whole process");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>10}   target",
        "scenario", "median", "min", "max", "peak RSS"
    );
    row("first run (empty root)", &first, "-");
    row("no-op run", &noop_run, "<= 100 ms, RSS <= 15 MB");
    row("--noop on converged", &dry, "-");
    row("agent facts", &facts, "<= 20 ms");
}

fn row(name: &str, f: &Figures, target: &str) {
    let ms = |d: &Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let median = &f.median();
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>7.1} MB   {}",
        name,
        ms(median),
        ms(&f.times[0]),
        ms(f.times.last().unwrap()),
        f.peak_rss_kib as f64 / 1024.0,
        target
    );
}

fn write_site(site: &Path) {
    let mut m = String::from("resources:\n  - file: /files\n    ensure: directory\n");
    for d in 0..10 {
        let _ = write!(m, "  - file: /files/d{d}\n    ensure: directory\n");
    }
    for i in 0..FILES {
        let d = i / 100;
        let _ = write!(
            m,
            "  - file: /files/d{d}/file-{i}.conf\n    content: \"# managed\\nid={i}\\nhost={{{{facts.networking.hostname}}}}\\n\"\n    mode: \"0644\"\n"
        );
    }
    let files = [
        (
            "manifests/site.yaml",
            "default: [roles/bench]\n".to_string(),
        ),
        ("manifests/roles/bench.yaml", m),
        (
            "hiera/hiera.yaml",
            "version: 5\nhierarchy:\n  - name: common\n    path: common.yaml\n".into(),
        ),
        ("hiera/data/common.yaml", "x: 1\n".into()),
    ];
    for (rel, text) in files {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}
