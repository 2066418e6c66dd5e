//! The bad-input corpus (`tests/corpus/bad/<case>/`): every case must be
//! refused by `validate` and by `apply` with an error naming file and line
//! (or the cycle), and leave the sandbox byte-for-byte unchanged.

mod common;

use common::{copy_dir, repo, Sandbox, HIERA_YAML};

#[test]
fn every_bad_case_is_refused_and_changes_nothing() {
    let corpus = repo().join("tests/corpus/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "corpus has {} cases", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let sb = Sandbox::new();
        sb.site_file("hiera/hiera.yaml", HIERA_YAML)
            .site_file("hiera/data/common.yaml", "items: [a, b]\nmotd: hi\n")
            .root_file("etc/motd", "old motd\n")
            .root_file("etc/hosts", "127.0.0.1 localhost\n");
        copy_dir(&case, &sb.site());
        let expect = std::fs::read_to_string(case.join("expect.txt")).unwrap();
        let before = sb.snapshot();
        for args in [&["validate"][..], &["apply", "--detailed-exitcodes"][..]] {
            let run = sb.agent(args);
            assert_eq!(run.code, 1, "{name}: {args:?} exit code\n{}", run.all());
            for needle in expect.lines().filter(|l| !l.is_empty()) {
                assert!(
                    run.stderr.contains(needle),
                    "{name}: {args:?}: stderr lacks {needle:?}:\n{}",
                    run.stderr
                );
            }
            assert_eq!(
                before,
                sb.snapshot(),
                "{name}: {args:?} changed the sandbox"
            );
            assert!(
                !sb.state().join("last_run_report.json").exists(),
                "{name}: a report was written for a run that never started"
            );
        }
    }
}

/// Runs `agent ARGS` in `sb`, killed if it has not ended within `limit`:
/// its exit code and stderr, or None when it hung.
fn run_bounded(sb: &Sandbox, args: &[&str], limit: std::time::Duration) -> Option<(i32, String)> {
    let mut child = sb
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_fifo_as_template_or_source_is_refused_without_blocking() {
    for (attr, dir) in [("template", "templates"), ("source", "files")] {
        let sb = Sandbox::new();
        sb.site_file("hiera/hiera.yaml", HIERA_YAML)
            .site_file("manifests/site.yaml", "default: [roles/r]\n")
            .site_file(
                "manifests/roles/r.yaml",
                &format!("resources:\n  - file: /a\n    content: first\n  - file: /b\n    {attr}: pipe\n"),
            );
        let fifo = sb.site().join("manifests").join(dir).join("pipe");
        std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let before = sb.snapshot();
        for args in [&["validate"][..], &["apply"][..]] {
            let (code, err) = run_bounded(&sb, args, std::time::Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{attr}: {args:?} hung on a FIFO"));
            assert_eq!(code, 1, "{attr}: {args:?}: {err}");
            assert!(err.contains("is not a regular file"), "{attr}: {err}");
            assert_eq!(
                before,
                sb.snapshot(),
                "{attr}: {args:?} changed the sandbox"
            );
        }
    }
}

#[test]
fn a_fifo_as_an_edited_file_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    sb.site_file("hiera/hiera.yaml", HIERA_YAML)
        .site_file("manifests/site.yaml", "default: [roles/r]\n")
        .site_file(
            "manifests/roles/r.yaml",
            "resources:\n  - file: /a\n    content: first\n  - host: db1\n    ip: 10.0.0.1\n",
        );
    std::fs::create_dir_all(sb.root().join("etc")).unwrap();
    nix::unistd::mkfifo(
        &sb.root().join("etc/hosts"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let before = sb.snapshot();
    let (code, err) = run_bounded(&sb, &["apply"], std::time::Duration::from_secs(20))
        .expect("apply hung on a FIFO hosts file");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a FIFO"), "{err}");
    assert_eq!(before, sb.snapshot(), "something was applied");
}
