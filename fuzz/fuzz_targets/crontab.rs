//! The crontab editor on hostile files: idempotent, and the block it writes
//! is there exactly once afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resources::cron::{edit, marker};

fuzz_target!(|input: (&str, &str, bool)| {
    let (old, title, present) = input;
    if title.contains(['\n', '\r']) || title.trim().is_empty() || title != title.trim() {
        return;
    }
    let block = format!("{}\n@daily /usr/bin/true\n", marker(title));
    let block = present.then_some(block.as_str());
    let once = edit(old, title, block);
    let twice = edit(&once, title, block);
    assert_eq!(once, twice, "edit is not idempotent");
    let markers = once
        .lines()
        .filter(|l| l.trim_end() == marker(title))
        .count();
    assert_eq!(markers, usize::from(present), "{once:?}");
});
