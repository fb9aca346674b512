//! The streaming channel's core, for both runtimes (`GET /federation/stream`, one WebSocket
//! per agent): a signed request arrives as one text frame and goes through exactly the
//! checks of HTTP — signature (method line `WS`), skew, replay, body — on the one path of a
//! node's signed write (`Forge::node_write`), and the typed answer goes back as a
//! [`StreamMessage`] whose view is bound to that request (`basis`). After a leader change the
//! runtime pushes [`Forge::stream_view`] to every socket of the env.
//!
//! A socket belongs to one node (the first request that verifies binds it) and one env (its
//! `?env=`); a frame for another node or env is refused and changes nothing.
use brh_shared::ids::validate_id;
use brh_shared::route;
use brh_shared::sign;
use brh_shared::wire::{
    read_object, ErrorCode, ErrorDetail, LeaderView, Role, StreamMessage, StreamRequest,
    MAX_BODY_BYTES, STREAM_METHOD, STREAM_PATH,
};
use serde::{Deserialize, Serialize};

use crate::forge::{Forge, LeaderChange, ViewFor, DEFAULT_ENV};
use crate::http::{Request, Response};
use crate::store::Store;

/// Largest frame read from a socket: a full request body plus its authentication fields.
pub const MAX_FRAME_BYTES: usize = MAX_BODY_BYTES + 1024;

/// What one frame did.
#[derive(Debug)]
pub struct StreamOutcome {
    /// To send back on the socket.
    pub message: StreamMessage,
    /// The node that signed the frame, when it verified: the socket belongs to it now.
    pub node: Option<String>,
    /// The frame's nonce, when the forge accepted it (the basis of later pushes).
    pub accepted: Option<String>,
    pub leader_changes: Vec<LeaderChange>,
}

/// What a socket was last told: a push that repeats it (same leader, term and role of the
/// socket's node) tells nothing and is skipped, so renewals push nothing. Both runtimes keep
/// one per socket (the Durable Object in the socket's attachment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told {
    pub(crate) leader: Option<String>,
    pub(crate) term: u64,
    pub(crate) role: Option<Role>,
}

impl Told {
    pub fn of(v: &LeaderView) -> Told {
        Told {
            leader: v.leader.clone(),
            term: v.term,
            role: v.you.as_ref().map(|y| y.role),
        }
    }

    /// Whether `m` tells a socket last told `last` anything new.
    pub fn is_news(m: &StreamMessage, last: Option<&Told>) -> bool {
        m.view.as_ref().map(Told::of).as_ref() != last
    }
}

fn refused(reply_to: Option<String>, code: ErrorCode, message: String) -> StreamOutcome {
    StreamOutcome {
        message: StreamMessage {
            reply_to,
            view: None,
            error: Some(ErrorDetail { code, message }),
            basis: None,
            basis_sig: None,
        },
        node: None,
        accepted: None,
        leader_changes: Vec::new(),
    }
}

/// Whether `req` is for the stream, and if so the env it opens or the JSON refusal — the same
/// answers on every runtime (the native server, the Worker and the register).
pub fn upgrade_target(req: &Request) -> Option<Result<String, Response>> {
    if req.path != STREAM_PATH {
        return None;
    }
    if req.method != "GET" {
        return Some(Err(Response::error(
            ErrorCode::MethodNotAllowed,
            "/federation/stream takes GET with a WebSocket upgrade",
        )
        .with_header("allow", "GET")));
    }
    let env = req.query_param("env").unwrap_or_else(|| DEFAULT_ENV.into());
    if let Err(e) = validate_id(&env) {
        return Some(Err(Response::error(
            ErrorCode::BadRequest,
            format!("env {e}"),
        )));
    }
    let upgrade = req.header("upgrade").unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Some(Err(Response::error(
            ErrorCode::BadRequest,
            "/federation/stream needs a WebSocket upgrade (Upgrade: websocket)",
        )));
    }
    Some(Ok(env))
}

