//! `GET /federation/stream` on Cloudflare (durable-object mode): the Worker hands the upgrade
//! to the env's [`LeaseRegister`](super::durable::LeaseRegister), which accepts it with the
//! **hibernatable** WebSocket API — an idle register leaves memory while its sockets stay
//! open, and each message received costs 1/20 of a request, with no Worker request at all.
//!
//! What a socket must remember survives hibernation in its attachment ([`Socket`]): its env,
//! the node that bound it, the newest request accepted on it (the basis of pushes) and what
//! it was last told. The register's state does not need to survive: a woken instance reloads
//! from storage and applies the restart rule, exactly as after an eviction.
use brh_shared::wire::{Role, StreamMessage};
use worker::js_sys::{Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::worker_sys::ext::WebSocketExt;
use worker::{console_error, WebSocket};

use crate::stream::Told;

/// A socket's attachment (kept by the runtime across hibernation; ≤ 2 KiB): the JS object
/// `{env, node, basis, told: {leader, term, role}}`, absent options `undefined` — what
/// worker's serde_wasm_bindgen `serialize_attachment` made of it, built and read here with
/// `Reflect` (serde_wasm_bindgen is kilobytes of Wasm for these four fields).
#[derive(Debug, Clone, Default)]
pub struct Socket {
    pub env: String,
    pub node: Option<String>,
    pub basis: Option<String>,
    /// What the last view sent said: a push that repeats it is skipped.
    pub told: Option<Told>,
}

fn set(o: &Object, key: &str, v: JsValue) -> Result<(), JsValue> {
    Reflect::set(o, &JsValue::from_str(key), &v).map(|_| ())
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(v, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_null() && !v.is_undefined())
}

/// An optional string field: `Some(None)` if absent, `None` if not a string.
fn opt_string(v: &JsValue, key: &str) -> Option<Option<String>> {
    match get(v, key) {
        None => Some(None),
        Some(s) => s.as_string().map(Some),
    }
}

fn opt_str(s: &Option<String>) -> JsValue {
    s.as_deref().map_or(JsValue::UNDEFINED, JsValue::from_str)
}

/// `2^53 - 1`: the largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Socket {
    fn to_js(&self) -> Result<JsValue, JsValue> {
        let o = Object::new();
        set(&o, "env", JsValue::from_str(&self.env))?;
        set(&o, "node", opt_str(&self.node))?;
        set(&o, "basis", opt_str(&self.basis))?;
        let told = match &self.told {
            None => JsValue::UNDEFINED,
            Some(t) => {
                if t.term > MAX_SAFE_INTEGER {
                    return Err(JsValue::from_str("term is too large for a JS number"));
                }
                let j = Object::new();
                set(&j, "leader", opt_str(&t.leader))?;
                set(&j, "term", JsValue::from_f64(t.term as f64))?;
                let role = t
                    .role
                    .map_or(JsValue::UNDEFINED, |r| JsValue::from_str(r.as_str()));
                set(&j, "role", role)?;
                j.into()
            }
        };
        set(&o, "told", told)?;
        Ok(o.into())
    }

    /// `None` if `v` is not a socket's attachment.
    fn from_js(v: &JsValue) -> Option<Socket> {
        let told = match get(v, "told") {
            None => None,
            Some(t) => {
                let term = get(&t, "term")?.as_f64()?;
                if !(term >= 0.0 && term <= MAX_SAFE_INTEGER as f64 && term.fract() == 0.0) {
                    return None;
                }
                let role = match get(&t, "role") {
                    None => None,
                    Some(r) => Some(match r.as_string()?.as_str() {
                        "leader" => Role::Leader,
                        "witness" => Role::Witness,
                        _ => return None,
                    }),
                };
                Some(Told {
                    leader: opt_string(&t, "leader")?,
                    term: term as u64,
                    role,
                })
            }
        };
        Some(Socket {
            env: get(v, "env")?.as_string()?,
            node: opt_string(v, "node")?,
            basis: opt_string(v, "basis")?,
            told,
        })
    }

    /// Keeps `self` as `ws`'s attachment.
    pub fn keep(&self, ws: &WebSocket) -> worker::Result<()> {
        let v = self.to_js()?;
        ws.as_ref().serialize_attachment(v)?;
        Ok(())
    }

    /// `ws`'s attachment; `None` if it has none or it is not a socket's.
    pub fn of(ws: &WebSocket) -> Option<Socket> {
        let v = ws.as_ref().deserialize_attachment().ok()?;
        Socket::from_js(&v)
    }
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
    if let Err(e) = socket.keep(ws) {
        console_error!("cannot keep the socket's attachment: {e}");
    }
}
