//! `file` resource type: a regular file, directory or symlink at a node path
//! (under `--root`), with its content, mode and ownership — or its absence.
//!
//! `check` lstats first and compares cheap properties before reading: a
//! no-op run over many files costs one stat and (for managed content) one
//! read of equal-sized files, no hashing. The final path component is never
//! followed: a link is a thing this type manages, not a way out of the root.

use std::borrow::Cow;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::validate::ValidateCmd;
use crate::{accounts, atomic, diff, mode, stage};

/// Attributes of `- file: /absolute/node/path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `file` (default), `directory`, `link`, `absent`, or `present`
    /// (creates a file when nothing is there, else keeps whatever type is there).
    ensure: Option<String>,
    /// The exact content of the file (`template:` is rendered into this by the
    /// engine). Exclusive with `source`.
    content: Option<String>,
    /// A file on the machine running the agent whose bytes become the content
    /// (resolved by the engine). Exclusive with `content`.
    source: Option<String>,
    /// Where the link points (`ensure: link` only), written as given.
    target: Option<String>,
    /// Owner, by name (or numeric uid). Only managed when given.
    owner: Option<String>,
    /// Group, by name (or numeric gid). Only managed when given.
    group: Option<String>,
    /// Permission bits in octal: `"0644"`. Quote it: a bare `644` is read as
    /// the octal digits 644. Only managed when given; new files get 0644
    /// (0600 when the content is Sensitive), new directories 0755.
    mode: Option<Value>,
    /// Save the old content in the backup store before a file is replaced
    /// or removed (default true).
    backup: Option<bool>,
    /// Allow replacing a directory by a file or link, or removing it with
    /// `ensure: absent` (default false: that is an error). With `backup`
    /// (the default) every regular file in it is saved first, up to
    /// [`FORCE_BACKUP_MAX_BYTES`] in all; a larger tree is refused unless
    /// `backup: false`.
    force: Option<bool>,
    /// A command that checks the new content before it replaces the old
    /// (Puppet's attribute): `%` stands for the path of a temp file holding
    /// it (`haproxy -c -f %`). A non-zero exit fails the resource with the
    /// command's output and changes nothing. Needs managed content.
    validate_cmd: Option<String>,
    /// What stands for the temp file in `validate_cmd` (default `%`).
    validate_replacement: Option<String>,
}

/// The most a forced removal of a directory saves in the backup store
/// (every regular file below it, in all); beyond it the removal is refused
/// unless `backup: false` says the content may go unsaved.
pub const FORCE_BACKUP_MAX_BYTES: u64 = 64 << 20;

/// `ensure`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ensure {
    File,
    Directory,
    Link,
    Absent,
    Present,
}

/// What is (or should be) at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    File,
    Directory,
    Link,
    /// fifo, socket, device: only `present` keeps it.
    Other,
}

impl Kind {
    fn of(meta: &Metadata) -> Kind {
        let t = meta.file_type();
        if t.is_symlink() {
            Kind::Link
        } else if t.is_dir() {
            Kind::Directory
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    /// The value shown in an `ensure` change (`None` prints as absent).
    fn name(self) -> Option<String> {
        let s = match self {
            Kind::Missing => return None,
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Link => "link",
            Kind::Other => "special file",
        };
        Some(s.to_string())
    }
}

/// Where the desired content comes from.
#[derive(Debug)]
enum Body {
    /// Content is not managed.
    Unmanaged,
    Content(Vec<u8>),
    Source(PathBuf),
}

/// Old and new bytes of a file whose content differs.
type Delta = (Vec<u8>, Vec<u8>);

/// What `apply` does, as `check` decided. Apply still looks at the path
/// (its guard, its mode and owner), but what to write comes from here.
#[derive(Debug, Default)]
struct Steps {
    /// Nothing was there: apply takes check's word (a first run creates
    /// thousands of files) and its write replaces whatever may have
    /// appeared since, atomically — never a directory (see the guard).
    found_missing: bool,
    /// The bytes to write, when a file is created or its content replaced:
    /// read (a `source`) and compared once, in check.
    content: Option<Vec<u8>>,
    /// The link must be pointed at the target.
    relink: bool,
    /// Mode, owner or group differ on what is there.
    attrs: bool,
}

/// A validated `file` resource.
#[derive(Debug)]
pub struct File {
    id: ResourceId,
    /// The title without trailing slashes.
    node_path: String,
    ensure: Ensure,
    body: Body,
    target: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<u32>,
    backup: bool,
    force: bool,
    sensitive: bool,
    /// Checks new content before it is written.
    validate: Option<ValidateCmd>,
}

/// Builds a `file` from its declaration.
pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    Ok(Box::new(File::new(decl)?))
}

impl File {
    pub fn new(decl: &Decl) -> Result<File, ResourceError> {
        let p: Params = decl.params()?;
        let id = &decl.id;
        let bad = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
        let title = decl.id.title.as_str();
        let node_path = match title.trim_end_matches('/') {
            "" => "/".to_string(),
            t => t.to_string(),
        };
        if !node_path.starts_with('/')
            || Path::new(&node_path)
                .components()
                .any(|c| c == Component::ParentDir)
        {
            return Err(bad(format!(
                "title '{title}' must be an absolute path without '..'"
            )));
        }
        let ensure = match p.ensure.as_deref().unwrap_or("file") {
            "file" => Ensure::File,
            "directory" => Ensure::Directory,
            "link" => Ensure::Link,
            "absent" => Ensure::Absent,
            "present" => Ensure::Present,
            other => {
                return Err(bad(format!(
                    "ensure '{other}': expected file, directory, link, absent or present"
                )))
            }
        };
        let body = match (p.content, p.source) {
            (Some(_), Some(_)) => {
                return Err(bad("content and source are mutually exclusive".into()))
            }
            (Some(c), None) => Body::Content(c.into_bytes()),
            (None, Some(s)) if Path::new(&s).is_absolute() => Body::Source(PathBuf::from(s)),
            (None, Some(s)) => return Err(bad(format!("source '{s}' must be an absolute path"))),
            (None, None) => Body::Unmanaged,
        };
        // The root itself may only be a directory: `file: /` with
        // `ensure: absent, force: true` deleted the whole --root.
        if node_path == "/" && ensure != Ensure::Directory {
            return Err(bad(
                "the root '/' can only be managed as a directory (ensure: directory)".into(),
            ));
        }
        if !matches!(body, Body::Unmanaged) && !matches!(ensure, Ensure::File | Ensure::Present) {
            return Err(bad("content/source need ensure: file or present".into()));
        }
        match (&p.target, ensure) {
            (Some(t), Ensure::Link) if !t.is_empty() => {}
            (_, Ensure::Link) => return Err(bad("ensure: link needs a target".into())),
            (Some(_), _) => return Err(bad("target is only valid with ensure: link".into())),
            (None, _) => {}
        }
        let mode = match &p.mode {
            None => None,
            Some(Value::String(s)) => Some(mode::parse_mode(s).map_err(|e| bad(e.to_string()))?),
            Some(Value::Number(n)) if n.is_u64() => {
                Some(mode::parse_mode(&n.to_string()).map_err(|e| bad(e.to_string()))?)
            }
            Some(other) => {
                return Err(bad(format!(
                    "mode {other}: expected an octal string like \"0644\""
                )))
            }
        };
        if mode.is_some() && ensure == Ensure::Link {
            return Err(bad("mode does not apply to links".into()));
        }
        let validate = ValidateCmd::new(id, p.validate_cmd, p.validate_replacement)?;
        if validate.is_some() && matches!(body, Body::Unmanaged) {
            return Err(bad(
                "validate_cmd checks new content: it needs content, source or template".into(),
            ));
        }
        Ok(File {
            id: decl.id.clone(),
            node_path,
            ensure,
            body,
            target: p.target,
            owner: p.owner,
            group: p.group,
            mode,
            backup: p.backup.unwrap_or(true),
            force: p.force.unwrap_or(false),
            sensitive: decl.is_sensitive("content") || decl.is_sensitive("source"),
            validate,
        })
    }

