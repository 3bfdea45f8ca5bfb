#!/bin/bash
# Build, from the binaries of build-binaries.sh, every image a kind node must hold before it
# can start a cluster with no registry, and save each as a docker-archive tar in $CACHE/images
# (what the node image imports into its containerd):
#
#   registry.k8s.io/kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy:<k8s>
#   registry.k8s.io/etcd, coredns/coredns, pause          the exact names kubeadm asks for
#   registry.k8s.io/metrics-server/metrics-server:<v>     the name stack/deploy/k8s uses
#   scalelab/kindnet-offline, scalelab/local-path-*       the node's default CNI and storage
#
# The names kubeadm expects are read from `kubeadm config images list`; the build stops if they
# no longer agree with versions.env. Static programs go into images FROM scratch; kube-proxy
# (iptables, conntrack) and the storage helper (sh, mkdir, rm) onto a minimal Debian.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

IMAGES=$CACHE/images
mkdir -p "$IMAGES"
[ -x "$BIN/kubeadm" ] || die "no kubeadm in $BIN — run build-binaries.sh first"
docker info >/dev/null 2>&1 || die "no Docker engine reachable — run stack/deploy/ensure-docker.sh (as root) first"

# Redone when this recipe, the versions or any binary's build (its stamp) changes.
HASH=$(recipe_hash "$0" "$KIND_OFFLINE_DIR/lib.sh" "$KIND_OFFLINE_DIR/pause/pause.c" \
       "$KIND_OFFLINE_DIR/build-rootfs.sh" "$CACHE"/stamps/binary-*)
if step_done images "$HASH"; then
    say "images up to date in $IMAGES"
    exit 0
fi
started=$(date +%s)

mapfile -t KUBEADM_IMAGES < <("$BIN/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION")
kubeadm_image() { # the image kubeadm names for a component (kube-apiserver, etcd, coredns, pause)
    local image
    for image in "${KUBEADM_IMAGES[@]}"; do
        case ${image##*/} in "$1":*) echo "$image"; return ;; esac
    done
    die "kubeadm $KUBERNETES_VERSION names no $1 image (it lists: ${KUBEADM_IMAGES[*]})"
}
expect() { # image expected-tag
    [ "${1##*:}" = "$2" ] || die "kubeadm asks for $1, versions.env builds $2: update versions.env"
}
expect "$(kubeadm_image etcd)" "${ETCD_VERSION#v}-0"
expect "$(kubeadm_image coredns)" "$COREDNS_VERSION"
expect "$(kubeadm_image pause)" "$PAUSE_VERSION"

# The pause program: static C, no libc at run time.
gcc -static -Os -Wall -o "$BIN/pause" "$KIND_OFFLINE_DIR/pause/pause.c"

# A minimal Debian for the two images that need more than one static program.
"$KIND_OFFLINE_DIR/build-rootfs.sh" debian-tools bookworm iptables,conntrack,nftables
TOOLS_BASE=scalelab/kind-debian-tools:$(cat "$CACHE/rootfs/debian-tools.id")
if ! docker image inspect "$TOOLS_BASE" >/dev/null 2>&1; then
    tar -C "$CACHE/rootfs/debian-tools" --numeric-owner -c . | docker import - "$TOOLS_BASE" >/dev/null
fi

# image NAME BASE BINARY PATH-IN-IMAGE [ENTRYPOINT]: one binary on a base, via docker build.
image() {
    local name=$1 base=$2 binary=$3 path=$4 entry=${5:-} context
    context=$(mktemp -d)
    cp "$BIN/$binary" "$context/$binary"
    mkdir -m 1777 "$context/tmp"
    {
        echo "FROM $base"
        [ "$base" = scratch ] && echo "COPY tmp /tmp"
        echo "COPY $binary $path"
        echo "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
        [ -n "$entry" ] && echo "ENTRYPOINT [\"$entry\"]"
        echo "LABEL org.scalelab.kind-offline=$HASH"
    } > "$context/Dockerfile"
    docker build --quiet --tag "$name" "$context" >/dev/null
    rm -rf "$context"
    docker save --output "$IMAGES/$(echo "${name#*/}" | tr '/:' '__').tar" "$name"
    say "image $name"
}

rm -f "$IMAGES"/*.tar
for component in kube-apiserver kube-controller-manager kube-scheduler; do
    image "$(kubeadm_image "$component")" scratch "$component" "/usr/local/bin/$component"
done
image "$(kubeadm_image kube-proxy)" "$TOOLS_BASE" kube-proxy /usr/local/bin/kube-proxy
image "$(kubeadm_image etcd)" scratch etcd /usr/local/bin/etcd
image "$(kubeadm_image coredns)" scratch coredns /coredns /coredns
image "$(kubeadm_image pause)" scratch pause /pause /pause
image "registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION" scratch metrics-server /metrics-server /metrics-server
image "scalelab/kindnet-offline:$KUBERNETES_VERSION" scratch kindnet-offline /usr/local/bin/kindnet-offline \
      /usr/local/bin/kindnet-offline
image "scalelab/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION" scratch local-path-provisioner \
      /usr/local/bin/local-path-provisioner /usr/local/bin/local-path-provisioner
docker tag "$TOOLS_BASE" "scalelab/local-path-helper:$LOCAL_PATH_PROVISIONER_VERSION"
docker save --output "$IMAGES/local-path-helper.tar" "scalelab/local-path-helper:$LOCAL_PATH_PROVISIONER_VERSION"
say "image scalelab/local-path-helper:$LOCAL_PATH_PROVISIONER_VERSION"

mark_done images "$HASH"
say "images built in $(elapsed "$started") s: $(du -sm "$IMAGES" | cut -f1) MiB of archives in $IMAGES"
