#!/bin/bash
# Assemble a kind node image with nothing from a container registry, doing what
# `kind build node-image` does (which always pulls etcd, CoreDNS, pause and kind's CNI and
# storage images, so it cannot run offline):
#
#   1. the base: a Debian trixie root filesystem (systemd, containerd 1.7, runc, the CNI
#      plugins, iptables/nftables) with the files of kind's own base image (its entrypoint,
#      systemd units, kubelet drop-ins, containerd config), taken from the kind Go module of
#      versions.env and adapted for this host (below);
#   2. kubeadm, kubelet, kubectl in /usr/bin, /kind/version, the default CNI and storage
#      manifests in /kind/manifests;
#   3. every image of build-images.sh imported into the node's containerd (as kind's build
#      does: --no-unpack, pinned), then `docker commit` with kind's entrypoint.
#
# Adapted for this host: containerd's `restrict_oom_score_adj = true` (the VM's processes lack
# CAP_SYS_RESOURCE, so a pod sandbox asking for oom_score_adj -998 would fail to start), the
# pause image kubeadm 1.34 names, and no fuse-overlayfs proxy plugin (for rootless only).
#
# Output: the Docker image scalelab/kind-node:<kubernetes version> (SCALELAB_KIND_NODE_IMAGE
# picks it; label org.scalelab.kind-offline = the hash of what it was built from).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NODE_IMAGE=scalelab/kind-node:$KUBERNETES_VERSION
NODE_PACKAGES=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash
NODE_PACKAGES+=,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins
docker info >/dev/null 2>&1 || die "no Docker engine reachable — run stack/deploy/ensure-docker.sh (as root) first"

