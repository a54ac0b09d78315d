"""Starts the real backup-guard binary on free loopback ports with generated certificates."""
import os
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest.ports import free_port  # noqa: E402,F401 - used by the tests
from bgtest.server import BackupGuard, generate_certs, serve_args  # noqa: E402


class Server:
    def __init__(self, binary, workdir):
        self.certs = str(generate_certs(binary, Path(workdir) / "certs"))
        self.ca = os.path.join(self.certs, "ca.crt")
        self.bg = BackupGuard(binary, "backup-guard", os.path.join(workdir, "server.log"),
                              serve_args(self.certs), ca_file=self.ca).start()
        self.port, self.metrics_port = self.bg.port, self.bg.metrics_port
        self.base = f"https://localhost:{self.port}"
        self.bg.wait_ready(20, 0.1)

    def post(self, path, body, content_type="application/json"):
        data = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
        return requests.post(self.base + path, data=data, verify=self.ca, timeout=10,
                             headers={"Content-Type": content_type})

    def stop(self):
        return self.bg.stop(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("BACKUP_GUARD_BIN", "build/backup-guard")
    assert os.access(binary, os.X_OK), f"{binary} is not built (run make)"
    s = Server(binary, str(tmp_path_factory.mktemp("bg")))
    yield s
    s.stop()
