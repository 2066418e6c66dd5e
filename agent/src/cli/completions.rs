//! `agent completions SHELL` and `agent man`: shell completion scripts
//! (clap_complete) and the man page (clap_mangen), generated from the same
//! clap definitions the binary parses with, so they never lag behind it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::engine::report;

/// Flags of `agent completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; the script goes to stdout (bash:
    /// `agent completions bash > /etc/bash_completion.d/agent`).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `agent man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `agent.1` and one `agent-SUBCOMMAND.1` page per subcommand
    /// into DIR instead of printing `agent.1` to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<u8> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "agent", &mut out);
    report::print_raw(&String::from_utf8_lossy(&out));
    Ok(0)
}

pub fn man(args: ManArgs) -> Result<u8> {
    let cmd = super::Cli::command();
    match args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            report::print_raw(&String::from_utf8_lossy(&out));
        }
        Some(dir) => {
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::super::Cli::command(), "agent", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn the_version_names_the_commit_and_date() {
        let cmd = super::super::Cli::command();
        let v = cmd.get_version().unwrap();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains(env!("AGENT_GIT_COMMIT")), "{v}");
        let date = env!("AGENT_BUILD_DATE");
        assert_eq!(date.len(), 10, "{date}");
        assert!(v.contains(date), "{v}");
    }
}
