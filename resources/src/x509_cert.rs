//! `x509_cert`: a self-signed private key and certificate (and, for
//! HAProxy, one pem file holding the certificate then the key), made by the
//! agent with `rcgen` and read back with `x509-parser`.
//!
//! The pair is made only when it is missing, when what is there does not
//! say what the manifest says (common name, subject alternative names, key
//! type, a key that is not the certificate's), or when the certificate
//! expires within `renew_before`: a second run finds nothing to do, and a
//! certificate is never renewed on every run (a lifetime not longer than
//! `renew_before` is refused when the manifest compiles).
//!
//! The key is a secret end to end: written 0600 (so is the combined pem),
//! never in a change line, a diff, a log or an error — the report says
//! `created key` — and registered with [`crate::redact`] as a second line of
//! defence. Files are written through [`stage::replace_file_owned`], so
//! each is replaced atomically and durably, owned as declared before its
//! rename, and its old content goes to the backup store. Key, certificate
//! and pem are three files: a run killed between them leaves a key that is
//! not the certificate's (or a stale pem), which the next run sees and
//! makes again.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::attr::Ensure;
use crate::core::{Change, Context, Decl, Plan, Resource, ResourceError, ResourceId, TypeEnv};
use crate::{accounts, redact, stage};

mod pki;

use pki::{generate, parse_san, read_cert, renew_reason, KeyType, San, Subject};

/// Attributes of `- x509_cert: <certificate path, or a name with path:>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Where the certificate (PEM) goes; default: the title, which must then
    /// be an absolute path.
    path: Option<String>,
    /// Where the private key (PKCS#8 PEM, mode 0600) goes.
    key_path: String,
    /// Optional: one file holding the certificate then the key, as HAProxy's
    /// `crt` wants it (mode 0600).
    pem_path: Option<String>,
    /// The subject's CN.
    common_name: String,
    /// DNS names and IP addresses the certificate is for (an entry that
    /// parses as an IP address is one).
    #[serde(default)]
    subject_alt_names: Vec<String>,
    /// Lifetime of a new certificate, in days (365).
    #[serde(default = "default_days")]
    days: u32,
    /// `ecdsa-p256` (default), `ecdsa-p384` or `ed25519`.
    #[serde(default)]
    key_type: KeyType,
    /// Renew when the certificate expires within this (`30d`, humantime).
    renew_before: Option<String>,
    /// `present` (default) or `absent` (the three files removed, their
    /// content saved in the backup store).
    #[serde(default)]
    ensure: Ensure,
    /// Owner of the three files (user name or uid); unset: an existing
    /// file keeps its owner, a new one is the agent's.
    owner: Option<String>,
    /// Group of the three files (name or gid), like `owner`.
    group: Option<String>,
}

fn default_days() -> u32 {
    365
}

const DEFAULT_RENEW_BEFORE: &str = "30d";
/// Mode of the certificate; the key and the pem (which holds the key) are
/// [`SECRET_MODE`].
const CERT_MODE: u32 = 0o644;
const SECRET_MODE: u32 = 0o600;

/// A typed `x509_cert` resource.
#[derive(Debug)]
pub struct X509Cert {
    id: ResourceId,
    cert_path: String,
    key_path: String,
    pem_path: Option<String>,
    want: Subject,
    days: u32,
    renew_before: Duration,
    ensure: Ensure,
    owner: Option<String>,
    group: Option<String>,
}

