//! `brh_agent::containers::manifest::Manifest::parse` on arbitrary text (YAML).
//!
//! Properties:
//! 1. `parse` never panics (nor overflows the stack or runs away on aliases: libFuzzer's
//!    timeout and RSS limit report those).
//! 2. Every accepted service satisfies the documented checks: a valid id as name, an image
//!    that `reference::validate` accepts, 1–100 replicas, no host port with more than one
//!    replica, no `BRH_*` env or `brh.*` label, ports > 0, health durations in (0, 1 day) and
//!    1–1000 retries.
#![no_main]

use std::time::Duration;

use brh_agent::containers::manifest::Manifest;
use brh_agent::containers::reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Manifest::parse(text) else {
        return;
    };
    assert!(brh_shared::ids::validate_id(&m.network).is_ok());
    for s in &m.services {
        assert!(
            brh_shared::ids::validate_id(&s.name).is_ok(),
            "{:?}",
            s.name
        );
        assert_eq!(m.service(&s.name).map(|x| &x.name), Some(&s.name));
        assert_eq!(reference::validate(&s.image), Ok(()), "{:?}", s.image);
        assert!((1..=100).contains(&s.replicas));
        assert!(s.replicas == 1 || !s.binds_host_ports());
        for p in &s.ports {
            assert!(p.container_port > 0 && p.host_port != Some(0));
            assert!(p.proto == "tcp" || p.proto == "udp");
        }
        assert!(s
            .env
            .keys()
            .all(|k| !k.is_empty() && !k.starts_with("BRH_")));
        assert!(s.labels.keys().all(|k| !k.starts_with("brh.")));
        if let Some(h) = &s.health {
            let day = Duration::from_secs(86_400);
            for d in [h.interval, h.timeout] {
                assert!(d > Duration::ZERO && d < day, "{d:?}");
            }
            assert!((1..=1000).contains(&h.retries));
        }
    }
});
