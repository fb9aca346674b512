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

/// A public read. (`endpoint` is set by `endpoints!`.)
const fn read(path: &'static str, reads_env: bool) -> Route {
    Route {
        endpoint: Endpoint::Health,
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

/// A signed write of one env's state. (`endpoint` is set by `endpoints!`.)
const fn signed_write(
    path: &'static str,
    body: &'static str,
    success: u16,
    caller: Caller,
    on_stream: bool,
) -> Route {
    Route {
        endpoint: Endpoint::Health,
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

/// The enum, its rows and `ROUTES` from one list, so an endpoint cannot lack a row.
macro_rules! endpoints {
    ($($(#[$doc:meta])* $name:ident => $row:expr,)*) => {
        /// Every endpoint of the forge.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Endpoint {
            $($(#[$doc])* $name,)*
        }

        impl Endpoint {
            /// This endpoint's row.
            pub const fn route(self) -> Route {
                match self {
                    $(Endpoint::$name => Route { endpoint: Endpoint::$name, ..$row },)*
                }
            }
        }

        /// The forge's routes. The stream itself (`wire::STREAM_PATH`, a WebSocket upgrade)
        /// is served at each runtime's edge, not routed here.
        pub const ROUTES: &[Route] = &[$(Endpoint::$name.route(),)*];
    };
}

endpoints! {
    /// The dashboard page (not an API read: no CORS).
    Dashboard => Route { open_read: false, ..read("/", false) },
    Health => read("/health", false),
    /// `?env=` for one env's gauges (answered by its register in durable-object mode).
    Metrics => read("/metrics", false),
    Heartbeat => signed_write("/federation/heartbeat", "Heartbeat", 200, Caller::Node, true),
    Resign => signed_write("/federation/resign", "ResignRequest", 200, Caller::Node, true),
    Consensus => signed_write("/federation/consensus", "ConsensusReport", 202, Caller::Node, true),
    Revoke => signed_write("/federation/revoke", "RevokeRequest", 200, Caller::Operator, false),
    Leader => read("/federation/leader", true),
    Peers => read("/federation/peers", true),
    History => read("/federation/history", true),
    Envs => read("/federation/envs", false),
    ManifestResolve => read("/manifest/resolve", false),
}

impl Endpoint {
    pub const fn path(self) -> &'static str {
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
    fn one_row_per_endpoint_and_path() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert_eq!(r.endpoint.route(), *r);
            assert_eq!(route(r.path).map(|f| f.endpoint), Some(r.endpoint), "{r:?}");
            assert!(ROUTES[..i]
                .iter()
                .all(|o| o.endpoint != r.endpoint && o.path != r.path));
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
