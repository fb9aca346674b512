//! Replacing one replica during a deploy, as data: the ordered steps and, for a failure at any
//! step, what to undo. Pure (no engine, no clock), so the rules of a replacement — no gap in
//! start-first, never two copies on one host port in stop-first, the old container back in
//! service after a failed attempt — are property-tested here; the orchestrator carries the
//! steps out, with the lease guard and the fence before each mutation.

/// One step of a replacement, in the order [`Replacement::steps`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Stop the old container before its successor exists (stop-first only): it holds host
    /// ports that a second copy could not bind.
    StopOld,
    /// Create and start the new container under a temporary name, since the canonical name
    /// is still the old container's.
    CreateNew,
    /// Wait until the new container passes its health check.
    WaitHealthy,
    /// Stop and remove the old container. In stop-first it is already stopped; the engine
    /// takes a second stop as a no-op.
    StopAndRemoveOld,
    /// Give the new container the canonical name, which is free only once the old one is gone.
    Rename,
}

/// One action undoing a failed replacement, in the order [`Replacement::rollback`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Remove the new container, best effort and only while the guard still holds (a newer
    /// leader may adopt it: it carries our term and the replica's labels): the step's
    /// failure is what the caller must hear about, not the cleanup's.
    RemoveNew,
    /// Start the old container again, under the guard and the fence; if that fails, its
    /// error replaces the deploy's.
    StartOld,
    /// Start the old container again, best effort — still only under the guard and the
    /// fence, like every mutation — but, unlike [`Undo::StartOld`], the caller hears the
    /// create's error, not the restart's.
    TryStartOld,
}

/// The shape of one replica's replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    /// The service binds host ports, so the old copy must stop before the new one starts.
    pub stop_first: bool,
    /// A container holds this replica today.
    pub has_old: bool,
}

impl Replacement {
    /// The steps, in order. Start-first stops the old container only once the new one is
    /// healthy (no gap); stop-first stops it before the new one is created (one copy per
    /// port, at the price of a gap). The rename comes last in both, because the canonical
    /// name is the old container's until it is removed.
    pub fn steps(self) -> Vec<Step> {
        let mut steps = Vec::with_capacity(5);
        if self.stop_first && self.has_old {
            steps.push(Step::StopOld);
        }
        steps.extend([Step::CreateNew, Step::WaitHealthy]);
        if self.has_old {
            steps.push(Step::StopAndRemoveOld);
        }
        steps.push(Step::Rename);
        steps
    }

