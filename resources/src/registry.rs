//! The one place resource types are registered: type name → constructor,
//! and how the type's titles are spelled ([`TitleRule`]).

use crate::core::{Decl, Resource, ResourceError, TypeEnv};

/// Builds a typed resource from a declaration.
pub type Constructor = fn(&Decl, &TypeEnv) -> Result<Box<dyn Resource>, ResourceError>;

/// How a type's titles name things: two spellings of one thing must be
/// one resource (two would rewrite each other on every run), as Puppet
/// makes a file's title its normalised path and host names case-blind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TitleRule {
    /// A name, taken as written (after trimming).
    Name,
    /// An absolute node path: `//etc/./motd/` is `/etc/motd`.
    Path,
    /// A name compared without case (DNS host names): lower-cased.
    CaseBlind,
}

/// Every type the engine knows, by the name used in manifests.
pub const TYPES: &[(&str, Constructor, TitleRule)] = &[
    ("conf", crate::conf::build, TitleRule::Name),
    ("cron", crate::cron::build, TitleRule::Name),
    ("exec", crate::exec::build, TitleRule::Name),
    ("file", crate::file::build, TitleRule::Path),
    ("group", crate::group::build, TitleRule::Name),
    ("host", crate::host::build, TitleRule::CaseBlind),
    ("package", crate::package::build, TitleRule::Name),
    (
        "patroni_config",
        crate::patroni_config::build,
        TitleRule::Name,
    ),
    ("pg_backup", crate::pg_backup::build, TitleRule::Name),
    ("pg_cluster", crate::pg_cluster::build, TitleRule::Path),
    ("pg_conf", crate::pg_conf::build, TitleRule::Name),
    ("pg_database", crate::pg_database::build, TitleRule::Name),
    ("pg_hba", crate::pg_hba::build, TitleRule::Name),
    ("pg_role", crate::pg_role::build, TitleRule::Name),
    ("pg_standby", crate::pg_standby::build, TitleRule::Path),
    ("port_free", crate::port_free::build, TitleRule::Name),
    ("properties", crate::properties::build, TitleRule::Path),
    ("service", crate::service::build, TitleRule::Name),
    ("user", crate::user::build, TitleRule::Name),
    ("x509_cert", crate::x509_cert::build, TitleRule::Name),
];

/// The constructor of `type_name`, if there is such a type.
pub fn lookup(type_name: &str) -> Option<Constructor> {
    TYPES
        .iter()
        .find(|(name, _, _)| *name == type_name)
        .map(|(_, c, _)| *c)
}

/// Names of all types, for hints in errors.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|(n, _, _)| *n).collect()
}

/// The one spelling of a `type_name` title, used for the resource's id,
/// for references to it, and by the type itself: surrounding white space
/// dropped everywhere (a cron job written trimmed and searched untrimmed
/// was appended again on every run), then the type's [`TitleRule`]. A
/// title with a control character (a newline, a NUL) is refused: it would
/// split a line-based file or fail only at apply. Unknown types keep their
/// title (the compile reports the type).
pub fn normalize_title(type_name: &str, title: &str) -> Result<String, String> {
    let trimmed = title.trim();
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the title {title:?} holds a control character ({:?})",
            c
        ));
    }
    if trimmed.is_empty() {
        return Err("the title is empty".to_string());
    }
    let rule = TYPES
        .iter()
        .find(|(name, _, _)| *name == type_name)
        .map_or(TitleRule::Name, |(_, _, r)| *r);
    match rule {
        TitleRule::Name => Ok(trimmed.to_string()),
        TitleRule::CaseBlind => Ok(trimmed.to_lowercase()),
        TitleRule::Path => {
            if !trimmed.starts_with('/') {
                return Err(format!("the title '{trimmed}' must be an absolute path"));
            }
            // Most titles are written normalised already: kept as they are.
            let normal = trimmed == "/"
                || (!trimmed.ends_with('/')
                    && !trimmed.contains("//")
                    && !trimmed.contains("/./")
                    && !trimmed.ends_with("/."));
            if normal {
                return Ok(trimmed.to_string());
            }
            let parts: Vec<&str> = trimmed
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            Ok(format!("/{}", parts.join("/")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_title;

    #[test]
    fn one_thing_has_one_title() {
        assert_eq!(normalize_title("file", "/etc/.").unwrap(), "/etc");
        assert_eq!(normalize_title("file", "/etc/motd").unwrap(), "/etc/motd");
        assert_eq!(
            normalize_title("file", "//etc/./motd2").unwrap(),
            "/etc/motd2"
        );
        assert_eq!(
            normalize_title("file", "/etc/motd2/").unwrap(),
            "/etc/motd2"
        );
        assert_eq!(
            normalize_title("file", " /etc/motd2 ").unwrap(),
            "/etc/motd2"
        );
        assert_eq!(normalize_title("file", "/a/../b").unwrap(), "/a/../b");
        assert_eq!(normalize_title("file", "//./").unwrap(), "/");
        assert!(normalize_title("file", "etc/motd")
            .unwrap_err()
            .contains("absolute"));
        assert!(normalize_title("file", "/etc/a\nb")
            .unwrap_err()
            .contains("control"));
        assert!(normalize_title("file", "/etc/a\0b")
            .unwrap_err()
            .contains("control"));
        assert_eq!(normalize_title("host", "DB1").unwrap(), "db1");
        assert_eq!(normalize_title("cron", "  nightly  ").unwrap(), "nightly");
        assert!(normalize_title("cron", "a\nb").is_err());
        assert!(normalize_title("exec", "   ").is_err());
        assert_eq!(normalize_title("service", "Stash").unwrap(), "Stash");
    }
}