pub fn build(decl: &Decl, _env: &TypeEnv) -> Result<Box<dyn Resource>, ResourceError> {
    let p: Params = decl.params()?;
    let id = &decl.id;
    let invalid = |msg: String| ResourceError::Invalid(format!("{id}: {msg}"));
    let cert_path = p.path.unwrap_or_else(|| id.title.clone());
    let mut paths = vec![("path", &cert_path), ("key_path", &p.key_path)];
    if let Some(pem) = &p.pem_path {
        paths.push(("pem_path", pem));
    }
    for (i, (attr, path)) in paths.iter().enumerate() {
        if !path.starts_with('/') {
            return Err(invalid(format!(
                "{attr} '{path}' must be an absolute path{}",
                if *attr == "path" {
                    " (the title is the certificate's path unless `path:` is given)"
                } else {
                    ""
                }
            )));
        }
        if let Some((other, _)) = paths[..i].iter().find(|(_, q)| q == path) {
            return Err(invalid(format!(
                "{attr} and {other} are the same file ({path}): each needs its own"
            )));
        }
    }
    if p.key_type == KeyType::Rsa {
        return Err(invalid(
            "key_type rsa is not available: rcgen's ring backend cannot generate RSA keys \
             (hint: ecdsa-p256, which HAProxy and every current client accept)"
                .into(),
        ));
    }
    let common_name = p.common_name.trim().to_string();
    if common_name.is_empty() || common_name.chars().any(char::is_control) {
        return Err(invalid(
            "common_name must be a non-empty name without control characters".into(),
        ));
    }
    let mut sans = Vec::with_capacity(p.subject_alt_names.len());
    for s in &p.subject_alt_names {
        sans.push(parse_san(s).map_err(invalid)?);
    }
    sans.sort();
    sans.dedup();
    if p.days == 0 {
        return Err(invalid("days must be at least 1".into()));
    }
    let renew_text = p.renew_before.as_deref().unwrap_or(DEFAULT_RENEW_BEFORE);
    let renew_before = humantime::parse_duration(renew_text)
        .map_err(|e| invalid(format!("renew_before '{renew_text}': {e} (like 30d, 720h)")))?;
    let lifetime = Duration::from_secs(u64::from(p.days) * 86_400);
    if lifetime <= renew_before {
        return Err(invalid(format!(
            "days: {} is not longer than renew_before: {renew_text}: the certificate would be \
             renewed on every run (hint: days: 365 with renew_before: 30d, or a shorter renew_before)",
            p.days
        )));
    }
    Ok(Box::new(X509Cert {
        id: id.clone(),
        cert_path,
        key_path: p.key_path,
        pem_path: p.pem_path,
        want: Subject {
            common_name,
            sans,
            key_type: p.key_type,
        },
        days: p.days,
        renew_before,
        ensure: p.ensure,
        owner: p.owner,
        group: p.group,
    }))
}

/// One of the three files as `check` found it.
#[derive(Debug)]
struct Found {
    node: String,
    path: PathBuf,
    content: Option<Vec<u8>>,
    /// (mode, uid, gid) when it exists.
    meta: Option<(u32, u32, u32)>,
    /// The mode it must have.
    mode: u32,
}

impl Found {
    fn read(cx: &Context, node: &str, mode: u32) -> Result<Found, ResourceError> {
        let path = cx.path(node)?;
        let content = cx.stager().read_optional(&path)?;
        let meta = match &content {
            Some(_) => {
                let m = std::fs::metadata(&path).map_err(|e| ResourceError::io(&path, e))?;
                Some((m.mode() & 0o7777, m.uid(), m.gid()))
            }
            None => None,
        };
        Ok(Found {
            node: node.to_string(),
            path,
            content,
            meta,
            mode,
        })
    }
}

/// A file's mode or ownership to put right.
#[derive(Debug)]
struct Fix {
    path: PathBuf,
    chown: Option<(u32, u32)>,
    mode: u32,
}

/// What `apply` does, as `check` decided. Not `Debug`: the pem it may
/// carry holds the key.
enum Steps {
    /// Make a new pair (and pem), each file written with its mode and
    /// these owners.
    Create {
        key: (PathBuf, Option<(u32, u32)>),
        cert: (PathBuf, Option<(u32, u32)>),
        pem: Option<(PathBuf, Option<(u32, u32)>)>,
    },
    /// The pair is right; the pem (certificate then key) is rewritten.
    Pem {
        path: PathBuf,
        content: Vec<u8>,
        owner: Option<(u32, u32)>,
        fixes: Vec<Fix>,
    },
    /// Only modes or owners differ.
    Fix(Vec<Fix>),
    /// Remove these files (saved to the backup store first).
    Remove(Vec<PathBuf>),
}

impl X509Cert {
    fn nodes(&self) -> Vec<&str> {
        let mut v = vec![self.cert_path.as_str(), self.key_path.as_str()];
        v.extend(self.pem_path.as_deref());
        v
    }

    /// The declared owner and group, resolved; one that does not exist
    /// fails the check, before anything is written.
    fn wanted_ids(&self, cx: &Context) -> Result<(Option<u32>, Option<u32>), ResourceError> {
        let missing = |what: &str, name: &str| {
            ResourceError::Failed(format!(
                "{}: no such {what}: {name} (create it first: it must exist before the files)",
                self.id
            ))
        };
        let uid = match &self.owner {
            Some(o) => Some(accounts::resolve_user(cx, o)?.ok_or_else(|| missing("user", o))?),
            None => None,
        };
        let gid = match &self.group {
            Some(g) => Some(accounts::resolve_group(cx, g)?.ok_or_else(|| missing("group", g))?),
            None => None,
        };
        Ok((uid, gid))
    }