impl<S: Store> Forge<S> {
    /// Handles one frame received on a socket of `env`, bound to `bound` (if a request
    /// already verified on it), at `now_ms`.
    pub async fn handle_stream(
        &self,
        env: &str,
        bound: Option<&str>,
        frame: &[u8],
        now_ms: u64,
    ) -> StreamOutcome {
        if frame.len() > MAX_FRAME_BYTES {
            let m = format!("frame is larger than {MAX_FRAME_BYTES} bytes");
            return refused(None, ErrorCode::TooLarge, m);
        }
        let r: StreamRequest = match read_object(frame) {
            Ok(r) => r,
            Err(e) => return refused(None, ErrorCode::BadRequest, format!("frame: {e}")),
        };
        let reply_to = Some(r.nonce.clone());
        if let Some(b) = bound.filter(|b| *b != r.node) {
            let m = format!(
                "this stream belongs to node {b}; open another for {}",
                r.node
            );
            return refused(reply_to, ErrorCode::BadRequest, m);
        }
        let Some(route) = route::route(&r.path).filter(|route| route.on_stream) else {
            let m = format!("{} cannot be sent on the stream", r.path);
            return refused(reply_to, ErrorCode::NotFound, m);
        };
        // The frame's fields are the headers of an HTTP request, signed with the method
        // line `WS`; from here on it takes the same path as a request over HTTP.
        let mut req = Request::new(STREAM_METHOD, &r.path);
        req.add_header(sign::HEADER_NODE, &r.node);
        req.add_header(sign::HEADER_TS, &r.ts.to_string());
        req.add_header(sign::HEADER_NONCE, &r.nonce);
        req.add_header(sign::HEADER_SIG, &r.sig);
        if let Some(g) = &r.key_gen {
            req.add_header(sign::HEADER_KEY_GEN, g);
        }
        req.body = r.body.into_bytes();
        self.count_request(route, true);
        let mut leader_changes = Vec::new();
        let written = match self
            .node_write(route, &req, Some(env), now_ms, &mut leader_changes)
            .await
        {
            Ok(w) => w,
            Err(refusal) => {
                let (code, message) = self.refused(refusal);
                return refused(reply_to, code, message);
            }
        };
        StreamOutcome {
            message: StreamMessage {
                reply_to: reply_to.clone(),
                view: Some(written.view),
                error: None,
                basis: Some(written.basis),
                basis_sig: Some(written.basis_sig),
            },
            node: Some(r.node),
            accepted: reply_to,
            leader_changes,
        }
    }

