#!/usr/bin/env bash
# Certificates and keys for an install without Helm or cert-manager (webhook-config/): a thin wrapper around
# `rollgate certs generate`. Writes ca.crt, ca.key, tls.crt, tls.key and signing-key.pem into DIR (the CA and
# the signing key are reused when DIR has them) and prints the caBundle. With --apply it also, through
# kubectl, creates or updates Secret rollgate-tls, creates Secrets rollgate-signing-key and rollgate-redis
# when missing (never replacing a signing key or a Redis password) and patches the caBundle into the
# ValidatingWebhookConfiguration.
#
#   certs/generate.sh [--namespace rollgate] [--release rollgate] [--out DIR] [--dns NAME]... [--new-ca] [--apply]
set -euo pipefail

namespace=rollgate
release=rollgate
out=""
apply=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace|-n) namespace="$2"; shift 2 ;;
    --release) release="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dns) extra+=(--dns "$2"); shift 2 ;;
    --new-ca) extra+=(--new-ca); shift ;;
    --apply) apply=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "certs/generate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
out="${out:-certs/out/$namespace}"

rollgate_bin="${ROLLGATE_BIN:-$(command -v rollgate || true)}"
if [ -z "$rollgate_bin" ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  # The newer of the repository's release and debug builds.
  rollgate_bin="$(ls -t "$here/target/release/rollgate" "$here/target/debug/rollgate" 2>/dev/null | head -n1 || true)"
fi
[ -n "$rollgate_bin" ] || { echo "certs/generate.sh: no rollgate binary: put it on PATH or set ROLLGATE_BIN (cargo build --release)" >&2; exit 1; }

ca_bundle="$("$rollgate_bin" certs generate --service "$release-webhook" --service "$release-api" \
  --namespace "$namespace" --out "$out" --signing-key "${extra[@]}")"
echo "caBundle: $ca_bundle"

[ -n "$apply" ] || exit 0
command -v kubectl >/dev/null 2>&1 || { echo "certs/generate.sh: --apply needs kubectl" >&2; exit 1; }

# Create or update: a rotated serving certificate replaces the old one; the pods re-read it within 10 s.
kubectl -n "$namespace" create secret generic "$release-tls" --type=kubernetes.io/tls \
  --from-file=tls.crt="$out/tls.crt" --from-file=tls.key="$out/tls.key" --from-file=ca.crt="$out/ca.crt" \
  --dry-run=client -o yaml | kubectl apply -f -
# Create only: replacing the signing key would invalidate every live grant; replacing the Redis password
# would lock rollgate out of the bundled Redis until it restarts.
if ! kubectl -n "$namespace" get secret "$release-signing-key" >/dev/null 2>&1; then
  kubectl -n "$namespace" create secret generic "$release-signing-key" --from-file=signing-key.pem="$out/signing-key.pem"
fi
if ! kubectl -n "$namespace" get secret "$release-redis" >/dev/null 2>&1; then
  password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
  kubectl -n "$namespace" create secret generic "$release-redis" --from-literal=password="$password"
fi
if kubectl get validatingwebhookconfiguration "$release" >/dev/null 2>&1; then
  entries="$(kubectl get validatingwebhookconfiguration "$release" -o jsonpath='{range .webhooks[*]}{.name}{"\n"}{end}' | grep -c .)"
  patch="["
  for i in $(seq 0 $((entries - 1))); do
    [ "$i" -eq 0 ] || patch+=","
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}"
  done
  kubectl patch validatingwebhookconfiguration "$release" --type=json -p "$patch]"
else
  echo "ValidatingWebhookConfiguration $release does not exist yet: run this again after kubectl apply -k webhook-config/"
fi
