//! The BRH forge: grants leadership leases, one handler core for two runtimes.
//!
//! - [`forge`]: target-independent routing and handlers over the [`store::Store`] trait, using
//!   the `brh-shared` election state machine. No clock: the current time is passed in.
//! - `native` (not on wasm32): the embedded single-binary forge — an HTTP server and an
//!   on-disk store, linearizable because one task applies every event in order.
//! - `cloudflare` (wasm32 only): the Worker — Workers KV store, optional Durable Object lease
//!   register, cron sweep, ledger forwarding.
pub mod dashboard;
pub mod forge;
pub mod http;
pub mod metrics;
pub mod store;
pub mod stream;
pub mod vecmap;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;

#[cfg(target_arch = "wasm32")]
mod cloudflare;

// The Workers KV key layout is pure; its tests run on the host too.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "cloudflare/kv/layout.rs"]
mod cloudflare_layout;

pub use forge::{Forge, ForgeConfig, Handled, LeaderChange};
pub use store::{HistoryPage, MemoryStore, Store, StoreError};
