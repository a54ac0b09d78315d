"""Exit while an answer is still being computed after --shutdown-grace (issue 14, suspect 9).

The listener leaves such workers to the exiting process. They use the server, the registries and
the lookups that `serve` built; the process must end without freeing those under them. Here an
admission call waits on a Kubernetes API that accepts connections and never answers; when the
grace has run out, the test cuts those connections so the worker resumes at once, while the
process is exiting. Run under tools/sanitize.sh, a use after free is reported (and fails the
run); in a normal build it may crash. Either way the exit must be 0, and the log must say why it
did not unwind."""
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import requests

from conftest import free_port
from test_admission_wire import review, system_backup

BINARY = os.environ.get("BACKUP_GUARD_BIN", "build/backup-guard")


class BlackHoleApi:
    """Accepts TCP connections and never answers them, until cut()."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)

    def accepted(self):
        with self.lock:
            return len(self.conns)

    def cut(self):
        """Resets every connection (SO_LINGER 0), so a blocked reader fails at once."""
        with self.lock:
            for c in self.conns:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            self.conns = []


def test_sigterm_with_an_answer_stuck_past_the_grace_exits_0_without_unwinding(tmp_path):
    api = BlackHoleApi()
    certs = tmp_path / "certs"
    subprocess.run([BINARY, "certs", "generate", "--out", str(certs), "--dns", "localhost",
                    "--ip", "127.0.0.1"], check=True, capture_output=True)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: black-hole
  cluster:
    server: https://127.0.0.1:{api.port}
    certificate-authority: {certs / "ca.crt"}
users:
- name: u
  user:
    token: t
contexts:
- name: c
  context:
    cluster: black-hole
    user: u
current-context: c
""")
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", f"127.0.0.1:{port}",
         "--metrics-listen", f"127.0.0.1:{metrics_port}",
         "--tls-cert-file", str(certs / "tls.crt"), "--tls-key-file", str(certs / "tls.key"),
         "--kubeconfig", str(kubeconfig), "--leader-elect=false", "--enable-processor=false",
         "--lookup-cache-ttl", "0s", "--shutdown-delay", "0s", "--shutdown-grace", "1s"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"https://localhost:{port}"
    ca = str(certs / "ca.crt")
    try:
        deadline = time.time() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if requests.get(base + "/healthz", verify=ca, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, "not serving within 20 s"
            time.sleep(0.1)

        # A SystemBackup CREATE looks the default BackupTarget up: it waits on the black hole.
        def call():
            try:
                requests.post(base + "/v1/webhook/mutation", json=review(system_backup()),
                              verify=ca, timeout=30)
            except requests.RequestException:
                pass  # the process exits under it

        threading.Thread(target=call, daemon=True).start()
        deadline = time.time() + 10
        while "backup_guard_admission_requests_in_flight 1" not in requests.get(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text:
            assert time.time() < deadline, "the admission call never started"
            time.sleep(0.05)

        proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        while "answers still in progress at exit" not in log_path.read_text():
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.005)
        api.cut()  # the stuck worker resumes now, while the process exits
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = log_path.read_text()
    assert rc == 0, text
    assert "exiting without unwinding" in text, text
    assert "Sanitizer" not in text, text
