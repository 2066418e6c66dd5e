//! `agent apply`: compile the node's catalog and converge to it, like
//! `puppet apply`; the exit code is Puppet's (`--detailed-exitcodes`).

use anyhow::Result;

use crate::engine;
use crate::settings::Settings;

pub fn run(settings: &Settings, opts: engine::RunOptions, detailed: bool) -> Result<u8> {
    Ok(engine::apply_once(settings, opts)?.exit_code(detailed))
}
