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