    /// The kind wanted, given what is there now (`present` depends on it).
    fn want(&self, current: Kind) -> Kind {
        match self.ensure {
            Ensure::File => Kind::File,
            Ensure::Directory => Kind::Directory,
            Ensure::Link => Kind::Link,
            Ensure::Absent => Kind::Missing,
            Ensure::Present if current == Kind::Missing => Kind::File,
            Ensure::Present => current,
        }
    }

    /// Refuses what needs `force`, and content on a non-file kept by `present`.
    fn guard(&self, current: Kind, want: Kind) -> Result<(), ResourceError> {
        if current == Kind::Directory && want != Kind::Directory && !self.force {
            let what = if want == Kind::Missing {
                "remove"
            } else {
                "replace"
            };
            return Err(ResourceError::Failed(format!(
                "{}: {} is a directory; set force: true to {what} it",
                self.id, self.node_path
            )));
        }
        if want != Kind::File && !matches!(self.body, Body::Unmanaged) {
            return Err(ResourceError::Invalid(format!(
                "{}: {} is a {}, its content cannot be managed",
                self.id,
                self.node_path,
                want.name().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Desired content size without reading it, when content is managed.
    fn body_len(&self) -> Result<Option<u64>, ResourceError> {
        match &self.body {
            Body::Unmanaged => Ok(None),
            Body::Content(c) => Ok(Some(c.len() as u64)),
            Body::Source(s) => Ok(Some(
                fs::metadata(s).map_err(|e| ResourceError::io(s, e))?.len(),
            )),
        }
    }

    fn body_bytes(&self) -> Result<Option<Vec<u8>>, ResourceError> {
        Ok(self.body()?.map(Cow::into_owned))
    }

    /// The desired content, borrowed when it is in the catalog.
    fn body(&self) -> Result<Option<Cow<'_, [u8]>>, ResourceError> {
        match &self.body {
            Body::Unmanaged => Ok(None),
            Body::Content(c) => Ok(Some(Cow::Borrowed(c))),
            Body::Source(s) => Ok(Some(Cow::Owned(
                fs::read(s).map_err(|e| ResourceError::io(s, e))?,
            ))),
        }
    }

    /// Old and new bytes of an existing regular file whose managed content
    /// differs; `None` when equal or unmanaged. A file of the wanted size
    /// is read once, without a stat (`meta` has its size), and compared in
    /// place.
    fn content_delta(&self, path: &Path, meta: &Metadata) -> Result<Option<Delta>, ResourceError> {
        let Some(want_len) = self.body_len()? else {
            return Ok(None);
        };
        let io = |e| ResourceError::io(path, e);
        let old = if meta.len() == want_len {
            // One byte more than wanted tells a file that grew since the lstat.
            let old = atomic::read_at_most(path, want_len + 1).map_err(io)?;
            let new = self.body()?.unwrap_or_default();
            if old[..] == new[..] {
                return Ok(None);
            }
            if old.len() as u64 <= want_len {
                return Ok(Some((old, new.into_owned())));
            }
            fs::read(path).map_err(io)?
        } else {
            // Different sizes: read only for the diff.
            fs::read(path).map_err(io)?
        };
        Ok(Some((old, self.body_bytes()?.unwrap_or_default())))
    }

    /// The mode wanted for a path whose mode is `have`: the declared one;
    /// else, for Sensitive content, `have` without the bits for other users
    /// (a secret is never left world-readable, group access is kept); else
    /// none (not managed).
    fn wanted_mode(&self, have: u32) -> Option<u32> {
        match self.mode {
            Some(m) => Some(m),
            None if self.sensitive && have & 0o007 != 0 => Some(have & !0o007),
            None => None,
        }
    }

    /// Mode and ownership differences of an existing path.
    fn attr_changes(
        &self,
        cx: &Context,
        kind: Kind,
        meta: &Metadata,
    ) -> Result<Vec<Change>, ResourceError> {
        let mut changes = vec![];
        let wanted = match kind {
            Kind::File | Kind::Directory => self.wanted_mode(meta.mode() & 0o7777),
            _ => self.mode,
        };
        if let Some(mode) = wanted.filter(|_| kind != Kind::Link) {
            let have = meta.mode() & 0o7777;
            if have != mode {
                changes.push(Change::new(
                    "mode",
                    Some(format!("{have:04o}")),
                    Some(format!("{mode:04o}")),
                ));
            }
        }
        if let Some(owner) = &self.owner {
            if accounts::resolve_user(cx, owner)? != Some(meta.uid()) {
                changes.push(Change::new(
                    "owner",
                    Some(accounts::user_label(meta.uid())),
                    Some(owner.clone()),
                ));
            }
        }
        if let Some(group) = &self.group {
            if accounts::resolve_group(cx, group)? != Some(meta.gid()) {
                changes.push(Change::new(
                    "group",
                    Some(accounts::group_label(meta.gid())),
                    Some(group.clone()),
                ));
            }
        }
        Ok(changes)
    }

    /// Creates or converts the path into `want` (type and content), with
    /// `content` as the bytes of a file.
    fn converge_kind(
        &self,
        cx: &Context,
        path: &Path,
        (current, want): (Kind, Kind),
        content: Option<Vec<u8>>,
    ) -> Result<(), ResourceError> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        cx.stager().clean_stale_temps(parent);
        let result = self.converge_into(cx, path, (current, want), content);
        // A missing parent is looked for only when something failed: a
        // first run creates thousands of files in directories that exist.
        if result.is_err() && want != Kind::Missing && !parent.is_dir() {
            let node_parent = Path::new(&self.node_path)
                .parent()
                .unwrap_or(Path::new("/"));
            return Err(ResourceError::Failed(format!(
                "{}: parent directory {} does not exist (declare file[{}] with ensure: directory)",
                self.id,
                node_parent.display(),
                node_parent.display()
            )));
        }
        result
    }

    /// [`File::converge_kind`] once the parent directory is there.
    fn converge_into(
        &self,
        cx: &Context,
        path: &Path,
        (current, want): (Kind, Kind),
        content: Option<Vec<u8>>,
    ) -> Result<(), ResourceError> {
        let io = |e| ResourceError::io(path, e);
        match want {
            Kind::File => {
                if current == Kind::Directory {
                    // Forced: saved first, within the budget.
                    self.remove(cx, path, current)?;
                }
                // A kind that changed since check (a file that vanished)
                // still gets its content; an existing file only what check
                // found to differ.
                let bytes = match content {
                    Some(bytes) => Some(bytes),
                    None if current != Kind::File => self.body_bytes()?,
                    None => None,
                };
                if current == Kind::File {
                    let Some(bytes) = bytes else { return Ok(()) };
                    // The new content lands with its final mode: a secret
                    // is never readable by others, not even for a moment.
                    let have = fs::metadata(path).map_err(io)?.permissions().mode() & 0o7777;
                    let mode = self.wanted_mode(have);
                    if self.backup {
                        stage::replace_file(cx, path, &bytes, mode)?;
                    } else {
                        cx.stager().write_atomic(path, &bytes, mode)?;
                    }
                } else {
                    let default = if self.sensitive { 0o600 } else { 0o644 };
                    let mode = self.mode.unwrap_or(default);
                    cx.stager()
                        .write_atomic(path, &bytes.unwrap_or_default(), Some(mode))?;
                }
            }
            Kind::Directory => {
                self.remove(cx, path, current)?;
                let mode = self.mode.unwrap_or(0o755);
                fs::DirBuilder::new().mode(mode).create(path).map_err(io)?;
                // The umask may have cut bits from the create mode.
                fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io)?;
            }
            Kind::Link => {
                match current {
                    // Saved first, within the budget, as any forced removal.
                    Kind::Directory => self.remove(cx, path, current)?,
                    Kind::File if self.backup => {
                        // Straight to the disk: the link replaces it now.
                        cx.backup.save(
                            &crate::stage::Stager::default(),
                            path,
                            &fs::read(path).map_err(io)?,
                        )?;
                    }
                    _ => {}
                }
                symlink_atomic(self.target.as_deref().unwrap_or_default(), path)?;
            }
            Kind::Missing => self.remove(cx, path, current)?,
            Kind::Other => {} // only `present` wants it, and it is there
        }
        Ok(())
    }

    /// Removes whatever is at `path`, saving a file's content first.
    fn remove(&self, cx: &Context, path: &Path, current: Kind) -> Result<(), ResourceError> {
        let io = |e| ResourceError::io(path, e);
        // Saved straight to the disk (not staged): the removal below is
        // immediate, and a kill between the two must not lose the content.
        let direct = crate::stage::Stager::default();
        match current {
            Kind::Missing => Ok(()),
            Kind::Directory => {
                if self.backup {
                    self.save_tree(cx, &direct, path)?;
                }
                fs::remove_dir_all(path).map_err(io)
            }
            Kind::File if self.backup => {
                cx.backup
                    .save(&direct, path, &fs::read(path).map_err(io)?)?;
                fs::remove_file(path).map_err(io)
            }
            _ => fs::remove_file(path).map_err(io),
        }
    }

    /// Saves every regular file below `dir` before a forced removal, once
    /// their total is known to fit [`FORCE_BACKUP_MAX_BYTES`] (nothing is
    /// saved, and nothing removed, when it does not).
    fn save_tree(
        &self,
        cx: &Context,
        direct: &crate::stage::Stager,
        dir: &Path,
    ) -> Result<(), ResourceError> {
        let mut files = Vec::new();
        let mut total = 0u64;
        for entry in walkdir::WalkDir::new(dir).follow_links(false) {
            let entry = entry.map_err(|e| {
                ResourceError::Failed(format!("{}: reading {}: {e}", self.id, dir.display()))
            })?;
            if entry.file_type().is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                files.push(entry.into_path());
            }
        }
        if total > FORCE_BACKUP_MAX_BYTES {
            return Err(ResourceError::Failed(format!(
                "{}: removing {} would delete {} MiB in {} files, more than the {} MiB the backup \
                 store takes for one removal; set backup: false to remove it unsaved",
                self.id,
                self.node_path,
                total >> 20,
                files.len(),
                FORCE_BACKUP_MAX_BYTES >> 20
            )));
        }
        for f in files {
            let content = fs::read(&f).map_err(|e| ResourceError::io(&f, e))?;
            cx.backup.save(direct, &f, &content)?;
        }
        Ok(())
    }
}

impl Resource for File {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        // An owner or group that does not exist fails the resource here,
        // before anything is written (it used to write the content, then
        // fail on the chown).
        if let Some(o) = &self.owner {
            if accounts::resolve_user(cx, o)?.is_none() {
                return Err(ResourceError::Failed(format!(
                    "{}: no such user: {o} (create it first: it must exist before the file)",
                    self.id
                )));
            }
        }
        if let Some(g) = &self.group {
            if accounts::resolve_group(cx, g)?.is_none() {
                return Err(ResourceError::Failed(format!(
                    "{}: no such group: {g} (create it first: it must exist before the file)",
                    self.id
                )));
            }
        }
        let path = cx.unfollowed_path(&self.node_path)?;
        let meta = lstat(&path)?;
        let current = meta.as_ref().map_or(Kind::Missing, Kind::of);
        let want = self.want(current);
        self.guard(current, want)?;
        let mut changes = vec![];
        let mut steps = Steps {
            found_missing: current == Kind::Missing,
            ..Steps::default()
        };
        if current != want {
            changes.push(Change::new("ensure", current.name(), want.name()));
            if want == Kind::File {
                if let Some(new) = self.body_bytes()? {
                    changes.push(diff::content_change(
                        Path::new(&self.node_path),
                        None,
                        &new,
                        self.sensitive,
                    ));
                    steps.content = Some(new);
                }
            }
            if want == Kind::Link {
                changes.push(Change::new("target", None, self.target.clone()));
                steps.relink = true;
            }
        } else if let Some(meta) = &meta {
            if want == Kind::File {
                if let Some((old, new)) = self.content_delta(&path, meta)? {
                    let node = Path::new(&self.node_path);
                    changes.push(diff::content_change(node, Some(&old), &new, self.sensitive));
                    steps.content = Some(new);
                }
            }
            // `present` keeps a link whatever it points at (no target given).
            if let (Kind::Link, Some(target)) = (want, &self.target) {
                let have = fs::read_link(&path).map_err(|e| ResourceError::io(&path, e))?;
                if have != Path::new(target) {
                    let have = have.to_string_lossy().into_owned();
                    changes.push(Change::new("target", Some(have), Some(target.clone())));
                    steps.relink = true;
                }
            }
            let attrs = self.attr_changes(cx, current, meta)?;
            steps.attrs = !attrs.is_empty();
            changes.extend(attrs);
        }
        if changes.is_empty() {
            return Ok(Plan::in_sync());
        }
        let changes = changes
            .into_iter()
            .map(|c| c.sensitive(self.sensitive))
            .collect();
        Ok(Plan::new(changes, steps))
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        let steps: Steps = plan.steps(&self.id)?;
        // What is there is looked at again (unless check found nothing):
        // the guard must hold for what apply would replace now.
        let path = cx.unfollowed_path(&self.node_path)?;
        let meta = if steps.found_missing {
            None
        } else {
            lstat(&path)?
        };
        let current = meta.as_ref().map_or(Kind::Missing, Kind::of);
        let want = self.want(current);
        self.guard(current, want)?;
        let converge = current != want || steps.content.is_some() || steps.relink;
        // The checker sees the bytes about to be written, before anything
        // (the backup store included) is touched: refused, nothing changes.
        if let (Some(v), true) = (&self.validate, want == Kind::File && converge) {
            let bytes = match &steps.content {
                Some(bytes) => Cow::Borrowed(&bytes[..]),
                None => self.body()?.unwrap_or_default(),
            };
            v.check(cx, &self.id, &self.node_path, &bytes)?;
        }
        if converge {
            self.converge_kind(cx, &path, (current, want), steps.content)?;
            // What converge_kind creates or writes has its wanted mode
            // already; only ownership may be left to do.
            if self.owner.is_none() && self.group.is_none() {
                return Ok(());
            }
        } else if !steps.attrs {
            return Ok(());
        }
        // A staged write (see `crate::stage`) is still its temp file: the
        // ownership and mode go on that, and arrive with the rename.
        let path = cx.stager().current_path(&path);
        let Some(mut meta) = lstat(&path)? else {
            return Ok(());
        };
        let io = |e| ResourceError::io(&path, e);
        // chown before chmod: chown clears setuid/setgid bits.
        let uid =
            match &self.owner {
                Some(o) => Some(accounts::resolve_user(cx, o)?.ok_or_else(|| {
                    ResourceError::Failed(format!("{}: no such user: {o}", self.id))
                })?),
                None => None,
            };
        let gid = match &self.group {
            Some(g) => Some(accounts::resolve_group(cx, g)?.ok_or_else(|| {
                ResourceError::Failed(format!("{}: no such group: {g}", self.id))
            })?),
            None => None,
        };
        let uid = uid.filter(|u| *u != meta.uid());
        let gid = gid.filter(|g| *g != meta.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&path, uid, gid).map_err(io)?;
            // chown may have cleared setuid/setgid bits
            meta = fs::symlink_metadata(&path).map_err(io)?;
        }
        if !meta.file_type().is_symlink() {
            let have = meta.mode() & 0o7777;
            let Some(mode) = self.wanted_mode(have) else {
                return Ok(());
            };
            if have != mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
            }
        }
        Ok(())
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = vec![];
        if let Some(parent) = Path::new(&self.node_path).parent() {
            ids.push(ResourceId::new("file", parent.to_string_lossy()));
        }
        if let Some(owner) = &self.owner {
            ids.push(ResourceId::new("user", owner));
        }
        if let Some(group) = &self.group {
            ids.push(ResourceId::new("group", group));
        }
        ids
    }

    fn paths(&self) -> Vec<String> {
        vec![self.node_path.clone()]
    }

    /// Only the parents of its path are confined (symlinks in them must
    /// stay inside the root): the last component is never followed, so a
    /// managed link may point anywhere.
    fn follows_paths(&self) -> bool {
        false
    }

    /// Without `force` no directory is replaced; only `ensure: link`
    /// makes links.
    fn keeps_dirs(&self) -> bool {
        !self.force && self.ensure != Ensure::Link
    }

    /// Its content goes through the stager ([`stage::replace_file`]).
    fn stages_writes(&self) -> bool {
        true
    }

    /// It lstats and reads its path, nothing more.
    fn check_only_reads(&self) -> bool {
        true
    }

    /// It lstats its path on the disk, and may remove a directory that
    /// staged files would land in.
    fn needs_paths_committed(&self) -> bool {
        true
    }

    fn lints(&self) -> Vec<String> {
        match self.mode {
            Some(mode) if self.sensitive && mode & 0o004 != 0 => vec![format!(
                "holds Sensitive content but mode {mode:04o} lets every user read it (use 0600 or 0640)"
            )],
            _ => vec![],
        }
    }
}

