//! The failover side: the clusters of Hiera ([`clusters`]), what each node
//! says ([`probe`]), the status plusmoin tracks ([`status`]: master, slaves
//! and their lag, lost and clusterless nodes), `db_master` and its sources
//! ([`dbmaster`]: the probe; [`dcs`]: Patroni's etcd keys or REST API), the
//! reactive loop that applies as soon as a watched fact changes
//! ([`watch`]), the cluster-event hooks it fires ([`hooks`]), and the
//! standby site of two ([`dr`]: lag, `agent dr promote`; [`switchover`]:
//! `agent dr switchover`/`failback`), Patroni's watchdog where there is
//! none ([`fence`]: `agent fence`), and the Redis facts (`redis`,
//! `redis_master` from the sentinels: [`redis`]).

pub mod clusters;
pub mod dbmaster;
pub mod dcs;
pub mod dr;
pub mod fence;
pub mod hooks;
pub mod probe;
pub mod redis;
pub mod status;
pub mod switchover;
pub mod watch;
