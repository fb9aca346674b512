//! `brh-shared`: the part of BRH that both the forge and the agent compile in.
//!
//! Everything here is sans-IO: no sockets, no clock, no randomness. Time (unix milliseconds),
//! node ids and nonces are passed in by the caller, and every function returns a value or a
//! decision. That is what lets the same election run in a Cloudflare Worker, a Durable Object
//! and a native process, and what makes it testable with property tests.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod decimal;
pub mod election;
pub mod hex;
pub mod ids;
pub mod json;
pub mod keys;
pub mod mac;
pub mod operator;
pub mod replay;
pub mod root;
pub mod route;
pub mod sign;
pub mod timing;
pub mod token;
pub mod wire;

pub use election::{
    Change, Durability, ElectionConfig, ElectionError, ElectionMethod, EnvState, Lease, Outcome,
    Peer, Record,
};
pub use timing::Timing;

/// The protocol version string that prefixes every signed message.
pub const PROTOCOL: &str = "brh-v1";
