//! A small client for etcd's v3 API over its JSON gateway (`POST /v3/...`, keys and values in
//! base64, 64-bit numbers as strings). Only what the forge needs: leases (grant, keepalive,
//! revoke), ranges, and transactions with compares.
//!
//! Why the gateway and not gRPC (`etcd-client`): every etcd since 3.3 serves it on the client
//! port, it needs no `protoc` at build time, and reqwest and rustls are already in the tree.
//! The forge's calls are few (a keepalive and a range per second, a transaction per durable
//! step), so the JSON's overhead is no cost that matters.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// How to reach the cluster: endpoints (tried in order, the one that answered first kept),
/// TLS and credentials.
#[derive(Clone, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// PEM CA bundle that signs the members' certificates (`https://` endpoints).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate + key, for clusters with `--client-cert-auth`.
    pub identity_pem: Option<Vec<u8>>,
    /// etcd's own user authentication (`etcdctl user add`).
    pub user: Option<(String, String)>,
    /// Bound on one call (a keepalive, a range, a transaction).
    pub timeout: Duration,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.ca_pem.is_some())
            .field("client_cert", &self.identity_pem.is_some())
            .field("user", &self.user.as_ref().map(|u| &u.0))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError(pub String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd: {}", self.0)
    }
}

impl std::error::Error for EtcdError {}

/// One key as a range or a failed compare returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Range {
        key: String,
    },
    /// Every key in `[from, to)`.
    DeleteRange {
        from: String,
        to: String,
    },
}

/// A compare of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's create revision equals this (0: the key does not exist).
    CreateRevision { key: String, revision: i64 },
}

#[derive(Debug, Clone, Default)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store's revision after the transaction (the revision of its puts, if it wrote).
    pub revision: i64,
    /// The keys its range operations returned, in order.
    pub kvs: Vec<Kv>,
}

#[derive(Clone)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Arc<Vec<String>>,
    /// The endpoint that answered last: tried first.
    current: Arc<AtomicUsize>,
    user: Option<(String, String)>,
    token: Arc<std::sync::Mutex<Option<String>>>,
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

/// The gateway writes 64-bit numbers as strings (and leaves out zeros).
fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv_of(v: &Value) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: unb64(&v["value"]),
        create_revision: num(&v["create_revision"]),
        mod_revision: num(&v["mod_revision"]),
        lease: num(&v["lease"]),
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".into()
}

