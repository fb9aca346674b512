use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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
        ("services:\n  db:\n    image: pg\n    healthcheck: { test: [curl, x] }\n", "compose: service \"db\": healthcheck.test:"),
        ("services:\n  db:\n    image: pg\n    container_name: db\n    deploy: { replicas: 2 }\n", "compose: service \"db\": container_name:"),
        ("services:\n  a:\n    image: pg\n    depends_on: { b: { condition: service_completed_successfully } }\n  b: { image: pg, restart: always }\n", "compose: service \"a\": depends_on.b.condition: service_completed_successfully needs \"b\" to be a one-shot job (restart: \"no\" or on-failure), not restart: always"),
        ("services:\n  a:\n    image: pg\n    depends_on: { b: { condition: service_done } }\n  b: { image: pg }\n", "compose: service \"a\": depends_on.b.condition: \"service_done\""),
        ("services:\n  a:\n    image: pg\n    depends_on: [c]\n", "compose: service \"a\": depends_on: \"c\" is not a service"),
        ("services:\n  a:\n    image: pg\n    depends_on: [b]\n  b:\n    image: pg\n    depends_on: [a]\n", "compose: depends_on: a cycle among services a, b"),
        ("services:\n  a:\n    image: pg\n    networks: [back]\n", "compose: service \"a\": networks: \"back\" is not declared"),
        ("services:\n  a:\n    image: pg\n    networks: { back: { ipv4_address: 10.9.0.5 } }\nnetworks:\n  back: {}\n", "compose: service \"a\": networks.back.ipv4_address: a static address needs a subnet"),
        ("services:\n  a:\n    image: pg\n    networks: { back: { priority: 5 } }\nnetworks:\n  back: {}\n", "compose: service \"a\": networks.back.priority:"),
        ("services:\n  a:\n    image: pg\n    secrets: [{ source: s, mode: 0400 }]\nsecrets:\n  s: { file: ./s }\n", "compose: service \"a\": secrets.mode:"),
        ("services:\n  a:\n    image: pg\n    stop_grace_period: soon\n", "compose: service \"a\": stop_grace_period:"),
        ("services:\n  db:\n    image: pg\n    deploy: { replicas: 1, resources: { limits: { cpus: '1' } } }\n", "compose: service \"db\": deploy.resources:"),
        ("services:\n  db:\n    image: pg\n    restart: sometimes\n", "compose: service \"db\": restart: \"sometimes\": one of \"no\", always, on-failure[:N], unless-stopped"),
        ("services:\n  db:\n    image: pg\n    restart: on-failure:x\n", "compose: service \"db\": restart:"),
        ("services:\n  db:\n    image: pg\n    volumes: [data:/x]\n", "is not declared in the top-level volumes"),
        ("services:\n  db:\n    image: pg\nsecrets:\n  s: { external: true }\n", "compose: secrets: s: external:"),
        ("services:\n  db:\n    image: pg\nnetworks:\n  back: { driver: overlay }\n", "compose: networks: back: driver:"),
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

