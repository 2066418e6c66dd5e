//! Resource types and the small core they share.
//!
//! The engine (in the `agent` crate) compiles manifests into [`Decl`]s, asks the
//! [`registry`] to turn each into a typed [`Resource`], orders them, and then
//! calls `check` / `apply` / `refresh`. A type says *what* (its attributes,
//! validation and in-sync comparison); where there are several ways to do it,
//! a provider module beside the type says *how*.
//!
//! Every type lives in its own file named after it (`file.rs` ↔ `- file:`) and
//! is registered once, in [`registry`].

pub mod account_ledger;
pub mod accounts;
pub mod atomic;
pub mod attr;
pub mod backup;
pub mod confine;
pub mod core;
pub mod diff;
pub mod docs;
pub mod edited;
pub mod mode;
pub mod pg;
pub mod redact;
pub mod registry;
pub mod runner;
pub mod stage;
#[cfg(test)]
mod testing;
pub mod validate;

pub mod conf;
pub mod cron;
pub mod exec;
pub mod file;
pub mod group;
pub mod host;
pub mod package;
pub mod patroni_config;
pub mod pg_backup;
pub mod pg_cluster;
pub mod pg_conf;
pub mod pg_database;
pub mod pg_hba;
pub mod pg_role;
pub mod pg_standby;
pub mod port_free;
pub mod properties;
pub mod service;
pub mod user;
pub mod x509_cert;

pub use crate::core::{Change, Context, Decl, Location, Plan, Resource, ResourceError, ResourceId};
