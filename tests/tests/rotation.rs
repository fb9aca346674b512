//! Rotating the root secret with the native forge (`brh_tests::rotation`): no leader change,
//! no agent restart.
use std::net::SocketAddr;

use brh_tests::federation::{scratch, Forge};

#[test]
fn the_root_secret_is_rotated_without_a_leader_change_or_an_agent_restart() {
    let dir = scratch("rotation");
    let mut forge: Option<Forge> = None;
    let mut addr: Option<SocketAddr> = None;
    // The first start picks the port; every restart keeps it and the data dir.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    let mut restart = |seal: &str, previous: Option<&str>| {
        if let Some(mut f) = forge.take() {
            f.kill();
        }
        let mut args = vec!["--profile", "fast"];
        if let Some(p) = previous {
            args.extend(["--previous-seal", p]);
        }
        let f = Forge::start_with(&dir, seal, Some(listen), 30_000, &args);
        addr = Some(f.addr);
        forge = Some(f);
    };
    brh_tests::rotation::drill(&dir, listen, "dev", (1_000, 3_000), &mut restart);
    assert_eq!(addr, Some(listen));
}
