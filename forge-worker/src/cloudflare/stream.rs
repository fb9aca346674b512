//! `GET /federation/stream` on Cloudflare (durable-object mode): the Worker hands the upgrade
//! to the env's [`LeaseRegister`](super::durable::LeaseRegister), which accepts it with the
//! **hibernatable** WebSocket API — an idle register leaves memory while its sockets stay
//! open, and each message received costs 1/20 of a request, with no Worker request at all.
//!
//! What a socket must remember survives hibernation in its attachment ([`Socket`]): its env,
//! the node that bound it, the newest request accepted on it (the basis of pushes) and what
//! it was last told. The register's state does not need to survive: a woken instance reloads
//! from storage and applies the restart rule, exactly as after an eviction.
use brh_shared::wire::StreamMessage;
use serde::{Deserialize, Serialize};
use worker::{console_error, WebSocket};

use crate::stream::Told;

/// A socket's attachment (kept by the runtime across hibernation; ≤ 2 KiB).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Socket {
    pub env: String,
    pub node: Option<String>,
    pub basis: Option<String>,
    /// What the last view sent said: a push that repeats it is skipped.
    pub told: Option<Told>,
}

/// Sends `m` on `ws`, remembering what it told; a socket that cannot take it is closed (the
/// agent falls back to HTTP and reconnects).
pub fn send(ws: &WebSocket, socket: &mut Socket, m: &StreamMessage) {
    if let Some(v) = &m.view {
        socket.told = Some(Told::of(v));
    }
    let sent = serde_json::to_string(m)
        .map_err(|e| worker::Error::RustError(e.to_string()))
        .and_then(|t| ws.send_with_str(t));
    if let Err(e) = sent {
        console_error!("stream send failed, closing the socket: {e}");
        let _ = ws.close(Some(1011), Some("send failed"));
        return;
    }
    if let Err(e) = ws.serialize_attachment(&*socket) {
        console_error!("cannot keep the socket's attachment: {e}");
    }
}