    /// The owner a (re)written file gets: declared, else the old file's;
    /// `None` (the agent's) for a new file with neither declared, and for
    /// an agent not running as root with neither declared (only root can
    /// give files away: it writes as itself).
    fn owner_for(f: &Found, want: (Option<u32>, Option<u32>)) -> Option<(u32, u32)> {
        let (uid, gid) = want;
        if uid.is_none() && gid.is_none() && !nix::unistd::geteuid().is_root() {
            return None;
        }
        match f.meta {
            Some((_, u, g)) => Some((uid.unwrap_or(u), gid.unwrap_or(g))),
            None if uid.is_some() || gid.is_some() => Some((
                uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
            )),
            None => None,
        }
    }

    /// Mode and ownership differences of an existing file.
    fn fix_of(
        f: &Found,
        want: (Option<u32>, Option<u32>),
        changes: &mut Vec<Change>,
    ) -> Option<Fix> {
        let (mode, uid, gid) = f.meta?;
        let mut fix = None;
        if mode != f.mode {
            changes.push(Change::new(
                format!("{} mode", f.node),
                Some(format!("{mode:04o}")),
                Some(format!("{:04o}", f.mode)),
            ));
            fix = Some(None);
        }
        let (want_uid, want_gid) = (want.0.unwrap_or(uid), want.1.unwrap_or(gid));
        if (want_uid, want_gid) != (uid, gid) {
            if want_uid != uid {
                changes.push(Change::new(
                    format!("{} owner", f.node),
                    Some(accounts::user_label(uid)),
                    Some(accounts::user_label(want_uid)),
                ));
            }
            if want_gid != gid {
                changes.push(Change::new(
                    format!("{} group", f.node),
                    Some(accounts::group_label(gid)),
                    Some(accounts::group_label(want_gid)),
                ));
            }
            fix = Some(Some((want_uid, want_gid)));
        }
        fix.map(|chown| Fix {
            path: f.path.clone(),
            chown,
            mode: f.mode,
        })
    }

    fn plan_absent(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let mut changes = Vec::new();
        let mut remove = Vec::new();
        for node in self.nodes() {
            let f = Found::read(cx, node, 0)?;
            if f.content.is_some() {
                // Never the content: the key is a secret.
                changes.push(Change::new(
                    node,
                    Some("present".into()),
                    Some("absent".into()),
                ));
                remove.push(f.path);
            }
        }
        Ok(if changes.is_empty() {
            Plan::in_sync()
        } else {
            Plan::new(changes, Steps::Remove(remove))
        })
    }

