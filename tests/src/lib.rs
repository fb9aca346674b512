//! Shared helpers for the integration tests in `tests/tests/`.
//!
//! - `forge`: start/stop the native forge binary and sign requests to it (forge e2e tests).
//! - `federation`: start/stop agents against a forge (agent fault-injection tests).
pub mod drill;
pub mod federation;
pub mod forge;
pub mod revocation;
pub mod rotation;
pub mod sim;
pub mod stolen;
