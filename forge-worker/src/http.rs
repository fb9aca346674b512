//! The forge's own small HTTP types, so the core does not depend on either runtime's.
use crate::vecmap::VecMap;

use brh_shared::wire::{ErrorBody, ErrorCode};
use serde::Serialize;

/// A request as the core sees it. Header names are lowercase.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: VecMap<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            ..Request::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Adds a header; a name seen again is joined with `", "` as the Fetch API does (what the
    /// Worker sees), so a repeated `x-brh-*` header is refused rather than first- or last-wins.
    pub fn add_header(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.headers.get_mut(&name) {
            Some(v) => {
                v.push_str(", ");
                v.push_str(value);
            }
            None => {
                self.headers.insert(name, value.to_string());
            }
        }
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        // Serializing our own types to JSON cannot fail (no maps with non-string keys).
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::json(code.http_status(), &ErrorBody::new(code, message))
    }

    pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Read endpoints: open CORS (dashboards anywhere may read) and never cached.
    pub fn readable(self) -> Self {
        self.with_header("access-control-allow-origin", "*")
            .with_header("cache-control", "no-store")
    }

    /// [`Response::readable`] unless the headers are already there.
    pub fn readable_once(self) -> Self {
        let mut r = self;
        for (k, v) in [
            ("access-control-allow-origin", "*"),
            ("cache-control", "no-store"),
        ] {
            if r.header(k).is_none() {
                r = r.with_header(k, v);
            }
        }
        r
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let r = Request::new("GET", "/x?env=prod&limit=5&x=a%20b+c&bad=%zz&t=%4");
        assert_eq!(r.path, "/x");
        assert_eq!(r.query_param("env").as_deref(), Some("prod"));
        assert_eq!(r.query_param("x").as_deref(), Some("a b c"));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("t").as_deref(), Some("%4"));
        assert_eq!(r.query_param("nope"), None);
    }
}
