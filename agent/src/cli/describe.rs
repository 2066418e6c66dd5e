//! `agent describe [TYPE]`: the resource types and their attributes, like
//! `puppet describe`, from `resources::docs` — the same text as the
//! README's type table (a test below keeps the two equal).

use anyhow::{bail, Result};

use crate::engine::report;

/// Flags of `agent describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The type to describe (`file`, `host`, `pg_role`…); none: every type
    /// with a one-line summary.
    pub type_name: Option<String>,
    /// With no TYPE: every type in full (Puppet's --list is the default).
    #[arg(short, long)]
    pub list: bool,
}

pub fn run(args: DescribeArgs) -> Result<u8> {
    use resources::docs;
    match &args.type_name {
        Some(name) => {
            let Some(doc) = docs::of(name) else {
                bail!(
                    "no resource type {name:?}\nhint: the types are {}",
                    resources::registry::names().join(", ")
                );
            };
            report::print(&full(doc));
        }
        None if args.list => {
            let all: Vec<String> = docs::TYPES.iter().map(full).collect();
            report::print(&all.join("\n"));
        }
        None => {
            let width = docs::TYPES.iter().map(|d| d.name.len()).max().unwrap_or(0);
            for d in docs::TYPES {
                report::print(&format!("{:width$} - {}", d.name, first_sentence(d.notes)));
            }
        }
    }
    Ok(0)
}

/// One type in full: its notes, then each attribute.
fn full(doc: &resources::docs::TypeDoc) -> String {
    let mut out = format!(
        "{}\n{}\n\n{}\n\nAttributes\n----------\n",
        doc.name,
        "=".repeat(doc.name.len()),
        wrap(&resources::docs::plain(doc.notes), 78, "")
    );
    for (name, detail) in doc.attribute_list() {
        out.push_str(&format!("- **{name}**"));
        if !detail.is_empty() {
            out.push_str(&format!(": {detail}"));
        }
        out.push('\n');
    }
    out
}

fn first_sentence(md: &str) -> String {
    let text = resources::docs::plain(md);
    // A sentence ends at ". " not after an abbreviation ("e.g. Stash").
    let end = text.match_indices(". ").map(|(i, _)| i).find(|&i| {
        let before = &text[..i];
        !before.ends_with("e.g") && !before.ends_with("i.e")
    });
    match end {
        Some(i) => text[..=i].to_string(),
        None => text,
    }
}

/// Words of `text` in lines of at most `width` columns.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's type table and `agent describe` are one text.
    #[test]
    fn the_readme_table_is_the_reference() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("## Resource types").expect("the section");
        let section = &readme[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        let rows: Vec<&str> = section[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .collect();
        let ours: Vec<String> = resources::docs::TYPES
            .iter()
            .map(|d| d.markdown_row())
            .collect();
        assert_eq!(rows, ours, "README's type table vs resources/src/docs.rs");
    }

    #[test]
    fn a_type_in_full() {
        let text = full(resources::docs::of("host").unwrap());
        assert!(text.starts_with("host\n====\n"), "{text}");
        assert!(text.contains("- **ensure**: present|absent\n"), "{text}");
        assert!(text.contains("- **target**: /etc/hosts\n"), "{text}");
    }
}
