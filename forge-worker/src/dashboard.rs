//! The dashboard page at `GET /`: one static file, no build step, no CDN. It reads the public
//! read endpoints and refreshes itself.
//!
//! The native forge embeds it. The Worker does not: there it is a static asset
//! (`wrangler.toml` `[assets]`, copied to `build/assets/index.html` by
//! `scripts/build-worker.sh`) that the Worker hands out from its ASSETS binding, so the page's
//! 35 KB stay out of the Wasm.

/// The page, where this build serves it itself.
#[cfg(not(target_arch = "wasm32"))]
pub const PAGE: Option<&str> = Some(include_str!("dashboard.html"));
/// The page, where this build serves it itself.
#[cfg(target_arch = "wasm32")]
pub const PAGE: Option<&str> = None;
