#!/usr/bin/env bash
# Installs what backup-guard needs in a cluster reached with --kubeconfig: the longhorn.io CRD subset
# (waits until Established), the namespace, and the webhook configurations in url mode.
#
# Usage: register.sh --kubeconfig K --url https://127.0.0.1:PORT --ca-file CA
#                    [--failure-policy Fail|Ignore] [--timeout-seconds N] [--namespace NS]
#        register.sh --kubeconfig K --crds-only            CRDs and namespace, no webhooks
#        register.sh --kubeconfig K --delete-webhooks      remove both webhook configurations
# Defaults: --failure-policy Fail, --timeout-seconds 10, --namespace longhorn-system.
# kubectl comes from $KUBECTL, else from the tools cache (built by build-tools.sh if needed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "register: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

kubeconfig= url= ca_file= failure_policy=Fail timeout_seconds=10 namespace=longhorn-system mode=all
while (($#)); do
  case $1 in
    --kubeconfig) kubeconfig=${2:?}; shift ;;
    --url) url=${2:?}; shift ;;
    --ca-file) ca_file=${2:?}; shift ;;
    --failure-policy) failure_policy=${2:?}; shift ;;
    --timeout-seconds) timeout_seconds=${2:?}; shift ;;
    --namespace) namespace=${2:?}; shift ;;
    --crds-only) mode=crds ;;
    --delete-webhooks) mode=delete ;;
    -h|--help) usage ;;
    *) log "unknown argument $1"; usage ;;
  esac
  shift
done

[ -n "$kubeconfig" ] || { log "--kubeconfig is required"; usage; }
[ -r "$kubeconfig" ] || die "cannot read kubeconfig $kubeconfig"
if [ "$mode" = all ]; then
  [ -n "$url" ] && [ -n "$ca_file" ] || { log "--url and --ca-file are required"; usage; }
  [[ $url =~ ^https://[^/]+$ ]] || die "--url must be https://host:port without a path (got $url)"
  [ -r "$ca_file" ] || die "cannot read CA file $ca_file"
  grep -q 'BEGIN CERTIFICATE' "$ca_file" || die "$ca_file is not a PEM certificate"
  case $failure_policy in Fail|Ignore) ;; *) die "--failure-policy must be Fail or Ignore" ;; esac
  [[ $timeout_seconds =~ ^[0-9]+$ ]] && ((timeout_seconds >= 1 && timeout_seconds <= 30)) \
    || die "--timeout-seconds must be 1..30"
fi

kubectl=${KUBECTL:-}
if [ -z "$kubectl" ]; then
  kubectl=$("$here/build-tools.sh" --print-path kubectl) || die "kubectl is not available"
fi
k() { "$kubectl" --kubeconfig="$kubeconfig" "$@"; }

if [ "$mode" = delete ]; then
  k delete mutatingwebhookconfiguration backup-guard-mutating --ignore-not-found >&2
  k delete validatingwebhookconfiguration backup-guard-validating --ignore-not-found >&2
  exit 0
fi

# The engine's own CRDs (tests/engine/engine-crds.sh), v1.10.0 unless BG_ENGINE_CRDS names a file.
crd_file=${BG_ENGINE_CRDS:-}
if [ -z "$crd_file" ]; then
  crd_file=$("$here/../engine/engine-crds.sh" "${BG_ENGINE_VERSION:-v1.10.0}") \
    || die "the engine's CRDs are not available"
fi
k apply --server-side --force-conflicts -f "$crd_file" >&2
crds=$(k get -f "$crd_file" -o name)
# shellcheck disable=SC2086
k wait --for=condition=Established --timeout=60s $crds >&2 || die "CRDs did not become Established"
k create namespace "$namespace" --dry-run=client -o yaml | k apply -f - >&2

if [ "$mode" = all ]; then
  ca_bundle=$(base64 -w0 <"$ca_file")
  sed -e "s|@URL@|$url|g" -e "s|@CA_BUNDLE@|$ca_bundle|g" \
      -e "s|@FAILURE_POLICY@|$failure_policy|g" -e "s|@TIMEOUT_SECONDS@|$timeout_seconds|g" \
      "$here/manifests/webhooks.yaml.tmpl" | k apply -f - >&2
  log "webhooks registered for $url (failurePolicy $failure_policy, timeoutSeconds $timeout_seconds)"
fi
