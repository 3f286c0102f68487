#!/usr/bin/env bash
# Real-cluster suite. Runs only when KUBECONFIG points at a reachable cluster (kind, k3d); otherwise it says
# why it skips and exits 0.
#
# It installs rollgate (the Helm chart when a helm binary exists, else the equal plain manifests of
# webhook-config/ with certs/generate.sh) and walks the whole flow on a real Deployment:
#   1. alice's `kubectl rollout restart` in a protected namespace is denied, with the ticket command;
#   2. alice files a ticket; she cannot approve it herself; bob (an approver by RBAC) approves it;
#   3. the restart is allowed, with the warning naming the ticket; the rollout is followed to COMPLETED in the
#      audit trail;
#   4. an image change by dave (no ticket) is denied; dave cannot remove the protected label; every other way
#      round the gate an `edit` user has is denied too (a Pod's image, `kubectl debug`, the ReplicaSet's image,
#      a CronJob's image, env, a template annotation, relabelling), while a Pod's plain label change passes;
#   5. bob revokes alice's grant: her next restart is denied;
#   6. rollgate's pods are deleted mid-flow: ungated changes (scaling, another namespace) keep working while
#      they are gone, and gating resumes when they are back;
#   7. the audit chain verifies.
#
# Users are service accounts of namespace rollgate-e2e: kubectl acts as them by impersonation (--as), the
# rollgate CLI sends their tokens (kubectl create token), so rollgate's TokenReview sees the same usernames the
# API server reports at admission.
#
# Environment:
#   ROLLGATE_IMAGE      image to install (default rollgate:e2e). With docker on PATH it is built from the
#                       Dockerfile and loaded into kind/k3d unless ROLLGATE_E2E_BUILD=0; else it must already be
#                       pullable by the cluster's nodes.
#   ROLLGATE_E2E_KEEP=1 leave everything installed afterwards.
#   ROLLGATE_BIN        the rollgate CLI to use (default: built with cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KUBECONFIG:-}" ] || [ ! -f "${KUBECONFIG}" ]; then
  echo "e2e: skipped: KUBECONFIG does not point at a kubeconfig file (set it to a kind or k3d cluster to run the real-cluster suite)"
  exit 0
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "e2e: skipped: kubectl is not installed"
  exit 0
fi
if ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e: skipped: the cluster in ${KUBECONFIG} does not answer"
  exit 0
fi

NS=rollgate             # rollgate's namespace
USERS=rollgate-e2e      # the users' service accounts
PROD=e2e-prod           # protected by label
FREE=e2e-free           # not protected
IMAGE="${ROLLGATE_IMAGE:-rollgate:e2e}"
WORKLOAD_IMAGE=registry.k8s.io/pause:3.10
OTHER_IMAGE=registry.k8s.io/pause:3.9
PORT=18444
WORK="$(mktemp -d)"
passed=0
failed=0
pf_pid=""

log() { printf '\n== e2e: %s\n' "$*"; }
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# expect_contains NAME TEXT WORD: a check that TEXT contains WORD.
expect_contains() {
  if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1: wanted \"$3\" in: $2"; fi
}
user() { echo "system:serviceaccount:$USERS:$1"; }
as() { local who="$1"; shift; kubectl --as "$(user "$who")" --as-group system:serviceaccounts --as-group "system:serviceaccounts:$USERS" --as-group system:authenticated "$@"; }

cleanup() {
  [ -z "$pf_pid" ] || kill "$pf_pid" 2>/dev/null || true
  if [ "${ROLLGATE_E2E_KEEP:-0}" != 1 ]; then
    kubectl delete namespace "$PROD" "$FREE" "$USERS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl delete clusterrole e2e-namespace-labeler --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete clusterrolebinding e2e-namespace-labeler e2e-auditor --ignore-not-found >/dev/null 2>&1 || true
    if [ "$installer" = helm ]; then
      helm uninstall rollgate -n "$NS" >/dev/null 2>&1 || true
    else
      kubectl delete -k webhook-config/ --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$WORK"
}
installer=none
trap cleanup EXIT

# --- the CLI and the image -------------------------------------------------------------------------------
if [ -n "${ROLLGATE_BIN:-}" ]; then
  RG="$ROLLGATE_BIN"
else
  log "building the rollgate CLI"
  cargo build --release --locked --bin rollgate
  RG="$PWD/target/release/rollgate"
fi
export ROLLGATE_BIN="$RG"

