//! `package` resource type (placeholder until implemented).

use crate::core::{Decl, Resource, ResourceError, TypeEnv};

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    Err(ResourceError::Invalid(format!("{}: type not implemented yet", decl.id)))
}
