#!/usr/bin/env bash
# Prints the path of the storage engine's own CRDs at VERSION, ready for `kubectl apply`.
#
# Usage: engine-crds.sh VERSION        (VERSION: one listed in tests/engine/versions.txt)
#
# Source: k8s/crds.yaml of the Go module github.com/longhorn/longhorn-manager@VERSION, fetched with
# `go mod download` (from the module cache, else the Go module proxy, checked by the go command
# against sum.golang.org) and checked again here against the `h1:` hash pinned in versions.txt: the
# go command's Sum must equal it, and so must the hash this script computes over the zip it reads
# the file from.
#
# Changes made to the engine's file (nothing else; the script checks that the rest is unchanged):
#   - Helm template expressions are removed (from v1.9.0 the file is a chart template):
#       `labels: {{- include "longhorn.labels" . | nindent 4 }}` becomes `labels:` (its children,
#       e.g. `longhorn-manager: ""`, stay its children; dropping the whole line would make them
#       annotations), and `{{ include "release_namespace" . }}` becomes `longhorn-system`.
#       Any other template expression is an error.
#   - `spec.conversion` (a Webhook conversion through longhorn-conversion-webhook, declared by
#     v1.7.2-v1.9.0 for BackingImage, BackupTarget, EngineImage, Node, Volume) becomes
#     `conversion: {strategy: None}`; see tests/engine/README.md for why.
#
# Output: ${BACKUP_GUARD_CACHE:-~/.cache/backup-guard}/engine-crds/VERSION/crds.yaml, written
# atomically and reused while the pinned hash and this script are unchanged (crds.yaml.key). Only the
# path goes to stdout; progress and errors go to stderr; non-zero exit on any failure.
#
# Needs: go, python3; PyYAML for the final check (python3's if it has it, else the project venv from
# tools/ensure-venv.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
module=github.com/longhorn/longhorn-manager
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}

log() { echo "engine-crds: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case ${1:-} in
  -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  '') die "usage: engine-crds.sh VERSION (one of: $(awk '!/^#/ && NF {printf "%s ", $1}' "$here/versions.txt"))" ;;
esac
version=$1
want=$(awk -v v="$version" '!/^#/ && $1 == v { print $2; exit }' "$here/versions.txt")
[ -n "$want" ] || die "version '$version' is not pinned in $here/versions.txt (pinned: $(awk '!/^#/ && NF {printf "%s ", $1}' "$here/versions.txt"))"

outdir=$cache/engine-crds/$version
out=$outdir/crds.yaml
keyfile=$out.key
key="$module@$version $want script-sha256:$(sha256sum "$0" | cut -d' ' -f1)"

# Reuse: same pinned hash, same script, and the file is the one that was written.
if [ -f "$out" ] && [ -f "$keyfile" ] && [ "$(sed -n 1p "$keyfile")" = "$key" ] \
   && [ "$(sed -n 2p "$keyfile")" = "$(sha256sum "$out" | cut -d' ' -f1)" ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to download $module@$version)"
command -v python3 >/dev/null || die "python3 is not installed"

# A Python with PyYAML for the final check.
if python3 -c 'import yaml' 2>/dev/null; then
  pyyaml=python3
else
  log "python3 has no PyYAML; using the project venv (tools/ensure-venv.sh)"
  pyyaml="$("$root/tools/ensure-venv.sh")/bin/python"
  "$pyyaml" -c 'import yaml' || die "no PyYAML in $pyyaml"
fi

mkdir -p "$outdir"
work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Outside any module, so no go.mod around us matters.
log "go mod download $module@$version"
if ! (cd "$work" && GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod GO111MODULE=on \
      go mod download -json "$module@$version") >"$work/download.json" 2>"$work/download.err"; then
  cat "$work/download.err" "$work/download.json" >&2 || true
  die "go mod download $module@$version failed"
fi

python3 - "$work/download.json" "$module" "$version" "$want" "$work/crds.yaml" <<'PY' || die "$module@$version: could not prepare crds.yaml"
import base64, hashlib, json, re, sys, zipfile

dl_path, module, version, want, out_path = sys.argv[1:]
def fail(msg):
    sys.exit(f"engine-crds: ERROR: {msg}")

info = json.load(open(dl_path))
if info.get("Error"):
    fail(f"go mod download: {info['Error']}")
if info.get("Sum") != want:
    fail(f"{module}@{version}: go reports Sum {info.get('Sum')!r}, versions.txt pins {want}")

# golang.org/x/mod/sumdb/dirhash.HashZip ("h1:"): sha256 over the sorted lines
# "<sha256 hex of file>  <name in zip>\n", base64-encoded.
with zipfile.ZipFile(info["Zip"]) as z:
    summary = hashlib.sha256()
    for name in sorted(z.namelist()):
        if "\n" in name:
            fail(f"file name with a newline in {info['Zip']}")
        summary.update(f"{hashlib.sha256(z.read(name)).hexdigest()}  {name}\n".encode())
    got = "h1:" + base64.b64encode(summary.digest()).decode()
    if got != want:
        fail(f"{info['Zip']} hashes to {got}, versions.txt pins {want}")
    src = z.read(f"{module}@{version}/k8s/crds.yaml").decode()

