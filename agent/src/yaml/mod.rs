//! YAML for the agent: manifests, hiera.yaml, Hiera data and facts.d files
//! are read through saphyr-parser's events into a [`Node`] tree that keeps
//! each node's line and column and each scalar's style (plain or quoted).
//! Positions are what error messages point at; the style is what typing a
//! scalar needs (only a plain `5` is a number, `"5"` stays a string).
//!
//! - [`parse`]: text → [`Node`] (aliases, merge keys, duplicate keys);
//! - [`Node::to_json`]: a tree as JSON under the YAML 1.2 core schema
//!   (manifests, hiera.yaml, facts.d); [`yaml11::resolve`] types plain
//!   scalars as Puppet does instead (Hiera data);
//! - [`from_node`]: serde structs (with `deny_unknown_fields`) from a node,
//!   errors carrying the node's position;
//! - [`to_string`]: JSON written back as YAML.

mod de;
mod emit;
mod load;
mod node;
pub mod yaml11;

pub use de::{from_node, DeError};
pub use emit::to_string;
pub use load::{parse, YamlError};
pub use node::{Data, Mark, Node, Scalar, Style};