fn lstat(path: &Path) -> Result<Option<Metadata>, ResourceError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ResourceError::io(path, e)),
    }
}

/// Points `path` at `target` atomically: a temp link beside it renamed over it.
fn symlink_atomic(target: &str, path: &Path) -> Result<(), ResourceError> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!("{}.{}", atomic::TEMP_MARK, std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = fs::remove_file(&tmp);
    let result = std::os::unix::fs::symlink(target, &tmp).and_then(|_| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ResourceError::io(path, e));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ResourceError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Sandbox;
    use serde_json::json;

    fn setup() -> Sandbox {
        Sandbox::new(&["etc"])
    }

    /// A sandbox in which the file at `rel` (under the root) already holds
    /// `content`: the start of every test that changes an existing file.
    fn setup_with(rel: &str, content: &str) -> (Sandbox, PathBuf) {
        let t = setup();
        let p = t.root.join(rel);
        fs::write(&p, content).unwrap();
        (t, p)
    }

    fn decl(title: &str, attrs: Value) -> Decl {
        crate::testing::decl("file", title, attrs)
    }

    fn file(title: &str, attrs: Value) -> File {
        File::new(&decl(title, attrs)).unwrap()
    }

    /// check → apply → check again finds nothing: returns the first changes.
    fn converge(r: &File, cx: &Context) -> Vec<Change> {
        let plan = r.check(cx).unwrap();
        let changes = plan.changes().to_vec();
        assert!(!changes.is_empty(), "expected changes");
        r.apply(cx, plan).unwrap();
        let again = r.check(cx).unwrap();
        assert!(again.is_empty(), "not idempotent: {again:?}");
        changes
    }

    /// A plan made before the path changed under it (check saw a file to
    /// rewrite): apply must still refuse what check would refuse now.
    fn stale_plan() -> Plan {
        let steps = Steps {
            content: Some(b"x".to_vec()),
            ..Steps::default()
        };
        Plan::new(vec![Change::new("content", None, None)], steps)
    }

    #[test]
    fn apply_writes_the_bytes_check_planned() {
        // The plan carries what check read from `source`: apply writes
        // that, neither re-reading the source nor looking at the changes.
        let t = setup();
        let src = t.root.parent().unwrap().join("src.txt");
        fs::write(&src, "planned\n").unwrap();
        let r = file("/etc/planned", json!({"source": src.to_str().unwrap()}));
        let plan = r.check(&t.cx).unwrap();
        fs::write(&src, "changed since check\n").unwrap();
        r.apply(&t.cx, plan).unwrap();
        assert_eq!(
            fs::read_to_string(t.root.join("etc/planned")).unwrap(),
            "planned\n"
        );
        // A plan of another type is a failure, not a panic, and writes nothing.
        let foreign = Plan::new(vec![Change::new("content", None, None)], "not steps");
        let err = file("/etc/other", json!({"content": "x"}))
            .apply(&t.cx, foreign)
            .unwrap_err();
        assert!(matches!(err, ResourceError::Failed(_)), "{err}");
        assert!(!t.root.join("etc/other").exists());
    }

    fn props(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.property.as_str()).collect()
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_file_then_is_idempotent() {
        let t = setup();
        let r = file("/etc/motd", json!({"content": "hello\n"}));
        let changes = converge(&r, &t.cx);
        assert_eq!(props(&changes), ["ensure", "content"]);
        // A new file: its digest, no diff (as Puppet's "defined content").
        assert!(changes[1].diff.is_none());
        assert!(
            changes[1].line().contains("{sha256}"),
            "{}",
            changes[1].line()
        );
        let p = t.root.join("etc/motd");
        assert_eq!(fs::read(&p).unwrap(), b"hello\n");
        assert_eq!(mode_of(&p), 0o644);
        assert!(
            t.cx.backup.list(None).unwrap().is_empty(),
            "nothing to back up"
        );
    }

    #[test]
    fn a_directory_appearing_between_check_and_apply_is_never_replaced() {
        // apply takes check's word that the path was missing; whatever
        // appeared since is not overwritten by a directory-blind write.
        let t = setup();
        let r = file("/etc/late", json!({"content": "x\n"}));
        let plan = r.check(&t.cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(props(&changes), ["ensure", "content"]);
        fs::create_dir(t.root.join("etc/late")).unwrap();
        fs::write(t.root.join("etc/late/keep"), "k\n").unwrap();
        assert!(r.apply(&t.cx, plan).is_err());
        assert_eq!(fs::read(t.root.join("etc/late/keep")).unwrap(), b"k\n");
        let temps: Vec<_> = fs::read_dir(t.root.join("etc"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(atomic::TEMP_MARK))
            .collect();
        assert!(temps.is_empty(), "temp left behind: {temps:?}");
    }

    #[test]
    fn replaces_content_with_diff_and_backup() {
        let (t, p) = setup_with("etc/app.conf", "a=1\nb=2\n");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        // Same size, different bytes: must still be seen.
        let r = file("/etc/app.conf", json!({"content": "a=1\nb=3\n"}));
        let changes = converge(&r, &t.cx);
        assert_eq!(props(&changes), ["content"]);
        let diff = changes[0].diff.as_deref().unwrap();
        assert!(diff.contains("-b=2") && diff.contains("+b=3"), "{diff}");
        assert_eq!(fs::read_to_string(&p).unwrap(), "a=1\nb=3\n");
        assert_eq!(mode_of(&p), 0o640, "mode kept when not managed");
        let saved = t.cx.backup.list(Some(&p)).unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(t.cx.backup.get(&saved[0].sha256).unwrap(), b"a=1\nb=2\n");
    }

    #[test]
    fn backup_false_keeps_no_copy() {
        let (t, p) = setup_with("etc/x", "old");
        converge(
            &file("/etc/x", json!({"content": "new content", "backup": false})),
            &t.cx,
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "new content");
        assert!(t.cx.backup.list(None).unwrap().is_empty());
    }

    #[test]
    fn sensitive_content_is_redacted_and_private() {
        let t = setup();
        let mut d = decl("/etc/secret", json!({"content": "pw=s3cret\n"}));
        d.sensitive.insert("content".into());
        let r = File::new(&d).unwrap();
        let changes = converge(&r, &t.cx);
        assert!(changes.iter().all(|c| c.sensitive));
        assert!(changes.iter().all(|c| !c.line().contains("s3cret")));
        assert!(
            changes[1].printable_diff().is_none(),
            "a new file has no diff"
        );
        assert_eq!(mode_of(&t.root.join("etc/secret")), 0o600);
        // A later change of an existing file is sensitive too.
        let mut d = decl(
            "/etc/secret",
            json!({"content": "pw=other\n", "mode": "0640"}),
        );
        d.sensitive.insert("content".into());
        let changes = converge(&File::new(&d).unwrap(), &t.cx);
        assert_eq!(props(&changes), ["content", "mode"]);
        assert!(changes.iter().all(|c| c.sensitive));
        let diff = changes[0]
            .printable_diff()
            .expect("an existing file has a diff");
        assert!(
            !diff.contains("s3cret") && !diff.contains("other"),
            "{diff}"
        );
    }

    #[test]
    fn an_existing_world_readable_file_given_a_secret_loses_the_other_bits() {
        let (t, p) = setup_with("etc/app.conf", "pw=old\n");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut d = decl("/etc/app.conf", json!({"content": "pw=n3w-secret\n"}));
        d.sensitive.insert("content".into());
        let r = File::new(&d).unwrap();
        assert_eq!(props(&converge(&r, &t.cx)), ["content", "mode"]);
        assert_eq!(mode_of(&p), 0o640, "group access kept, others cut");
        // Already in sync but world-readable (chmod by hand): a mode change.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let changes = converge(&r, &t.cx);
        assert_eq!(props(&changes), ["mode"]);
        assert_eq!(mode_of(&p), 0o660);
        // Not Sensitive: the mode is not managed at all.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(file("/etc/app.conf", json!({"content": "pw=n3w-secret\n"}))
            .check(&t.cx)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn mode_as_string_or_yaml_integer() {
        let (t, p) = setup_with("etc/m", "");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let changes = converge(&file("/etc/m", json!({"mode": "0600"})), &t.cx);
        assert_eq!(changes[0].line(), "mode changed '0644' to '0600'");
        assert_eq!(mode_of(&p), 0o600);
        converge(&file("/etc/m", json!({"mode": 750})), &t.cx);
        assert_eq!(mode_of(&p), 0o750);
        for bad in [json!("0999"), json!(99999), json!(-1), json!(true)] {
            assert!(
                File::new(&decl("/etc/m", json!({ "mode": bad }))).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn directory_created_and_mode_managed() {
        let t = setup();
        let r = file("/etc/app.d", json!({"ensure": "directory"}));
        assert_eq!(
            converge(&r, &t.cx)[0].line(),
            "ensure changed absent to 'directory'"
        );
        assert!(t.root.join("etc/app.d").is_dir());
        assert_eq!(mode_of(&t.root.join("etc/app.d")), 0o755);
        converge(
            &file("/etc/app.d", json!({"ensure": "directory", "mode": "0700"})),
            &t.cx,
        );
        assert_eq!(mode_of(&t.root.join("etc/app.d")), 0o700);
        assert!(File::new(&decl(
            "/etc/d",
            json!({"ensure": "directory", "content": "x"})
        ))
        .is_err());
    }

    #[test]
    fn missing_parent_is_a_clear_error() {
        let t = setup();
        let r = file("/opt/app/conf", json!({"content": "x"}));
        let err = r
            .apply(&t.cx, r.check(&t.cx).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("parent directory /opt/app does not exist"),
            "{err}"
        );
        assert!(!t.root.join("opt").exists());
    }

    #[test]
    fn links_are_created_and_retargeted_atomically() {
        let t = setup();
        let p = t.root.join("etc/current");
        // An absolute target must not trip root confinement: the link is never followed.
        let r = file(
            "/etc/current",
            json!({"ensure": "link", "target": "/opt/v1"}),
        );
        let changes = converge(&r, &t.cx);
        assert_eq!(props(&changes), ["ensure", "target"]);
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("/opt/v1"));
        let r2 = file("/etc/current", json!({"ensure": "link", "target": "v2"}));
        let changes = converge(&r2, &t.cx);
        assert_eq!(changes[0].line(), "target changed '/opt/v1' to 'v2'");
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("v2"));
        assert_eq!(
            fs::read_dir(t.root.join("etc")).unwrap().count(),
            1,
            "no temp link left"
        );
        // A link replaced by a file: the link goes, its target is untouched.
        fs::write(t.root.join("etc/v2"), "target").unwrap();
        converge(&file("/etc/current", json!({"content": "plain"})), &t.cx);
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(fs::read_to_string(t.root.join("etc/v2")).unwrap(), "target");
        assert!(File::new(&decl("/etc/l", json!({"ensure": "link"}))).is_err());
        assert!(File::new(&decl("/etc/l", json!({"target": "/x"}))).is_err());
    }

    #[test]
    fn absent_removes_with_backup_and_needs_force_for_directories() {
        let (t, p) = setup_with("etc/old", "keep me");
        let changes = converge(&file("/etc/old", json!({"ensure": "absent"})), &t.cx);
        assert_eq!(changes[0].line(), "ensure changed 'file' to absent");
        assert!(!p.exists());
        assert_eq!(t.cx.backup.list(Some(&p)).unwrap().len(), 1);
        assert!(file("/etc/old", json!({"ensure": "absent"}))
            .check(&t.cx)
            .unwrap()
            .is_empty());

        fs::create_dir_all(t.root.join("etc/dir/sub")).unwrap();
        let r = file("/etc/dir", json!({"ensure": "absent"}));
        let err = r.check(&t.cx).unwrap_err().to_string();
        assert!(err.contains("force"), "{err}");
        assert!(r.apply(&t.cx, stale_plan()).is_err());
        assert!(t.root.join("etc/dir/sub").is_dir());
        fs::write(t.root.join("etc/dir/sub/kept"), "inside\n").unwrap();
        converge(
            &file("/etc/dir", json!({"ensure": "absent", "force": true})),
            &t.cx,
        );
        assert!(!t.root.join("etc/dir").exists());
        // What a forced removal deleted is in the backup store.
        let saved =
            t.cx.backup
                .list(Some(&t.root.join("etc/dir/sub/kept")))
                .unwrap();
        assert_eq!(saved.len(), 1, "{saved:?}");
        assert_eq!(t.cx.backup.get(&saved[0].sha256).unwrap(), b"inside\n");
    }

    #[test]
    fn a_forced_removal_beyond_the_backup_budget_is_refused_unless_unsaved() {
        let t = setup();
        let big = t.root.join("etc/big");
        fs::create_dir_all(&big).unwrap();
        let f = fs::File::create(big.join("blob")).unwrap();
        f.set_len(FORCE_BACKUP_MAX_BYTES + 1).unwrap(); // sparse: no disk used
        let r = file("/etc/big", json!({"ensure": "absent", "force": true}));
        let plan = r.check(&t.cx).unwrap();
        let err = r.apply(&t.cx, plan).unwrap_err().to_string();
        assert!(err.contains("set backup: false"), "{err}");
        assert!(big.join("blob").exists(), "nothing removed");
        assert!(t.cx.backup.list(None).unwrap().is_empty(), "nothing saved");
        converge(
            &file(
                "/etc/big",
                json!({"ensure": "absent", "force": true, "backup": false}),
            ),
            &t.cx,
        );
        assert!(!big.exists());
    }

    #[test]
    fn directory_replaced_by_file_only_with_force() {
        let t = setup();
        fs::create_dir(t.root.join("etc/conf")).unwrap();
        let r = file("/etc/conf", json!({"content": "x"}));
        assert!(r.check(&t.cx).is_err());
        assert!(r.apply(&t.cx, stale_plan()).is_err());
        assert!(t.root.join("etc/conf").is_dir());
        converge(
            &file("/etc/conf", json!({"content": "x", "force": true})),
            &t.cx,
        );
        assert_eq!(fs::read_to_string(t.root.join("etc/conf")).unwrap(), "x");
    }

    #[test]
    fn present_keeps_existing_type() {
        let t = setup();
        fs::create_dir(t.root.join("etc/d")).unwrap();
        assert!(file("/etc/d", json!({"ensure": "present"}))
            .check(&t.cx)
            .unwrap()
            .is_empty());
        let with_content = file("/etc/d", json!({"ensure": "present", "content": "x"}));
        assert!(with_content.check(&t.cx).is_err());
        std::os::unix::fs::symlink("/anywhere", t.root.join("etc/l")).unwrap();
        let keep_link = file("/etc/l", json!({"ensure": "present"}));
        assert!(keep_link.check(&t.cx).unwrap().is_empty());
        let nothing = Plan::new(vec![Change::new("ensure", None, None)], Steps::default());
        keep_link.apply(&t.cx, nothing).unwrap();
        assert_eq!(
            fs::read_link(t.root.join("etc/l")).unwrap(),
            Path::new("/anywhere")
        );
        let changes = converge(&file("/etc/new", json!({"ensure": "present"})), &t.cx);
        assert_eq!(changes[0].line(), "ensure changed absent to 'file'");
        assert_eq!(fs::read(t.root.join("etc/new")).unwrap(), b"");
    }

    #[test]
    fn source_bytes_are_read_at_check_time() {
        let t = setup();
        let src = t.root.parent().unwrap().join("src.bin");
        fs::write(&src, [0u8, 1, 2, 255]).unwrap();
        let r = file("/etc/blob", json!({"source": src.to_str().unwrap()}));
        let changes = converge(&r, &t.cx);
        assert!(changes[1].diff.is_none(), "binary content has no diff");
        assert_eq!(fs::read(t.root.join("etc/blob")).unwrap(), [0u8, 1, 2, 255]);
        fs::write(&src, [9u8, 1, 2, 255]).unwrap();
        assert_eq!(props(r.check(&t.cx).unwrap().changes()), ["content"]);
        fs::remove_file(&src).unwrap();
        assert!(matches!(r.check(&t.cx), Err(ResourceError::Io { .. })));
        let both = json!({"source": "/a", "content": "b"});
        assert!(File::new(&decl("/etc/x", both)).is_err());
        assert!(File::new(&decl("/etc/x", json!({"source": "rel"}))).is_err());
    }

    #[test]
    fn owner_and_group_are_managed() {
        let (t, p) = setup_with("etc/owned", "x");
        if !nix::unistd::geteuid().is_root() {
            return; // chown to another user needs root
        }
        let r = file(
            "/etc/owned",
            json!({"owner": "nobody", "group": "nogroup", "mode": "4755"}),
        );
        let changes = converge(&r, &t.cx);
        assert_eq!(props(&changes), ["mode", "owner", "group"]);
        assert_eq!(changes[1].line(), "owner changed 'root' to 'nobody'");
        let meta = fs::metadata(&p).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid survives the chown");
        // An unknown owner or group fails at check: nothing is written.
        for (attrs, what) in [
            (json!({"owner": "no-such-user-xyz"}), "no such user"),
            (json!({"group": "no-such-group-xyz"}), "no such group"),
            (
                json!({"owner": "no-such-user-xyz", "content": "x\n"}),
                "no such user",
            ),
        ] {
            let ghost = file("/etc/ghost-owned", attrs);
            let err = ghost.check(&t.cx).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        assert!(!t.root.join("etc/ghost-owned").exists());
    }

    #[test]
    fn stale_temps_are_cleaned_before_writing() {
        let t = setup();
        let stale = t
            .root
            .join("etc")
            .join(format!(".f{}.1", atomic::TEMP_MARK));
        fs::write(&stale, "half").unwrap();
        converge(&file("/etc/f", json!({"content": "x"})), &t.cx);
        assert!(!stale.exists());
    }

    #[test]
    fn escapes_are_refused() {
        let t = setup();
        assert!(File::new(&decl("etc/rel", json!({}))).is_err());
        assert!(File::new(&decl("/etc/../x", json!({}))).is_err());
        std::os::unix::fs::symlink("/", t.root.join("out")).unwrap();
        let r = file("/out/etc/evil", json!({"content": "x"}));
        assert!(matches!(
            r.check(&t.cx),
            Err(ResourceError::OutsideRoot { .. })
        ));
        assert!(matches!(
            r.apply(&t.cx, stale_plan()),
            Err(ResourceError::OutsideRoot { .. })
        ));
        assert!(File::new(&decl("/etc/x", json!({"bogus": 1}))).is_err());
    }

    #[test]
    fn autorequires_and_paths() {
        let r = file("/etc/app/conf/", json!({"owner": "app", "group": "staff"}));
        let ids: Vec<String> = r.autorequires().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["file[/etc/app]", "user[app]", "group[staff]"]);
        assert_eq!(r.paths(), ["/etc/app/conf"]);
        assert_eq!(
            file("/etc", json!({})).autorequires(),
            [ResourceId::new("file", "/")]
        );
        assert!(file("/", json!({"ensure": "directory"}))
            .autorequires()
            .is_empty());
    }

    #[test]
    fn many_in_sync_files_check_clean_and_one_byte_is_found() {
        // Speed is the anchor bench's business; here: 1000 in-sync files
        // report nothing, and a same-size file one byte off is not missed
        // by the size-first comparison.
        let t = setup();
        let files: Vec<File> = (0..1000)
            .map(|i| {
                let content = format!("line {i}\n").repeat(20);
                fs::write(t.root.join(format!("etc/f{i}")), &content).unwrap();
                file(
                    &format!("/etc/f{i}"),
                    json!({"content": content, "mode": "0644"}),
                )
            })
            .collect();
        for f in &files {
            fs::set_permissions(
                t.root.join(&f.node_path[1..]),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }
        for f in &files {
            assert!(f.check(&t.cx).unwrap().is_empty(), "{}", f.node_path);
        }
        let p = t.root.join("etc/f500");
        let mut bytes = fs::read(&p).unwrap();
        bytes[3] = b'X';
        fs::write(&p, &bytes).unwrap();
        assert_eq!(
            props(files[500].check(&t.cx).unwrap().changes()),
            ["content"]
        );
    }

    #[test]
    fn lints_world_readable_secrets_only() {
        let sensitive = |attrs: Value| {
            let mut d = decl("/etc/secret", attrs);
            d.sensitive.insert("content".into());
            File::new(&d).unwrap()
        };
        let lints = sensitive(json!({"content": "pw=x", "mode": "0644"})).lints();
        assert_eq!(lints.len(), 1);
        assert!(
            lints[0].contains("0644") && lints[0].contains("every user"),
            "{lints:?}"
        );
        assert!(sensitive(json!({"content": "pw=x", "mode": "0640"}))
            .lints()
            .is_empty());
        assert!(
            sensitive(json!({"content": "pw=x"})).lints().is_empty(),
            "new files get 0600"
        );
        assert!(file("/etc/motd", json!({"content": "hi", "mode": "0644"}))
            .lints()
            .is_empty());
    }
}
