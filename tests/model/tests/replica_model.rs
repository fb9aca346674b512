//! An exhaustive check, at small bounds, of the protocol issue 21 gives the forge replicas
//! (docs/design.md §12): two forge replicas over one linearizable store
//! with leases (etcd's election key and lessor), three agents, and every interleaving of
//! their steps and of the faults below, explored completely with `stateright` (it checks
//! Rust state machines the way TLC checks TLA+). Beside the random simulation
//! (`tests/src/sim.rs`), which runs the real code over long runs, this covers every short run.
//!
//! The rules checked, one per replica step:
//! - **A replica serves only while it can prove it holds the store's election key**: until
//!   the *send* time of its last answered keepalive plus the store's lease ttl. The store
//!   measures the same lease from when it *received* that keepalive, so the replica's proof
//!   always ends first: when another replica can take the key, the first has stopped
//!   answering, whatever its process does (paused, cut off from the store, slow).
//! - **A term change is a store write conditioned on the writer's key** (a transaction on the
//!   election key's lease): a deposed replica's write fails. Renewals write nothing. (In this
//!   model clocks do not drift, so the proof alone keeps a deposed replica from writing; the
//!   condition is the store's own guard for a replica whose clock runs fast.)
//! - **The replica that takes the key over applies the restart rule**: the durable holder's
//!   lease is extended to takeover + agent ttl, in the same term, so no other agent is
//!   granted before every renewal the old replica answered has run out.
//! - An agent acts from the send time of the beat that was answered, for the agent ttl.
//!
//! Faults, each any number of times within the bound: a replica's keepalive or a beat's
//! answer lost, a keepalive delayed on its way to the store and its answer on the way back
//! (each any number of ticks), a replica paused and resumed (the zombie: its memory intact,
//! still reachable by agents; an answer pending is read when it resumes), killed and
//! restarted (its memory gone), the store unavailable and back.
//!
//! Property: **no two agents act at once**, on the true clock. Each mutation of the rules
//! above (`Mutation`) must be caught by the same bounded run.
//!
//! Agents and replicas are interchangeable, so the checker explores one state per renaming
//! (`representative`), depth first. CI's bound (horizon 4 ticks, 2 faults: 3.8 million
//! distinct states, about 25 s, the crate optimized in the debug profile) catches every
//! mutation; `BRH_MODEL_HORIZON=5 cargo test -p brh-model --release -- --nocapture` explores
//! 17 million (BENCHMARKS.md). Failsafe (docs/design.md §13) is not modelled yet.
use stateright::{Checker, Model, Property};

const REPLICAS: usize = 2;
const AGENTS: usize = 3;
/// The agents' lease ttl, in ticks.
const AGENT_TTL: u8 = 3;
/// The replicas' lease ttl in the store, in ticks.
const STORE_TTL: u8 = 2;
/// The bounds: ticks of the true clock, and faults per run.
const HORIZON: u8 = 4;
const MAX_FAULTS: u8 = 2;

