//! Two sites on loopback (issue 14): Gold, a Patroni cluster, and GoldDR, a
//! Patroni *standby cluster* replicating from Gold's leader, each with its
//! own scope in one etcd (one member, Gold's: the tests keep CI time
//! down). One Patroni node per site by default.
//!
//! Start Gold with [`gold_options`], then GoldDR with [`golddr_options`]
//! (which points its `bootstrap.dcs.standby_cluster` at what the caller
//! gives, usually `{host, port}` of Gold's leader, and shares Gold's etcd
//! and passwords: a standby cluster clones and streams with Gold's
//! replication user).

use serde_json::Value;

use super::patroni::{Options, PatroniCluster};

/// Gold: a one-node (up to three) Patroni cluster with a one-member etcd,
/// nodes reaching etcd through 127.0.0.1 (no per-node etcd addresses).
pub fn gold_options(scope: &str, addrs: [&'static str; 3], nodes: usize) -> Options {
    Options {
        scope: scope.into(),
        addrs,
        nodes,
        etcd_members: 1,
        per_node_etcd_address: false,
        // One node: nothing to be synchronous with.
        synchronous_mode: nodes > 1,
        ..Options::default()
    }
}

/// GoldDR: a standby cluster of `gold` (its etcd, its passwords) under its
/// own scope, replicating as `standby_cluster` says.
pub fn golddr_options(
    gold: &PatroniCluster,
    scope: &str,
    addrs: [&'static str; 3],
    nodes: usize,
    standby_cluster: Value,
) -> Options {
    Options {
        scope: scope.into(),
        addrs,
        nodes,
        external_etcd: gold.etcd.iter().map(|m| m.client_port).collect(),
        per_node_etcd_address: false,
        synchronous_mode: nodes > 1,
        standby_cluster: Some(standby_cluster),
        password: Some(gold.password.clone()),
        ..Options::default()
    }
}
