//! The stolen-host attack list (`brh_tests::stolen`) against the built Worker in workerd,
//! Durable Object mode. Needs the Worker bundle and node_modules, so scripts/test.sh runs it
//! after the end-to-end step (like drill_workerd).
use brh_tests::federation::{fresh_seal, scratch, WorkerdForge};

#[test]
fn a_stolen_witness_host_cannot_change_who_leads_or_what_runs_on_the_worker() {
    let dir = scratch("stolen-host-workerd");
    let seal = fresh_seal();
    let forge = WorkerdForge::start(&dir, &seal, None, 30_000, (1_000, 3_000));
    brh_tests::stolen::attack_list(&dir, &seal, forge.addr, "stolenwd");
}
