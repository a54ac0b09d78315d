#!/usr/bin/env bash
# Creates (once) the Python virtualenv used by the tests and prints its path.
# Requirements are pinned in tests/requirements.txt; the venv is rebuilt when that file changes.
# BACKUP_GUARD_VENV names another venv directory (e.g. one per worktree whose requirements differ,
# so that two checkouts sharing the cache do not rebuild each other's venv while tests run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${BACKUP_GUARD_CACHE:-$HOME/.cache/backup-guard}
venv=${BACKUP_GUARD_VENV:-$cache/venv}
req=$root/tests/requirements.txt
stamp=$venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "ensure-venv: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  echo "$want" >"$stamp"
fi
echo "$venv"
