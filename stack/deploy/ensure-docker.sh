#!/bin/sh
# Make a Docker engine available for the compose suite (`make test` runs this), or say in
# one line why it cannot be had here.
#
#   exit 0  engine reachable, Compose found, base image present (images build on first use)
#   exit 3  Docker cannot be had on this machine: the reason is printed, the suite is NOT run
#   other   something failed that should have worked (printed): make test fails
#
# As root with apt (Debian, CI here): installs docker.io + docker-compose (+ debootstrap),
# starts dockerd in the background, and builds the base image from Debian's packages when
# no registry gives it (stack/deploy/offline/build-python-base.sh). Bounded in time.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BASE_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/scalelab-dockerd.log}

say() { echo "ensure-docker: $*"; }
unavailable() { echo "make test: the compose suite was NOT run — $*"; exit 3; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    is_root && command -v apt-get >/dev/null || return 1
    say "installing $* (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@" >/dev/null 2>&1
}

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

if ! engine_up; then
    if ! command -v dockerd >/dev/null 2>&1; then
        is_root || unavailable "no Docker engine here and not root to install one: install Docker, then make test"
        command -v apt-get >/dev/null || unavailable "no Docker engine here and no apt-get to install one: install Docker"
        apt_install docker.io docker-compose debootstrap || { say "apt-get install docker.io docker-compose failed"; exit 1; }
    fi
    if ! engine_up; then
        is_root || unavailable "no Docker engine reachable by $(id -un) (is dockerd running? may this user use its socket?) and starting one needs root"
        say "starting dockerd (log: $DOCKERD_LOG) ..."
        nohup dockerd > "$DOCKERD_LOG" 2>&1 &
        deadline=$(( $(date +%s) + 60 ))
        until engine_up; do
            if ! kill -0 $! 2>/dev/null; then
                unavailable "dockerd cannot run on this machine: $(tail -n 1 "$DOCKERD_LOG")"
            fi
            [ "$(date +%s)" -lt "$deadline" ] || unavailable "dockerd did not answer within 60 s (see $DOCKERD_LOG)"
            sleep 0.5   # polling `docker info`, bounded by the deadline
        done
    fi
fi

if ! { docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; }; then
    apt_install docker-compose || unavailable "Docker runs but Compose is missing: install the compose plugin or docker-compose"
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        say "pulled $BASE_IMAGE"
    else
        command -v debootstrap >/dev/null || apt_install debootstrap || \
            unavailable "$BASE_IMAGE cannot be pulled and debootstrap is missing to build it offline"
        say "no registry gives $BASE_IMAGE: building it from Debian's packages"
        "$HERE/offline/build-python-base.sh" || { say "building the offline base image failed"; exit 1; }
    fi
fi
say "docker engine ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null)), base image $BASE_IMAGE present"
