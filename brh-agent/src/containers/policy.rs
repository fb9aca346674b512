//! What the operator chooses for the container layer, as plain values: the demotion policy
//! and the pull policy. Pure (no engine, no I/O): the settings parse them, the orchestrator
//! and the API read them.
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DemotePolicy {
    /// Keep the containers running and stop managing them (zero-downtime handover on a shared
    /// engine: the next leader adopts them).
    Relinquish,
    /// Stop (with the stop timeout) and remove the containers this node created. Meant for
    /// one engine per host, where the next leader starts the services on its own host.
    Drain,
}

impl FromStr for DemotePolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "relinquish" => Ok(DemotePolicy::Relinquish),
            "drain" => Ok(DemotePolicy::Drain),
            _ => Err(format!(
                "{s:?} is not a demotion policy (relinquish or drain)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    Never,
    #[default]
    Missing,
    Always,
}

impl FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "never" => Ok(PullPolicy::Never),
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            _ => Err(format!(
                "{s:?} is not a pull policy (never, missing or always)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_name_the_choices() {
        assert_eq!("drain".parse(), Ok(DemotePolicy::Drain));
        assert_eq!("relinquish".parse(), Ok(DemotePolicy::Relinquish));
        assert!("nuke"
            .parse::<DemotePolicy>()
            .unwrap_err()
            .contains("relinquish or drain"));
        assert_eq!("always".parse(), Ok(PullPolicy::Always));
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }
}
