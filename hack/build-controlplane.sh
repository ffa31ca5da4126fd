#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, and kwok for simulated nodes) from the Go module proxy into
# bin/controlplane/<version>/.
# Each binary is built once and then reused; the first build takes several
# minutes on two cores, so every step says what it does and how far along it is.
#
# Usage: hack/build-controlplane.sh [binary ...]   (default: all five; "kubectl" and "helm" on request)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/hack/controlplane"
version=v1.37.2
kwok_version=v0.8.0
helm_version=v3.22.0
out="$root/bin/controlplane/$version"
mkdir -p "$out"

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
want=("${@:-${all[@]}}")
[ $# -eq 0 ] && want=("${all[@]}")

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

n=${#want[@]}; i=0
for bin in "${want[@]}"; do
  i=$((i + 1))
  if [ -x "$out/$bin" ]; then
    echo "[$i/$n] $bin: cached in bin/"
    continue
  fi
  case "$bin" in
    etcd) pkg=./etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) pkg=k8s.io/kubernetes/cmd/$bin ;;
    kwok) pkg=sigs.k8s.io/kwok/cmd/kwok@$kwok_version ;;
    helm) pkg=helm.sh/helm/v3/cmd/helm@$helm_version ;;
    *) echo "unknown binary $bin" >&2; exit 2 ;;
  esac
  echo "[$i/$n] building $bin from the Go module proxy (first build: a few minutes on 2 cores)..."
  start=$(date +%s)
  if [ "$bin" = kwok ] || [ "$bin" = helm ]; then
    tmp=$(mktemp -d)
    GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$pkg"
    mv "$tmp/$bin" "$out/$bin"; rmdir "$tmp"
  else
    (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$bin.tmp" "$pkg")
    mv "$out/$bin.tmp" "$out/$bin"
  fi
  echo "[$i/$n] $bin built in $(( $(date +%s) - start ))s"
done