# 1. Helm template expressions.
LABELS = re.compile(r'^(\s*labels:)\s*\{\{-?\s*include "longhorn\.labels" \. \| nindent \d+\s*-?\}\}\s*$')
NAMESPACE = re.compile(r'\{\{-?\s*include "release_namespace" \.\s*-?\}\}')
lines = []
templates = 0
for n, line in enumerate(src.split("\n"), 1):
    if "{{" in line or "}}" in line:
        m = LABELS.match(line)
        if m:
            line = m.group(1)
        else:
            line = NAMESPACE.sub("longhorn-system", line)
        if "{{" in line or "}}" in line:
            fail(f"k8s/crds.yaml line {n}: unknown Helm template expression: {line.strip()}")
        templates += 1
    lines.append(line)

# 2. spec.conversion -> strategy None. Each document starts at column 0 ("spec:"), so a
# "  conversion:" line (two spaces) is spec.conversion; its block is every following line that is
# more indented (or blank).
result = []
conversions = 0
i = 0
while i < len(lines):
    line = lines[i]
    if re.fullmatch(r"  conversion:\s*", line):
        result += ["  conversion:", "    strategy: None"]
        conversions += 1
        i += 1
        while i < len(lines) and (lines[i].startswith("   ") or not lines[i].strip()):
            i += 1
        continue
    result.append(line)
    i += 1

header = (f"# github.com/longhorn/longhorn-manager@{version} k8s/crds.yaml ({want}), prepared by "
          "backup-guard tests/engine/engine-crds.sh:\n"
          "# Helm template expressions removed, spec.conversion set to strategy None (see tests/engine/README.md).\n")
with open(out_path, "w") as f:
    f.write(header + "\n".join(result))
print(f"engine-crds: {module}@{version}: {templates} template line(s) cleaned, "
      f"{conversions} conversion block(s) set to strategy None", file=sys.stderr)
PY

# Check: every document is a longhorn.io v1 CRD storing only v1beta2, with no template left and no
# conversion webhook, and nothing but `spec.conversion` differs from the engine's own documents
# (read with the template expressions blanked).
"$pyyaml" - "$work/download.json" "$module" "$version" "$work/crds.yaml" <<'PY' || die "$module@$version: the prepared crds.yaml failed its check"
import json, re, sys, zipfile
import yaml

dl_path, module, version, out_path = sys.argv[1:]
def fail(msg):
    sys.exit(f"engine-crds: ERROR: {msg}")

docs = [d for d in yaml.safe_load_all(open(out_path)) if d is not None]
with zipfile.ZipFile(json.load(open(dl_path))["Zip"]) as z:
    src = z.read(f"{module}@{version}/k8s/crds.yaml").decode()
orig = [d for d in yaml.safe_load_all(re.sub(r"\{\{.*?\}\}", "", src)) if d is not None]

if len(docs) != len(orig) or len(docs) != 22:
    fail(f"{len(docs)} documents (engine file: {len(orig)}; expected 22 CRDs)")
def walk(x, path):
    if isinstance(x, dict):
        for k, v in x.items():
            walk(k, path); walk(v, f"{path}.{k}")
    elif isinstance(x, list):
        for v in x:
            walk(v, path)
    elif isinstance(x, str) and ("{{" in x or "}}" in x):
        fail(f"template left at {path}: {x}")
kinds = set()
for d, o in zip(docs, orig):
    name = (d.get("metadata") or {}).get("name")
    if d.get("apiVersion") != "apiextensions.k8s.io/v1" or d.get("kind") != "CustomResourceDefinition":
        fail(f"{name}: not an apiextensions.k8s.io/v1 CustomResourceDefinition")
    walk(d, name)
    spec = d["spec"]
    if spec.get("group") != "longhorn.io" or spec.get("scope") != "Namespaced":
        fail(f"{name}: group {spec.get('group')}, scope {spec.get('scope')}")
    if name != f"{spec['names']['plural']}.longhorn.io":
        fail(f"{name}: name does not match plural {spec['names']['plural']}")
    labels = d["metadata"].get("labels")
    if not isinstance(labels, dict) or labels.get("longhorn-manager") != "":
        fail(f"{name}: metadata.labels is {labels!r}, expected the engine's longhorn-manager label")
    storage = [v["name"] for v in spec["versions"] if v.get("storage")]
    served = [v["name"] for v in spec["versions"] if v.get("served")]
    if storage != ["v1beta2"] or "v1beta2" not in served:
        fail(f"{name}: storage versions {storage}, served {served}")
    conv = spec.get("conversion")
    if conv is not None and conv != {"strategy": "None"}:
        fail(f"{name}: conversion {conv}")
    spec.pop("conversion", None)
    o["spec"].pop("conversion", None)
    o["metadata"]["labels"] = o["metadata"].get("labels") or {}
    if d != o:
        fail(f"{name}: differs from the engine's document beyond spec.conversion")
    kinds.add(spec["names"]["kind"])
need = {"BackupTarget", "BackupVolume", "Backup", "SystemBackup", "BackupBackingImage", "Volume", "Setting"}
if need - kinds:
    fail(f"kinds missing: {sorted(need - kinds)}")
PY

sha=$(sha256sum "$work/crds.yaml" | cut -d' ' -f1)
printf '%s\n%s\n' "$key" "$sha" >"$work/crds.yaml.key"
mv -f "$work/crds.yaml" "$out"
mv -f "$work/crds.yaml.key" "$keyfile"
log "$module@$version -> $out"
echo "$out"
