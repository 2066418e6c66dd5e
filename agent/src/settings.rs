//! Validated settings every command shares: where the node's paths, state,
//! manifests, Hiera and facts are. The CLI builds them from its raw flags
//! (ripgrep's low → high args); the engine and the loops read them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::engine::hiera::Hiera;
use crate::engine::state::{self, StateDir};
use crate::engine::{compile, facts};
use crate::failover::dbmaster::ClusterSource;

/// Validated settings shared by the subcommands.
pub struct Settings {
    pub root: Option<PathBuf>,
    pub state: StateDir,
    pub manifests: PathBuf,
    pub hiera_config: PathBuf,
    pub fact_opts: facts::FactOptions,
    pub node: Option<String>,
}

/// The raw values [`Settings::resolve`] settles (each optional one has a
/// default).
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub root: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub manifests: Option<PathBuf>,
    pub hiera_config: Option<PathBuf>,
    pub facts_dir: PathBuf,
    pub node: Option<String>,
}

impl Settings {
    /// Settles defaults: the state dir under the root, manifests and
    /// hiera.yaml in the current directory first, then under /etc/agent.
    pub fn resolve(raw: Raw) -> Result<Settings> {
        // Not created here: validate, facts, lookup and --noop change
        // nothing anywhere; a real apply creates it ([`Settings::ensure_root`]).
        let root = raw.root.as_deref().map(canonical_root).transpose()?;
        let state = StateDir::new(
            raw.state_dir
                .unwrap_or_else(|| state::default_state_dir(root.as_deref())),
        );
        let manifests = raw
            .manifests
            .unwrap_or_else(|| first_existing("manifests", "/etc/agent/manifests"));
        let hiera_config = raw
            .hiera_config
            .unwrap_or_else(|| first_existing("hiera/hiera.yaml", "/etc/agent/hiera.yaml"));
        let fact_opts = facts::FactOptions {
            facts_dir: raw.facts_dir,
            root: root.clone(),
            ..Default::default()
        };
        Ok(Settings {
            root,
            state,
            manifests,
            hiera_config,
            fact_opts,
            node: raw.node,
        })
    }

    /// `--node`, else the `networking.hostname` fact (the only fact read).
    pub fn node_name(&self, facts: &facts::Facts) -> Result<String> {
        if let Some(n) = &self.node {
            return Ok(n.clone());
        }
        facts
            .get("networking")
            .and_then(|n| n.get("hostname")?.as_str().map(str::to_string))
            .context("no --node given and no networking.hostname fact")
    }

    pub fn hiera(&self) -> Result<Arc<Hiera>> {
        Ok(Arc::new(Hiera::load(&self.hiera_config).with_context(
            || format!("loading {}", self.hiera_config.display()),
        )?))
    }

    /// The node's roles from site.yaml (none when there is no site).
    pub fn roles(&self, node: &str) -> Result<Vec<String>> {
        if !self.manifests.join("site.yaml").exists() {
            return Ok(vec![]);
        }
        compile::classify(&self.manifests, node).map_err(anyhow::Error::new)
    }

    /// Registers `db_master` & co. (see `failover::dbmaster`) as late facts
    /// of `facts`: probed only if something names them.
    pub fn cluster_facts(
        &self,
        facts: &Arc<facts::Facts>,
        node: &str,
        roles: &[String],
        hiera: Arc<Hiera>,
    ) -> Arc<ClusterSource> {
        ClusterSource::attach(facts, hiera, node, roles, &self.state)
    }

    /// Creates the `--root` directory, for commands that write under it.
    pub fn ensure_root(&self) -> Result<()> {
        if let Some(r) = &self.root {
            std::fs::create_dir_all(r).with_context(|| format!("creating root {}", r.display()))?;
        }
        Ok(())
    }

    pub fn root_path(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from("/"))
    }
}

/// The root as it will be once created: its nearest existing ancestor
/// resolved (symlinks followed), the rest appended, so the path is the
/// same before and after [`Settings::ensure_root`].
fn canonical_root(root: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(root).with_context(|| format!("root {}", root.display()))?;
    let mut missing = Vec::new();
    let mut existing = abs.as_path();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => {
                return Ok(missing
                    .iter()
                    .rev()
                    .fold(real, |p: PathBuf, name| p.join(name)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(e).with_context(|| format!("root {}", root.display()));
                };
                missing.push(name.to_os_string());
                existing = parent;
            }
            Err(e) => return Err(e).with_context(|| format!("root {}", root.display())),
        }
    }
}

fn first_existing(local: &str, system: &str) -> PathBuf {
    if Path::new(local).exists() {
        PathBuf::from(local)
    } else {
        PathBuf::from(system)
    }
}

/// One way to read a duration flag everywhere: humantime (`500ms`, `5m`,
/// `1h 30m`), or a bare number of seconds (`90`, `0.5`) as the older
/// flags took.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("'{t}': not a duration of zero or more seconds"));
    }
    humantime::parse_duration(t).map_err(|e| format!("'{t}': {e} (e.g. 90, 500ms, 5m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_one_way() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("m").is_err());
    }
}
