//! Rotating the root secret with the Worker in workerd, Durable Object mode
//! (`brh_tests::rotation`). Needs the Worker bundle and node_modules, so scripts/test.sh runs
//! it after the end-to-end step.
use brh_tests::federation::{scratch, WorkerdForge};

#[test]
fn the_root_secret_is_rotated_on_the_worker_without_a_leader_change() {
    let dir = scratch("rotation-workerd");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    let mut forge: Option<WorkerdForge> = None;
    // A workerd restart takes seconds (miniflare starts anew): a lease of 10 s outlives it,
    // as the default 15 s does in production.
    let timing = (1_000, 10_000);
    let mut restart = |seal: &str, previous: Option<&str>| {
        if let Some(mut f) = forge.take() {
            f.kill();
        }
        forge = Some(WorkerdForge::start_rotating(
            &dir,
            seal,
            previous,
            Some(listen),
            30_000,
            timing,
        ));
    };
    brh_tests::rotation::drill(&dir, listen, "rotatewd", timing, &mut restart);
}
