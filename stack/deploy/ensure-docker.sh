#!/bin/sh
# Make a Docker engine available for the compose suite and for kind (`make test` and
# `make kind-offline` run this), or say in one line why it cannot be had here.
#
#   exit 0  engine reachable, BuildKit builds and Compose found, base image present
#   exit 3  Docker cannot be had on this machine: the reason is printed, the suite is NOT run
#   other   something failed that should have worked (printed): make test fails
#
# As root with apt (Debian, CI here) and no engine: installs Debian trixie's docker.io 26.x with
# its buildx and Compose v2 plugins (docker-buildx, docker-compose) through a source list of its
# own (/etc/apt is not touched; trixie is pinned low, so only those packages come from it),
# starts dockerd in the background, and builds the base image from Debian's packages when no
# registry gives it (stack/deploy/offline/build-python-base.sh). Bounded in time.
#
# Why trixie's 26.x: kind's nodes are privileged containers, and on a VM whose processes lack
# CAP_SYS_RESOURCE in their bounding set (this one) bookworm's docker.io 20.10 refuses
# `--privileged` ("unable to apply caps"); 26.x grants the bounding set it has. Without the
# buildx plugin that package cannot build with BuildKit, which every image here needs.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BASE_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/scalelab-dockerd.log}
APT_DIR=${SCALELAB_APT_DIR:-/var/lib/scalelab/apt}
DOCKER_PACKAGES="docker.io/trixie docker-buildx/trixie docker-compose/trixie"

say() { echo "ensure-docker: $*"; }
unavailable() { echo "make test: the compose suite was NOT run — $*"; exit 3; }
is_root() { [ "$(id -u)" = 0 ]; }

# apt-get options for bookworm + trixie (pinned at 100: nothing comes from trixie unless asked
# for by name/trixie) from the host's own Debian mirror, in a directory of its own.
apt_lab_options() {
    mirror=$(sed -nE 's#^deb +(\[[^]]*\] +)?(https?://[^ ]+/debian/?) +.*#\2#p; s#^URIs: +(https?://[^ ]+/debian/?)$#\1#p' \
                 /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/parts"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s trixie main\n' "$mirror" "$mirror" "$mirror" \
        > "$APT_DIR/sources.list"
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > "$APT_DIR/preferences"
    echo "-o Dir::Etc::SourceList=$APT_DIR/sources.list -o Dir::Etc::SourceParts=$APT_DIR/parts" \
         "-o Dir::Etc::Preferences=$APT_DIR/preferences -o Dir::Etc::PreferencesParts=$APT_DIR/parts" \
         "-o Dir::State::Lists=$APT_DIR/lists"
}

apt_install() {
    is_root && command -v apt-get >/dev/null || return 1
    say "installing $* (apt-get) ..."
    options=$(apt_lab_options)
    # shellcheck disable=SC2086  # options are words
    timeout 600 apt-get $options update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get $options install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

# Debian 12's own docker.io (20.10) installed but not running: replace it with 26.x (see above).
if ! engine_up && is_root && dpkg-query -W -f '${Version}' docker.io 2>/dev/null | grep -q '^20\.'; then
    apt_install $DOCKER_PACKAGES || { say "upgrading docker.io 20.10 to trixie's 26.x failed"; exit 1; }
fi

if ! engine_up; then
    if ! command -v dockerd >/dev/null 2>&1; then
        is_root || unavailable "no Docker engine here and not root to install one: install Docker, then make test"
        command -v apt-get >/dev/null || unavailable "no Docker engine here and no apt-get to install one: install Docker"
        apt_install $DOCKER_PACKAGES debootstrap || { say "apt-get install $DOCKER_PACKAGES failed"; exit 1; }
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
        say "dockerd started by this run keeps running after it (stop it: kill \$(pidof dockerd))"
    fi
fi

if ! { docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; }; then
    apt_install docker-compose/trixie || unavailable "Docker runs but Compose is missing: install the compose plugin or docker-compose"
fi
# BuildKit: the buildx plugin, or a CLI that has it built in (Docker >= 23, Debian 12's 20.10 CLI)
if ! docker buildx version >/dev/null 2>&1; then
    case $(docker version --format '{{.Server.Version}}' 2>/dev/null) in
        2[6-9].*|[3-9]?.*) apt_install docker-buildx/trixie || \
            unavailable "Docker $(docker version --format '{{.Server.Version}}') runs without the buildx plugin and it cannot be installed here (Debian: docker-buildx)" ;;
    esac
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