context="$(kubectl config current-context)"
if command -v docker >/dev/null 2>&1 && [ "${ROLLGATE_E2E_BUILD:-1}" != 0 ]; then
  log "building $IMAGE and loading it into $context"
  docker build -t "$IMAGE" .
  case "$context" in
    kind-*) kind load docker-image "$IMAGE" --name "${context#kind-}" ;;
    k3d-*) k3d image import "$IMAGE" -c "${context#k3d-}" ;;
    *) echo "e2e: context $context is neither kind-* nor k3d-*: $IMAGE must be pullable by its nodes" ;;
  esac
fi

# --- install -------------------------------------------------------------------------------------------------
repo="${IMAGE%:*}"
tag="${IMAGE##*:}"
if command -v helm >/dev/null 2>&1; then
  installer=helm
  log "helm install rollgate ($IMAGE)"
  helm upgrade --install rollgate charts/rollgate --namespace "$NS" --create-namespace \
    --set image.repository="$repo" --set image.tag="$tag" --set image.pullPolicy=IfNotPresent \
    --set 'certs.extraDnsNames={localhost}' --set config.tlsReloadInterval=2s \
    --wait --timeout 5m
else
  installer=manifests
  log "no helm binary: installing webhook-config/ (the chart's default render) with certs/generate.sh"
  kubectl apply -f webhook-config/namespace.yaml
  mkdir -p "$WORK/kustomize"
  cp webhook-config/*.yaml "$WORK/kustomize/"
  cat >>"$WORK/kustomize/kustomization.yaml" <<EOF
images:
  - {name: rollgate, newName: $repo, newTag: "$tag"}
EOF
  bash certs/generate.sh --namespace "$NS" --out "$WORK/certs" --dns localhost --apply
  kubectl apply -k "$WORK/kustomize"
  bash certs/generate.sh --namespace "$NS" --out "$WORK/certs" --dns localhost --apply
  kubectl -n "$NS" rollout status deploy/rollgate --timeout 5m
  kubectl -n "$NS" rollout status statefulset/rollgate-redis --timeout 5m
fi
kubectl -n "$NS" get secret rollgate-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/ca.crt"

# --- users, workloads ----------------------------------------------------------------------------------------
log "users and a protected Deployment"
kubectl create namespace "$USERS" --dry-run=client -o yaml | kubectl apply -f -
for who in alice bob carol dave; do
  kubectl -n "$USERS" create serviceaccount "$who" --dry-run=client -o yaml | kubectl apply -f -
done
kubectl create namespace "$PROD" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$PROD" rollgate.io/protected=true --overwrite
kubectl create namespace "$FREE" --dry-run=client -o yaml | kubectl apply -f -
for ns in "$PROD" "$FREE"; do
  # alice and dave may change workloads (the built-in edit role); bob approves, carol audits (rollgate's roles).
  kubectl -n "$ns" create rolebinding e2e-edit --clusterrole=edit \
    --serviceaccount="$USERS:alice" --serviceaccount="$USERS:dave" --dry-run=client -o yaml | kubectl apply -f -
done
kubectl -n "$PROD" create rolebinding e2e-approver --clusterrole=rollgate-approver \
  --serviceaccount="$USERS:bob" --dry-run=client -o yaml | kubectl apply -f -
# carol audits every namespace (audit verify reads the whole chain).
kubectl create clusterrolebinding e2e-auditor --clusterrole=rollgate-auditor \
  --serviceaccount="$USERS:carol" --dry-run=client -o yaml | kubectl apply -f -
# dave may label namespaces, so it is the label guard (not RBAC) that refuses his unprotecting one.
kubectl create clusterrole e2e-namespace-labeler --verb=get,patch,update --resource=namespaces \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl create clusterrolebinding e2e-namespace-labeler --clusterrole=e2e-namespace-labeler \
  --serviceaccount="$USERS:dave" --dry-run=client -o yaml | kubectl apply -f -
for ns in "$PROD" "$FREE"; do
  kubectl -n "$ns" create deployment web --image="$WORKLOAD_IMAGE" --replicas=2 --dry-run=client -o yaml \
    | kubectl apply -f -
  kubectl -n "$ns" rollout status deploy/web --timeout 3m
done
kubectl -n "$PROD" create deployment payments --image="$WORKLOAD_IMAGE" --replicas=1 --dry-run=client -o yaml \
  | kubectl apply -f -
kubectl -n "$PROD" create cronjob nightly --image="$WORKLOAD_IMAGE" --schedule="0 3 * * *" --dry-run=client -o yaml \
  | kubectl apply -f -
ALICE="$(kubectl -n "$USERS" create token alice --duration 1h)"
BOB="$(kubectl -n "$USERS" create token bob --duration 1h)"
CAROL="$(kubectl -n "$USERS" create token carol --duration 1h)"

kubectl -n "$NS" port-forward svc/rollgate-api "$PORT:8444" >"$WORK/port-forward.log" 2>&1 &
pf_pid=$!
export ROLLGATE_SERVER="https://localhost:$PORT" ROLLGATE_CA="$WORK/ca.crt"
for _ in $(seq 1 30); do
  curl -sf --cacert "$WORK/ca.crt" "$ROLLGATE_SERVER/.well-known/jwks.json" >/dev/null 2>&1 && break
  sleep 1
done
cli() { local token="$1"; shift; "$RG" "$@" --token "$token"; }

# --- 1. restart denied, with instructions -------------------------------------------------------------------
log "1. alice's restart is denied with the ticket command"
out="$(as alice -n "$PROD" rollout restart deploy/web 2>&1 || true)"
expect_contains "restart without a ticket is denied" "$out" "denied the request"
expect_contains "the denial says how to get a ticket" "$out" "rollgate ticket request -n $PROD web"

# --- 2. ticket, approval ---------------------------------------------------------------------------------------
log "2. alice files a ticket, bob approves it"
ticket="$(cli "$ALICE" ticket request -n "$PROD" web --action restart --reason "e2e: roll out new config" -o name || true)"
[ -n "$ticket" ] && pass "ticket $ticket filed" || fail "no ticket id"
out="$(cli "$ALICE" ticket approve "$ticket" 2>&1 || true)"
expect_contains "alice cannot approve her own ticket" "$out" "error"
out="$(cli "$BOB" ticket approve "$ticket" --comment "ok" -o json 2>&1 || true)"
expect_contains "bob approves: APPROVED" "$out" '"APPROVED"'

# --- 3. allowed with the warning; rollout followed --------------------------------------------------------------
log "3. the restart is allowed with a warning; the rollout is followed to COMPLETED"
out="$(as alice -n "$PROD" rollout restart deploy/web 2>&1)" && pass "restart with a grant is admitted" \
  || fail "restart with a grant: $out"
expect_contains "kubectl prints rollgate's warning naming the ticket" "$out" "allowed by ticket"
kubectl -n "$PROD" rollout status deploy/web --timeout 3m >/dev/null && pass "the rollout completes" \
  || fail "the rollout did not complete"
completed=""
for _ in $(seq 1 60); do
  if cli "$CAROL" audit list -n "$PROD" --application web --event ROLLOUT -o json 2>/dev/null | grep -q '"COMPLETED"'; then
    completed=1
    break
  fi
  sleep 3
done
[ -n "$completed" ] && pass "the audit trail records the rollout as COMPLETED" \
  || fail "no ROLLOUT record with rolloutStatus COMPLETED within 180 s"

# --- 4. image change by another user; the label guard -----------------------------------------------------------
log "4. dave's image change is denied; dave cannot unprotect the namespace"
out="$(as dave -n "$PROD" set image deploy/web pause="$OTHER_IMAGE" 2>&1 || true)"
expect_contains "image change without a ticket is denied" "$out" "denied the request"
out="$(as dave label namespace "$PROD" rollgate.io/protected- 2>&1 || true)"
expect_contains "removing the protected label is refused to a non-approver" "$out" "only an approver"
out="$(as dave patch namespace "$PROD" --subresource=status --type=merge \
  -p '{"metadata":{"labels":{"rollgate.io/protected":null}}}' 2>&1 || true)"
expect_contains "removing it through namespaces/status is refused too" "$out" "only an approver"

log "4b. no other way round the gate without a ticket"
pod="$(kubectl -n "$PROD" get pod -l app=web -o jsonpath='{.items[0].metadata.name}')"
rs="$(kubectl -n "$PROD" get rs -l app=web -o jsonpath='{.items[0].metadata.name}')"
out="$(as dave -n "$PROD" set image "pod/$pod" pause="$OTHER_IMAGE" 2>&1 || true)"
expect_contains "a running Pod's image change is denied" "$out" "may not change the image of Pod"
out="$(as dave -n "$PROD" debug "pod/$pod" --image="$OTHER_IMAGE" --target=pause 2>&1 </dev/null || true)"
expect_contains "kubectl debug is denied" "$out" "may not add a debug container to Pod"
as dave -n "$PROD" rollout pause deploy/web >/dev/null 2>&1 || true
out="$(as dave -n "$PROD" set image "rs/$rs" pause="$OTHER_IMAGE" 2>&1 || true)"
expect_contains "the ReplicaSet's image change is denied" "$out" "may not change the image of ReplicaSet"
as dave -n "$PROD" rollout resume deploy/web >/dev/null 2>&1 || true
out="$(as dave -n "$PROD" set image cronjob/nightly nightly="$OTHER_IMAGE" 2>&1 || true)"
expect_contains "a CronJob's image change is denied" "$out" "may not change the image of CronJob"
out="$(as dave -n "$PROD" set env deploy/web LOG_LEVEL=debug 2>&1 || true)"
expect_contains "an env change is denied as a template change" "$out" "env of container pause"
out="$(as dave -n "$PROD" patch deploy/web --type=merge \
  -p '{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/RestartedAt":"now"}}}}}' 2>&1 || true)"
expect_contains "a restart under another annotation is denied" "$out" "may not change the pod template of"
out="$(as dave -n "$PROD" label deploy/payments app=web --overwrite 2>&1 || true)"
expect_contains "relabelling payments as web is denied" "$out" "may not change the application labels of"
as dave -n "$PROD" label "pod/$pod" e2e-note=hello --overwrite >/dev/null 2>&1 \
  && pass "a Pod's other labels still change freely" || fail "labelling a Pod with a non-application label failed"

# --- 5. revocation ---------------------------------------------------------------------------------------------
log "5. bob revokes alice's grant; her next restart is denied"
jti="$(cli "$BOB" grant list -n "$PROD" --user "$(user alice)" -o name 2>/dev/null | head -n1 || true)"
if [ -n "$jti" ]; then
  cli "$BOB" grant revoke "$jti" --reason "e2e" >/dev/null && pass "grant $jti revoked" || fail "revoking $jti"
else
  fail "alice has no live grant to revoke"
fi
out="$(as alice -n "$PROD" rollout restart deploy/web 2>&1 || true)"
expect_contains "a restart after revocation is denied" "$out" "denied the request"

# --- 6. rollgate down: the cluster stays usable -----------------------------------------------------------------
log "6. rollgate's pods deleted: ungated changes keep working"
kubectl -n "$NS" scale deploy/rollgate --replicas=0
kubectl -n "$NS" wait --for=delete pod -l app.kubernetes.io/component=server --timeout 2m || true
kubectl -n "$PROD" scale deploy/web --replicas=3 >/dev/null 2>&1 && pass "scaling in a protected namespace works without rollgate" \
  || fail "scaling in $PROD failed while rollgate was down"
kubectl -n "$FREE" rollout restart deploy/web >/dev/null 2>&1 && pass "a restart in an unprotected namespace works without rollgate" \
  || fail "restart in $FREE failed while rollgate was down"
kubectl -n "$FREE" create configmap e2e-probe --from-literal=a=b >/dev/null 2>&1 && pass "other resources work without rollgate" \
  || fail "creating a ConfigMap failed while rollgate was down"
out="$(as alice -n "$PROD" rollout restart deploy/web 2>&1 || true)"
expect_contains "a gated change fails closed while rollgate is down" "$out" "failed calling webhook"
kubectl -n "$NS" scale deploy/rollgate --replicas=2
kubectl -n "$NS" rollout status deploy/rollgate --timeout 3m
# Mid-flow deletion: pods killed while they serve; the Deployment replaces them.
kubectl -n "$NS" delete pod -l app.kubernetes.io/component=server --wait=false
kubectl -n "$PROD" scale deploy/web --replicas=2 >/dev/null 2>&1 && pass "scaling works while pods are replaced" \
  || fail "scaling failed while rollgate's pods were replaced"
kubectl -n "$NS" rollout status deploy/rollgate --timeout 3m
sleep 5
out="$(as alice -n "$PROD" rollout restart deploy/web 2>&1 || true)"
expect_contains "gating resumes once rollgate is back" "$out" "rollgate ticket request"

# --- 7. audit chain -------------------------------------------------------------------------------------------
log "7. the audit chain verifies"
kill "$pf_pid" 2>/dev/null || true
kubectl -n "$NS" port-forward svc/rollgate-api "$PORT:8444" >"$WORK/port-forward.log" 2>&1 &
pf_pid=$!
sleep 3
out="$(cli "$CAROL" audit verify 2>&1 || true)"
if cli "$CAROL" audit verify >/dev/null 2>&1; then pass "audit verify: chain intact"; else fail "audit verify: $out"; fi

echo
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
