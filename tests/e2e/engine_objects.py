"""Creates the storage engine's custom resources through the engine's own Go types and clientset:
a thin wrapper around tests/engine/cmd/engine-objects (see tests/engine/README.md).

    eo = EngineObjects(engine_objects_binary(), kubeconfig, "longhorn-system")
    eo.apply([{"kind": "Volume", "metadata": {"name": "vol-1"}, "spec": {"Standby": True}}])
    eo.sync("default", [{"name": "vol-1", "backups": ["backup-1", "backup-2"]}])

A fixture whose fields do not match the engine's names or types (e.g. `spec.standby` for the
engine's `spec.Standby`), an API error or an admission denial raises EngineObjectsError with the
program's stderr. Standard library only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent.parent / "engine"

_binary: str | None = None


class EngineObjectsError(RuntimeError):
    """engine-objects (or its build) failed; `stderr` holds what it printed."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None):
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


def engine_objects_binary() -> str:
    """Path of the engine-objects binary, built by tests/engine/build.sh when its sources changed
    (the script's own check) and remembered for the rest of the process."""
    global _binary
    if _binary is None:
        proc = subprocess.run([str(ENGINE_DIR / "build.sh")], capture_output=True, text=True)
        path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or not path:
            raise EngineObjectsError(
                f"tests/engine/build.sh failed (exit {proc.returncode}):\n{proc.stderr.strip()}",
                proc.stderr, proc.returncode)
        _binary = path
    return _binary


class EngineObjects:
    def __init__(self, binary: str, kubeconfig: str, namespace: str = "longhorn-system",
                 timeout: float = 120.0):
        self.binary = binary
        self.kubeconfig = str(kubeconfig)
        self.namespace = namespace
        self.timeout = timeout

    def _run(self, args: list[str], stdin: object) -> object:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, "--namespace", self.namespace, *args]
        try:
            proc = subprocess.run(cmd, input=json.dumps(stdin), capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise EngineObjectsError(f"engine-objects {args[0]} timed out after {self.timeout}s:\n{stderr}",
                                     stderr) from None
        if proc.returncode != 0:
            raise EngineObjectsError(proc.stderr.strip() or f"engine-objects {args[0]} exited {proc.returncode}",
                                     proc.stderr, proc.returncode)
        return json.loads(proc.stdout)

    def apply(self, objs: list[dict]) -> list[dict]:
        """Creates each object (kind BackupTarget, BackupVolume, Backup, SystemBackup,
        BackupBackingImage, Volume or Setting), then writes its `status` if given; returns the
        objects as the API server holds them."""
        return self._run(["apply"], list(objs))

    def sync(self, target: str, volumes: list[dict]) -> list[dict]:
        """Creates the BackupVolume and Backups of each volume ({"name": ..., "backups": [...],
        optional "backupBlockSize"}) as the engine's target sync does for what it finds in the
        store of BackupTarget `target`; returns them (each BackupVolume followed by its Backups)."""
        return self._run(["sync", "--target", target], {"volumes": list(volumes)})

    def get(self, kind: str, name: str) -> dict:
        return self._run(["get", kind, name], None)
