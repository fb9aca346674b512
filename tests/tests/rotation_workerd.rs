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
    let mut restart = |seal: &str, previous: Option<&str>| {
        if let Some(mut f) = forge.take() {
            f.kill();
        }
        let timing = (1_000, 3_000);
        forge = Some(WorkerdForge::start_rotating(
            &dir,
            seal,
            previous,
            Some(listen),
            30_000,
            timing,
        ));
    };
    brh_tests::rotation::drill(&dir, listen, "rotatewd", &mut restart);
}
