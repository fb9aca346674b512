#!/usr/bin/env bash
# A private Docker engine for BRH's container tests and local use, started idempotently.
#
#   scripts/dockerd.sh start    install docker.io + busybox-static if missing, start dockerd,
#                               build the test images (no registry needed)
#   scripts/dockerd.sh stop     stop the private engine
#   scripts/dockerd.sh env      print `export DOCKER_HOST=...` for this engine
#
# The engine runs with --iptables=false --ip-forward=false --ip-masq=false: the host firewall
# is left alone (published ports still work through docker-proxy). Its state lives in
# $BRH_DOCKER_DIR (default /var/tmp/brh-docker), outside the repository, so a second run on
# the same machine finds the engine and the images already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${BRH_DOCKER_DIR:-/var/tmp/brh-docker}
SOCK="$DIR/docker.sock"
export DOCKER_HOST="unix://$SOCK"
log() { printf '[dockerd] %s\n' "$*" >&2; }

running() {
  [ -S "$SOCK" ] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { log "need root to install ${missing[*]}"; exit 1; }
    log "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Compose v2, the reference implementation BRH's Compose support is compared with
# (`docker compose config --format json`, `docker compose ps`). Bookworm packages only v1, so
# the Go binary is taken from Debian trixie's package (static, needs only libc >= 2.34), from
# Debian's archive, checked against the SHA-256 its Packages index gives, and unpacked into
# $DIR/compose-v2/docker-compose. Nothing is installed system-wide.
COMPOSE_V2_DEB=pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb
COMPOSE_V2_SHA256=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
COMPOSE_V2="$DIR/compose-v2/docker-compose"
install_compose_v2() {
  [ -x "$COMPOSE_V2" ] && return 0
  [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || { log "Compose v2: only amd64 is pinned; skipped"; return 0; }
  local tmp
  tmp=$(mktemp -d)
  log "fetching Compose v2 from Debian's archive (13 MB, once)"
  curl -fsSL --retry 3 -o "$tmp/c.deb" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}/$COMPOSE_V2_DEB"
  echo "$COMPOSE_V2_SHA256  $tmp/c.deb" | sha256sum -c --quiet -
  dpkg-deb -x "$tmp/c.deb" "$tmp/x"
  mkdir -p "$(dirname "$COMPOSE_V2")"
  install -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_V2"
  rm -rf "$tmp"
  "$COMPOSE_V2" version >&2
}

start() {
  install_packages
  install_compose_v2
  if ! running; then
    mkdir -p "$DIR/data" "$DIR/exec"
    stop
    rm -f "$SOCK"
    log "starting dockerd at $SOCK"
    setsid nohup dockerd --host "$DOCKER_HOST" --data-root "$DIR/data" --exec-root "$DIR/exec" \
      --pidfile "$DIR/docker.pid" --storage-driver overlay2 \
      --iptables=false --ip-forward=false --ip-masq=false \
      >"$DIR/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
      running && break
      sleep 0.1
    done
    running || { log "dockerd did not come up; see $DIR/dockerd.log"; tail -20 "$DIR/dockerd.log" >&2; exit 1; }
  fi
  images
  log "ready: export DOCKER_HOST=$DOCKER_HOST"
}

# Test images made from a busybox rootfs, without any registry:
#   brh-test/web:1, brh-test/web:2  httpd on :8080 serving /health (two tags for deploys)
#   brh-test/broken:1               never becomes healthy (no server)
#   brh-test/sleep:1                a plain long-running process
images() {
  local want=(brh-test/web:1 brh-test/web:2 brh-test/broken:1 brh-test/sleep:1)
  local have
  have=$(docker images --format '{{.Repository}}:{{.Tag}}')
  local todo=()
  for i in "${want[@]}"; do grep -qx "$i" <<<"$have" || todo+=("$i"); done
  [ ${#todo[@]} -eq 0 ] && return 0
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/www" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for a in sh httpd sleep nc cat echo ls; do ln -s busybox "$root/bin/$a"; done
  echo ok >"$root/www/health"
  for i in "${todo[@]}"; do
    local cmd
    case "$i" in
      brh-test/web:*) cmd='["/bin/httpd","-f","-p","8080","-h","/www"]' ;;
      brh-test/broken:*) cmd='["/bin/sh","-c","exit 3"]' ;;
      *) cmd='["/bin/sleep","3600"]' ;;
    esac
    echo "${i##*:}" >"$root/www/version"
    log "building image $i"
    tar -C "$root" -c . | docker import -c "CMD $cmd" -c 'EXPOSE 8080' - "$i" >/dev/null
  done
  rm -rf "$root"
}

stop() {
  local pid
  pid=$(cat "$DIR/docker.pid" 2>/dev/null || pgrep -f "dockerd --host $DOCKER_HOST" || true)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  # Wait for dockerd itself to exit: it stops its containerd first. Starting again before
  # that lets the old containerd delete the new one's socket on its way out.
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd $pid did not stop in 30 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  pkill -f "containerd --config $DIR/exec" 2>/dev/null || true
  rm -f "$DIR/docker.pid"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST BRH_COMPOSE_V2=$COMPOSE_V2" ;;
  images) images ;;
  *) echo "usage: $0 start|stop|env|images" >&2; exit 2 ;;
esac
