#!/usr/bin/env bash
# Mutation checks for the deterministic simulation (issue 9): each deliberate bug below is
# applied to a copy-restored source file, the bounded simulation (`cargo test -p brh-tests
# --test sim`, the one CI runs) must FAIL, and the file is restored. Prints how long each
# took to be caught. A mutation that survives exits 1.
#
#   scripts/sim-mutations.sh            # all eight (each rebuilds the test binary: ~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."

run() { # name, file, perl substitution
  local name=$1 file=$2 expr=$3
  cp "$file" "$file.orig"
  # Restored with a fresh mtime: cargo must rebuild the unmutated file afterwards.
  trap 'mv -f "'"$file"'.orig" "'"$file"'"; touch "'"$file"'"' RETURN
  perl -0pi -e "$expr" "$file"
  if cmp -s "$file" "$file.orig"; then echo "mutation '$name' did not apply to $file" >&2; exit 1; fi
  local t0=$SECONDS out
  if out=$(cargo test -q -p brh-tests --test sim 2>&1); then
    echo "| $name | SURVIVED |"; echo "$out" | tail -5 >&2; return 1
  fi
  local first
  first=$(echo "$out" | grep -m1 -oE "seed [0-9]+: at t=[0-9]+ ms: .{0,100}" || true)
  echo "| $name | caught in $((SECONDS - t0)) s (incl. build) | ${first} |"
}

echo "| mutation | result | first violation |"
echo "|---|---|---|"
status=0
run "grant a moment before expiry (ttl/5 early)" shared/src/election.rs \
  's/now_ms < self\.expires_at_ms\n/now_ms + self.ttl_ms \/ 5 < self.expires_at_ms\n/' || status=1
run "deadline from the answer's arrival, not the send" brh-agent/src/role.rs \
  's/let deadline = sent_ms\n(\s*)\.saturating_add\(remaining\)/let deadline = received_ms\n$1.saturating_add(remaining)/' || status=1
# A view is "for" a node through its `you` field and the node's own key, checked in
# ViewKeys::verify (signature under our key, addressee is us), VerifiedView::check (the
# addressee again), `you.role == leader` before a grant, and the binding to our request.
# Accepting a view signed for another node means dropping all of them.
run "accept a view signed for another node (no key, addressee or binding check)" brh-agent/src/role.rs \
  's/\(Some\(you\), Some\(\(me, key\)\)\) => you\.node == \*me && verify_view\(key, view\)/(Some(_), Some(_)) => true/; s/if view\.you\.as_ref\(\)\.map\(\|y\| y\.node\.as_str\(\)\) != Some\(node\)/if false/; s/&& v\.you\.as_ref\(\)\.is_some_and\(\|y\| y\.role == Role::Leader\)/\&\& true/; s/if !bound \{\n\s*return Err\(ViewError::Unbound\);\n\s*\}/let _ = bound;/' || status=1
# The stream (issue 12): a pushed grant measured from the push's arrival instead of its basis
# beat's send time; and a push whose basis is taken without its basis_sig (the simulation's
# on-path attacker relabels old pushes as following the newest beat: `tamper-basis`).
run "push measured from its arrival, not its basis beat" brh-agent/src/role.rs \
  's/let ts = self\.apply_view\(basis_sent_ms, received_ms, view\);/let ts = self.apply_view(received_ms, received_ms, view);/' || status=1
run "push basis taken without basis_sig" brh-agent/src/role.rs \
  's/\.is_some_and\(\|s\| verify_basis\(keys\.node_key\(\), node, nonce, &view\.sig, s\)\)/.is_some()/' || status=1
# Answers over plain HTTP (second pass of issue 12): the binding's signature checked over the
# basis the answer names, not over our nonce — a node's own captured grant, replayed as the
# answer to a later heartbeat (`replay-own`), then counts from that heartbeat's send time.
run "an answer bound to another request of ours accepted" brh-agent/src/role.rs \
  's/let bound = basis == Some\(nonce\)\n\s*&& basis_sig\.is_some_and\(\|s\| verify_basis\(keys\.node_key\(\), node, nonce, &view\.sig, s\)\);/let bound = basis_sig.is_some_and(|s| verify_basis(keys.node_key(), node, basis.unwrap_or(""), &view.sig, s));/' || status=1
# Per-node identity (issue 19): node keys that do not name the node — one key per env, the
# flat trust of a shared secret — let the compromised node n0 speak for any other node and
# forge answers to it (the simulation's `forged-request` / `forged-answer`).
run "one key per env, not per node (a node's key signs for every node)" shared/src/keys.rs \
  's/format!\("brh-v1-node-key\\n\{env\}\\n\{node\}"\)/format!("brh-v1-node-key\\n{env}\\n{}", node.len() * 0)/' || status=1
# Revocation (issue 19): revoking the leader must not end its lease early — it may act until
# its deadline, so a grant before then makes two leaders (the simulation's `revoke`).
run "revoking the holder vacates its lease at once" shared/src/election.rs \
  's/self\.revoked\.insert\(node\.into\(\), accepted_from\);/self.revoked.insert(node.into(), accepted_from);\n        if self.lease.as_ref().is_some_and(|l| l.holder == node) { self.lease = None; }/' || status=1
exit $status
