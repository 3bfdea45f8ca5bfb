# Shared by the kind-offline scripts (sourced): versions, the cache folder, the Go environment.
#
# Everything is cached under one folder outside the clone, so a second clone (CI's) on the same
# machine finds it: SCALELAB_KIND_CACHE, default ~/.cache/scalelab/kind-offline.
#   go/mod, go/cache   Go's module and build caches (a cold build fills them: ~ 3 GiB)
#   bin/               every binary built, named as installed (kubelet, etcd, coredns, ...)
#   src/               the small wrapper modules the binaries are built from
#   images/            docker-archive tars of the images the node pre-imports
#   rootfs/            the node's Debian root filesystem (debootstrap)
#   stamps/            one file per finished step, holding the hash of its recipe
KIND_OFFLINE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$KIND_OFFLINE_DIR/versions.env"
CACHE=${SCALELAB_KIND_CACHE:-$HOME/.cache/scalelab/kind-offline}
BIN=$CACHE/bin
mkdir -p "$CACHE" "$BIN" "$CACHE/stamps"

export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/cache GOPATH=$CACHE/go/path
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
# The Go module proxy only: "direct" would try each module's own host, which is not reachable
# here and turns a clear 404 into a DNS error.
export GOPROXY=${GOPROXY_OVERRIDE:-https://proxy.golang.org}

say() { echo "kind-offline: $*"; }
die() { echo "kind-offline: $*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }

# A step is done when its stamp holds the hash of what it was made from (the scripts, the
# versions): editing either redoes it, nothing else does.
recipe_hash() { cat "$KIND_OFFLINE_DIR/versions.env" "$@" | sha256sum | cut -c1-16; }
step_done() { [ "$(cat "$CACHE/stamps/$1" 2>/dev/null)" = "$2" ]; }
mark_done() { echo "$2" > "$CACHE/stamps/$1"; }

require_go_proxy() {
    command -v go >/dev/null || die "go not found — install Go >= 1.24 (Debian: apt-get install golang-1.24-go) to build Kubernetes from its Go modules"
    curl -fsS -o /dev/null --max-time 20 "$GOPROXY/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.info" \
        || die "the Go module proxy ($GOPROXY) does not answer — building kind's node image offline needs it (GOPROXY_OVERRIDE sets another)"
}
