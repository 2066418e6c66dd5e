//! Tests of the engine's use of type capabilities: what it stages is what
//! a type declares, whatever the type is called.

use std::path::PathBuf;

use resources::backup::BackupStore;
use resources::{Location, Resource, ResourceError, ResourceId};

use super::*;
use crate::engine::catalog::Meta;

/// A made-up type that writes `text` to `path` through the stager, and
/// says whether its writes may be staged.
struct Note {
    id: ResourceId,
    path: String,
    text: &'static str,
    stages: bool,
}

impl Resource for Note {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let old = cx.stager().read_optional(&cx.path(&self.path)?)?;
        Ok(if old.as_deref() == Some(self.text.as_bytes()) {
            Plan::in_sync()
        } else {
            Plan::new(
                vec![Change::new("content", None, Some(self.text.into()))],
                (),
            )
        })
    }

    fn apply(&self, cx: &Context, _: Plan) -> Result<(), ResourceError> {
        let path = cx.path(&self.path)?;
        cx.stager().write_atomic(&path, self.text.as_bytes(), None)
    }

    fn stages_writes(&self) -> bool {
        self.stages
    }
}

/// What was on the disk at `path` as each resource finished.
struct OnDisk(PathBuf, Vec<Option<Vec<u8>>>);

impl Observer for OnDisk {
    fn resource_done(&mut self, _: &Entry, _: &Outcome) {
        self.1.push(std::fs::read(&self.0).ok());
    }
}

/// Runs `note[a]` then `note[b]`, both writing `/a`; returns what the disk
/// held at `/a` after each, and at the end.
fn run_notes(stages: bool) -> (Vec<Option<Vec<u8>>>, Vec<u8>) {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cx = Context::new(root.path(), BackupStore::new(state.path()));
    let note = |title: &str, text| {
        let id = ResourceId::new("note", title);
        let resource = Note {
            id: id.clone(),
            path: "/a".into(),
            text,
            stages,
        };
        Entry::new(id, Box::new(resource), Meta::default(), Location::default())
    };
    let catalog = Catalog::build(vec![note("a", "one\n"), note("b", "one\ntwo\n")])
        .map_err(|_| "graph")
        .unwrap();
    let mut seen = OnDisk(root.path().join("a"), vec![]);
    let outcomes = apply(&catalog, &cx, Options::default(), &mut seen);
    assert!(outcomes.iter().all(|o| o.status == Status::Changed));
    (seen.1, std::fs::read(root.path().join("a")).unwrap())
}

#[test]
fn a_type_that_declares_staging_is_staged_whatever_its_name() {
    let (seen, end) = run_notes(true);
    // Nothing on the disk until the end of the run: one commit for both.
    assert_eq!(seen, vec![None, None]);
    assert_eq!(end, b"one\ntwo\n");
}

#[test]
fn a_type_that_does_not_declare_it_writes_through() {
    let (seen, end) = run_notes(false);
    assert_eq!(
        seen,
        vec![Some(b"one\n".to_vec()), Some(b"one\ntwo\n".to_vec())]
    );
    assert_eq!(end, b"one\ntwo\n");
}
