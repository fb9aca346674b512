//! Every JSON type of `brh_shared::wire` (request and response bodies) and the JSON the forge
//! stores (`EnvState`, `Record`, `LeaseRecord`, `NonceMark`, `Timing`, `ElectionConfig`), each
//! parsed from the same arbitrary bytes.
//!
//! Properties:
//! 1. Parsing and the types' checks (`validate`, `as_str`, `http_status`, …) never panic.
//! 2. A value that parses serializes, and that JSON parses back to an equal value (all these
//!    types derive `PartialEq`); serializing again gives the same bytes.
//! 3. `ErrorCode` serializes to its `as_str()` and has a 4xx/5xx status.
#![no_main]

use brh_shared::election::{LeaseRecord, Record};
use brh_shared::replay::{Nonce, NonceMark};
use brh_shared::wire::{
    ConsensusReport, ErrorBody, ErrorCode, ErrorDetail, Heartbeat, HistoryEntry, LeaderView,
    LeaseInfo, PeerSummary, ResignRequest, Role, You,
};
use brh_shared::{ElectionConfig, ElectionMethod, EnvState, Timing};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[path = "common.rs"]
mod common;
use common::mix;

/// Parses `data` as `T`; if it parses, checks the JSON round trip and returns the value.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&v).expect("a parsed value serializes");
    let back: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "{} does not re-parse its own JSON {:?}: {e}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        back,
        v,
        "{} changed in a JSON round trip",
        std::any::type_name::<T>()
    );
    assert_eq!(serde_json::to_vec(&back).unwrap(), json, "JSON not stable");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let now = mix(data);

    // Request bodies.
    if let Some(v) = round_trip::<Heartbeat>(data) {
        let _ = v.validate();
    }
    if let Some(v) = round_trip::<ResignRequest>(data) {
        let _ = v.validate();
    }
    if let Some(v) = round_trip::<ConsensusReport>(data) {
        let _ = v.validate();
    }

    // Answers.
    if let Some(v) = round_trip::<LeaderView>(data) {
        let _ = v.lease_remaining_ms();
    }
    round_trip::<LeaseInfo>(data);
    if let Some(v) = round_trip::<You>(data) {
        let _ = v.role.as_str();
    }
    if let Some(r) = round_trip::<Role>(data) {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
    round_trip::<PeerSummary>(data);
    round_trip::<Vec<PeerSummary>>(data);
    round_trip::<HistoryEntry>(data);
    round_trip::<Vec<HistoryEntry>>(data);
    round_trip::<ErrorDetail>(data);
    if let Some(b) = round_trip::<ErrorBody>(data) {
        check_code(b.error.code);
    }
    if let Some(c) = round_trip::<ErrorCode>(data) {
        check_code(c);
    }

    // Stored state.
    if let Some(m) = round_trip::<NonceMark>(data) {
        let n = Nonce::new(m.boot_id.clone(), m.seq.wrapping_add(1));
        let _ = m.admits(&n, now);
        let mut m2 = m.clone();
        m2.advance(&n, now);
    }
    if let Some(t) = round_trip::<Timing>(data) {
        if t.validate().is_ok() {
            let _ = (t.safety_margin_ms(), t.peer_dead_after_ms());
        }
    }
    round_trip::<ElectionConfig>(data);
    round_trip::<ElectionMethod>(data);
    round_trip::<EnvState>(data);
    round_trip::<LeaseRecord>(data);
    round_trip::<Record>(data);
    round_trip::<Vec<Record>>(data);
});

fn check_code(c: ErrorCode) {
    assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    assert!((400..600).contains(&c.http_status()));
}
