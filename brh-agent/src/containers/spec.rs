//! The container spec of one replica, as a pure function of the manifest's service, the term
//! it is created under, the token it carries and this agent's identity. No engine, clock or
//! key here: the orchestrator picks (or mints) the token and resolves the network, and this
//! module decides every label and variable the container gets.
use std::collections::HashMap;

use super::labels;
use super::manifest::{ContainerOptions, PortMap, Service};

/// Everything needed to create one managed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// The networks it joins, the first as its network mode; never empty.
    pub networks: Vec<Endpoint>,
    pub ports: Vec<PortMap>,
    pub volumes: Vec<String>,
    /// Compose's settings (entrypoint, user, healthcheck, …); its `networks` and `depends_on`
    /// are not the engine's business (the former are resolved into `networks` above).
    pub options: ContainerOptions,
}

/// One network a container joins: the network's id (or name), the names it answers to there
/// (its service's name first, so services reach each other by name as in Compose:
/// `db:5432`) and a static address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

/// Who creates the container: labels `brh.env`, `brh.owner`, `brh.federation`, `brh.epoch`
/// and variables `BRH_ENV`, `BRH_EPOCH`.
#[derive(Debug, Clone, Copy)]
pub struct Creator<'a> {
    pub env: &'a str,
    pub node: &'a str,
    pub federation: &'a str,
    pub epoch: u64,
}

/// What the container gets as `BRH_TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerToken {
    /// The forge's lease (fencing) token for the container's term, which any service can check
    /// offline: also given as `BRH_LEASE_TOKEN`.
    Lease(String),
    /// A node token, for a forge that gives no lease tokens.
    Node(String),
}

/// The lease token to give a container created in `term`: the newest one the forge gave,
/// only if it is that term's (an older term's token would not prove this term's lease).
pub fn lease_token_for(term: u64, newest: Option<&(u64, String)>) -> Option<String> {
    newest
        .filter(|(t, _)| *t == term)
        .map(|(_, tok)| tok.clone())
}

