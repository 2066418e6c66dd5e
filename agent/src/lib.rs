//! The `agent` engine: facts → Hiera → manifest compile → catalog → apply →
//! report. Everything before `apply` is pure: it reads, it never writes.

pub mod apply;
pub mod backup_cmd;
pub mod catalog;
pub mod cli;
pub mod compile;
pub mod dbmaster;
pub mod facts;
pub mod hiera;
pub mod lint;
pub mod manifest;
pub mod render;
pub mod report;
pub mod state;
