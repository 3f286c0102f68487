#!/usr/bin/env bash
# Real-cluster suite. Runs only when KUBECONFIG points at a reachable cluster
# (kind, k3d); otherwise it says why it skips and exits 0.
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
# The chart-based flow (install, restart denied, ticket, approval, allowed,
# rollout followed, revocation, rollgate pods deleted mid-flow) arrives with
# issue #6 together with the Helm chart it installs.
echo "e2e: cluster reachable, but the real-cluster flow needs the Helm chart of issue #6; nothing to run yet"
