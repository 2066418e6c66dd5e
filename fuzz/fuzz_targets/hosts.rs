//! The hosts-file editor on hostile files: editing must keep every line
//! that is not the managed name's byte for byte, and be idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resources::host::{edit, Entry};

fuzz_target!(|input: (&str, &str, bool)| {
    let (old, name, present) = input;
    let name: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '#')
        .take(20)
        .collect();
    if name.is_empty() {
        return;
    }
    let entry = Entry {
        ip: "10.1.2.3".parse().unwrap(),
        name: name.clone(),
        aliases: vec!["alias1".into()],
        comment: None,
    };
    let entry = present.then_some(&entry);
    let once = edit(old, &name, entry);
    let twice = edit(&once, &name, entry);
    assert_eq!(once, twice, "edit is not idempotent");
    // Lines not about `name` survive, in order.
    let mine = |l: &str| {
        let data = l.split('#').next().unwrap_or("");
        data.split_whitespace()
            .nth(1)
            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    };
    let kept_old: Vec<&str> = old
        .split_inclusive('\n')
        .filter(|l| !mine(l))
        .map(|l| l.trim_end_matches('\n'))
        .collect();
    let kept_new: Vec<&str> = once
        .split_inclusive('\n')
        .filter(|l| !mine(l))
        .map(|l| l.trim_end_matches('\n'))
        .collect();
    assert_eq!(kept_old, kept_new, "an unmanaged line changed");
});
