#!/bin/bash
# Build Prometheus and promtool with Kubernetes service discovery from the Prometheus Go module
# (github.com/prometheus/prometheus, tagged v0.3MM.P for Prometheus 3.MM.P), for lab 07 on kind:
# Debian's prometheus package — the one the local and compose runtimes run — is built without
# kubernetes_sd_configs. No web UI assets (the labs use the API only). Output: $CACHE/bin.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$KIND_OFFLINE_DIR/prometheus.env"     # its own file: versions.env feeds every other binary's stamp

require_go_proxy
hash=$(recipe_hash "$0" "$KIND_OFFLINE_DIR/lib.sh" "$KIND_OFFLINE_DIR/prometheus.env")
if step_done binary-prometheus "$hash"; then exit 0; fi
dir=$CACHE/src/prometheus
mkdir -p "$dir"
printf 'module scalelab.local/kind-offline/prometheus\n\ngo 1.24\n' > "$dir/go.mod"
echo "package wrapper" > "$dir/doc.go"
cd "$dir"
go get "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" > go-get.log 2>&1 \
    || { tail -n 5 go-get.log >&2; die "go get github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION failed"; }
for program in prometheus promtool; do
    started=$(date +%s)
    nice -n 10 go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION" \
        -o "$BIN/$program.new" "github.com/prometheus/prometheus/cmd/$program"
    mv "$BIN/$program.new" "$BIN/$program"
    say "built $program in $(elapsed "$started") s ($(du -m "$BIN/$program" | cut -f1) MiB)"
done
mark_done binary-prometheus "$hash"
