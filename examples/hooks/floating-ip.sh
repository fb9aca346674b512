#!/bin/sh
# A role-change hook that moves a floating IP with the lease: the leader holds the address,
# a node that is demoted (or shut down) gives it up.
#
#   BRH_ON_PROMOTE=/etc/brh/floating-ip.sh BRH_ON_DEMOTE=/etc/brh/floating-ip.sh \
#   FLOATING_IP=192.0.2.10/24 FLOATING_DEV=eth0 brh-agent run ...
#
# Needs CAP_NET_ADMIN (run the agent as root, or give it the capability) and `ip` (iproute2)
# and, to tell the switch at once, `arping` (iputils-arping; skipped when missing).
# Idempotent on purpose: a node killed with kill -9 runs no demote hook, so the next leader's
# promote must succeed whatever the old holder left.
set -eu
: "${FLOATING_IP:?set FLOATING_IP, e.g. 192.0.2.10/24}"
: "${FLOATING_DEV:?set FLOATING_DEV, e.g. eth0}"
IP=${IP:-ip}
ARPING=${ARPING:-arping}
addr=${FLOATING_IP%/*}

case "${BRH_HOOK:-}" in
promote)
  # `replace` adds the address, or keeps it if this node already had it.
  "$IP" addr replace "$FLOATING_IP" dev "$FLOATING_DEV"
  if command -v "$ARPING" >/dev/null 2>&1; then
    # Gratuitous ARP: peers and the switch learn the address moved (best effort).
    "$ARPING" -U -c 3 -I "$FLOATING_DEV" "$addr" >/dev/null 2>&1 || true
  fi
  echo "floating ip $FLOATING_IP on $FLOATING_DEV: held for env $BRH_ENV term $BRH_TERM"
  ;;
demote)
  # Already gone is fine (the address may never have been added).
  "$IP" addr del "$FLOATING_IP" dev "$FLOATING_DEV" 2>/dev/null || true
  echo "floating ip $FLOATING_IP on $FLOATING_DEV: released (term $BRH_TERM ended)"
  ;;
*)
  echo "floating-ip.sh: run me as BRH_ON_PROMOTE / BRH_ON_DEMOTE (BRH_HOOK is '${BRH_HOOK:-}')" >&2
  exit 2
  ;;
esac
