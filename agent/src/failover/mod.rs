//! The failover side: the clusters of Hiera ([`clusters`]), what each node
//! says ([`probe`]), the status plusmoin tracks ([`status`]: master, slaves
//! and their lag, lost and clusterless nodes), `db_master` and its sources
//! ([`dbmaster`]: the probe; [`dcs`]: Patroni's etcd keys or REST API), the
//! reactive loop that applies as soon as a watched fact changes
//! ([`watch`]), and the cluster-event hooks it fires ([`hooks`]).

pub mod clusters;
pub mod dbmaster;
pub mod dcs;
pub mod fence;
pub mod hooks;
pub mod probe;
pub mod status;
pub mod watch;
