//! The local API (axum). Reads are open (like the original); mutating endpoints require an
//! operator's signature with the route's scope (`auth.rs`) and then pass the leader guard.
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brh_shared::ids::validate_id;
use brh_shared::operator::{Scope, HEADER_OPERATOR};
use brh_shared::sign::{RawAuth, HEADER_NODE, HEADER_NONCE, HEADER_SIG, HEADER_TS};
use brh_shared::wire::{ErrorCode, MAX_BODY_BYTES};
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::auth::ApiAuth;
use crate::client::ForgeClient;
use crate::clock;
use crate::containers::orchestrator::OrchestratorError;
use crate::containers::policy::PullPolicy;
use crate::containers::{reference, Orchestrator};
use crate::events::TAIL;
use crate::node::Shared;
use crate::switchover::{SwitchoverError, SwitchoverRequest};
use brh_http_server::{self as server, Limits};

#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub auth: Arc<ApiAuth>,
    /// Read-only forge access (peers for `/federation/state`); never signs.
    pub forge: Arc<ForgeClient>,
    /// The container layer; `None` without a manifest with services.
    pub containers: Option<Arc<Orchestrator>>,
    /// The HTTP server's deadlines (the body read timeout is applied here).
    pub limits: Limits,
    /// To the keeper, which performs switchovers (it alone signs forge requests).
    pub switchover: tokio::sync::mpsc::Sender<SwitchoverRequest>,
}

pub struct ApiError(pub ErrorCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        server::error_response(self.0, self.1)
    }
}

fn e(code: ErrorCode, m: impl Into<String>) -> ApiError {
    ApiError(code, m.into())
}

pub fn router(state: ApiState) -> Router {
    let origins = &state.shared.cfg.allowed_origins;
    let cors = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    let cors = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        cors.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        cors.allow_origin(AllowOrigin::list(list))
    };
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/federation/state", get(federation_state))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/deploy", post(deploy))
        .route("/federation/nudge", post(nudge))
        .route("/restart/{name}", post(restart))
        .route("/drain/{name}", post(drain))
        .route("/switchover", post(switchover))
        // Only matched routes: a POST to an unknown path is a plain 404.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authenticated_body,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(json_errors))
        .layer(cors)
        .with_state(state)
}

/// Every mutating route is signed. Before the body is read, its headers must be present,
/// sent once, canonical and fresh; then the body is read with the size cap and the read
/// timeout. The handler checks the signature over the body it is given.
async fn authenticated_body(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || req.uri().path() == "/federation/nudge" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let raw = RawHeaders::of(&parts.headers);
    if let Err(err) = s.auth.precheck(raw.auth(), clock::wall_ms()) {
        return e(ErrorCode::Unauthorized, err.to_string()).into_response();
    }
    match server::read_body(
        &parts.headers,
        body,
        MAX_BODY_BYTES,
        s.limits.body_read_timeout,
    )
    .await
    {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(err) => err.into_response(MAX_BODY_BYTES),
    }
}

/// Refusals made by the framework itself (a path that is not UTF-8, a malformed request)
/// come as text; turn them into the API's JSON error so every refusal has one shape.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::Timeout,
        413 => ErrorCode::TooLarge,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let text = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = server::error_response(code, message);
    // The framework's status is kept (415, 431, …): it is more precise than the code's.
    *out.status_mut() = status;
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// The `x-brh-*` headers as sent; a header sent twice is joined with `", "` (and refused by
/// the signature check) instead of silently using one copy.
struct RawHeaders([Option<String>; 4]);

impl RawHeaders {
    fn of(h: &HeaderMap) -> Self {
        let get = |n: &str| {
            let vals: Vec<&str> = h
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap_or("\u{fffd}"))
                .collect();
            (!vals.is_empty()).then(|| vals.join(", "))
        };
        RawHeaders([
            get(HEADER_NODE),
            get(HEADER_TS),
            get(HEADER_NONCE),
            get(HEADER_SIG),
        ])
    }

    fn auth(&self) -> RawAuth<'_> {
        let [node, ts, nonce, sig] = &self.0;
        RawAuth {
            node: node.as_deref(),
            ts: ts.as_deref(),
            nonce: nonce.as_deref(),
            sig: sig.as_deref(),
        }
    }
}