impl Etcd {
    pub fn new(opts: &EtcdOptions) -> Result<Self, EtcdError> {
        if opts.endpoints.is_empty() {
            return Err(EtcdError("no endpoints".into()));
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(ca) = &opts.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| EtcdError(format!("CA bundle: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some(id) = &opts.identity_pem {
            b = b.identity(
                reqwest::Identity::from_pem(id)
                    .map_err(|e| EtcdError(format!("client certificate: {e}")))?,
            );
        }
        let http = b
            .build()
            .map_err(|e| EtcdError(format!("HTTP client: {e}")))?;
        Ok(Etcd {
            http,
            endpoints: Arc::new(
                opts.endpoints
                    .iter()
                    .map(|e| e.trim_end_matches('/').to_string())
                    .collect(),
            ),
            current: Arc::new(AtomicUsize::new(0)),
            user: opts.user.clone(),
            token: Arc::default(),
        })
    }

    /// One call, on the endpoint that answered last, then on each other in turn: a member
    /// that is down or cut off costs one timeout, not the call.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = EtcdError("no endpoint answered".into());
        for i in 0..n {
            let at = (start + i) % n;
            match self.call_one(at, path, &body).await {
                Ok(v) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                // The member answered: its refusal is the cluster's (another member would
                // say the same), except a member without a leader or quorum.
                Err((false, e)) => return Err(e),
                Err((true, e)) => last = e,
            }
        }
        Err(last)
    }

    /// `Err((retry_elsewhere, error))`.
    async fn call_one(
        &self,
        at: usize,
        path: &str,
        body: &Value,
    ) -> Result<Value, (bool, EtcdError)> {
        let base = &self.endpoints[at];
        for attempt in 0..2 {
            let mut req = self.http.post(format!("{base}{path}")).json(body);
            if self.user.is_some() {
                let token = self.token().await.map_err(|e| (true, e))?;
                req = req.header("authorization", token);
            }
            let res = req
                .send()
                .await
                .map_err(|e| (true, EtcdError(format!("{base}: {}", short(&e)))))?;
            let status = res.status();
            let v: Value = res
                .json()
                .await
                .map_err(|e| (true, EtcdError(format!("{base}: unreadable answer: {e}"))))?;
            if status.is_success() && v.get("error").is_none() {
                return Ok(v);
            }
            let msg = v["error"]
                .as_str()
                .or(v["message"].as_str())
                .unwrap_or("error")
                .to_string();
            // An expired auth token: authenticate again, once.
            if self.user.is_some() && attempt == 0 && msg.contains("token") {
                *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                continue;
            }
            let elsewhere = status.is_server_error()
                || msg.contains("no leader")
                || msg.contains("timed out")
                || msg.contains("not capable");
            return Err((elsewhere, EtcdError(format!("{base}: {status}: {msg}"))));
        }
        Err((true, EtcdError(format!("{base}: authentication failed"))))
    }

    async fn token(&self) -> Result<String, EtcdError> {
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(t);
        }
        let Some((name, password)) = &self.user else {
            return Err(EtcdError("no user".into()));
        };
        let base = &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()];
        let v: Value = self
            .http
            .post(format!("{base}/v3/auth/authenticate"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .await
            .map_err(|e| EtcdError(format!("{base}: {}", short(&e))))?
            .json()
            .await
            .map_err(|e| EtcdError(format!("{base}: unreadable answer: {e}")))?;
        let t = v["token"]
            .as_str()
            .ok_or_else(|| EtcdError(format!("authentication refused for user {name}")))?
            .to_string();
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
        Ok(t)
    }

    /// A new lease of `ttl_s` seconds (etcd may raise a ttl below its minimum); returns its
    /// id and granted ttl.
    pub async fn grant(&self, ttl_s: u64) -> Result<(i64, u64), EtcdError> {
        let v = self.call("/v3/lease/grant", json!({"TTL": ttl_s})).await?;
        let id = num(&v["ID"]);
        if id == 0 {
            return Err(EtcdError(format!("lease grant without an id: {v}")));
        }
        Ok((id, num(&v["TTL"]).max(0) as u64))
    }

    /// Renews a lease; its remaining ttl, 0 if it has expired (or never existed).
    pub async fn keepalive(&self, lease: i64) -> Result<u64, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(num(&v["result"]["TTL"]).max(0) as u64)
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Every key that starts with `prefix`, at one revision (linearizable).
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({"key": b64(prefix.as_bytes()), "range_end": b64(prefix_end(prefix).as_bytes())}),
            )
            .await?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv_of).collect())
            .unwrap_or_default();
        Ok((kvs, num(&v["header"]["revision"])))
    }

    /// One key, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self
            .call("/v3/kv/range", json!({"key": b64(key.as_bytes())}))
            .await?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).map(kv_of))
    }

    /// `if all compares hold { success } else { failure }`, atomically.
    pub async fn txn(
        &self,
        compares: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::CreateRevision { key, revision } => json!({
                    "key": b64(key.as_bytes()),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": revision.to_string(),
                }),
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Value> {
            ops.iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => {
                        let mut p = json!({"key": b64(key.as_bytes()), "value": b64(value)});
                        if let Some(l) = lease {
                            p["lease"] = json!(l.to_string());
                        }
                        json!({"request_put": p})
                    }
                    Op::Range { key } => json!({"request_range": {"key": b64(key.as_bytes())}}),
                    Op::DeleteRange { from, to } => json!({"request_delete_range": {
                        "key": b64(from.as_bytes()),
                        "range_end": b64(to.as_bytes()),
                    }}),
                })
                .collect()
        };
        let v = self
            .call(
                "/v3/kv/txn",
                json!({"compare": compare, "success": ops(success), "failure": ops(failure)}),
            )
            .await?;
        let mut kvs = Vec::new();
        for r in v["responses"].as_array().into_iter().flatten() {
            if let Some(a) = r["response_range"]["kvs"].as_array() {
                kvs.extend(a.iter().map(kv_of));
            }
        }
        Ok(TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: num(&v["header"]["revision"]),
            kvs,
        })
    }
}

fn short(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s = format!("{s}: {c}");
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("brh/"), "brh0");
        assert_eq!(prefix_end("a"), "b");
    }

    #[test]
    fn numbers_come_as_strings_or_not_at_all() {
        assert_eq!(num(&json!("12")), 12);
        assert_eq!(num(&json!(7)), 7);
        assert_eq!(num(&Value::Null), 0);
    }
}
