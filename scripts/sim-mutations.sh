#!/usr/bin/env bash
# Mutation checks for the deterministic simulation (docs/design.md §4.5): each deliberate bug below is
# applied to a copy-restored source file, the bounded simulation (`cargo test -p brh-tests
# --test sim`, the one CI runs) must FAIL, and the file is restored. Prints how long each
# took to be caught. A mutation that survives exits 1.
#
#   scripts/sim-mutations.sh            # all of them (each rebuilds the test binary: ~2 min)
#   scripts/sim-mutations.sh switchover # only those whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

run() { # name, then one or more (file, perl substitution) pairs; each must apply
  local name=$1; shift
  local files=()
  # Restored with a fresh mtime: cargo must rebuild the unmutated files afterwards.
  trap 'for f in "${files[@]}"; do mv -f "$f.orig" "$f"; touch "$f"; done; trap - RETURN' RETURN
  while (($# >= 2)); do
    local file=$1 expr=$2; shift 2
    cp "$file" "$file.orig"; files+=("$file")
    perl -0pi -e "$expr" "$file"
    if cmp -s "$file" "$file.orig"; then echo "mutation '$name' did not apply to $file" >&2; return 1; fi
  done
  local t0=$SECONDS out
  if out=$(cargo test -q -p brh-tests --test sim 2>&1); then
    echo "| $name | SURVIVED |"; echo "$out" | tail -5 >&2; return 1
  fi
  local first
  first=$(echo "$out" | grep -m1 -oE "seed [0-9]+: at t=[0-9]+ ms: .{0,100}" || true)
  echo "| $name | caught in $((SECONDS - t0)) s (incl. build) | ${first} |"
}

# `scripts/sim-mutations.sh 'pattern'` runs only the mutations whose name matches.
only=${1:-}
mutation() {
  if [[ -n $only && ! $1 =~ $only ]]; then return 0; fi
  run "$@"
}

echo "| mutation | result | first violation |"
echo "|---|---|---|"
status=0
mutation "grant a moment before expiry (ttl/5 early)" shared/src/election.rs \
  's/now_ms < self\.expires_at_ms\n/now_ms + self.ttl_ms \/ 5 < self.expires_at_ms\n/' || status=1
mutation "deadline from the answer's arrival, not the send" brh-agent/src/role/lease.rs \
  's/let deadline = sent_ms\n(\s*)\.saturating_add\(remaining\)/let deadline = received_ms\n$1.saturating_add(remaining)/' || status=1
# A view is "for" a node through its `you` field and the node's own key, checked in
# ViewKeys::verify (signature under our key, addressee is us), VerifiedView::check (the
# addressee again), `you.role == leader` before a grant, and the binding to our request.
# Accepting a view signed for another node means dropping all of them.
mutation "accept a view signed for another node (no key, addressee or binding check)" \
  brh-agent/src/role/verify.rs \
  's/\(Some\(you\), Some\(\(me, key\)\)\) => you\.node == \*me && verify_view\(key, view\)/(Some(_), Some(_)) => true/; s/if view\.you\.as_ref\(\)\.map\(\|y\| y\.node\.as_str\(\)\) != Some\(node\)/if false/; s/if !bound \{\n\s*return Err\(ViewError::Unbound\);\n\s*\}/let _ = bound;/' \
  brh-agent/src/role/lease.rs \
  's/&& v\.you\.as_ref\(\)\.is_some_and\(\|y\| y\.role == Role::Leader\)/\&\& true/' || status=1
# The stream (docs/design.md §7): a pushed grant measured from the push's arrival instead of its basis
# beat's send time; and a push whose basis is taken without its basis_sig (the simulation's
# on-path attacker relabels old pushes as following the newest beat: `tamper-basis`).
mutation "push measured from its arrival, not its basis beat" brh-agent/src/role/lease.rs \
  's/let ts = self\.apply_view\(basis_sent_ms, received_ms, view\);/let ts = self.apply_view(received_ms, received_ms, view);/' || status=1
mutation "push basis taken without basis_sig" brh-agent/src/role/verify.rs \
  's/\.is_some_and\(\|s\| verify_basis\(keys\.node_key\(\), node, nonce, &view\.sig, s\)\)/.is_some()/' || status=1
# Answers over plain HTTP (docs/design.md §3.6): the binding's signature checked over the
# basis the answer names, not over our nonce — a node's own captured grant, replayed as the
# answer to a later heartbeat (`replay-own`), then counts from that heartbeat's send time.
mutation "an answer bound to another request of ours accepted" brh-agent/src/role/verify.rs \
  's/let bound = basis == Some\(nonce\)\n\s*&& basis_sig\.is_some_and\(\|s\| verify_basis\(keys\.node_key\(\), node, nonce, &view\.sig, s\)\);/let bound = basis_sig.is_some_and(|s| verify_basis(keys.node_key(), node, basis.unwrap_or(""), &view.sig, s));/' || status=1
# Per-node identity (docs/design.md §8.2): node keys that do not name the node — one key per env, the
# flat trust of a shared secret — let the compromised node n0 speak for any other node and
# forge answers to it (the simulation's `forged-request` / `forged-answer`).
mutation "one key per env, not per node (a node's key signs for every node)" shared/src/keys.rs \
  's/format!\("brh-v1-node-key\\n\{env\}\\n\{node\}"\)/format!("brh-v1-node-key\\n{env}\\n{}", node.len() * 0)/' || status=1
# Revocation (docs/design.md §8.6): revoking the leader must not end its lease early — it may act until
# its deadline, so a grant before then makes two leaders (the simulation's `revoke`).
mutation "revoking the holder vacates its lease at once" shared/src/election.rs \
  's/self\.revoked\.insert\(node\.into\(\), accepted_from\);/self.revoked.insert(node.into(), accepted_from);\n        if self.lease.as_ref().is_some_and(|l| l.holder == node) { self.lease = None; }/' || status=1
# Handover (a switchover's resign ends the old leader's lease on the forge early): the old
# leader must stop acting before the resign leaves, not when its answer arrives — the
# successor may learn of its grant first (a push), and the answer may be lost; and a grant of
# the handed-over term measured from a request sent before the step-down must not promote it
# again (the push of the grant that promoted it, arriving after its answer: the simulation's
# operators switch over at a grant now and then, `switchover-at-grant`).
mutation "switchover: the old leader acts until the resign is answered" \
  brh-agent/src/role/handover.rs 's/let Some\(h\) = self\.held\.take\(\) else \{\n(\s*)unreachable/let Some(h) = self.held else {\n$1unreachable/' || status=1
mutation "switchover: a grant predating the step-down promotes the old leader again" \
  brh-agent/src/role/lease.rs 's/\n\s*&& !self\.predates_handover\(v\.term, sent_ms\)//' || status=1
# Forge replicas (`Sim::with_replicas`, docs/design.md §12): the replica model's own check,
# and the restart rule every takeover applies (the real `EnvState::recover`).
mutation "forge replica: answers past its proof (its store lease may have ended)" \
  tests/src/sim.rs 's/if t >= z\.proof_until \{/if false && t >= z.proof_until {/' || status=1
mutation "restart rule: a takeover does not extend the holder's lease" \
  shared/src/election/durable.rs 's/l\.expires_at_ms = l\.expires_at_ms\.max\(until\);/let _ = until;/' || status=1
exit $status