async fn not_found(uri: Uri) -> ApiError {
    e(ErrorCode::NotFound, format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    e(ErrorCode::MethodNotAllowed, "method not allowed")
}

async fn health(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let st = s.shared.status();
    Json(json!({
        "status": "ok",
        "uptime_s": st.uptime_s,
        "node": st.node,
        "env": st.env,
        "role": st.role,
        "version": st.version,
    }))
}

async fn status(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let mut v = serde_json::to_value(s.shared.status()).unwrap_or_default();
    let containers = match &s.containers {
        None => json!({"enabled": false}),
        Some(o) => {
            // Bounded: a hung engine must not hang /status.
            let list =
                tokio::time::timeout(std::time::Duration::from_secs(2), o.containers()).await;
            let (managed, error) = match list {
                Ok(Ok(l)) => (
                    l.iter()
                        .map(|c| json!({"id": &c.id[..c.id.len().min(12)], "name": c.name, "service": c.service,
                                        "image": c.image, "running": c.running, "term": c.term, "owner": c.owner}))
                        .collect::<Vec<_>>(),
                    None,
                ),
                Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
                Err(_) => (Vec::new(), Some("docker engine did not answer within 2 s".to_string())),
            };
            let engine = o.engine_status();
            json!({
                "enabled": true,
                "engine": if engine.available && error.is_none() { "ok" } else { "degraded" },
                "error": error.or(engine.last_error),
                "managed": managed,
            })
        }
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("containers".into(), containers);
    }
    Json(v)
}

async fn federation_state(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let st = s.shared.status();
    let peers = match s.forge.peers().await {
        Ok(p) => p
            .into_iter()
            .map(|p| {
                json!({
                    "node": p.node,
                    "epoch": p.last_seen_ms / 1000,
                    "status": if p.alive { "alive" } else { "dead" },
                    "uptime": p.uptime_s,
                    "priority": p.priority,
                    "draining": p.draining,
                    "api": p.api,
                })
            })
            .collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    Json(json!({
        "leader": st.leader,
        "term": st.term,
        "role": st.role,
        "forge_reachable": st.forge.reachable,
        "peers": peers,
    }))
}

async fn events(State(s): State<ApiState>) -> Json<Vec<crate::events::Event>> {
    Json(s.shared.events.tail(TAIL))
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.shared.metrics.render(),
    )
}

/// Checks an operator request and that its signer holds `scope` for this agent's env:
/// 401 for a request no operator signed, 403 `forbidden` for an operator without the scope.
fn authenticate(
    s: &ApiState,
    scope: Scope,
    method: &str,
    uri: &Uri,
    h: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let raw = RawHeaders::of(h);
    let cert = h
        .get(HEADER_OPERATOR)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (caller, operator) = s
        .auth
        .check(method, uri.path(), raw.auth(), cert, body, clock::wall_ms())
        .map_err(|err| {
            let code = if err.is_forbidden() {
                ErrorCode::Forbidden
            } else {
                ErrorCode::Unauthorized
            };
            e(code, err.to_string())
        })?;
    let env = &s.shared.cfg.env;
    if !operator.allows(scope, env) {
        return Err(e(
            ErrorCode::Forbidden,
            format!(
                "{operator} may not {} in env {env} (needs scope {})",
                uri.path(),
                scope.as_str()
            ),
        ));
    }
    Ok(caller)
}

/// A resigning peer says the lease is free: beat early. A hint with no authority, so it
/// needs no credential (a peer holds none an agent could check): all it can cause is one
/// heartbeat sooner, and the keeper spaces those (`role::NUDGE_GAP_MS`). The forge decides.
async fn nudge(State(s): State<ApiState>) -> Result<Response, ApiError> {
    tracing::debug!("nudged");
    s.shared.nudge.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "nudged"}))).into_response())
}

#[derive(Deserialize)]
struct DeployBody {
    image: String,
    /// The manifest service to deploy; may be left out when the manifest has one service.
    #[serde(default)]
    service: Option<String>,
    /// `never`, `missing` (default) or `always`.
    #[serde(default)]
    pull: PullPolicy,
    #[serde(default)]
    branch: Option<String>,
}

/// The error code of a container-layer error: decided here, at the edge, not by the
/// orchestrator.
pub fn orchestration_code(err: &OrchestratorError) -> ErrorCode {
    use crate::containers::engine::EngineError;
    match err {
        OrchestratorError::NotLeader(_) => ErrorCode::NotLeader,
        OrchestratorError::BadRequest(_) => ErrorCode::BadRequest,
        OrchestratorError::NotFound(_) | OrchestratorError::Engine(EngineError::NotFound(_)) => {
            ErrorCode::NotFound
        }
        OrchestratorError::Fenced { .. } => ErrorCode::Fenced,
        OrchestratorError::Engine(EngineError::Conflict(_)) => ErrorCode::Conflict,
        OrchestratorError::Engine(EngineError::Unavailable(_)) => ErrorCode::EngineUnavailable,
        OrchestratorError::Engine(EngineError::Refused(_)) => ErrorCode::EngineRefused,
        OrchestratorError::Unhealthy { .. } => ErrorCode::Unhealthy,
    }
}

/// The HTTP status and code string of a container-layer error (409 `fenced`, 422
/// `unhealthy`, 503 `engine_unavailable`, …).
pub fn orchestration_status(err: &OrchestratorError) -> (StatusCode, &'static str) {
    let code = orchestration_code(err);
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, code.as_str())
}

/// The container layer's errors in the usual error body.
fn orchestration_error(err: OrchestratorError) -> Response {
    server::error_response(orchestration_code(&err), err.to_string())
}