#[test]
fn container_settings_networks_secrets_and_start_order() {
    let p = load(
        r#"
services:
  web:
    image: web:1
    entrypoint: /bin/web --serve
    user: "1000:1000"
    working_dir: /srv
    hostname: web-1
    container_name: the-web
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    extra_hosts: ["db.local:10.0.0.2", "cache.local=10.0.0.3"]
    tmpfs: ["/run", "/tmp:size=64m"]
    read_only: true
    init: false
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    depends_on:
      db: { condition: service_healthy }
      cache: { condition: service_started }
      debug: { condition: service_started, required: false }
    networks:
      front: { aliases: [www] }
      back: { ipv4_address: 10.77.0.10 }
    secrets: [db_pw, { source: db_pw, target: other }]
    configs: [{ source: site, target: /etc/site.conf }]
  db:
    image: pg:16
    networks: [back]
    healthcheck:
      test: pg_isready
      interval: 2s
      timeout: 1s
      retries: 5
      start_period: 10s
  cache:
    image: redis:7
  debug:
    image: tools:1
    profiles: [debug]
networks:
  front: {}
  back:
    internal: true
    ipam: { config: [{ subnet: 10.77.0.0/24, gateway: 10.77.0.1 }] }
secrets:
  db_pw: { file: ./secrets/db_pw.txt }
configs:
  site: { file: ./site.conf }
"#,
    )
    .unwrap();
    let order: Vec<&str> = p
        .manifest
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        order,
        ["db", "cache", "web"],
        "dependencies first, else file order"
    );
    let web = p.manifest.service("web").unwrap();
    let o = &web.options;
    assert_eq!(
        o.entrypoint.as_deref(),
        Some(&["/bin/web".to_string(), "--serve".into()][..])
    );
    assert_eq!(o.user.as_deref(), Some("1000:1000"));
    assert_eq!(o.working_dir.as_deref(), Some("/srv"));
    assert_eq!(o.hostname.as_deref(), Some("web-1"));
    assert_eq!(web.container_name("dev", 1), "the-web");
    assert_eq!(o.cap_add, ["NET_ADMIN"]);
    assert_eq!(o.cap_drop, ["ALL"]);
    assert_eq!(o.extra_hosts, ["db.local:10.0.0.2", "cache.local:10.0.0.3"]);
    assert_eq!(o.tmpfs["/run"], "");
    assert_eq!(o.tmpfs["/tmp"], "size=64m");
    assert!(o.read_only);
    assert_eq!(o.init, Some(false));
    assert_eq!(o.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(o.stop_grace_period, Some(Duration::from_secs(90)));
    assert_eq!(
        o.depends_on,
        [
            Dependency {
                service: "db".into(),
                condition: Condition::Healthy,
                required: true,
                restart: false
            },
            Dependency {
                service: "cache".into(),
                condition: Condition::Started,
                required: true,
                restart: false
            },
            Dependency {
                service: "debug".into(),
                condition: Condition::Started,
                required: false,
                restart: false
            },
        ],
        "an optional dependency on an inactive service is kept, as Compose keeps it (nothing waits for it)"
    );
    assert_eq!(
        o.networks,
        [
            NetworkAttachment {
                network: "myapp_front".into(),
                aliases: vec!["www".into()],
                ipv4_address: None
            },
            NetworkAttachment {
                network: "myapp_back".into(),
                aliases: vec![],
                ipv4_address: Some("10.77.0.10".into())
            },
        ]
    );
    assert!(web
        .volumes
        .contains(&"/srv/app/secrets/db_pw.txt:/run/secrets/db_pw:ro".to_string()));
    assert!(web
        .volumes
        .contains(&"/srv/app/secrets/db_pw.txt:/run/secrets/other:ro".to_string()));
    assert!(web
        .volumes
        .contains(&"/srv/app/site.conf:/etc/site.conf:ro".to_string()));
    let db = p.manifest.service("db").unwrap();
    let h = db.options.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, ["CMD-SHELL", "pg_isready"]);
    assert_eq!(h.interval, Some(Duration::from_secs(2)));
    assert_eq!(h.retries, Some(5));
    assert_eq!(h.patience(), Duration::from_secs(10 + 3 * 6 + 5));
    assert_eq!(db.options.init, None, "not said: BRH's default");
    let back = p
        .manifest
        .networks
        .iter()
        .find(|n| n.name == "myapp_back")
        .unwrap();
    assert!(back.internal);
    assert_eq!(back.subnets[0].subnet, "10.77.0.0/24");
    assert_eq!(back.labels[labels::COMPOSE_NETWORK], "back");
    assert_eq!(p.manifest.network, "myapp_default");
}