    fn plan_present(&self, cx: &Context) -> Result<Plan, ResourceError> {
        let want_ids = self.wanted_ids(cx)?;
        let cert = Found::read(cx, &self.cert_path, CERT_MODE)?;
        let key = Found::read(cx, &self.key_path, SECRET_MODE)?;
        let pem = match &self.pem_path {
            Some(p) => Some(Found::read(cx, p, SECRET_MODE)?),
            None => None,
        };
        let now = unix_now();
        let reason = renew_reason(
            &self.want,
            self.renew_before,
            cert.content.as_deref(),
            key.content.as_deref(),
            now,
        );
        if let Some(reason) = reason {
            let from = cert.content.as_deref().map(|c| match read_cert(c) {
                Ok(e) => format!(
                    "CN={}, SAN [{}], expires {} ({reason})",
                    e.common_name,
                    e.sans
                        .iter()
                        .map(San::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    e.not_after_text
                ),
                Err(_) => format!("unreadable ({reason})"),
            });
            let mut changes = vec![
                Change::new(
                    "certificate",
                    from,
                    Some(format!("{}, {} days, self-signed", self.want, self.days)),
                ),
                // The key is never shown, only that it was made.
                Change::new(
                    "key",
                    key.content.as_ref().map(|_| "previous key".to_string()),
                    Some("created key".into()),
                ),
            ];
            if let Some(pem) = &pem {
                changes.push(Change::new(
                    "pem",
                    pem.content.as_ref().map(|_| "previous pem".to_string()),
                    Some("certificate + key".into()),
                ));
            }
            let steps = Steps::Create {
                key: (key.path.clone(), Self::owner_for(&key, want_ids)),
                cert: (cert.path.clone(), Self::owner_for(&cert, want_ids)),
                pem: pem
                    .as_ref()
                    .map(|p| (p.path.clone(), Self::owner_for(p, want_ids))),
            };
            return Ok(Plan::new(changes, steps));
        }
        let mut changes = Vec::new();
        let mut fixes = Vec::new();
        for f in [&cert, &key] {
            fixes.extend(Self::fix_of(f, want_ids, &mut changes));
        }
        // The pair is right: the pem must be exactly certificate then key.
        if let Some(pem) = &pem {
            let mut combined = cert.content.clone().unwrap_or_default();
            if !combined.ends_with(b"\n") {
                combined.push(b'\n');
            }
            combined.extend_from_slice(key.content.as_deref().unwrap_or_default());
            if pem.content.as_deref() != Some(&combined[..]) {
                changes.push(Change::new(
                    "pem",
                    pem.content.as_ref().map(|_| "stale pem".to_string()),
                    Some("certificate + key".into()),
                ));
                let steps = Steps::Pem {
                    path: pem.path.clone(),
                    content: combined,
                    owner: Self::owner_for(pem, want_ids),
                    fixes,
                };
                return Ok(Plan::new(changes, steps));
            }
            fixes.extend(Self::fix_of(pem, want_ids, &mut changes));
        }
        Ok(if changes.is_empty() {
            Plan::in_sync()
        } else {
            Plan::new(changes, Steps::Fix(fixes))
        })
    }

    fn create(
        &self,
        cx: &Context,
        key: &(PathBuf, Option<(u32, u32)>),
        cert: &(PathBuf, Option<(u32, u32)>),
        pem: Option<&(PathBuf, Option<(u32, u32)>)>,
    ) -> Result<(), ResourceError> {
        let started = std::time::Instant::now();
        let (key_pem, cert_pem) = generate(&self.want, self.days).map_err(|e| {
            ResourceError::Failed(format!("{}: making the certificate: {e}", self.id))
        })?;
        // A second line of defence: should the key reach any printed text,
        // it is shown as [redacted].
        redact::register(&key_pem);
        tracing::debug!(resource = %self.id, elapsed = ?started.elapsed(), "created key and certificate");
        for (path, ..) in [Some(key), Some(cert), pem].into_iter().flatten() {
            require_dir(&self.id, path)?;
        }
        // The key first: a certificate on disk always had its key written.
        stage::replace_file_owned(cx, &key.0, key_pem.as_bytes(), Some(SECRET_MODE), key.1)?;
        stage::replace_file_owned(cx, &cert.0, cert_pem.as_bytes(), Some(CERT_MODE), cert.1)?;
        if let Some((path, owner)) = pem {
            let combined = format!("{cert_pem}{key_pem}");
            stage::replace_file_owned(cx, path, combined.as_bytes(), Some(SECRET_MODE), *owner)?;
        }
        Ok(())
    }
}

/// Refuses to write into a directory that does not exist: the type makes
/// files, not directories (a `file` resource makes those, and is
/// autorequired).
fn require_dir(id: &ResourceId, path: &Path) -> Result<(), ResourceError> {
    crate::atomic::require_parent_dir(id, &path.display().to_string(), path, "")
}

fn apply_fixes(fixes: &[Fix]) -> Result<(), ResourceError> {
    for f in fixes {
        let io = |e| ResourceError::io(&f.path, e);
        // chown before chmod: chown clears set-id bits.
        if let Some((uid, gid)) = f.chown {
            std::os::unix::fs::chown(&f.path, Some(uid), Some(gid)).map_err(io)?;
        }
        std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(f.mode)).map_err(io)?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Resource for X509Cert {
    fn id(&self) -> &ResourceId {
        &self.id
    }

    fn check(&self, cx: &Context) -> Result<Plan, ResourceError> {
        match self.ensure {
            Ensure::Present => self.plan_present(cx),
            Ensure::Absent => self.plan_absent(cx),
        }
    }

    fn apply(&self, cx: &Context, plan: Plan) -> Result<(), ResourceError> {
        match plan.steps::<Steps>(&self.id)? {
            Steps::Create { key, cert, pem } => self.create(cx, &key, &cert, pem.as_ref()),
            Steps::Pem {
                path,
                content,
                owner,
                fixes,
            } => {
                apply_fixes(&fixes)?;
                stage::replace_file_owned(cx, &path, &content, Some(SECRET_MODE), owner)
            }
            Steps::Fix(fixes) => apply_fixes(&fixes),
            Steps::Remove(paths) => {
                // Saved straight to the disk: the removal is immediate, and
                // a kill between the two must not lose the content.
                let direct = stage::Stager::default();
                for path in paths {
                    let io = |e| ResourceError::io(&path, e);
                    let content = std::fs::read(&path).map_err(io)?;
                    cx.backup.save(&direct, &path, &content)?;
                    std::fs::remove_file(&path).map_err(io)?;
                }
                Ok(())
            }
        }
    }

    fn autorequires(&self) -> Vec<ResourceId> {
        let mut ids = Vec::new();
        for node in self.nodes() {
            if let Some(parent) = Path::new(node).parent() {
                let dir = ResourceId::new("file", parent.to_string_lossy());
                if !ids.contains(&dir) {
                    ids.push(dir);
                }
            }
        }
        ids.extend(self.owner.iter().map(|o| ResourceId::new("user", o)));
        ids.extend(self.group.iter().map(|g| ResourceId::new("group", g)));
        ids
    }

    fn paths(&self) -> Vec<String> {
        self.nodes().into_iter().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests;