    /// The push for one socket of `env` after a change: the view as `node` sees it (the
    /// public view for a socket no request has bound), bound to `basis`, the newest request
    /// the forge accepted on that socket. `None` without a seal or when the store cannot be
    /// read (the agent's next heartbeat answers instead).
    pub async fn stream_view(
        &self,
        env: &str,
        node: Option<&str>,
        basis: Option<&str>,
        now_ms: u64,
    ) -> Option<StreamMessage> {
        self.seal_bytes()?;
        let cfg = &self.cfg;
        // Under the key the node last signed with (its generation, and during a rotation the
        // seal it was enrolled under); a node no longer in the table (revoked) gets nothing.
        let signed = self
            .store
            .read(
                env,
                now_ms,
                Box::new(|s| {
                    let key = match node {
                        Some(n) => Some((n, cfg.node_key(env, n, s.peers.get(n)?.key)?)),
                        None => None,
                    };
                    let to = match &key {
                        Some((n, k)) => ViewFor::Node(n, k),
                        None => ViewFor::Public,
                    };
                    Some((Self::signed_view(cfg, s, env, now_ms, to), key))
                }),
            )
            .await
            .ok()???;
        let (view, key) = signed;
        let basis_sig = match (&key, basis) {
            (Some((n, k)), Some(b)) => Some(sign::sign_basis(&k.0, n, b, &view.sig)),
            _ => None,
        };
        Some(StreamMessage {
            reply_to: None,
            basis: basis_sig.as_ref().and(basis.map(String::from)),
            basis_sig,
            view: Some(view),
            error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::ForgeConfig;
    use crate::store::MemoryStore;
    use brh_shared::election::ElectionConfig;
    use brh_shared::keys::node_key;
    use brh_shared::replay::Nonce;
    use brh_shared::sign::{sign_request, verify_basis, verify_view};
    use brh_shared::wire::Role;
    use brh_shared::Timing;

    const SEAL: &[u8] = b"stream-test-seal";
    const T0: u64 = 1_763_900_000_000;
    const HB: &str = r#"{"env":"dev","version":"t"}"#;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn forge() -> Forge<MemoryStore> {
        let mut cfg = ForgeConfig::new(Some(SEAL.to_vec()), "native");
        cfg.election = ElectionConfig::new(Timing::DEFAULT);
        Forge::new(cfg, MemoryStore::default())
    }

    /// A frame signed for `method` (`WS` on the stream; `POST` to try an HTTP signature).
    fn frame(method: &str, node: &str, seq: u64, body: &str, ts: u64) -> (Vec<u8>, String) {
        let nonce = Nonce::new("boot", seq);
        let path = "/federation/heartbeat";
        let key = node_key(SEAL, "dev", node);
        let h = sign_request(&key, method, path, node, ts, nonce, body.as_bytes());
        let r = StreamRequest {
            path: path.into(),
            node: node.into(),
            ts,
            nonce: h.nonce.to_string(),
            sig: h.sig,
            body: body.into(),
            key_gen: None,
        };
        (serde_json::to_vec(&r).unwrap(), h.nonce.to_string())
    }

    fn state(f: &Forge<MemoryStore>) -> Option<LeaderView> {
        block_on(f.stream_view("dev", None, None, T0 + 1))
            .and_then(|m| m.view)
            .map(|mut v| {
                v.issued_at_ms = 0;
                v.epoch = 0;
                v.sig.clear();
                v
            })
    }

    #[test]
    fn a_signed_frame_is_answered_with_a_view_bound_to_it() {
        let f = forge();
        let (fr, nonce) = frame("WS", "a", 1, HB, T0);
        let out = block_on(f.handle_stream("dev", None, &fr, T0));
        let m = out.message;
        let view = m.view.expect("a view");
        let (a, b) = (node_key(SEAL, "dev", "a"), node_key(SEAL, "dev", "b"));
        assert!(verify_view(&a, &view));
        assert!(!verify_view(&b, &view), "a's answer must not verify for b");
        assert_eq!(view.you.as_ref().map(|y| y.role), Some(Role::Leader));
        assert_eq!(m.reply_to.as_deref(), Some(nonce.as_str()));
        assert_eq!(m.basis.as_deref(), Some(nonce.as_str()));
        let bs = m.basis_sig.expect("basis_sig");
        assert!(verify_basis(&a, "a", &nonce, &view.sig, &bs));
        assert!(!verify_basis(&b, "b", &nonce, &view.sig, &bs));
        assert!(!verify_basis(SEAL, "a", &nonce, &view.sig, &bs));
        assert_eq!(out.node.as_deref(), Some("a"));
        assert_eq!(out.accepted.as_deref(), Some(nonce.as_str()));
        assert_eq!(out.leader_changes.len(), 1);
        // The push after the change, as `a` sees it, bound to the newest accepted request.
        let p = block_on(f.stream_view("dev", Some("a"), Some(&nonce), T0 + 5)).unwrap();
        let pv = p.view.unwrap();
        assert!(p.reply_to.is_none());
        assert_eq!(pv.you.as_ref().map(|y| y.role), Some(Role::Leader));
        assert!(verify_basis(
            &a,
            "a",
            &nonce,
            &pv.sig,
            &p.basis_sig.unwrap()
        ));
        assert!(verify_view(&a, &pv));
    }

    #[test]
    fn refused_frames_say_why_and_change_nothing() {
        let f = forge();
        let (ok, _) = frame("WS", "a", 1, HB, T0);
        block_on(f.handle_stream("dev", None, &ok, T0));
        let before = state(&f);
        let code = |bound: Option<&str>, fr: &[u8]| {
            let m = block_on(f.handle_stream("dev", bound, fr, T0 + 10)).message;
            assert!(m.view.is_none() && m.basis_sig.is_none());
            m.error.expect("an error").code
        };
        // The same frame again: a replay.
        assert_eq!(code(Some("a"), &ok), ErrorCode::Replay);
        // Signed for HTTP, sent on the stream: the method line differs.
        let (http, _) = frame("POST", "b", 2, HB, T0);
        assert_eq!(code(None, &http), ErrorCode::BadSignature);
        // A socket bound to `a` refuses `b`'s frames, however well signed.
        let (b, _) = frame("WS", "b", 3, HB, T0);
        assert_eq!(code(Some("a"), &b), ErrorCode::BadRequest);
        // Another env's body on a `dev` socket.
        let (other, _) = frame("WS", "b", 4, r#"{"env":"prod"}"#, T0);
        assert_eq!(code(None, &other), ErrorCode::BadRequest);
        // Skew, garbage, an array, too large.
        let (old, _) = frame("WS", "b", 5, HB, T0 - 3_600_000);
        assert_eq!(code(None, &old), ErrorCode::StaleTimestamp);
        assert_eq!(code(None, b"not json"), ErrorCode::BadRequest);
        assert_eq!(code(None, b"[1,2]"), ErrorCode::BadRequest);
        assert_eq!(
            code(None, &vec![b' '; MAX_FRAME_BYTES + 1]),
            ErrorCode::TooLarge
        );
        // A read path cannot be sent on the stream.
        let mut r: StreamRequest = serde_json::from_slice(&b).unwrap();
        r.path = "/federation/leader".into();
        assert_eq!(
            code(None, &serde_json::to_vec(&r).unwrap()),
            ErrorCode::NotFound
        );
        assert_eq!(state(&f), before, "a refused frame changed the state");
    }

    #[test]
    fn a_stream_signature_is_not_valid_over_http() {
        let f = forge();
        let (fr, _) = frame("WS", "a", 1, HB, T0);
        let r: StreamRequest = serde_json::from_slice(&fr).unwrap();
        for method in ["POST", "WS"] {
            let mut req = Request::new(method, &r.path);
            req.add_header(sign::HEADER_NODE, &r.node);
            req.add_header(sign::HEADER_TS, &r.ts.to_string());
            req.add_header(sign::HEADER_NONCE, &r.nonce);
            req.add_header(sign::HEADER_SIG, &r.sig);
            req.body = r.body.clone().into_bytes();
            let res = block_on(f.handle(&req, T0)).response;
            let want = if method == "POST" { 401 } else { 405 };
            assert_eq!(
                res.status,
                want,
                "{method}: {}",
                String::from_utf8_lossy(&res.body)
            );
        }
        assert!(state(&f).is_none(), "nothing was stored");
    }
}