#[test]
fn compose_durations() {
    let d = |s| go_duration(s).unwrap();
    assert_eq!(d("1m30s"), Duration::from_secs(90));
    assert_eq!(d("1.5s"), Duration::from_millis(1500));
    assert_eq!(d("500ms"), Duration::from_millis(500));
    assert_eq!(d("2h"), Duration::from_secs(7200));
    assert_eq!(d("10"), Duration::from_secs(10));
    assert!(go_duration("").is_err());
    assert!(go_duration("10 s").is_err());
    assert!(go_duration("5x").is_err());
    assert!(go_duration("-1s").is_err());
}

#[test]
fn restart_policies_and_one_shot_jobs() {
    use crate::containers::manifest::{Condition, Restart};
    let p = load(
        "services:\n  a: { image: x }\n  b: { image: x, restart: 'no' }\n  c: { image: x, restart: always }\n  \
         d: { image: x, restart: unless-stopped }\n  e: { image: x, restart: on-failure }\n  \
         f: { image: x, restart: 'on-failure:3' }\n  \
         g:\n    image: x\n    depends_on: { a: { condition: service_completed_successfully } }\n",
    )
    .unwrap();
    let r: Vec<(&str, Restart)> = p
        .manifest
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.options.restart))
        .collect();
    for (name, want) in [
        ("a", Restart::No),
        ("b", Restart::No),
        ("c", Restart::Always),
        ("d", Restart::UnlessStopped),
        ("e", Restart::OnFailure(None)),
        ("f", Restart::OnFailure(Some(3))),
    ] {
        assert!(r.contains(&(name, want)), "{name}: {r:?}");
    }
    let g = p.manifest.service("g").unwrap();
    assert_eq!(g.options.depends_on[0].condition, Condition::Completed);
    // A BRH manifest's services keep BRH's recovery.
    let m = Manifest::parse("services:\n  web: { image: x }\n").unwrap();
    assert_eq!(m.services[0].options.restart, Restart::Always);
    let j = config_json(Some(&p.name), &p.manifest);
    assert_eq!(j["services"]["f"]["restart"], "on-failure:3");
    assert_eq!(j["services"]["a"]["restart"], serde_json::Value::Null);
    assert_eq!(
        j["services"]["g"]["depends_on"]["a"]["condition"],
        "service_completed_successfully"
    );
    // What each policy does after an exit.
    assert!(!Restart::No.restarts_after(1, 0));
    assert!(Restart::OnFailure(Some(3)).restarts_after(1, 2));
    assert!(!Restart::OnFailure(Some(3)).restarts_after(1, 3));
    assert!(!Restart::OnFailure(None).restarts_after(0, 0));
    assert!(Restart::UnlessStopped.restarts_after(0, 99));
}

#[test]
fn the_json_model_carries_the_new_keys() {
    let p = load(
        "services:\n  web:\n    image: web:1\n    depends_on: { db: { condition: service_healthy } }\n    \
         networks: { back: { ipv4_address: 10.77.0.10 } }\n    stop_grace_period: 3s\n  db:\n    \
         image: pg:16\n    healthcheck: { test: [CMD, pg_isready], interval: 2s }\n\
         networks:\n  back:\n    ipam: { config: [{ subnet: 10.77.0.0/24 }] }\n",
    )
    .unwrap();
    let j = config_json(Some(&p.name), &p.manifest);
    let web = &j["services"]["web"];
    assert_eq!(web["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(web["networks"]["back"]["ipv4_address"], "10.77.0.10");
    assert_eq!(web["stop_grace_period"], "3s");
    assert_eq!(j["services"]["db"]["healthcheck"]["interval"], "2s");
    assert_eq!(
        j["services"]["db"]["networks"]["default"],
        serde_json::Value::Null
    );
    assert_eq!(j["networks"]["back"]["name"], "myapp_back");
    assert_eq!(
        j["networks"]["back"]["ipam"]["config"][0]["subnet"],
        "10.77.0.0/24"
    );
    assert_eq!(j["networks"]["default"]["name"], "myapp_default");
}
