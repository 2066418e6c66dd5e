//! Property tests of the line editors (hosts, crontab, .properties): on
//! generated files full of comments, blank lines, odd whitespace, CRLF and
//! other entries, an edit changes only what the resource owns; every other
//! line is kept byte for byte and in order, and a second edit is a no-op.

use proptest::prelude::*;
use resources::cron;
use resources::host::{self, Entry};
use resources::properties;

/// A line terminator, mostly `\n`.
fn term() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just("\n"), 1 => Just("\r\n")]
}

/// Lines a hosts file may hold besides the managed one.
fn hosts_line() -> impl Strategy<Value = String> {
    let name = "[a-z][a-z0-9.-]{0,10}";
    prop_oneof![
        Just(String::new()),
        "#[ -~]{0,30}".prop_map(|c| c),
        "[ \t]{0,3}".prop_map(|w| w),
        (
            "(10|127|192)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            "[ \t]{1,3}",
            name,
            proptest::collection::vec(name, 0..3),
            proptest::option::of("[ -~]{0,12}")
        )
            .prop_map(|(ip, ws, n, aliases, comment)| {
                let mut l = format!("{ip}{ws}{n}");
                for a in aliases {
                    l.push(' ');
                    l.push_str(&a);
                }
                if let Some(c) = comment {
                    l.push_str(" #");
                    l.push_str(&c);
                }
                l
            }),
        "[ -~]{0,40}".prop_map(|junk| junk),
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

/// Raw lines (with terminators) not selected by `owned`, in order; the
/// last one without its terminator, which an append may add.
fn kept(text: &str, owned: impl Fn(&str) -> bool) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split_inclusive('\n').filter(|l| !owned(l)).collect();
    if let Some(last) = lines.last_mut() {
        *last = last.trim_end_matches('\n');
    }
    lines
}

fn hosts_owned(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |l: &str| {
        let data = l.split('#').next().unwrap_or("");
        let mut f = data.split_whitespace();
        f.next().is_some() && f.next().is_some_and(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Unmanaged lines compared: all but the last kept verbatim, the last one
/// may have gained the newline an appended entry needs.
fn same_kept(old: &[&str], new: &[&str]) -> bool {
    if old.len() != new.len() {
        return false;
    }
    old.iter().zip(new).enumerate().all(|(i, (a, b))| {
        a == b
            || (i + 1 == old.len()
                && b.trim_end_matches(['\r', '\n']) == a.trim_end_matches(['\r', '\n']))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn hosts_edit_keeps_every_other_line(
        lines in proptest::collection::vec((hosts_line(), term()), 0..12),
        last_term in any::<bool>(),
        name in "db[0-9]{1,2}",
        managed_at in proptest::option::of(0usize..12),
        present in any::<bool>(),
        aliases in proptest::collection::vec("[a-z]{1,6}", 0..3),
    ) {
        let mut lines = lines;
        if let Some(i) = managed_at {
            let i = i.min(lines.len());
            lines.insert(i, (format!("192.168.1.1   {name} old"), "\n"));
        }
        let old = file_of(&lines, last_term);
        let entry = Entry { ip: "10.0.0.5".parse().unwrap(), name: name.clone(), aliases, comment: None };
        let entry = present.then_some(&entry);
        let new = host::edit(&old, &name, entry);
        let owned = hosts_owned(&name);
        prop_assert!(same_kept(&kept(&old, &owned), &kept(&new, &owned)), "old {:?}\nnew {:?}", old, new);
        prop_assert_eq!(host::edit(&new, &name, entry), new.clone(), "not idempotent");
        let managed: Vec<&str> = new.lines().filter(|l| owned(l)).collect();
        match entry {
            Some(e) => prop_assert_eq!(managed, vec![e.render()]),
            None => prop_assert!(managed.is_empty()),
        }
    }

    #[test]
    fn crontab_edit_keeps_every_unmarked_line(
        before in proptest::collection::vec(("[ -~]{0,30}|[A-Z_]{1,6}=[a-z]{0,5}|@daily [a-z/]{1,10}", term()), 0..8),
        after in proptest::collection::vec(("[ -~]{0,30}|@hourly [a-z/]{1,10}", term()), 0..8),
        has_block in any::<bool>(),
        present in any::<bool>(),
        last_term in any::<bool>(),
    ) {
        let title = "nightly backup";
        let marker = cron::marker(title);
        let not_marker = |v: &Vec<(String, &'static str)>| v.iter().all(|(l, _)| l.trim_end() != marker);
        prop_assume!(not_marker(&before) && not_marker(&after));
        let head = file_of(&before, true);
        let tail = file_of(&after, last_term);
        let old_block = format!("{marker}\nPATH=/usr/bin\n@weekly /usr/bin/old\n");
        let old = if has_block { format!("{head}{old_block}{tail}") } else { format!("{head}{tail}") };
        let block = format!("{marker}\n@daily /usr/bin/new --flag\n");
        let block = present.then_some(block.as_str());
        let new = cron::edit(&old, title, block);
        let expected = match (has_block, block) {
            (true, Some(b)) => format!("{head}{b}{tail}"),
            (true, None) => format!("{head}{tail}"),
            (false, Some(b)) => {
                let mut s = format!("{head}{tail}");
                if !s.is_empty() && !s.ends_with('\n') { s.push('\n'); }
                s + b
            }
            (false, None) => old.clone(),
        };
        prop_assert_eq!(&new, &expected);
        prop_assert_eq!(cron::edit(&new, title, block), new.clone(), "not idempotent");
    }

    #[test]
    fn properties_edit_keeps_every_other_logical_line(
        lines in proptest::collection::vec((
            prop_oneof![
                "[a-z]{1,5}[ ]?[=:][ ]?[ -~&&[^\\\\]]{0,15}",
                "[#!][ -~]{0,20}",
                Just(String::new()),
                "[ \t]{1,3}[a-z.]{1,8}=x",
                "jdbc\\.(url|password|user)[ ]?=[a-z:/]{0,10}",
                // An entry continued on the next line (odd trailing backslash).
                "[a-z]{1,5}=[a-z]{0,5}\\\\",
            ],
            term(),
        ), 0..12),
        last_term in any::<bool>(),
        url in "[a-z:/?&=.0-9]{0,30}",
        remove_user in any::<bool>(),
        old_mac in any::<bool>(),
    ) {
        // A lone `\r` ends a line in .properties too (files from old Macs);
        // such a file uses it throughout. (Mixed with `\n`, removing the line
        // between `a\r` and a blank `\n` makes them one `\r\n`: same
        // properties, one blank line less.)
        let lines: Vec<(String, &str)> = if old_mac {
            lines.into_iter().map(|(l, _)| (l, "\r")).collect()
        } else {
            lines
        };
        let old = file_of(&lines, last_term);
        let set = vec![
            ("jdbc.url".to_string(), url),
            ("jdbc.password".to_string(), "p@ss w=rd:\\x".to_string()),
        ];
        let remove: Vec<String> = if remove_user { vec!["jdbc.user".into()] } else { vec![] };
        let new = properties::edit(&old, &set, &remove);
        let managed = |k: &str| set.iter().any(|(s, _)| s == k) || remove.iter().any(|r| r == k);
        let unmanaged = |text: &str| -> Vec<String> {
            properties::items(text)
                .into_iter()
                .filter(|i| i.entry.as_ref().is_none_or(|(k, _)| !managed(k)))
                .map(|i| text[i.span].to_string())
                .collect()
        };
        let (a, b) = (unmanaged(&old), unmanaged(&new));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        prop_assert!(same_kept(&a, &b), "old {:?}\nnew {:?}", old, new);
        let pairs = properties::parse(&new);
        for (k, v) in &set {
            prop_assert_eq!(properties::lookup(&pairs, k), Some(v.as_str()), "{} in {:?}", k, new);
        }
        if remove_user {
            prop_assert_eq!(properties::lookup(&pairs, "jdbc.user"), None);
        }
        prop_assert_eq!(properties::edit(&new, &set, &remove), new.clone(), "not idempotent");
    }
}