    /// What to undo when `failed` fails. Only a new container that never became healthy is
    /// undone: once it is healthy the replacement moves forward, and a later failure leaves a
    /// healthy copy in service. The new container goes before the old one restarts, so in
    /// stop-first two copies never hold the port.
    pub fn rollback(self, failed: Step) -> Vec<Undo> {
        let restart_old = self.stop_first && self.has_old;
        match failed {
            Step::CreateNew if restart_old => vec![Undo::TryStartOld],
            Step::WaitHealthy if restart_old => vec![Undo::RemoveNew, Undo::StartOld],
            Step::WaitHealthy => vec![Undo::RemoveNew],
            Step::StopOld | Step::CreateNew | Step::StopAndRemoveOld | Step::Rename => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum State {
        Running,
        Stopped,
        Removed,
    }

    /// The engine as the replacement sees it. Every transition asserts its precondition, so a
    /// plan that stops a stopped container, renames onto a taken name or removes something
    /// absent fails the property.
    #[derive(Debug)]
    struct World {
        r: Replacement,
        old: Option<State>,
        new: Option<State>,
        new_healthy: bool,
        renamed: bool,
    }

    impl World {
        fn new(r: Replacement) -> Self {
            World {
                r,
                old: r.has_old.then_some(State::Running),
                new: None,
                new_healthy: false,
                renamed: false,
            }
        }

        /// `ok == false`: the step fails without effect, except that a failed health check
        /// leaves the new container running, unhealthy.
        fn step(&mut self, s: Step, ok: bool) -> std::result::Result<(), TestCaseError> {
            prop_assert!(!self.renamed, "{s:?} after the rename");
            match s {
                Step::StopOld => {
                    prop_assert_eq!(self.old, Some(State::Running));
                    prop_assert_eq!(self.new, None);
                    if ok {
                        self.old = Some(State::Stopped);
                    }
                }
                Step::CreateNew => {
                    prop_assert_eq!(self.new, None);
                    if ok {
                        self.new = Some(State::Running);
                    }
                }
                Step::WaitHealthy => {
                    prop_assert_eq!(self.new, Some(State::Running));
                    self.new_healthy = ok;
                }
                Step::StopAndRemoveOld => {
                    prop_assert!(matches!(self.old, Some(State::Running | State::Stopped)));
                    prop_assert!(
                        self.new_healthy,
                        "old stopped before the new one is healthy"
                    );
                    if ok {
                        self.old = Some(State::Removed);
                    }
                }
                Step::Rename => {
                    prop_assert!(
                        matches!(self.old, None | Some(State::Removed)),
                        "name taken"
                    );
                    prop_assert!(self.new_healthy);
                    self.renamed = ok;
                }
            }
            self.invariants()
        }

        fn undo(&mut self, u: Undo) -> std::result::Result<(), TestCaseError> {
            match u {
                Undo::RemoveNew => {
                    prop_assert!(self.new.is_some());
                    self.new = Some(State::Removed);
                }
                Undo::StartOld | Undo::TryStartOld => {
                    prop_assert_eq!(self.old, Some(State::Stopped));
                    self.old = Some(State::Running);
                }
            }
            self.invariants()
        }

        fn running(&self) -> usize {
            [self.old, self.new]
                .iter()
                .filter(|c| **c == Some(State::Running))
                .count()
        }

        fn invariants(&self) -> std::result::Result<(), TestCaseError> {
            if self.r.stop_first {
                prop_assert!(
                    self.running() <= 1,
                    "two copies bound to one port: {self:?}"
                );
            } else if self.r.has_old {
                let serving = self.old == Some(State::Running)
                    || (self.new == Some(State::Running) && self.new_healthy);
                prop_assert!(serving, "a gap in start-first: {self:?}");
            }
            Ok(())
        }
    }

    fn replacement() -> impl Strategy<Value = Replacement> {
        (any::<bool>(), any::<bool>()).prop_map(|(stop_first, has_old)| Replacement {
            stop_first,
            has_old,
        })
    }

    #[test]
    fn the_four_plans() {
        let plan = |stop_first, has_old| {
            Replacement {
                stop_first,
                has_old,
            }
            .steps()
        };
        use Step::*;
        assert_eq!(
            plan(true, true),
            [StopOld, CreateNew, WaitHealthy, StopAndRemoveOld, Rename]
        );
        assert_eq!(
            plan(false, true),
            [CreateNew, WaitHealthy, StopAndRemoveOld, Rename]
        );
        assert_eq!(plan(true, false), [CreateNew, WaitHealthy, Rename]);
        assert_eq!(plan(false, false), [CreateNew, WaitHealthy, Rename]);
    }

    proptest! {
        /// Carried out to the end, a replacement leaves exactly the new container, running,
        /// healthy and under the canonical name; along the way, start-first never leaves the
        /// replica without a healthy copy and stop-first never runs two copies.
        #[test]
        fn prop_success_ends_with_the_new_container_alone(r in replacement()) {
            let mut w = World::new(r);
            for s in r.steps() {
                w.step(s, true)?;
            }
            prop_assert!(w.renamed);
            prop_assert_eq!(w.new, Some(State::Running));
            prop_assert!(matches!(w.old, None | Some(State::Removed)));
        }

        /// Start-first stops the old container only after the new one is healthy; stop-first
        /// stops it before the new one is created; the rename is the last step.
        #[test]
        fn prop_step_order(r in replacement()) {
            let steps = r.steps();
            let at = |s| steps.iter().position(|x| *x == s);
            prop_assert_eq!(steps.last(), Some(&Step::Rename));
            prop_assert_eq!(steps.iter().filter(|s| **s == Step::Rename).count(), 1);
            prop_assert!(at(Step::CreateNew) < at(Step::WaitHealthy));
            prop_assert_eq!(at(Step::StopOld).is_some(), r.stop_first && r.has_old);
            prop_assert_eq!(at(Step::StopAndRemoveOld).is_some(), r.has_old);
            if let Some(stop) = at(Step::StopOld) {
                prop_assert!(Some(stop) < at(Step::CreateNew));
            }
            if let (false, Some(stop)) = (r.stop_first, at(Step::StopAndRemoveOld)) {
                prop_assert!(at(Step::WaitHealthy) < Some(stop));
            }
        }

        /// Whichever step fails: before the new container is healthy, the rollback leaves
        /// the old container running if there was one (stop-first restarts it, start-first
        /// never stopped it) and no new container running; once the new one is healthy it
        /// stays in service. The invariants of the order hold through the rollback too.
        #[test]
        fn prop_rollback_restores_service(r in replacement(), fail_at in 0..5usize) {
            let steps = r.steps();
            let fail_at = fail_at % steps.len();
            let mut w = World::new(r);
            for s in &steps[..fail_at] {
                w.step(*s, true)?;
            }
            let failed = steps[fail_at];
            w.step(failed, false)?;
            for u in r.rollback(failed) {
                w.undo(u)?;
            }
            prop_assert!(!w.renamed);
            if w.new_healthy {
                prop_assert_eq!(w.new, Some(State::Running));
            } else {
                prop_assert!(w.new != Some(State::Running), "an unhealthy new container left running");
                if r.has_old {
                    prop_assert_eq!(w.old, Some(State::Running));
                }
            }
        }
    }
}
