//! Shared helpers for the integration tests in `tests/tests/` and the examples in
//! `tests/examples/`.
//!
//! - `federation`: spawn the real `forge` (native, or the built Worker in workerd) and
//!   `brh-agent` binaries, sign requests to them, cut links with a TCP proxy, send signals, and
//!   check the agents' leadership logs for overlap (the process tests).
//! - `sim`: the deterministic simulation of whole federations (docs/design.md §4.5).
//! - `drill`: fault drills on real processes.
//! - `bench`, `stats`: what the benches in `tests/examples/` share (three agents on a forge, their
//!   leader and promotions; the one percentile).
//! - `stolen`, `revocation`, `rotation`: the threat model, revoking a host, and rotating the root
//!   secret, each run against the native forge and the Worker.
pub mod bench;
pub mod drill;
pub mod etcd;
pub mod federation;
pub mod replica_drill;
pub mod revocation;
pub mod rotation;
pub mod sim;
pub mod stats;
pub mod stolen;
