//! Lints: declarations that compile and apply but are probably wrong or
//! unsafe, for `agent validate` to warn about (never an error: a site may
//! mean it). Each resource type knows its own risks (`Resource::lints`:
//! pg_hba `trust` for remote clients, a world-readable file holding a
//! Sensitive value, an exec with no guard that runs on every apply); this
//! module walks the catalog and says where each one was declared.

use crate::engine::catalog::Catalog;

/// One line per warning, `<file>:<line>: <id>: <message>`, in declaration
/// order; Sensitive values are redacted.
pub fn lint(catalog: &Catalog) -> Vec<String> {
    catalog
        .entries
        .iter()
        .flat_map(|e| {
            e.resource.lints().into_iter().map(move |msg| {
                let line = format!("{}: {}: {msg}", e.location, e.id);
                resources::redact::redact(&line).into_owned()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::{Entry, Meta};
    use resources::core::TypeEnv;
    use resources::{registry, Decl, Location, ResourceId};
    use serde_json::{json, Value};

    fn entry(type_name: &str, title: &str, attrs: Value, sensitive: &[&str], line: usize) -> Entry {
        let location = Location {
            file: std::path::Path::new("roles/r.yaml").into(),
            line,
        };
        let decl = Decl {
            id: ResourceId::new(type_name, title),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            sensitive: sensitive.iter().map(|s| s.to_string()).collect(),
            location: location.clone(),
        };
        let build = registry::lookup(type_name).expect("registered type");
        Entry::new(
            decl.id.clone(),
            build(&decl, &TypeEnv::default()).expect("valid declaration"),
            Meta::default(),
            location,
        )
    }

    fn catalog(entries: Vec<Entry>) -> Catalog {
        Catalog::build(entries).map_err(|_| "graph").unwrap()
    }

    #[test]
    fn a_clean_catalog_has_no_warnings() {
        let c = catalog(vec![
            entry(
                "file",
                "/etc/motd",
                json!({"content": "hi", "mode": "0644"}),
                &[],
                2,
            ),
            entry(
                "file",
                "/etc/pw",
                json!({"content": "pw=x", "mode": "0600"}),
                &["content"],
                4,
            ),
            entry(
                "exec",
                "init",
                json!({"command": "true", "creates": "/var/done"}),
                &[],
                7,
            ),
            entry(
                "pg_hba",
                "/data",
                json!({"rules": ["host all all 127.0.0.1/32 trust"]}),
                &[],
                9,
            ),
        ]);
        assert_eq!(lint(&c), Vec::<String>::new());
    }

    #[test]
    fn each_risk_is_reported_with_file_line_and_id() {
        let c = catalog(vec![
            entry(
                "exec",
                "reload",
                json!({"command": "systemctl reload x"}),
                &[],
                3,
            ),
            entry(
                "file",
                "/etc/app.pw",
                json!({"content": "pw=Zq8-lint-secret", "mode": "0644"}),
                &["content"],
                5,
            ),
            entry(
                "pg_hba",
                "/var/lib/postgresql/15/main",
                json!({"rules": ["host all all 0.0.0.0/0 trust", "local all all trust"]}),
                &[],
                12,
            ),
        ]);
        let w = lint(&c);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(
            w[0].starts_with("roles/r.yaml:3: exec[reload]: "),
            "{}",
            w[0]
        );
        assert!(w[0].contains("runs on every apply"), "{}", w[0]);
        assert!(
            w[1].starts_with("roles/r.yaml:5: file[/etc/app.pw]: "),
            "{}",
            w[1]
        );
        assert!(w[1].contains("every user"), "{}", w[1]);
        assert!(!w[1].contains("Zq8-lint-secret"));
        assert!(
            w[2].starts_with("roles/r.yaml:12: pg_hba[/var/lib/postgresql/15/main]: "),
            "{}",
            w[2]
        );
        assert!(w[2].contains("0.0.0.0/0"), "{}", w[2]);
    }
}
