//! The test bed: the demo scenarios ([`demo`], [`plusmoin`], [`patroni_demo`]),
//! the stand-in applications they run ([`standin`]), a Patroni + etcd cluster
//! on loopback ([`patroni`]), two of them as a Gold site and its GoldDR
//! standby cluster ([`two_site`]) and the packages they install ([`packages`]).
//! Tests and `agent demo` use it; the engine, the failover side and the
//! schedule never import it.

pub mod demo;
pub mod packages;
pub mod patroni;
pub mod patroni_demo;
pub mod plusmoin;
pub mod standin;
pub mod two_site;
