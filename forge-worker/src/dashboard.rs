//! The dashboard page at `GET /`: one static file, embedded, no build step, no CDN. It reads
//! the public read endpoints and refreshes itself.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");
