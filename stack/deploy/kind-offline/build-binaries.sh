#!/bin/bash
# Build every binary a kind cluster needs from published Go modules (the Go module proxy), with
# nothing from a container registry or a download site:
#
#   kind                      sigs.k8s.io/kind            (`go install` is kind's own install route)
#   kubeadm kubelet kubectl   k8s.io/kubernetes            through a wrapper module (see below)
#   kube-apiserver kube-controller-manager kube-scheduler kube-proxy
#   etcd                      go.etcd.io/etcd/server/v3    the version kubeadm asks for
#   coredns                   github.com/coredns/coredns
#   metrics-server            sigs.k8s.io/metrics-server
#   local-path-provisioner    github.com/rancher/local-path-provisioner   (kind's default storage)
#   crictl                    sigs.k8s.io/cri-tools
#   kindnet-offline           ./kindnet (this project's): the node network kind's kindnetd gives
#
# Usage: build-binaries.sh [name...]   (default: all; a binary already built from the same
# versions and scripts is kept). Output: $CACHE/bin, one line of time and size per binary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ALL="kubernetes kind etcd coredns metrics-server local-path-provisioner crictl kindnet-offline"
KUBE_BINARIES="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"

# A Go module of our own in $CACHE/src/<name> from which one program is built.
wrapper() { # name go-version
    local dir=$CACHE/src/$1
    mkdir -p "$dir"
    printf 'module scalelab.local/kind-offline/%s\n\ngo %s\n' "$1" "$2" > "$dir/go.mod"
    echo "package wrapper" > "$dir/doc.go"
    echo "$dir"
}

go_build() { # output-name package [ldflags] — in the current module, timed
    local started; started=$(date +%s)
    nice -n 10 go build -trimpath -ldflags "-s -w ${3:-}" -o "$BIN/$1.new" "$2"
    mv "$BIN/$1.new" "$BIN/$1"
    say "built $1 in $(elapsed "$started") s ($(du -m "$BIN/$1" | cut -f1) MiB)"
}

# Kubernetes' main module names its staging libraries (k8s.io/api, client-go, ...) by
# `replace => ./staging/src/...`, which a module outside its repository cannot follow. The
# wrapper requires k8s.io/kubernetes and replaces each of them by the version published for the
# same release (v1.34.4 -> v0.34.4), keeping the language and GODEBUG defaults of its go.mod.
build_kubernetes() {
    local gomod dir staging ldflags minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')
    [ -f "$gomod" ] || die "k8s.io/kubernetes@$KUBERNETES_VERSION: the Go module proxy gave no go.mod"
    dir=$(wrapper kubernetes "$(awk '$1 == "go" {print $2; exit}' "$gomod")")
    cd "$dir"
    awk '$1 == "godebug" {print; exit}' "$gomod" >> go.mod
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION" >> go.mod
    staging=v0.${KUBERNETES_VERSION#v1.}
    awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}' "$gomod" >> go.mod
    echo ")" >> go.mod
    # Without the version stamp the binaries call themselves v0.0.0-master: kubeadm refuses to
    # pick images for that, and kind reads the node's version from them.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    for binary in $KUBE_BINARIES; do
        go_build "$binary" "k8s.io/kubernetes/cmd/$binary" "$ldflags"
    done
}

build_module_program() { # output-name module version package [ldflags]
    local dir; dir=$(wrapper "$1" 1.24)
    cd "$dir"
    go get "$2@$3" > "$dir/go-get.log" 2>&1 || { tail -n 5 "$dir/go-get.log" >&2; die "go get $2@$3 failed"; }
    go_build "$1" "$4" "${5:-}"
}

build_one() {
    case $1 in
        kubernetes) build_kubernetes ;;
        kind) build_module_program kind sigs.k8s.io/kind "$KIND_VERSION" sigs.k8s.io/kind ;;
        etcd) build_module_program etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
                  "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" ;;
        coredns) build_module_program coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns \
                  "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" ;;
        metrics-server) build_module_program metrics-server sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION" \
                  sigs.k8s.io/metrics-server/cmd/metrics-server \
                  "-X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION" ;;
        local-path-provisioner) build_module_program local-path-provisioner github.com/rancher/local-path-provisioner \
                  "$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner \
                  "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" ;;
        crictl) build_module_program crictl sigs.k8s.io/cri-tools "$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl \
                  "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ;;
        kindnet-offline) cd "$KIND_OFFLINE_DIR/kindnet" && go_build kindnet-offline . ;;
        *) die "unknown binary '$1' (one of: $ALL)" ;;
    esac
}

require_go_proxy
started=$(date +%s)
for name in ${*:-$ALL}; do
    case $name in kindnet-offline) extra=$(cat "$KIND_OFFLINE_DIR"/kindnet/*.go "$KIND_OFFLINE_DIR"/kindnet/go.*) ;; *) extra= ;; esac
    hash=$(recipe_hash "$0" "$KIND_OFFLINE_DIR/lib.sh" <(echo "$extra"))
    if step_done "binary-$name" "$hash"; then continue; fi
    (build_one "$name")
    mark_done "binary-$name" "$hash"
done
say "binaries ready in $BIN ($(elapsed "$started") s this run; Go caches $(du -sm "$CACHE/go" | cut -f1) MiB)"
