//! The `agent` engine: facts → Hiera → manifest compile → catalog → apply →
//! report. Everything before `apply` is pure: it reads, it never writes.

pub mod apply;
pub mod backup_cmd;
pub mod catalog;
pub mod cli;
pub mod compile;
pub mod daemon;
pub mod dbmaster;
pub mod demo;
pub mod facts;
pub mod hiera;
pub mod hooks;
pub mod lint;
pub mod manifest;
pub mod render;
pub mod report;
pub mod signals;
pub mod standin;
pub mod state;
pub mod timer;
pub mod watch;
