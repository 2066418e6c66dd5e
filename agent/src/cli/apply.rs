//! `agent apply`: compile the node's catalog and converge to it, like
//! `puppet apply`; the exit code is Puppet's (`--detailed-exitcodes`).

use std::time::Duration;

use anyhow::Result;

use crate::engine;
use crate::settings::Settings;

pub fn run(settings: &Settings, noop: bool, detailed: bool, lock_wait: Duration) -> Result<u8> {
    Ok(engine::apply_once(settings, noop, lock_wait)?.exit_code(detailed))
}
