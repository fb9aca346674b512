//! Exhaustive checks of BRH's protocols at small bounds, with `stateright` (it explores every
//! interleaving of a Rust state machine's steps up to a bound, the way TLC checks TLA+).
//! The models live in `tests/`: `tests/replica_model.rs` (forge replicas over a store with
//! leases, docs/design.md §12). Beside the random simulation (`brh-tests`, `tests/src/sim.rs`),
//! which runs the real code over long runs, these cover every short run.
