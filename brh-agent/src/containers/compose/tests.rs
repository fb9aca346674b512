use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::containers::labels;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

fn load(text: &str) -> Result<ComposeProject, ComposeError> {
    parse(
        text,
        Path::new("/srv/app"),
        "My App",
        &vars(&[("TAG", "1.4"), ("EMPTY", "")]),
    )
}

fn refused(text: &str) -> String {
    load(text).expect_err("accepted").to_string()
}

#[test]
fn interpolation_follows_compose() {
    let v = vars(&[("A", "x"), ("E", "")]);
    let mut w = Vec::new();
    let i = |s: &str, w: &mut Vec<String>| interpolate(s, &v, w).unwrap();
    assert_eq!(i("$A ${A} $$A ${A}b", &mut w), "x x $A xb");
    assert_eq!(i("${E:-d} ${E-d} ${U-d} ${U:-${A}}", &mut w), "d  d x");
    assert_eq!(
        i("${A:+alt} ${E:+alt} ${E+alt} ${U+alt}", &mut w),
        "alt  alt "
    );
    assert!(w.is_empty());
    assert_eq!(i("[$U]", &mut w), "[]");
    assert_eq!(
        w,
        ["the U variable is not set: defaulting to a blank string"]
    );
    assert_eq!(i("cost: 5$ each", &mut w), "cost: 5$ each");
    let e = interpolate("${DB_PASSWORD:?set DB_PASSWORD}", &v, &mut w).unwrap_err();
    assert_eq!(
        e.to_string(),
        "compose: variable DB_PASSWORD: set DB_PASSWORD"
    );
    assert!(interpolate("${E:?}", &v, &mut w).is_err());
    assert_eq!(interpolate("${E?}", &v, &mut w).unwrap(), "");
    assert!(interpolate("${A", &v, &mut w).is_err());
    assert!(interpolate("${A/x/y}", &v, &mut w).is_err());
}

#[test]
fn a_small_stack_maps_onto_the_manifest() {
    let p = load(
        r#"
version: "3.8"
services:
  web:
    image: "registry.example.com/web:${TAG}"
    command: sh -c 'exec web --port 80'
    environment:
      MODE: prod
      DEBUG: "false"
    ports: ["8080:80", "127.0.0.1::9000/udp"]
    volumes: ["./static:/srv/static:ro", "data:/var/lib/web"]
    labels: [team=edge]
    restart: unless-stopped
    expose: ["80"]
  worker:
    image: worker:1
    deploy: { replicas: 3 }
    ports: [{ target: 7000 }]
  tools:
    image: tools:1
    profiles: [debug]
volumes:
  data:
"#,
    )
    .unwrap();
    assert_eq!(p.name, "myapp");
    assert_eq!(p.manifest.network, "myapp_default");
    assert!(p.warnings[0].contains("version"), "{:?}", p.warnings);
    let names: Vec<&str> = p
        .manifest
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["web", "worker"], "an inactive profile does not run");
    let web = &p.manifest.services[0];
    assert_eq!(web.image, "registry.example.com/web:1.4");
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["sh", "-c", "exec web --port 80"]
    );
    assert_eq!(web.env["MODE"], "prod");
    assert_eq!(web.ports[0].host_port, Some(8080));
    assert_eq!(web.ports[1].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web.ports[1].proto, "udp");
    assert_eq!(
        web.volumes,
        ["/srv/app/static:/srv/static:ro", "myapp_data:/var/lib/web"]
    );
    assert_eq!(web.labels["team"], "edge");
    assert_eq!(web.labels[labels::COMPOSE_PROJECT], "myapp");
    assert_eq!(web.labels[labels::COMPOSE_SERVICE], "web");
    assert_eq!(p.manifest.services[1].replicas, 3);
    assert_eq!(p.manifest.services[1].ports[0].container_port, 7000);
}

#[test]
fn what_is_not_supported_is_refused_naming_service_and_key() {
    let cases = [
        ("services:\n  app:\n    build: .\n", "compose: service \"app\": build: BRH runs images, not builds"),
        ("services:\n  db:\n    image: pg\n    healthcheck: { test: [CMD, true] }\n", "compose: service \"db\": healthcheck:"),
        ("services:\n  db:\n    image: pg\n    container_name: db\n", "compose: service \"db\": container_name:"),
        ("services:\n  db:\n    image: pg\n    deploy: { replicas: 1, resources: { limits: { cpus: '1' } } }\n", "compose: service \"db\": deploy.resources:"),
        ("services:\n  db:\n    image: pg\n    restart: on-failure\n", "compose: service \"db\": restart:"),
        ("services:\n  db:\n    image: pg\n    volumes: [data:/x]\n", "is not declared in the top-level volumes"),
        ("services:\n  db:\n    image: pg\nsecrets:\n  s: { file: ./s }\n", "compose: secrets:"),
        ("services:\n  db:\n    image: pg\nnetworks:\n  back: {}\n", "compose: networks:"),
        ("services:\n  db:\n    image: pg\nx-brh: { network: x }\n", "compose: x-brh:"),
        ("services:\n  db: {}\n", "compose: service \"db\": image: required"),
        ("services:\n  db:\n    image: pg\n    environment: { P: \"${PASS:?set PASS}\" }\n", "compose: variable PASS: set PASS"),
    ];
    for (text, want) in cases {
        let got = refused(text);
        assert!(
            got.starts_with(want) || got.contains(want),
            "{text}\n→ {got}\nwanted {want}"
        );
        assert_eq!(got.lines().count(), 1, "{got}");
    }
}

#[test]
fn extensions_and_the_default_network_are_accepted() {
    let p = load(
        "x-common: &c { image: base:1 }\nservices:\n  a:\n    <<: *c\n    x-note: hi\nnetworks:\n  default: {}\n",
    )
    .unwrap();
    assert_eq!(p.manifest.services[0].image, "base:1");
}

#[test]
fn compose_and_brh_files_are_told_apart() {
    let doc = |t: &str| serde_norway::from_str::<Value>(t).unwrap();
    assert!(looks_like_compose(&doc(
        "services:\n  a:\n    image: x\n    environment: [A=1]\n"
    )));
    assert!(looks_like_compose(&doc(
        "version: '3'\nservices:\n  a:\n    image: x\n"
    )));
    // Valid in both schemas: read as BRH's, as before.
    assert!(!looks_like_compose(&doc(
        "services:\n  a:\n    image: x\n    ports: [\"80\"]\n"
    )));
    assert!(!looks_like_compose(&doc(
        "provider: { kind: docker }\nservices: {}\n"
    )));
    assert!(!looks_like_compose(&doc(
        "services:\n  a:\n    image: x\n    replicas: 2\n"
    )));
    assert!(is_compose_path(Path::new("/x/docker-compose.yml")));
    assert!(is_compose_path(Path::new("prod.compose.yaml")));
    assert!(!is_compose_path(Path::new("bridge.runtime.yaml")));
}
