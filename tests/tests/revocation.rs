//! Revocation on the native forge (`brh_tests::revocation`): refused from the next request,
//! durable across a forge restart (the file store), re-enrolment on SIGHUP, a revoked leader
//! replaced without overlap.
use brh_tests::federation::{fresh_seal, scratch, Forge};

#[test]
fn a_revoked_host_is_refused_durably_and_re_enrolled_without_a_restart() {
    let dir = scratch("revocation");
    let seal = fresh_seal();
    let mut forge = Some(Forge::start(&dir, &seal, None, 30_000));
    let addr = forge.as_ref().unwrap().addr;
    let mut restart = || {
        forge.take().unwrap().kill();
        forge = Some(Forge::start(&dir, &seal, Some(addr), 30_000));
    };
    brh_tests::revocation::drill(&dir, &seal, addr, "dev", &mut restart);
}
