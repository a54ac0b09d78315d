"""Starts the real backup-guard binary on free loopback ports with generated certificates."""
import os
import socket
import subprocess
import time

import pytest
import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, workdir):
        self.certs = os.path.join(workdir, "certs")
        subprocess.run([binary, "certs", "generate", "--out", self.certs, "--dns", "localhost",
                        "--ip", "127.0.0.1"], check=True, capture_output=True)
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = open(os.path.join(workdir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
             "--tls-cert-file", os.path.join(self.certs, "tls.crt"),
             "--tls-key-file", os.path.join(self.certs, "tls.key")],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"https://localhost:{self.port}"
        self.ca = os.path.join(self.certs, "ca.crt")
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, "backup-guard exited during start-up"
            try:
                if requests.get(self.base + "/readyz", verify=self.ca, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("backup-guard did not become ready within 20 s")

    def post(self, path, body, content_type="application/json"):
        data = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
        return requests.post(self.base + path, data=data, verify=self.ca, timeout=10,
                             headers={"Content-Type": content_type})

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("BACKUP_GUARD_BIN", "build/backup-guard")
    assert os.access(binary, os.X_OK), f"{binary} is not built (run make)"
    s = Server(binary, str(tmp_path_factory.mktemp("bg")))
    yield s
    s.stop()