/// The bounds of this run: `BRH_MODEL_HORIZON` / `BRH_MODEL_FAULTS` raise them (the release
/// build explores horizon 7 in minutes; see BENCHMARKS.md).
fn bounds() -> (u8, u8) {
    let var = |k: &str, d: u8| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        var("BRH_MODEL_HORIZON", HORIZON),
        var("BRH_MODEL_FAULTS", MAX_FAULTS),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mutation {
    /// A replica answers while it believes it is active, without its proof (the zombie
    /// answers after a pause).
    ServeWithoutProof,
    /// A replica measures its proof from the keepalive's *answer*, not its send.
    ProofFromAnswer,
    /// The taker does not extend the durable holder's lease: it grants at once.
    TakeoverWithoutExtension,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Replica {
    up: bool,
    paused: bool,
    /// Holds the election key, as far as it knows (it took it, and has not seen otherwise).
    active: bool,
    /// Serves while `now < proof_until`.
    proof_until: u8,
    /// The generation of the key it holds (etcd: the election key's create revision).
    generation: u8,
    /// A keepalive on its way to the store, with its send time.
    keepalive: Option<u8>,
    /// The store's answer to it, on its way back: (send time, whether the store renewed or
    /// gave it the key, the generation the store then had). Read only while running: a
    /// replica paused (SIGSTOP) with an answer pending reads it when it resumes.
    answer: Option<(u8, bool, u8)>,
    /// The env's lease as this replica keeps it: holder, term, expiry (renewals live here).
    holder: Option<usize>,
    term: u8,
    expires: u8,
}

impl Replica {
    /// A replica that knows nothing: at the start, and after a kill.
    fn fresh(up: bool) -> Replica {
        Replica {
            up,
            paused: false,
            active: false,
            proof_until: 0,
            generation: 0,
            keepalive: None,
            answer: None,
            holder: None,
            term: 0,
            expires: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    now: u8,
    faults: u8,
    store_up: bool,
    /// The election key: which replica holds it, until when (the store's lessor).
    key: Option<(usize, u8)>,
    /// Bumped at each campaign won: a replica whose answer names another generation than
    /// the one it knows holds a new key, and takes over afresh.
    generation: u8,
    /// What the durability rule makes durable: the term and its holder.
    term: u8,
    holder: Option<usize>,
    replicas: [Replica; REPLICAS],
    /// Each agent acts while `now < acting_until`.
    acting_until: [u8; AGENTS],
    /// Set when a replica took the key over while an agent still held a lease (coverage).
    took_over_a_live_lease: bool,
    /// Set when a paused replica resumed and was refused by its own proof (coverage).
    zombie_refused: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Tick,
    KeepaliveSend(usize),
    /// Delivered to the store; `answered`: the answer is sent back (else lost).
    KeepaliveDeliver(usize, bool),
    /// The store's answer reaches the replica (any time later).
    KeepaliveAnswer(usize),
    /// Agent beats replica; `answered`: the agent hears the answer.
    Beat(usize, usize, bool),
    Pause(usize),
    Resume(usize),
    Kill(usize),
    Restart(usize),
    StoreDown,
    StoreUp,
}

struct Protocol {
    horizon: u8,
    max_faults: u8,
    mutation: Option<Mutation>,
}

impl Protocol {
    fn key_valid(&self, s: &State, r: usize) -> bool {
        matches!(s.key, Some((k, until)) if k == r && s.now < until)
    }

    fn may_serve(&self, s: &State, r: usize) -> bool {
        let rep = &s.replicas[r];
        rep.up
            && !rep.paused
            && rep.active
            && (self.mutation == Some(Mutation::ServeWithoutProof) || s.now < rep.proof_until)
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let replica = Replica::fresh(true);
        vec![State {
            now: 0,
            faults: 0,
            store_up: true,
            key: None,
            generation: 0,
            term: 0,
            holder: None,
            replicas: [replica.clone(), replica],
            acting_until: [0; AGENTS],
            took_over_a_live_lease: false,
            zombie_refused: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.now < self.horizon {
            actions.push(Action::Tick);
        }
        let fault = s.faults < self.max_faults;
        for r in 0..REPLICAS {
            let rep = &s.replicas[r];
            if rep.up && !rep.paused {
                if rep.answer.is_some() {
                    actions.push(Action::KeepaliveAnswer(r));
                }
                match rep.keepalive {
                    None if rep.answer.is_none() => actions.push(Action::KeepaliveSend(r)),
                    None => {}
                    Some(_) if s.store_up => {
                        actions.push(Action::KeepaliveDeliver(r, true));
                        if fault {
                            actions.push(Action::KeepaliveDeliver(r, false));
                        }
                    }
                    Some(_) => {}
                }
            }
            if fault {
                match (rep.up, rep.paused) {
                    (true, false) => {
                        actions.push(Action::Pause(r));
                        actions.push(Action::Kill(r));
                    }
                    (true, true) => actions.push(Action::Resume(r)),
                    (false, _) => actions.push(Action::Restart(r)),
                }
            }
            for a in 0..AGENTS {
                if rep.up && !rep.paused {
                    actions.push(Action::Beat(a, r, true));
                    if fault {
                        actions.push(Action::Beat(a, r, false));
                    }
                }
            }
        }
        if fault && s.store_up {
            actions.push(Action::StoreDown);
        }
        if !s.store_up {
            actions.push(Action::StoreUp);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let is_fault = match action {
            Action::KeepaliveDeliver(_, answered) | Action::Beat(_, _, answered) => !answered,
            Action::Pause(_) | Action::Kill(_) | Action::StoreDown => true,
            _ => false,
        };
        if is_fault {
            s.faults += 1;
        }
        match action {
            Action::Tick => s.now += 1,
            Action::KeepaliveSend(r) => s.replicas[r].keepalive = Some(s.now),
            Action::KeepaliveDeliver(r, answered) => {
                let sent = s.replicas[r].keepalive.take()?;
                // The store: renew our key, or campaign for a free (or expired) one.
                let ours = self.key_valid(&s, r);
                let free = !matches!(s.key, Some((_, until)) if s.now < until);
                if ours || free {
                    s.key = Some((r, s.now + STORE_TTL));
                }
                if free && !ours {
                    s.generation += 1;
                }
                if answered {
                    s.replicas[r].answer = Some((sent, ours || free, s.generation));
                }
            }
            Action::KeepaliveAnswer(r) => {
                let (sent, holds, generation) = s.replicas[r].answer.take()?;
                {
                    let rep = &mut s.replicas[r];
                    if holds {
                        rep.proof_until = match self.mutation {
                            Some(Mutation::ProofFromAnswer) => s.now + STORE_TTL,
                            _ => sent + STORE_TTL,
                        };
                        if !rep.active || rep.generation != generation {
                            // Takeover (the key was free: a campaign won, by a newcomer or by
                            // a replica whose own key had run out): the durable state, and
                            // the restart rule. Nothing of its memory is kept.
                            rep.active = true;
                            rep.generation = generation;
                            rep.term = s.term;
                            rep.holder = s.holder;
                            rep.expires = match self.mutation {
                                Some(Mutation::TakeoverWithoutExtension) => 0,
                                _ => s.now + AGENT_TTL,
                            };
                            if s.acting_until.iter().any(|&u| s.now < u) {
                                s.took_over_a_live_lease = true;
                            }
                        }
                    } else {
                        rep.active = false;
                        rep.holder = None;
                    }
                }
            }
            Action::Beat(a, r, answered) => {
                if !self.may_serve(&s, r) {
                    if s.replicas[r].active && s.replicas[r].up {
                        s.zombie_refused = true;
                    }
                    return Some(s);
                }
                let now = s.now;
                let rep = s.replicas[r].clone();
                let granted = match rep.holder {
                    Some(h) if h == a && now < rep.expires => {
                        // A renewal: memory only.
                        s.replicas[r].expires = now + AGENT_TTL;
                        true
                    }
                    Some(_) if now < rep.expires => false,
                    _ => {
                        // A term change: a store write conditioned on our key.
                        // (With the proof, the condition always holds here: it is the
                        // store's own guard, for a replica whose clock ran fast.)
                        if !s.store_up || !self.key_valid(&s, r) {
                            false
                        } else {
                            s.term = rep.term.max(s.term) + 1;
                            s.holder = Some(a);
                            let rep = &mut s.replicas[r];
                            rep.term = s.term;
                            rep.holder = Some(a);
                            rep.expires = now + AGENT_TTL;
                            true
                        }
                    }
                };
                if granted && answered {
                    // The beat was sent now (answers are instant here; a later answer only
                    // shortens what the agent believes).
                    s.acting_until[a] = s.acting_until[a].max(now + AGENT_TTL);
                }
            }
            Action::Pause(r) => s.replicas[r].paused = true,
            Action::Resume(r) => s.replicas[r].paused = false,
            Action::Kill(r) => {
                // Its memory is gone; it comes back knowing nothing.
                s.replicas[r] = Replica::fresh(false);
            }
            Action::Restart(r) => s.replicas[r].up = true,
            Action::StoreDown => s.store_up = false,
            Action::StoreUp => s.store_up = true,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no two agents act at once", |_, s: &State| {
                s.acting_until.iter().filter(|&&u| s.now < u).count() <= 1
            }),
            Property::sometimes("a takeover while an agent holds a lease", |_, s: &State| {
                s.took_over_a_live_lease
            }),
            Property::sometimes("a zombie refused by its own proof", |_, s: &State| {
                s.zombie_refused
            }),
            Property::sometimes("a second term", |_, s: &State| s.term >= 2),
        ]
    }
}

/// The agents are interchangeable, and so are the replicas: a state and any renaming of its
/// agents (or replicas) have the same futures, so the checker explores one of each class
/// (`symmetry_fn`). The representative sorts replicas, then agents, by everything that
/// distinguishes them, and renames every reference to match. Any renaming is sound; sorting
/// makes most equivalent states meet in one.
fn representative(s: &State) -> State {
    let mut s = s.clone();
    // Replicas: by their whole state and whether they hold the key.
    let mut order: Vec<usize> = (0..REPLICAS).collect();
    let key_of = |s: &State, r: usize| matches!(s.key, Some((k, _)) if k == r);
    order.sort_by_key(|&r| (s.replicas[r].clone(), key_of(&s, r)));
    let old = s.clone();
    for (new, &was) in order.iter().enumerate() {
        s.replicas[new] = old.replicas[was].clone();
    }
    s.key = old
        .key
        .map(|(k, until)| (order.iter().position(|&w| w == k).unwrap(), until));
    // Agents: by how long they act and which leases name them.
    let sig = |s: &State, a: usize| {
        (
            s.acting_until[a],
            s.holder == Some(a),
            s.replicas
                .iter()
                .map(|r| r.holder == Some(a))
                .collect::<Vec<_>>(),
        )
    };
    let mut order: Vec<usize> = (0..AGENTS).collect();
    order.sort_by_key(|&a| sig(&s, a));
    let rename = |h: Option<usize>| h.map(|h| order.iter().position(|&w| w == h).unwrap());
    let old = s.clone();
    for (new, &was) in order.iter().enumerate() {
        s.acting_until[new] = old.acting_until[was];
    }
    s.holder = rename(old.holder);
    for r in 0..REPLICAS {
        s.replicas[r].holder = rename(old.replicas[r].holder);
    }
    s
}

fn check(mutation: Option<Mutation>, horizon: u8, max_faults: u8) -> impl Checker<Protocol> {
    Protocol {
        horizon,
        max_faults,
        mutation,
    }
    .checker()
    .symmetry_fn(representative)
    .threads(2)
    .spawn_dfs()
    .join()
}

#[test]
fn no_two_agents_act_at_once_in_any_run_within_the_bounds() {
    let (horizon, faults) = bounds();
    let c = check(None, horizon, faults);
    c.assert_no_discovery("no two agents act at once");
    // The bounded runs do reach the cases the rules are for.
    c.assert_any_discovery("a takeover while an agent holds a lease");
    c.assert_any_discovery("a zombie refused by its own proof");
    c.assert_any_discovery("a second term");
    println!(
        "replica protocol, horizon {horizon}, {faults} faults: {} states ({} unique after \
         symmetry), depth {}: no overlap",
        c.state_count(),
        c.unique_state_count(),
        c.max_depth()
    );
}

#[test]
fn each_mutation_of_the_rules_is_caught() {
    for m in [
        Mutation::ServeWithoutProof,
        Mutation::ProofFromAnswer,
        Mutation::TakeoverWithoutExtension,
    ] {
        let (horizon, faults) = bounds();
        let c = check(Some(m), horizon, faults);
        let Some(path) = c.discovery("no two agents act at once") else {
            panic!(
                "{m:?} survived horizon {horizon}, {faults} faults ({} unique states)",
                c.unique_state_count()
            );
        };
        let actions = path.into_actions();
        println!("{m:?}: caught, {} steps: {actions:?}", actions.len());
    }
}
