//! The forge's endpoints, described once: path, method, body, success status, who may call
//! it, and how each runtime must treat it. The forge's router, the stream, the Worker's
//! forwarding to the Durable Object, the agent's client and the OpenAPI test all read this
//! table, so adding an endpoint is one row here and one arm in `Forge::handle`.

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone: public reads (answers are signed by the forge key where they carry state).
    Anyone,
    /// An enrolled node, HMAC under its own node key (`sign::verify_request`).
    Node,
    /// An operator, Ed25519 by the top operator or a scoped credential
    /// (`operator::verify_request`).
    Operator,
}

/// Every endpoint of the forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Dashboard,
    Health,
    Metrics,
    Heartbeat,
    Resign,
    Consensus,
    Revoke,
    Leader,
    Peers,
    History,
    Envs,
    ManifestResolve,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub path: &'static str,
    /// `GET` or `POST` (a `HEAD` is routed as `GET`; a stream frame as `POST`).
    pub method: &'static str,
    /// The wire type of the JSON body (`wire::…`), for a `POST`.
    pub body: Option<&'static str>,
    /// The status of a successful answer.
    pub success: u16,
    pub caller: Caller,
    /// Changes an env's state: in durable-object mode the Worker forwards it to the env's
    /// register, serialized with every other write of that env.
    pub writes_env: bool,
    /// Reads one env's state (`?env=`): in durable-object mode answered by the register, the
    /// one place that state is current.
    pub reads_env: bool,
    /// May be sent as a frame on the stream (`wire::StreamRequest`).
    pub on_stream: bool,
    /// A read any origin may make: CORS-open and never cached, errors included.
    pub open_read: bool,
}

const fn read(endpoint: Endpoint, path: &'static str, reads_env: bool) -> Route {
    Route {
        endpoint,
        path,
        method: "GET",
        body: None,
        success: 200,
        caller: Caller::Anyone,
        writes_env: false,
        reads_env,
        on_stream: false,
        open_read: true,
    }
}

const fn signed_write(
    endpoint: Endpoint,
    path: &'static str,
    body: &'static str,
    success: u16,
    caller: Caller,
    on_stream: bool,
) -> Route {
    Route {
        endpoint,
        path,
        method: "POST",
        body: Some(body),
        success,
        caller,
        writes_env: true,
        reads_env: false,
        on_stream,
        open_read: false,
    }
}

/// The forge's routes. The stream itself (`wire::STREAM_PATH`, a WebSocket upgrade) is served
/// at each runtime's edge, not routed here.
pub const ROUTES: &[Route] = &[
    Route {
        open_read: false,
        ..read(Endpoint::Dashboard, "/", false)
    },
    read(Endpoint::Health, "/health", false),
    read(Endpoint::Metrics, "/metrics", false),
    signed_write(
        Endpoint::Heartbeat,
        "/federation/heartbeat",
        "Heartbeat",
        200,
        Caller::Node,
        true,
    ),
    signed_write(
        Endpoint::Resign,
        "/federation/resign",
        "ResignRequest",
        200,
        Caller::Node,
        true,
    ),
    signed_write(
        Endpoint::Consensus,
        "/federation/consensus",
        "ConsensusReport",
        202,
        Caller::Node,
        true,
    ),
    signed_write(
        Endpoint::Revoke,
        "/federation/revoke",
        "RevokeRequest",
        200,
        Caller::Operator,
        false,
    ),
    read(Endpoint::Leader, "/federation/leader", true),
    read(Endpoint::Peers, "/federation/peers", true),
    read(Endpoint::History, "/federation/history", true),
    read(Endpoint::Envs, "/federation/envs", false),
    read(Endpoint::ManifestResolve, "/manifest/resolve", false),
];

impl Endpoint {
    /// This endpoint's row.
    pub fn route(self) -> &'static Route {
        match ROUTES.iter().find(|r| r.endpoint == self) {
            Some(r) => r,
            // Every variant has a row: checked by `every_endpoint_has_one_row`.
            None => &ROUTES[0],
        }
    }

    pub fn path(self) -> &'static str {
        self.route().path
    }
}

/// The row of `path`, if the forge has that endpoint.
pub fn route(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_one_row() {
        use Endpoint::*;
        let all = [
            Dashboard,
            Health,
            Metrics,
            Heartbeat,
            Resign,
            Consensus,
            Revoke,
            Leader,
            Peers,
            History,
            Envs,
            ManifestResolve,
        ];
        assert_eq!(all.len(), ROUTES.len());
        for e in all {
            assert_eq!(
                ROUTES.iter().filter(|r| r.endpoint == e).count(),
                1,
                "{e:?}"
            );
            assert_eq!(e.route().endpoint, e);
            assert_eq!(route(e.path()).map(|r| r.endpoint), Some(e));
        }
    }

    #[test]
    fn writes_are_signed_posts_and_reads_are_open_gets() {
        for r in ROUTES {
            assert_eq!(r.method == "POST", r.body.is_some(), "{r:?}");
            assert_eq!(r.method == "POST", r.caller != Caller::Anyone, "{r:?}");
            assert!(!(r.writes_env && r.reads_env), "{r:?}");
            assert!(!r.on_stream || r.caller == Caller::Node, "{r:?}");
        }
    }
}
