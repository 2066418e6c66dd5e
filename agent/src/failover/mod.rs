//! The failover side: `db_master` and its sources ([`dbmaster`]), the
//! reactive loop that applies as soon as a watched fact changes
//! ([`watch`]), and the cluster-event hooks it fires ([`hooks`]).

pub mod dbmaster;
pub mod hooks;
pub mod watch;
