//! Property tests of `conf`'s codec: Redis quoting reads back as written,
//! and on generated redis.conf / ini files full of comments, blank lines,
//! odd whitespace, CRLF and other keys, an edit changes only the lines of
//! its key (every other line kept byte for byte and in order) and a second
//! edit is a no-op.

use proptest::prelude::*;
use resources::conf::{edit, redis_quote, split_args, Format, Key, Outcome, Value};

/// A line terminator, mostly `\n`.
fn term() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("\n"), 1 => Just("\r\n")]
}

/// Lines a redis.conf may hold, the managed key's included.
fn redis_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "#[ -~]{0,30}".prop_map(|c| c),
        "[ \t]{0,3}".prop_map(|w| w),
        ("[ \t]{0,2}", "[a-z-]{1,12}", "[ \t]{1,3}", "[ -~]{0,20}")
            .prop_map(|(a, k, w, v)| format!("{a}{k}{w}{v}")),
        (
            "[ \t]{0,2}",
            "(maxmemory|MAXMEMORY|MaxMemory)",
            "[ \t]{1,3}",
            "[0-9]{1,4}(mb|gb)"
        )
            .prop_map(|(a, k, w, v)| format!("{a}{k}{w}{v}")),
        "[ -~]{0,40}".prop_map(|junk| junk),
    ]
}

/// Lines an ini file may hold, headers included.
fn ini_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[;#][ -~]{0,20}".prop_map(|c| c),
        "\\[(main|other|x)\\]".prop_map(|h| h),
        ("[a-z]{1,6}", "[ ]{0,2}=[ ]{0,2}", "[ -~]{0,12}")
            .prop_map(|(k, e, v)| format!("{k}{e}{v}")),
        ("port", "[ ]{0,2}=[ ]{0,2}", "[0-9]{1,4}").prop_map(|(k, e, v)| format!("{k}{e}{v}")),
    ]
}

fn file_of(lines: &[(String, &str)], last_term: bool) -> String {
    let mut out = String::new();
    for (i, (l, t)) in lines.iter().enumerate() {
        out.push_str(l);
        if i + 1 < lines.len() || last_term {
            out.push_str(t);
        }
    }
    out
}

/// True for a line Redis reads as a `maxmemory` directive.
fn redis_owned(l: &str) -> bool {
    let c = l.trim_end_matches(['\n', '\r']);
    !c.trim_start_matches([' ', '\t']).starts_with('#')
        && split_args(c)
            .and_then(|a| a.into_iter().next())
            .is_some_and(|(w, _)| w.eq_ignore_ascii_case("maxmemory"))
}

/// Lines (with terminators) not owned, in order; the last one without
/// its terminator, which an appended line may add.
fn kept(text: &str, owned: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines: Vec<String> = text
        .split_inclusive('\n')
        .filter(|l| !owned(l))
        .map(str::to_string)
        .collect();
    if let Some(last) = lines.last_mut() {
        *last = last.trim_end_matches('\n').to_string();
    }
    lines
}

/// Lines in `section` of an ini text that set `key`, by index.
fn ini_owned_indices(text: &str, section: &str, key: &str) -> Vec<usize> {
    let mut cur: Option<String> = None;
    let mut out = vec![];
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let c = l.trim();
        if let Some(h) = c.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            cur = Some(h.trim().to_string());
            continue;
        }
        let sets =
            !c.starts_with([';', '#']) && c.split_once('=').is_some_and(|(k, _)| k.trim() == key);
        if sets && cur.as_deref() == Some(section) {
            out.push(i);
        }
    }
    out
}

fn same_kept(old: &[String], new: &[String]) -> bool {
    old.len() == new.len()
        && old.iter().zip(new).enumerate().all(|(i, (a, b))| {
            a == b
                || (i + 1 == old.len()
                    && b.trim_end_matches(['\r', '\n']) == a.trim_end_matches(['\r', '\n']))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn redis_quoting_reads_back(arg in "[ -~\t\n\r\u{1}\u{7f}é]{0,16}") {
        let line = format!("key {}", redis_quote(&arg));
        let args: Vec<String> = split_args(&line).unwrap().into_iter().map(|(a, _)| a).collect();
        prop_assert_eq!(args, vec!["key".to_string(), arg]);
    }

    #[test]
    fn redis_edit_keeps_every_other_line(
        lines in proptest::collection::vec((redis_line(), term()), 0..12),
        last_term in any::<bool>(),
        present in any::<bool>(),
        value in "[0-9]{1,3}(mb|gb)",
    ) {
        let old = file_of(&lines, last_term);
        let key = Key::new(Format::Redis, "maxmemory", None).unwrap();
        let want = Value::Str(value.clone());
        let want = present.then_some(&want);
        let (new, outcome) = edit(&old, &key, want, true);
        prop_assert!(same_kept(&kept(&old, redis_owned), &kept(&new, redis_owned)), "old {:?}\nnew {:?}", old, new);
        prop_assert_eq!(outcome == Outcome::InSync, new == old);
        let (again, o) = edit(&new, &key, want, true);
        prop_assert_eq!(o, Outcome::InSync, "not idempotent: {:?}", new);
        prop_assert_eq!(again, new.clone());
        let last = new.lines().rfind(|l| redis_owned(l)).map(|l| {
            split_args(l).unwrap().into_iter().skip(1).map(|(a, _)| a).collect::<Vec<_>>()
        });
        match want {
            Some(_) => prop_assert_eq!(last, Some(vec![value])),
            None => prop_assert_eq!(last, None),
        }
    }

    #[test]
    fn ini_edit_keeps_every_other_line(
        lines in proptest::collection::vec((ini_line(), term()), 0..14),
        last_term in any::<bool>(),
        present in any::<bool>(),
        value in "[0-9]{1,4}",
    ) {
        let old = file_of(&lines, last_term);
        let key = Key::new(Format::Ini, "port", Some("main")).unwrap();
        let want = Value::Str(value.clone());
        let want = present.then_some(&want);
        let (new, _) = edit(&old, &key, want, true);
        let (again, o) = edit(&new, &key, want, true);
        prop_assert_eq!(o, Outcome::InSync, "not idempotent: {:?} -> {:?}", old, new);
        prop_assert_eq!(again, new.clone());
        // Every line outside the key's own is kept, in order.
        let owned_old = ini_owned_indices(&old, "main", "port");
        let owned_new = ini_owned_indices(&new, "main", "port");
        let others = |text: &str, owned: &[usize]| -> Vec<String> {
            let mut v: Vec<String> = text
                .split_inclusive('\n')
                .enumerate()
                .filter(|(i, _)| !owned.contains(i))
                .map(|(_, l)| l.trim_end_matches(['\r', '\n']).to_string())
                .collect();
            // An added section brings its header (and a blank line before it).
            if !old.lines().any(|l| l.trim() == "[main]") && present {
                while v.last().is_some_and(|l| l.trim() == "[main]" || l.is_empty()) {
                    v.pop();
                }
            }
            v
        };
        let mut before = others(&old, &owned_old);
        let mut after = others(&new, &owned_new);
        if !old.lines().any(|l| l.trim() == "[main]") && present {
            while before.last().is_some_and(|l| l.is_empty()) {
                before.pop();
            }
            while after.last().is_some_and(|l| l.is_empty()) {
                after.pop();
            }
        }
        prop_assert_eq!(before, after, "old {:?}\nnew {:?}", old, new);
        match want {
            Some(_) => prop_assert!(!owned_new.is_empty()),
            None => prop_assert!(owned_new.is_empty()),
        }
    }
}
