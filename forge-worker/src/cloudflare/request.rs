//! The Worker's request and response types to and from the core's own ([`crate::http`]).
use brh_shared::wire::{ErrorCode, MAX_BODY_BYTES};
use futures_util::StreamExt;
use worker::Headers;

use crate::http::{Request, Response};

fn too_large() -> Response {
    Response::error(
        ErrorCode::TooLarge,
        format!("body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Converts a Workers request, reading at most 64 KiB of body: a declared `content-length`
/// over the cap is refused before reading, a streamed body as soon as it passes the cap. The
/// core checks the size again.
pub async fn read_request(req: &mut worker::Request) -> worker::Result<Result<Request, Response>> {
    // The raw URL string, not `req.url()`: parsing it with the `url` crate would ship its
    // IDNA tables in the Wasm (~100 KB) for a path and a query we only split.
    let path_and_query = path_and_query_of(&req.inner().url());
    let mut core = Request::new(&req.inner().method(), &path_and_query);
    for (k, v) in req.headers().entries() {
        core.add_header(&k, &v);
    }
    let declared = core
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Ok(Err(too_large()));
    }
    if req.inner().body().is_some() {
        let mut stream = req.stream()?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            // A broken framing (bad chunked encoding, a client gone mid-body) is the
            // client's error, not the Worker's.
            let Ok(chunk) = chunk else {
                return Ok(Err(Response::error(
                    ErrorCode::BadRequest,
                    "the request body is malformed",
                )));
            };
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Ok(Err(too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        core.body = body;
    }
    Ok(Ok(core))
}

/// `https://host:port/a/b?x=1#f` → `/a/b?x=1`.
pub fn path_and_query_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let pq = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    pq.split('#').next().unwrap_or("/").to_string()
}

pub fn to_worker(r: Response) -> worker::Result<worker::Response> {
    let headers = Headers::new();
    for (k, v) in &r.headers {
        headers.append(k, v)?;
    }
    let resp = if r.body.is_empty() {
        worker::Response::empty()?
    } else {
        worker::Response::from_bytes(r.body)?
    };
    Ok(resp.with_status(r.status).with_headers(headers))
}

/// A `POST` of the JSON `body` to `url` with `headers` (the ledger's and the register's
/// calls). What `worker::Request::new_with_init` builds for a `RequestInit` with a method,
/// headers and a body, made with `web_sys` directly: worker's conversion also links the
/// serializer of the (unused) `cf` properties, kilobytes of Wasm.
pub fn json_post(url: &str, headers: &Headers, body: &str) -> worker::Result<worker::Request> {
    use worker::web_sys;
    let init = web_sys::RequestInit::new();
    init.set_headers(headers.0.as_ref());
    init.set_method("POST");
    init.set_redirect(web_sys::RequestRedirect::Follow);
    init.set_body(&worker::wasm_bindgen::JsValue::from_str(body));
    web_sys::Request::new_with_str_and_init(url, &init)
        .map(worker::Request::from)
        .map_err(|e| {
            worker::Error::JsError(
                e.as_string()
                    .unwrap_or_else(|| "invalid URL or options for Request".to_string()),
            )
        })
}
