//! The `agent` library, in layers (each folder one; nothing below imports
//! the CLI):
//!
//! - [`cli`]: clap's definitions and dispatch, one file per subcommand;
//!   raw flags become [`settings::Settings`] before anything runs.
//! - [`engine`]: facts → Hiera → manifest compile → catalog → apply →
//!   report, behind a small API ([`engine::compile`], [`engine::apply`]).
//!   Everything before `apply` is pure: it reads, it never writes.
//! - [`failover`]: the `db_master` fact and its sources, the watch loop,
//!   the cluster-event hooks.
//! - [`pgbackrest`]: pgBackRest's health (`pgbackrest info` parsed) for
//!   the `pgbackrest` facts and `agent pgbackrest check`.
//! - [`schedule`]: drift correction (`agent run`), the timer installer,
//!   signal handling for the long-running modes.
//! - [`testbed`]: the demo scenarios and the stand-in applications; the
//!   product's code path never imports it.
//! - [`yaml`]: the YAML codec every layer reads and writes YAML through.

pub mod cli;
pub mod engine;
pub mod failover;
pub mod pgbackrest;
pub mod schedule;
pub mod settings;
pub mod testbed;
pub mod yaml;