"$KIND_OFFLINE_DIR/build-rootfs.sh" node "$NODE_SUITE" "$NODE_PACKAGES"
HASH=$(recipe_hash "$0" "$KIND_OFFLINE_DIR/lib.sh" "$KIND_OFFLINE_DIR"/node/* "$CACHE/stamps/images" \
       "$CACHE/stamps/rootfs-node" "$CACHE"/stamps/binary-*)
if step_done node-image "$HASH" && \
   [ "$(docker image inspect --format '{{ index .Config.Labels "org.scalelab.kind-offline" }}' "$NODE_IMAGE" 2>/dev/null)" = "$HASH" ]; then
    say "node image $NODE_IMAGE up to date"
    exit 0
fi
started=$(date +%s)
KIND_SRC=$(go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')
[ -d "$KIND_SRC/images/base/files" ] || die "sigs.k8s.io/kind@$KIND_VERSION has no images/base/files"

# -- 1. the base root filesystem --------------------------------------------------------------
ROOT=$CACHE/rootfs/node-image
rm -rf "$ROOT"
cp -a "$CACHE/rootfs/node" "$ROOT"
FILES=$KIND_SRC/images/base/files
install -m 0755 -D -t "$ROOT/usr/local/bin" "$FILES"/usr/local/bin/*
install -m 0755 -D -t "$ROOT/kind/bin" "$FILES"/kind/bin/*
install -m 0644 -D -t "$ROOT/kind" "$FILES"/kind/README.txt
for dir in etc etc/containerd etc/default etc/sysctl.d etc/systemd/system etc/systemd/system/kubelet.service.d; do
    find "$FILES/$dir" -maxdepth 1 -type f -exec install -m 0644 -D -t "$ROOT/$dir" {} +
done
# kind's units run containerd from /usr/local/bin; Debian installs it in /usr/bin.
for program in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/$program" "$ROOT/usr/local/bin/$program"; done
install -m 0755 "$BIN/crictl" "$ROOT/usr/local/bin/crictl"
mkdir -p "$ROOT/opt/cni/bin"
for plugin in host-local loopback ptp portmap; do install -m 0755 "$ROOT/usr/lib/cni/$plugin" "$ROOT/opt/cni/bin/"; done

CONFIG=$ROOT/etc/containerd/config.toml
python3 - "$CONFIG" "registry.k8s.io/pause:$PAUSE_VERSION" <<'PY'
import re, sys
path, pause = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'\[proxy_plugins\]\n(#.*\n)*\[proxy_plugins\."fuse-overlayfs"\]\n(  .*\n)*', '', text)
text, restrict = re.subn(r'restrict_oom_score_adj = false', 'restrict_oom_score_adj = true', text)
text, sandbox = re.subn(r'sandbox_image = ".*"', f'sandbox_image = "{pause}"', text)
if restrict != 1 or sandbox != 1 or "fuse-overlayfs" in text:
    sys.exit(f"kind's containerd config changed shape ({path}): adapt build-node-image.sh")
open(path, "w").write(text)
PY
# The runtime spec every container starts from: containerd's default plus kind's hook.
chroot "$ROOT" sh -c 'ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer | length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" | jq "del(.process.rlimits)"' \
    > "$ROOT/etc/containerd/cri-base.json"
# systemd as kind's base image sets it up: no getty, udev or tmpfiles at boot, no kmsg.
find "$ROOT/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$ROOT"/lib/systemd/system/multi-user.target.wants/* "$ROOT"/etc/systemd/system/*.wants/* \
      "$ROOT"/lib/systemd/system/local-fs.target.wants/* "$ROOT"/lib/systemd/system/sockets.target.wants/*udev* \
      "$ROOT"/lib/systemd/system/sockets.target.wants/*initctl* "$ROOT"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$ROOT/etc/systemd/journald.conf"
ln -sf /lib/systemd/systemd "$ROOT/sbin/init"
chroot "$ROOT" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$ROOT" systemctl mask systemd-binfmt.service >/dev/null 2>&1
mkdir -p "$ROOT/etc/kubernetes/manifests"

# -- 2. Kubernetes' binaries, version, manifests ------------------------------------------------
for binary in kubeadm kubelet kubectl; do install -m 0755 -o root -g root "$BIN/$binary" "$ROOT/usr/bin/$binary"; done
printf '%s' "$KUBERNETES_VERSION" > "$ROOT/kind/version"
mkdir -p "$ROOT/kind/manifests"
sed "s#scalelab/kindnet-offline:KINDNET_TAG#scalelab/kindnet-offline:$KUBERNETES_VERSION#" \
    "$KIND_OFFLINE_DIR/node/default-cni.yaml" > "$ROOT/kind/manifests/default-cni.yaml"
# kind's own default storage (local-path-provisioner, StorageClass "standard"), read from the
# kind module of versions.env, with the images built here in place of kind's.
awk '/^const defaultStorageManifest = `/ {on = 1; sub(/^.*= `/, ""); print; next}
     on && /^`/ {exit} on {print}' "$KIND_SRC/pkg/build/nodeimage/const_storage.go" \
  | sed -e "s#\` + storageProvisionerImage + \`#scalelab/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION#" \
        -e "s#\` + storageHelperImage + \`#scalelab/local-path-helper:$LOCAL_PATH_PROVISIONER_VERSION#" \
  > "$ROOT/kind/manifests/default-storage.yaml"
grep -q "scalelab/local-path-provisioner" "$ROOT/kind/manifests/default-storage.yaml" && \
    ! grep -q 'storage.*Image' "$ROOT/kind/manifests/default-storage.yaml" || \
    die "kind's default storage manifest changed shape ($KIND_SRC/pkg/build/nodeimage/const_storage.go)"

BASE=scalelab/kind-base:$HASH
tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$BASE" >/dev/null
rm -rf "$ROOT"
say "base image $BASE ($(docker image inspect --format '{{.Size}}' "$BASE" | awk '{printf "%d MB", $1/1e6}'))"

# -- 3. the images, into the node's containerd --------------------------------------------------
BUILDER=scalelab-kind-build-$$
docker run -d --name "$BUILDER" --entrypoint=sleep --security-opt seccomp=unconfined "$BASE" infinity >/dev/null
trap 'docker rm -f -v "$BUILDER" >/dev/null 2>&1 || true' EXIT
docker exec "$BUILDER" bash -c 'nohup containerd > /dev/null 2>&1 &'
docker exec "$BUILDER" bash -c 'for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && ctr info >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1' \
    || die "containerd did not start in the build container"
for archive in "$CACHE"/images/*.tar; do
    docker exec -i "$BUILDER" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
        --all-platforms --no-unpack --digests - < "$archive" >/dev/null
done
say "images in the node's containerd: $(docker exec "$BUILDER" ctr --namespace=k8s.io images list -q | grep -v -e '^sha256:' -e '^import-' | tr '\n' ' ')"
docker exec "$BUILDER" pkill containerd
docker exec "$BUILDER" bash -c 'for i in $(seq 50); do pgrep -x containerd >/dev/null || exit 0; sleep 0.2; done'
previous=$(docker image inspect --format '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)
docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
    --change "LABEL org.scalelab.kind-offline=$HASH" \
    "$BUILDER" "$NODE_IMAGE" >/dev/null
docker rm -f -v "$BUILDER" >/dev/null
docker rmi "$BASE" >/dev/null 2>&1 || true
# the image this one replaces (1.3 GB), unless a node container still runs on it
[ -z "$previous" ] || docker rmi "$previous" >/dev/null 2>&1 || true
mark_done node-image "$HASH"
say "node image $NODE_IMAGE built in $(elapsed "$started") s ($(docker image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
