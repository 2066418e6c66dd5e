//! The one place resource types are registered: type name → constructor.

use crate::core::{Decl, Resource, ResourceError, TypeEnv};

/// Builds a typed resource from a declaration.
pub type Constructor = fn(&Decl, &TypeEnv) -> Result<Box<dyn Resource>, ResourceError>;

/// Every type the engine knows, by the name used in manifests.
pub const TYPES: &[(&str, Constructor)] = &[
    ("cron", crate::cron::build),
    ("exec", crate::exec::build),
    ("file", crate::file::build),
    ("host", crate::host::build),
    ("package", crate::package::build),
    ("pg_backup", crate::pg_backup::build),
    ("pg_cluster", crate::pg_cluster::build),
    ("pg_conf", crate::pg_conf::build),
    ("pg_database", crate::pg_database::build),
    ("pg_hba", crate::pg_hba::build),
    ("pg_role", crate::pg_role::build),
    ("pg_standby", crate::pg_standby::build),
    ("properties", crate::properties::build),
    ("service", crate::service::build),
];

/// The constructor of `type_name`, if there is such a type.
pub fn lookup(type_name: &str) -> Option<Constructor> {
    TYPES
        .iter()
        .find(|(name, _)| *name == type_name)
        .map(|(_, c)| *c)
}

/// Names of all types, for hints in errors.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|(n, _)| *n).collect()
}
