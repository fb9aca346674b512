//! What the Worker and an env's lease register say to each other (`durable-object` mode): one
//! typed call, one typed reply, in one place. Only the stream's upgrade crosses as a raw
//! request, because the runtime must hand the socket itself to the register.
//!
//! Both sides are this crate, deployed together, so the encoding is JSON (written by serde, read
//! with `brh_shared::json`) with no versioning; the register answers a call it cannot decode with 400 and the Worker reports a
//! reply it cannot decode as the register being unavailable (503, nothing changed from the
//! caller's side that it was told about).
use brh_shared::json::{self, FromJson, Json, JsonError};
use brh_shared::wire::{ErrorCode, HistoryEntry};
use serde::Serialize;
use worker::Headers;

use super::request::json_post;
use crate::forge::{Handled, LeaderChange};
use crate::http::{Request, Response};

/// The register's one route for calls (reachable only through the namespace binding: the
/// Worker never forwards a client's request to it by path).
pub const CALL_PATH: &str = "/__brh/call";

/// A client's request for one env (a write, or a read answered fresh from memory), as the
/// core sees it. Only the headers the core reads cross (`x-brh-*`, `content-type`).
#[derive(Debug, Serialize)]
pub struct Forwarded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body as text: the Worker only routes bodies that are UTF-8 (a JSON body must be);
    /// anything else is refused by the core in the Worker.
    pub body: String,
}

impl Forwarded {
    /// `None` if the body is not UTF-8.
    pub fn of(req: &Request) -> Option<Forwarded> {
        Some(Forwarded {
            body: std::str::from_utf8(&req.body).ok()?.to_string(),
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("x-brh-") || *k == "content-type")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    pub fn into_request(self) -> Request {
        let mut req = Request {
            method: self.method,
            path: self.path,
            query: self.query,
            body: self.body.into_bytes(),
            ..Request::default()
        };
        for (k, v) in self.headers {
            req.add_header(&k, &v);
        }
        req
    }
}

/// A call from the Worker (or, `Evict`, from a test harness) to an env's register: JSON
/// `{"call": "serve", <the Forwarded fields>}`, `{"call": "sweep"}`, `{"call": "evict"}`.
/// Serialized as an internally tagged enum; read through [`CallFields`] (one plain struct),
/// not serde's derived internally-tagged reader, which buffers the object through its
/// `Content` type (kilobytes of Wasm for nothing).
#[derive(Debug, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum RegisterCall {
    Serve(Forwarded),
    /// The cron's sweep of this env.
    Sweep,
    /// Tests only (`BRH_TEST_FAULTS=evictable`): forget everything in memory, as an eviction
    /// or a hibernation does.
    Evict,
}

impl FromJson for RegisterCall {
    /// Every field a call may carry is read from one object (the [`Forwarded`] fields only
    /// with `serve`); unknown fields are ignored.
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        let f = v.fields()?;
        let kind: String = f.req("call")?;
        Ok(match kind.as_str() {
            "sweep" => RegisterCall::Sweep,
            "evict" => RegisterCall::Evict,
            "serve" => RegisterCall::Serve(Forwarded {
                method: f.req("method")?,
                path: f.req("path")?,
                query: f.req("query")?,
                headers: f.req("headers")?,
                body: f.req("body")?,
            }),
            other => return Err(JsonError::unknown_variant(other).under("call")),
        })
    }
}

/// The register's reply: the answer to relay, the leader changes it caused (for the Worker's
/// ledger and counters) and, typed, why it was refused if it was.
#[derive(Debug, Serialize)]
pub struct RegisterReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `(env, entry)` pairs rather than [`LeaderChange`]s: its `#[serde(flatten)]` would
    /// deserialize through serde's buffered `Content` path, kilobytes of Wasm for nothing.
    changes: Vec<(String, HistoryEntry)>,
    pub refusal: Option<ErrorCode>,
}

impl FromJson for RegisterReply {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        let f = v.fields()?;
        Ok(RegisterReply {
            status: f.req("status")?,
            headers: f.req("headers")?,
            body: f.req("body")?,
            changes: f.req("changes")?,
            refusal: f.req("refusal")?,
        })
    }
}

impl RegisterReply {
    pub fn of(handled: Handled) -> RegisterReply {
        let Handled {
            response,
            leader_changes,
            refusal,
        } = handled;
        RegisterReply {
            status: response.status,
            headers: response.headers,
            body: String::from_utf8_lossy(&response.body).into_owned(),
            changes: leader_changes
                .into_iter()
                .map(|c| (c.env, c.entry))
                .collect(),
            refusal,
        }
    }

    /// The leader changes the call caused.
    pub fn changes(&self) -> Vec<LeaderChange> {
        self.changes
            .iter()
            .map(|(env, entry)| LeaderChange {
                env: env.clone(),
                entry: entry.clone(),
            })
            .collect()
    }

    /// The answer to relay to the client.
    pub fn response(&self) -> Response {
        Response {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone().into_bytes(),
        }
    }
}

/// Sends `call` to the register behind `stub` and decodes its reply.
pub async fn call(stub: &worker::Stub, call: &RegisterCall) -> worker::Result<RegisterReply> {
    let body = serde_json::to_string(call).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let req = json_post(
        &format!("https://lease-register.internal{CALL_PATH}"),
        &headers,
        &body,
    )?;
    let mut resp = stub.fetch_with_request(req).await?;
    let text = resp.text().await?;
    if resp.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "the register refused the call: {} {text}",
            resp.status_code()
        )));
    }
    json::from_json(text.as_bytes())
        .map_err(|e| worker::Error::RustError(format!("undecodable register reply: {e}")))
}
