//! The .properties reader and editor on hostile files: after an edit, Java
//! (our parse) reads the values we set, and a second edit changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resources::properties::{edit, lookup, parse};

fuzz_target!(|input: (&str, &str, &str)| {
    let (old, key, value) = input;
    let _ = parse(old);
    // `values` is a map: one value per key, and a key is not both set and
    // removed (the type refuses that at build).
    if key.is_empty() || key == "jdbc.url" || key == "removed.key" {
        return;
    }
    let set = vec![
        (key.to_string(), value.to_string()),
        (
            "jdbc.url".to_string(),
            "jdbc:postgresql://db:5432/x?a=1&b=2".to_string(),
        ),
    ];
    let once = edit(old, &set, &["removed.key".to_string()]);
    let pairs = parse(&once);
    for (k, v) in &set {
        assert_eq!(lookup(&pairs, k), Some(v.as_str()), "{k} in {once:?}");
    }
    assert_eq!(lookup(&pairs, "removed.key"), None);
    let twice = edit(&once, &set, &["removed.key".to_string()]);
    assert_eq!(once, twice, "edit is not idempotent");
});
