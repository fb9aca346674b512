//! The stolen-host attack list (`brh_tests::stolen`) against the native forge.
use brh_tests::federation::{fresh_seal, scratch, Forge};

#[test]
fn a_stolen_witness_host_cannot_change_who_leads_or_what_runs() {
    let dir = scratch("stolen-host");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    brh_tests::stolen::attack_list(&dir, &seal, forge.addr, "stolen");
}
