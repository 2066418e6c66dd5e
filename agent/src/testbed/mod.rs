//! The test bed: the demo scenarios ([`demo`]) and the stand-in
//! applications they run ([`standin`]). Tests and `agent demo` use it; the
//! engine, the failover side and the schedule never import it.

pub mod demo;
pub mod standin;