/// One replica's spec: the service's own variables then `BRH_ENV`, `BRH_EPOCH`, `BRH_TOKEN`
/// (and `BRH_LEASE_TOKEN`); the service's labels with BRH's on top (a service cannot spoof
/// `brh.term` or `brh.federation`: ours win). `network` resolves a network's name to the id
/// the engine gave it at promotion; a service that names no network joins `default_network`.
#[allow(clippy::too_many_arguments)]
pub fn container_spec(
    creator: Creator<'_>,
    svc: &Service,
    image: &str,
    name: String,
    replica: u32,
    term: u64,
    token: &ContainerToken,
    default_network: &str,
    network: &dyn Fn(&str) -> String,
) -> CreateSpec {
    let mut env: Vec<String> = svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("BRH_ENV={}", creator.env));
    env.push(format!("BRH_EPOCH={}", creator.epoch));
    match token {
        ContainerToken::Lease(lease) => {
            env.push(format!("BRH_TOKEN={lease}"));
            env.push(format!("BRH_LEASE_TOKEN={lease}"));
        }
        ContainerToken::Node(token) => env.push(format!("BRH_TOKEN={token}")),
    }
    let mut l: HashMap<String, String> = svc.labels.clone().into_iter().collect();
    l.insert(labels::MANAGED.into(), "true".into());
    l.insert(labels::SERVICE.into(), svc.name.clone());
    l.insert(labels::ENV.into(), creator.env.to_string());
    l.insert(labels::OWNER.into(), creator.node.to_string());
    l.insert(labels::TERM.into(), term.to_string());
    l.insert(labels::EPOCH.into(), creator.epoch.to_string());
    l.insert(labels::REPLICA.into(), replica.to_string());
    l.insert(labels::FEDERATION.into(), creator.federation.to_string());
    // Compose's tools number a service's containers from 1, as BRH's replicas are.
    if l.contains_key(labels::COMPOSE_PROJECT) {
        l.insert(labels::COMPOSE_NUMBER.into(), replica.to_string());
        l.insert(labels::COMPOSE_ONEOFF.into(), "False".into());
        // Compose v2's `ps` and `logs` list only containers with a config hash. Compose
        // hashes its own model; this hashes what BRH runs (the image and the service), so
        // it changes exactly when BRH would create the container differently.
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(format!("{image}\n{svc:?}").as_bytes());
        l.insert(
            labels::COMPOSE_CONFIG_HASH.into(),
            brh_shared::hex::encode(&hash),
        );
    }
    let networks = if svc.options.networks.is_empty() {
        vec![Endpoint {
            network: network(default_network),
            aliases: vec![svc.name.clone()],
            ipv4_address: None,
        }]
    } else {
        svc.options
            .networks
            .iter()
            .map(|a| Endpoint {
                network: network(&a.network),
                aliases: std::iter::once(svc.name.clone())
                    .chain(a.aliases.iter().filter(|x| **x != svc.name).cloned())
                    .collect(),
                ipv4_address: a.ipv4_address.clone(),
            })
            .collect()
    };
    CreateSpec {
        name,
        image: image.to_string(),
        command: svc.command.clone(),
        env,
        labels: l,
        networks,
        ports: svc.ports.clone(),
        volumes: svc.volumes.clone(),
        options: svc.options.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::Manifest;
    use proptest::prelude::*;

    const CREATOR: Creator<'static> = Creator {
        env: "dev",
        node: "node-a",
        federation: "0123456789abcdef",
        epoch: 1_700_000_000,
    };

    fn service(yaml: &str) -> Service {
        Manifest::parse(yaml).unwrap().services[0].clone()
    }

    #[test]
    fn labels_and_variables_of_a_replica() {
        let svc = service(
            "services:\n  web:\n    image: brh-test/web:1\n    command: [serve, --port, \"80\"]\n    \
             env: { MODE: prod }\n    labels: { team: edge }\n    \
             ports: [\"8080:80\"]\n    volumes: [\"/data:/data\"]\n",
        );
        let s = container_spec(
            CREATOR,
            &svc,
            "brh-test/web:2",
            "brh_dev_web_2".into(),
            2,
            7,
            &ContainerToken::Lease("L7".into()),
            "brh_net",
            &|n| format!("id-of-{n}"),
        );
        assert_eq!(s.name, "brh_dev_web_2");
        assert_eq!(
            s.image, "brh-test/web:2",
            "the deploy's image, not the manifest's"
        );
        assert_eq!(s.command, svc.command);
        assert_eq!(
            s.networks,
            [Endpoint {
                network: "id-of-brh_net".into(),
                aliases: vec!["web".into()],
                ipv4_address: None
            }]
        );
        assert_eq!(s.ports, svc.ports);
        assert_eq!(s.volumes, vec!["/data:/data".to_string()]);
        assert_eq!(
            s.env,
            [
                "MODE=prod",
                "BRH_ENV=dev",
                "BRH_EPOCH=1700000000",
                "BRH_TOKEN=L7",
                "BRH_LEASE_TOKEN=L7"
            ]
        );
        let want: HashMap<String, String> = [
            ("team", "edge"),
            (labels::MANAGED, "true"),
            (labels::SERVICE, "web"),
            (labels::ENV, "dev"),
            (labels::OWNER, "node-a"),
            (labels::TERM, "7"),
            (labels::EPOCH, "1700000000"),
            (labels::REPLICA, "2"),
            (labels::FEDERATION, "0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.labels, want);
    }

    #[test]
    fn a_node_token_has_no_lease_variable() {
        let svc = service("services:\n  db: { image: brh-test/sleep:1 }\n");
        let s = container_spec(
            CREATOR,
            &svc,
            &svc.image,
            "brh_dev_db_1".into(),
            1,
            3,
            &ContainerToken::Node("N".into()),
            "brh",
            &|n| n.to_string(),
        );
        assert_eq!(
            s.env,
            ["BRH_ENV=dev", "BRH_EPOCH=1700000000", "BRH_TOKEN=N"]
        );
    }

    #[test]
    fn only_the_terms_own_lease_token_is_given() {
        let newest = (5, "T5".to_string());
        assert_eq!(lease_token_for(5, Some(&newest)), Some("T5".into()));
        assert_eq!(lease_token_for(6, Some(&newest)), None);
        assert_eq!(lease_token_for(4, Some(&newest)), None);
        assert_eq!(lease_token_for(5, None), None);
    }

    proptest! {
        /// Whatever labels the manifest gives a service, the container carries BRH's identity
        /// labels with BRH's values: the fence reads `brh.term` and `brh.federation`, so a
        /// service must not be able to set them.
        #[test]
        fn prop_brh_labels_cannot_be_overridden(
            keys in prop::collection::vec(prop::sample::select(vec![
                labels::MANAGED, labels::SERVICE, labels::ENV, labels::OWNER, labels::TERM,
                labels::EPOCH, labels::REPLICA, labels::FEDERATION, "team", "tier",
            ]), 0..6),
            term in 0..1000u64,
            replica in 1..10u32,
        ) {
            let mut svc = service("services:\n  web: { image: brh-test/sleep:1 }\n");
            svc.labels = keys.iter().map(|k| (k.to_string(), "spoofed".to_string())).collect();
            let s = container_spec(CREATOR, &svc, &svc.image, "n".into(), replica, term,
                &ContainerToken::Node("N".into()), "brh", &|n| n.to_string());
            prop_assert_eq!(s.labels[labels::TERM].clone(), term.to_string());
            prop_assert_eq!(s.labels[labels::FEDERATION].as_str(), CREATOR.federation);
            prop_assert_eq!(s.labels[labels::MANAGED].as_str(), "true");
            prop_assert_eq!(s.labels[labels::REPLICA].clone(), replica.to_string());
            prop_assert_eq!(s.labels[labels::ENV].as_str(), "dev");
        }
    }
}
