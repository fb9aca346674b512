//! The deployment's settings: the bindings, the vars and the secrets, read once per isolate.
use brh_shared::election::ElectionConfig;
use brh_shared::sign;
use brh_shared::wire::ErrorCode;
use brh_shared::Timing;
use worker::wasm_bindgen::JsValue;
use worker::{js_sys, Env};

use crate::forge::ForgeConfig;
use crate::http::{Request, Response};

/// The KV namespace: the register in `kv` mode, the mirror and the env index in
/// `durable-object` mode.
pub const KV_BINDING: &str = "BRH_KV";
/// The Durable Object namespace of the lease registers; bound means `durable-object` mode.
pub const DO_BINDING: &str = "LEASES";
/// The static assets: the dashboard page (`build/assets/index.html`).
pub const ASSETS_BINDING: &str = "ASSETS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Kv,
    DurableObject,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kv => "kv",
            Mode::DurableObject => "durable-object",
        }
    }
}

/// A var or secret as a string (numbers in `[vars]` are accepted too).
pub fn env_string(env: &Env, name: &str) -> Option<String> {
    let v = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    match v.as_string() {
        Some(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        // Whole numbers only (every numeric setting is a count of milliseconds); anything else
        // becomes a string the setting's parser refuses. Integer formatting only: f64's
        // `Display` would ship core's float formatter (~17 KB) in the Wasm.
        None => v.as_f64().map(|n| {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                (n as i64).to_string()
            } else {
                "a fractional number".to_string()
            }
        }),
    }
}

fn env_ms(env: &Env, name: &str, default: u64) -> Result<u64, String> {
    match env_string(env, name) {
        None => Ok(default),
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| format!("{name}={s:?} is not a whole number of milliseconds")),
    }
}

/// The deployment's settings, read once per isolate (a change of vars or secrets deploys a new
/// version, hence new isolates).
pub struct Setup {
    pub cfg: ForgeConfig,
    pub mode: Mode,
    /// Why the forge cannot serve (bad timing vars, missing KV binding).
    pub error: Option<String>,
    pub ledger_url: Option<String>,
    /// `BRH_TEST_FAULTS` (tests only, comma-separated): `kv` makes every KV call fail,
    /// `do-storage` every Durable Object storage write.
    pub test_faults: Vec<String>,
}

impl Setup {
    pub fn from_env(env: &Env, mode: Mode) -> Setup {
        let seal = env_string(env, "DOMINION_SEAL").map(String::into_bytes);
        let previous = env_string(env, "DOMINION_SEAL_PREVIOUS").map(String::into_bytes);
        let mut cfg = ForgeConfig::new(seal, mode.as_str()).with_previous_seal(previous);
        let mut errors = Vec::new();
        let timing = env_ms(
            env,
            "BRH_HEARTBEAT_INTERVAL_MS",
            Timing::DEFAULT.heartbeat_interval_ms,
        )
        .and_then(|hb| {
            let ttl = env_ms(env, "BRH_LEASE_TTL_MS", Timing::DEFAULT.lease_ttl_ms)?;
            let t = Timing {
                heartbeat_interval_ms: hb,
                lease_ttl_ms: ttl,
            };
            t.validate()
                .map(|()| t)
                .map_err(|e| format!("BRH_LEASE_TTL_MS/BRH_HEARTBEAT_INTERVAL_MS: {e}"))
        });
        match timing {
            Ok(t) => cfg.election = ElectionConfig::new(t),
            Err(e) => errors.push(e),
        }
        match env_ms(env, "BRH_SKEW_MS", sign::DEFAULT_SKEW_MS) {
            Ok(s) => cfg.skew_ms = s,
            Err(e) => errors.push(e),
        }
        if env.kv(KV_BINDING).is_err() {
            errors.push(format!("the KV namespace binding {KV_BINDING} is missing"));
        }
        cfg.dominion_root = env_string(env, "FORGE_DOMINION_ROOT");
        // One release of compatibility: agents of the previous release sign with the seal.
        cfg.legacy_seal_signatures = env_string(env, "BRH_LEGACY_SEAL_SIGNATURES")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        Setup {
            cfg,
            mode,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            ledger_url: env_string(env, "LEDGER_URL"),
            test_faults: env_string(env, "BRH_TEST_FAULTS")
                .map(|s| s.split(',').map(|f| f.trim().to_string()).collect())
                .unwrap_or_default(),
        }
    }

    /// The answer to anything but the dashboard page while the forge is misconfigured.
    pub fn refusal(&self, req: &Request) -> Option<Response> {
        let error = self.error.as_ref()?;
        (req.path != "/").then(|| {
            Response::error(
                ErrorCode::NoSeal,
                format!("the forge is not configured: {error}"),
            )
        })
    }
}

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
