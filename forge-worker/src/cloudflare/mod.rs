//! The Cloudflare Worker: thin glue around the same [`Forge::handle`](crate::forge::Forge::handle)
//! the native forge runs.
//!
//! Two modes, chosen by the bindings present (docs/design.md §5.5, §5.6):
//! - `kv` (only the KV namespace `BRH_KV` is bound): the election step runs in the Worker over
//!   Workers KV ([`kv::store::KvModeStore`]), and every read of an env's state comes from KV. Safe within
//!   one location; across locations two leaders are possible while KV disagrees. No stream.
//! - `durable-object` (the Durable Object namespace `LEASES` is bound too): the Worker forwards
//!   to the Durable Object named by the env ([`register::LeaseRegister`]) every federation write
//!   (heartbeat, resign, consensus, revoke), the env's reads (`/federation/leader`, `/peers`,
//!   `/history`, and `/metrics?env=`: answered fresh from the register's memory, no KV
//!   operation), the stream's upgrade, and the cron sweep of the env. The register runs the same
//!   handler over its transactional storage — a linearizable lease register — and mirrors the
//!   results into KV in the same layout. The Worker itself answers `/`, `/health`,
//!   `/manifest/resolve`, its own `/metrics` (no `env`), and `/federation/envs` from KV's env
//!   index.
//!
//! Settings (vars, or secrets for the seals): `DOMINION_SEAL` (secret; without it the core
//! answers 503 `no_seal`), `DOMINION_SEAL_PREVIOUS` (secret, while rotating the root secret),
//! `BRH_LEASE_TTL_MS` and `BRH_HEARTBEAT_INTERVAL_MS` (default 15000 / 5000, checked with the
//! timing rule), `BRH_SKEW_MS` (default 30000), `FORGE_DOMINION_ROOT`, `LEDGER_URL` (optional:
//! every leader change is POSTed there, signed, off the request path),
//! `BRH_LEGACY_SEAL_SIGNATURES` (one release of compatibility with seal-signed agents) and
//! `BRH_TEST_FAULTS` (tests only).
//! A bad timing var or a missing KV binding does not fail silently: every endpoint but the
//! dashboard page answers 503 `no_seal` with a message naming the setting to fix.
//!
//! The rooms (each knows only those below it):
//! - [`entry`]: the Worker's `fetch` and `scheduled` events and its per-isolate forge;
//! - [`register`]: the Durable Object, over [`do_store`] (its storage) and [`kv::mirror`];
//! - [`message`]: the typed call and reply between the two;
//! - [`kv`]: KV itself — [`kv::layout`] (keys, pure), [`kv::store`] (`kv` mode), [`kv::reader`]
//!   (the Worker in `durable-object` mode), [`kv::mirror`] (the register's copy);
//! - [`store`]: the one store type the Worker's forge runs over, so the core is compiled once;
//! - [`setup`], [`request`], [`ledger`], [`lock`], [`stream`], [`join`]: settings, the Worker's
//!   HTTP types, the ledger, the isolate lock, the socket attachment, waiting on several
//!   futures.
pub mod do_store;
pub mod entry;
pub mod join;
pub mod kv;
pub mod ledger;
pub mod lock;
pub mod message;
pub mod register;
pub mod request;
pub mod setup;
pub mod store;
pub mod stream;
