#!/usr/bin/env bash
# Builds the minimal images brh-forge:VERSION and brh-agent:VERSION (and :latest) from the
# static binaries (scripts/build-static.sh), FROM scratch, with the local Docker engine and
# no registry: nothing is pulled or pushed.
#
#   scripts/build-images.sh                     release binaries (slow the first time):
#                                               tags VERSION (the crate's) and latest
#   BRH_STATIC_PROFILE=dev scripts/build-images.sh
#                                               unoptimized binaries, for CI smoke tests:
#                                               tags VERSION-dev and dev, never latest
#   BRH_IMAGE_VERSION=1.2.3 scripts/build-images.sh
#                                               another version tag
#
# The engine: $DOCKER_HOST if set, else the project's private dockerd (scripts/dockerd.sh,
# started if needed), never the system socket by accident. The Dockerfiles are
# deploy/docker/{forge,agent}.Dockerfile. The last line printed is the version tag.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[images] %s\n' "$*" >&2; }

if [ -z "${DOCKER_HOST:-}" ]; then
  scripts/dockerd.sh start >&2
  eval "$(scripts/dockerd.sh env)"
fi
export DOCKER_HOST
log "engine: $DOCKER_HOST"

static_out=$(scripts/build-static.sh)
sed '$d' <<<"$static_out"   # the binaries, their sizes and linkage
dir=$(tail -n 1 <<<"$static_out")
if [ "${BRH_STATIC_PROFILE:-release}" = dev ]; then suffix=-dev moving=dev; else suffix='' moving=latest; fi
version=${BRH_IMAGE_VERSION:-$("$dir/forge" --version | awk '{print $2}')$suffix}
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# BuildKit needs the buildx plugin, which this engine's client may lack; the classic builder
# handles FROM scratch without any registry.
build() { # name binary dockerfile
  local name=$1 binary=$2 dockerfile=$3
  rm -rf "${ctx:?}"/*
  cp "$dir/$binary" "$ctx/$binary"
  mkdir "$ctx/data"
  log "building $name:$version (and :$moving) from $dockerfile"
  DOCKER_BUILDKIT=0 docker build --quiet \
    --file "$dockerfile" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --tag "$name:$version" --tag "$name:$moving" \
    "$ctx" >/dev/null
  local size
  size=$(docker image inspect --format '{{.Size}}' "$name:$version")
  printf '%-22s %9s bytes (%s KiB)\n' "$name:$version" "$size" "$((size / 1024))"
}

build brh-forge forge deploy/docker/forge.Dockerfile
build brh-agent brh-agent deploy/docker/agent.Dockerfile
echo "$version"
