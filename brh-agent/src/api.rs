//! The local API (axum). Reads are open (like the original); mutating endpoints require the
//! seal-derived signature of `auth.rs` and then pass the leader guard.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use brh_shared::ids::validate_id;
use brh_shared::sign::{RawAuth, HEADER_NODE, HEADER_NONCE, HEADER_SIG, HEADER_TS};
use brh_shared::wire::{ErrorBody, ErrorCode, MAX_BODY_BYTES};
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::auth::ApiAuth;
use crate::client::ForgeClient;
use crate::clock;
use crate::events::TAIL;
use crate::keeper::Shared;

#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub auth: Arc<ApiAuth>,
    /// Read-only forge access (peers for `/federation/state`); never signs.
    pub forge: Arc<ForgeClient>,
}

pub struct ApiError(pub ErrorCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.0, self.1))).into_response()
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .with_state(state)
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

async fn status(State(s): State<ApiState>) -> Json<crate::keeper::StatusSnapshot> {
    Json(s.shared.status())
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

fn authenticate(
    s: &ApiState,
    method: &str,
    uri: &Uri,
    h: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let raw = RawAuth {
        node: get(HEADER_NODE),
        ts: get(HEADER_TS),
        nonce: get(HEADER_NONCE),
        sig: get(HEADER_SIG),
    };
    s.auth
        .check(method, uri.path(), raw, body, clock::wall_ms())
        .map_err(|err| e(ErrorCode::Unauthorized, err.to_string()))
}

/// A resigning peer says the lease is free: beat early (rate-limited by the keeper).
async fn nudge(
    State(s): State<ApiState>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, "POST", &uri, &h, &body)?;
    tracing::debug!("nudged by {caller}");
    s.shared.nudge.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "nudged"}))).into_response())
}

#[derive(Deserialize)]
struct DeployBody {
    image: String,
    #[serde(default)]
    branch: Option<String>,
}

/// The original's image name rule, kept (and applied before anything else is done).
pub fn validate_image_name(image: &str) -> Result<(), &'static str> {
    if image.is_empty() || image.len() > 256 {
        return Err("image name must be 1 to 256 characters");
    }
    if image.chars().any(|c| ";&|$`()<>\n\r ".contains(c)) {
        return Err("image name contains a forbidden character");
    }
    let mut chars = image.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c)) {
        return Err("image name must match ^[a-zA-Z0-9][a-zA-Z0-9._:/-]*$");
    }
    Ok(())
}

async fn deploy(
    State(s): State<ApiState>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, "POST", &uri, &h, &body)?;
    if s.shared.guard().is_err() {
        // The original's witness answer, kept for compatibility.
        return Ok(Json(json!({"status": "ignored", "reason": "not-leader"})).into_response());
    }
    let req: DeployBody = serde_json::from_slice(&body).map_err(|err| {
        e(
            ErrorCode::BadRequest,
            format!("body must be {{\"image\":…}}: {err}"),
        )
    })?;
    validate_image_name(&req.image).map_err(|m| e(ErrorCode::BadRequest, m))?;
    s.shared.events.log(format!(
        "DEPLOY: requested by {caller}: image={} branch={}",
        req.image,
        req.branch.as_deref().unwrap_or("unknown")
    ));
    Err(e(
        ErrorCode::NotImplemented,
        "deploy is accepted by the leader but the container layer is not built yet",
    ))
}

async fn container_action(
    s: ApiState,
    action: &str,
    name: String,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate(&s, "POST", &uri, &h, &body)?;
    validate_id(&name).map_err(|err| e(ErrorCode::BadRequest, format!("name {err}")))?;
    let term = s
        .shared
        .guard()
        .map_err(|nl| e(ErrorCode::NotLeader, nl.to_string()))?;
    Err(e(
        ErrorCode::NotImplemented,
        format!("{action} of {name} (term {term}): the container layer is not built yet"),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(validate_image_name("nginx:1.27").is_ok());
        assert!(validate_image_name("ghcr.io/a/b-c_d:1").is_ok());
        for bad in ["", "-x", "a b", "a;b", "a@sha256:x", "$(x)"] {
            assert!(validate_image_name(bad).is_err(), "{bad}");
        }
        assert!(validate_image_name(&"a".repeat(257)).is_err());
    }
}