async fn deploy(
    State(s): State<ApiState>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, Scope::Containers, "POST", &uri, &h, &body)?;
    if s.shared.guard().is_err() {
        // The original's witness answer, kept for compatibility.
        return Ok(Json(json!({"status": "ignored", "reason": "not-leader"})).into_response());
    }
    let req: DeployBody = brh_shared::wire::from_json_object(&body).map_err(|err| {
        e(
            ErrorCode::BadRequest,
            format!("body must be {{\"image\":…, \"service\":…, \"pull\":\"never|missing|always\"}}: {err}"),
        )
    })?;
    reference::validate(&req.image).map_err(|m| e(ErrorCode::BadRequest, m))?;
    let Some(orch) = &s.containers else {
        return Err(e(
            ErrorCode::NotConfigured,
            "this agent has no manifest with services (BRH_CONFIG), so nothing to deploy",
        ));
    };
    let manifest = orch.manifest();
    let service = match (&req.service, manifest.services.as_slice()) {
        (Some(svc), _) => svc.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => {
            return Err(e(
                ErrorCode::BadRequest,
                "service is required: the manifest has several services",
            ))
        }
    };
    s.shared.events.log(format!(
        "DEPLOY: requested by {caller}: service={service} image={} branch={}",
        req.image,
        req.branch.as_deref().unwrap_or("unknown")
    ));
    let outcome = match orch.deploy(&service, &req.image, req.pull).await {
        Ok(o) => o,
        Err(err) => return Ok(orchestration_error(err)),
    };
    let status = if outcome.status == "deployed" {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(outcome)).into_response())
}

async fn container_action(
    s: ApiState,
    action: &str,
    name: String,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate(&s, Scope::Containers, "POST", &uri, &h, &body)?;
    validate_id(&name).map_err(|err| e(ErrorCode::BadRequest, format!("name {err}")))?;
    s.shared
        .guard()
        .map_err(|nl| e(ErrorCode::NotLeader, nl.to_string()))?;
    let Some(orch) = &s.containers else {
        return Err(e(
            ErrorCode::NotConfigured,
            "this agent has no manifest with services (BRH_CONFIG), so it manages no containers",
        ));
    };
    let c = match action {
        "restart" => orch.restart(&name).await,
        _ => orch.drain(&name).await,
    };
    let c = match c {
        Ok(c) => c,
        Err(err) => return Ok(orchestration_error(err)),
    };
    let done = if action == "restart" {
        "restarted"
    } else {
        "drained"
    };
    s.shared.events.log(format!(
        "{}: {done} container {}",
        action.to_uppercase(),
        c.name
    ));
    Ok(Json(json!({"status": done, "name": c.name, "id": c.id})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    /// The successor; absent: the best live candidate.
    #[serde(default)]
    to: Option<String>,
}

/// The leader hands its lease to `to` (or the best live candidate). 409 `not_leader` on a
/// witness, 409 `not_candidate` when the successor is not a live, non-draining peer.
async fn switchover(
    State(s): State<ApiState>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, Scope::Switchover, "POST", &uri, &h, &body)?;
    let req: SwitchoverBody = if body.is_empty() {
        SwitchoverBody::default()
    } else {
        brh_shared::wire::from_json_object(&body).map_err(|err| {
            e(
                ErrorCode::BadRequest,
                format!("body must be {{}} or {{\"to\": \"NODE\"}}: {err}"),
            )
        })?
    };
    if let Some(to) = &req.to {
        validate_id(to).map_err(|err| e(ErrorCode::BadRequest, format!("to {err}")))?;
    }
    s.shared
        .guard()
        .map_err(|nl| e(ErrorCode::NotLeader, nl.to_string()))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let stopping = || e(ErrorCode::Busy, "the agent is stopping");
    s.switchover
        .send(SwitchoverRequest { to: req.to, reply })
        .await
        .map_err(|_| stopping())?;
    match answer.await.map_err(|_| stopping())? {
        Ok(done) => {
            s.shared.events.log(format!(
                "SWITCHOVER: requested by {caller}: {} → {} (term {})",
                done.from, done.to, done.term
            ));
            Ok(Json(
                json!({"status": "switched", "from": done.from, "to": done.to, "term": done.term}),
            )
            .into_response())
        }
        Err(err @ SwitchoverError::NotLeader(_)) => Err(e(ErrorCode::NotLeader, err.to_string())),
        Err(err @ SwitchoverError::NotCandidate(_)) => {
            Err(e(ErrorCode::NotCandidate, err.to_string()))
        }
        Err(err @ SwitchoverError::Forge(_)) => {
            Err(e(ErrorCode::ForgeUnreachable, err.to_string()))
        }
    }
}

async fn restart(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    container_action(s, "restart", name, uri, h, body).await
}

async fn drain(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    container_action(s, "drain", name, uri, h, body).await
}
