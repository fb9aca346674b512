//! Revocation (`brh_tests::revocation`) against the built Worker in workerd, Durable Object
//! mode: durable across a restart of workerd (the register reloads from its storage). Needs
//! the Worker bundle and node_modules, so scripts/test.sh runs it after the end-to-end step.
use brh_tests::federation::{fresh_seal, scratch, WorkerdForge};

#[test]
fn a_revoked_host_is_refused_durably_on_the_worker() {
    let dir = scratch("revocation-workerd");
    let seal = fresh_seal();
    let timing = (1_000, 3_000);
    let mut forge = Some(WorkerdForge::start(&dir, &seal, None, 30_000, timing));
    let addr = forge.as_ref().unwrap().addr;
    let mut restart = || {
        forge.take().unwrap().kill();
        forge = Some(WorkerdForge::start(&dir, &seal, Some(addr), 30_000, timing));
    };
    brh_tests::revocation::drill(&dir, &seal, addr, "revokewd", &mut restart);
}
