//! Why a node's catalog did not compile: [`CompileError`] is where (file and
//! line of the manifest item, when there is one), what kind of problem (a
//! [`CompileErrorKind`] a caller or a test can match on), and a hint for the
//! person; [`CompileErrors`] is every error of one compile, since a compile
//! reports all it finds rather than the first.
//!
//! The printed text is the contract people and the bad-input corpus rely
//! on (`roles/r.yaml:4: unknown resource type 'flie'` then `  hint: ...`),
//! so each kind renders exactly the message it stands for. Every message is
//! redacted on the way out: a rendered attribute may hold a secret.

use std::fmt;

use resources::{redact, Location, ResourceError, ResourceId};

/// One compile error.
#[derive(Debug)]
pub struct CompileError {
    /// The manifest file and line; none for an error that spans several
    /// places (a dependency cycle names each of them itself).
    pub location: Option<Location>,
    /// Boxed, as in `just`: the kinds are large and errors are rare, so a
    /// `Result` on the happy path stays small.
    pub kind: Box<CompileErrorKind>,
    pub hint: Option<String>,
}

/// What went wrong.
#[derive(Debug)]
pub enum CompileErrorKind {
    /// A manifest file could not be read.
    Unreadable { message: String },
    /// A manifest is not YAML, or not shaped as one (`include:` and
    /// `resources:`, each item `- TYPE: TITLE`).
    Malformed { message: String },
    /// site.yaml has no entry for the node and no `default:`.
    Unclassified { node: String },
    /// site.yaml or a resource item is well-formed YAML with a value of the
    /// wrong kind (a role that is not a string, a bad node pattern...).
    Structure { message: String },
    /// An `include:` or role names a file outside the manifests dir.
    BadManifestName { name: String },
    /// Manifests that include each other, in include order.
    IncludeCycle { chain: Vec<String> },
    /// `- TYPE:` names no registered type.
    UnknownType { type_name: String },
    /// `for_each:` is not a list, range, matrix or lookup, or its lookup
    /// failed.
    ForEach { message: String },
    /// The title rendered to something other than a non-empty string.
    Title { type_name: String },
    /// Rendering a string failed (Handlebars, an unknown variable, a Hiera
    /// lookup): `subject` is `title` or `ID: attribute 'KEY'`.
    Render { subject: String, message: String },
    /// A metaparameter (require, notify, tags, noop...) has a bad value.
    Metaparameter { id: ResourceId, message: String },
    /// An attribute the compiler itself reads (template, source, content)
    /// is wrong.
    Attribute { id: ResourceId, message: String },
    /// The template of `template:` did not render.
    Template { id: ResourceId, message: String },
    /// The resource type refused the attributes.
    Invalid(ResourceError),
    /// Two items declare the same resource.
    Duplicate { id: ResourceId, first: Location },
    /// A metaparameter names a resource the catalog does not have;
    /// `relation` is how it names it ("requires", "notifies", ...).
    UnknownReference {
        id: ResourceId,
        relation: &'static str,
        target: ResourceId,
    },
    /// Resources that depend on each other in a circle, each with where it
    /// is declared.
    DependencyCycle { cycle: Vec<(ResourceId, Location)> },
}

impl CompileError {
    pub fn new(location: Location, kind: CompileErrorKind) -> CompileError {
        CompileError {
            location: Some(location),
            kind: Box::new(kind),
            hint: None,
        }
    }

    /// An error that has no one place (a dependency cycle).
    pub fn nowhere(kind: CompileErrorKind) -> CompileError {
        CompileError {
            location: None,
            kind: Box::new(kind),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CompileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CompileErrorKind as K;
        match self {
            K::Unreadable { message } => write!(f, "cannot read manifest: {message}"),
            K::Malformed { message } => write!(f, "malformed manifest: {message}"),
            K::Unclassified { node } => write!(f, "node '{node}' matches no entry of site.yaml"),
            K::Structure { message } | K::ForEach { message } => f.write_str(message),
            K::BadManifestName { name } => write!(
                f,
                "manifest name '{name}' must be relative to the manifests dir"
            ),
            K::IncludeCycle { chain } => write!(f, "include cycle: {}", chain.join(" -> ")),
            K::UnknownType { type_name } => write!(f, "unknown resource type '{type_name}'"),
            K::Title { type_name } => {
                write!(f, "{type_name}: the title must be a non-empty string")
            }
            K::Render { subject, message } => write!(f, "{subject}: {message}"),
            K::Metaparameter { id, message }
            | K::Attribute { id, message }
            | K::Template { id, message } => write!(f, "{id}: {message}"),
            K::Invalid(e) => write!(f, "{e}"),
            K::Duplicate { id, first } => {
                write!(
                    f,
                    "duplicate declaration of {id}: first declared at {first}"
                )
            }
            K::UnknownReference {
                id,
                relation,
                target,
            } => write!(f, "{id} {relation} {target}, which is not in the catalog"),
            K::DependencyCycle { cycle } => {
                f.write_str("dependency cycle: ")?;
                for (id, _) in cycle {
                    write!(f, "{id} -> ")?;
                }
                if let Some((first, _)) = cycle.first() {
                    write!(f, "{first}")?;
                }
                for (id, at) in cycle {
                    write!(f, "\n  {id} at {at}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = match &self.location {
            Some(at) => format!("{at}: {}", self.kind),
            None => self.kind.to_string(),
        };
        if let Some(h) = &self.hint {
            text.push_str("\n  hint: ");
            text.push_str(h);
        }
        f.write_str(&redact::redact(&text))
    }
}

impl std::error::Error for CompileError {}

/// All the errors of one compile; nothing is applied when there is any.
#[derive(Debug)]
pub struct CompileErrors(pub Vec<CompileError>);

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

impl From<CompileError> for CompileErrors {
    fn from(e: CompileError) -> Self {
        CompileErrors(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(line: usize) -> Location {
        Location {
            file: Path::new("roles/r.yaml").into(),
            line,
        }
    }

    #[test]
    fn renders_location_kind_and_hint_as_people_read_them() {
        let e = CompileError::new(
            at(4),
            CompileErrorKind::UnknownType {
                type_name: "flie".into(),
            },
        )
        .hint("known types: file");
        assert_eq!(
            e.to_string(),
            "roles/r.yaml:4: unknown resource type 'flie'\n  hint: known types: file"
        );
        let id = ResourceId::new("file", "/etc/motd");
        let dup = CompileError::new(
            at(4),
            CompileErrorKind::Duplicate {
                id: id.clone(),
                first: at(2),
            },
        );
        assert_eq!(
            dup.to_string(),
            "roles/r.yaml:4: duplicate declaration of file[/etc/motd]: first declared at roles/r.yaml:2"
        );
        let b = ResourceId::new("exec", "b");
        let cycle = CompileError::nowhere(CompileErrorKind::DependencyCycle {
            cycle: vec![(id.clone(), at(2)), (b.clone(), at(5))],
        })
        .hint("remove one edge");
        assert_eq!(
            cycle.to_string(),
            "dependency cycle: file[/etc/motd] -> exec[b] -> file[/etc/motd]\n  \
             file[/etc/motd] at roles/r.yaml:2\n  exec[b] at roles/r.yaml:5\n  hint: remove one edge"
        );
        let all = CompileErrors(vec![dup, cycle]);
        assert_eq!(all.to_string().lines().count(), 5);
    }
}
