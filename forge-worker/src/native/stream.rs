//! `GET /federation/stream` on the native forge: one WebSocket per agent (or dashboard).
//! Frames go to the core thread as [`Job::Frame`] — the same checks as HTTP — and their
//! answers come back on the socket; after every leader change in the socket's env the
//! socket pushes the view as its node sees it ([`Job::View`]), unless that changes nothing
//! the socket was last told (leader, term, its own role).
//!
//! Bounded like the HTTP side: frames up to `MAX_FRAME_BYTES`, as many open streams as
//! connections, a write that does not finish within the body read timeout drops the
//! socket (a client that stops reading holds nothing), and shutdown closes every stream.
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::UPGRADE;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use brh_shared::wire::{ErrorCode, StreamMessage, STREAM_PATH};
use tokio::sync::{broadcast, oneshot};

use super::{into_axum, AppState, Job};
use crate::stream::{upgrade_target, Told, MAX_FRAME_BYTES};
use brh_http_server::error_response;

/// The upgrade: the core's rule first (method, env, `Upgrade: websocket` — the same JSON
/// refusals as the Worker), then axum's handshake checks (the key and version headers).
pub(super) async fn upgrade(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let mut req = crate::http::Request::new(
        method.as_str(),
        uri.path_and_query().map_or(STREAM_PATH, |pq| pq.as_str()),
    );
    if let Some(v) = headers.get(UPGRADE).and_then(|v| v.to_str().ok()) {
        req.add_header("upgrade", v);
    }
    let env = match upgrade_target(&req) {
        Some(Ok(env)) => env,
        Some(Err(refusal)) => return into_axum(refusal),
        None => return error_response(ErrorCode::NotFound, "no endpoint"),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return error_response(
                ErrorCode::BadRequest,
                format!("/federation/stream needs a WebSocket upgrade ({e})"),
            )
        }
    };
    if !*app.serving.borrow() {
        // A standby replica: the agent tries its next forge URL (over HTTP, the core's
        // answer says where the active one is).
        return into_axum(
            crate::http::Response::error(
                ErrorCode::StoreUnavailable,
                "this forge replica is not the active one; try the next forge URL",
            )
            .with_header("retry-after", crate::forge::STORE_RETRY_AFTER_S),
        );
    }
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return error_response(ErrorCode::Busy, "too many open streams; retry later");
    };
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            serve(socket, env, app).await;
        })
        .into_response()
}

async fn serve(mut socket: WebSocket, env: String, app: AppState) {
    let mut changes = app.changes.subscribe();
    let mut stop = app.stop.clone();
    let mut serving = app.serving.clone();
    let write_timeout = app.limits.body_read_timeout;
    let mut bound: Option<String> = None;
    let mut basis: Option<String> = None;
    let mut last = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let message = tokio::select! {
            frame = socket.recv() => {
                let frame = match frame {
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                let (reply, answer) = oneshot::channel();
                let job = Job::Frame { env: env.clone(), bound: bound.clone(), frame, reply };
                if app.jobs.send(job).await.is_err() {
                    break;
                }
                let Ok(out) = answer.await else { break };
                if let Some(node) = out.node {
                    bound = Some(node);
                }
                if out.accepted.is_some() {
                    basis = out.accepted;
                }
                out.message
            }
            changed = changes.recv() => {
                match changed {
                    Ok(e) if e != env => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
                let (reply, answer) = oneshot::channel();
                let job = Job::View { env: env.clone(), node: bound.clone(), basis: basis.clone(), reply };
                if app.jobs.send(job).await.is_err() {
                    break;
                }
                match answer.await {
                    Ok(Some(m)) if Told::is_news(&m, last.as_ref()) => m,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            // Only `true` is ever sent; a `RwLock` guard must not live across the awaits above.
            _ = stop.changed() => break,
            // This replica stopped being the active one: its agents move to the next URL.
            r = serving.changed() => {
                if r.is_err() || !*serving.borrow() {
                    break;
                }
                continue;
            }
        };
        if let Some(v) = &message.view {
            last = Some(Told::of(v));
        }
        if !send(&mut socket, &message, write_timeout).await {
            return;
        }
    }
    let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(None))).await;
}

async fn send(socket: &mut WebSocket, m: &StreamMessage, timeout: std::time::Duration) -> bool {
    let text = match serde_json::to_string(m) {
        Ok(t) => t,
        Err(_) => return false,
    };
    matches!(
        tokio::time::timeout(timeout, socket.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}
