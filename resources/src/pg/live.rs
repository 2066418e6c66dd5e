//! What the real-server tests of the SQL-speaking types (`pg_conf`,
//! `pg_database`, `pg_hba`, `pg_role`) share around a [`TestCluster`]: the
//! scene (a running primary, a context, and the temp dirs they live in),
//! a resource of the type declared against that server, and converging it
//! with the proof that a second `check` finds nothing. Compiled for tests
//! only; the cluster itself is [`crate::pg::testing`]'s.

use std::path::Path;

use serde_json::json;

use crate::core::{Context, Decl, Resource, ResourceError, TypeEnv};
use crate::pg::testing::{context, decl, TestCluster, PASSWORD};

/// A running primary on 127.0.0.1 with a context rooted at `/` (the SQL
/// types write no node files through it). Fields drop in order: the
/// server stops before its data dir is removed.
pub struct Scene {
    pub c: TestCluster,
    pub cx: Context,
    _dir: tempfile::TempDir,
    _state: tempfile::TempDir,
}

impl Scene {
    pub fn primary() -> Scene {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = tempfile::tempdir().expect("a temp dir");
        Scene {
            c: TestCluster::primary(dir.path(), "127.0.0.1"),
            cx: context(Path::new("/"), state.path()),
            _dir: dir,
            _state: state,
        }
    }

    /// A superuser connection to the scene's server that has run `setup`
    /// (the roles and objects a test starts from).
    pub fn admin(&self, setup: &str) -> postgres::Client {
        let mut admin = self.c.conn().connect().expect("a superuser connection");
        admin.batch_execute(setup).expect("the setup SQL");
        admin
    }
}

/// A type's `build`, as the registry holds it.
type Build = fn(&Decl, &TypeEnv) -> Result<Box<dyn Resource>, ResourceError>;

/// `- <type_name>: <title>` with `attrs`, connecting to `c` as its
/// superuser with the test password; `sensitive` names the attributes
/// marked Sensitive, as a manifest would.
pub fn declared(
    c: &TestCluster,
    build: Build,
    type_name: &str,
    title: &str,
    mut attrs: serde_json::Value,
    sensitive: &[&str],
) -> Box<dyn Resource> {
    attrs["port"] = json!(c.port);
    attrs["superuser_password"] = json!(PASSWORD);
    build(
        &decl(type_name, title, attrs, sensitive),
        &TypeEnv::default(),
    )
    .expect("the declaration builds")
}

/// Checks and applies `r`, asserts that a second check is in sync, and
/// returns the change lines of the first.
pub fn converge(r: &dyn Resource, cx: &Context) -> Vec<String> {
    let plan = r.check(cx).expect("check");
    let lines = crate::testing::lines(&plan);
    r.apply(cx, plan).expect("apply");
    assert!(
        r.check(cx).expect("check again").is_empty(),
        "{} not idempotent",
        r.id()
    );
    lines
}
