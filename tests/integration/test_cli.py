"""The command line as an operator meets it: --help on every command, Go durations, an unknown flag,
and the dual-stack listeners (":PORT" answers on 127.0.0.1 and on [::1]: webhooks, metrics, probes)."""
import os
import subprocess
import time

import pytest
import requests

from conftest import free_port

BINARY = os.environ.get("BACKUP_GUARD_BIN", "build/backup-guard")


def run(*args, timeout=10):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [["serve"], ["uninstall"], ["diagnose"], ["certs", "generate"],
                                     ["sleep"]])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_every_command_exits_0(command, flag):
    proc = run(*command, flag)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage: backup-guard " + command[0] in proc.stdout, proc.stdout


def test_serve_help_lists_every_flag_with_its_default():
    out = run("serve", "--help").stdout
    for flag, default in [("--listen", ":9443"), ("--metrics-listen", ":8080"),
                          ("--namespace", "longhorn-system"), ("--release-grace", "90s"),
                          ("--cert-lifetime", "720h"), ("--leader-elect", "true")]:
        assert flag in out and f"(default {default})" in out, (flag, out)
    assert "--metrics-bind-address" in out, out


def test_unknown_flag_exits_2_and_names_it():
    proc = run("serve", "--no-such-flag=1")
    assert proc.returncode == 2
    assert "--no-such-flag" in proc.stderr, proc.stderr


def test_go_durations_are_taken():
    start = time.monotonic()
    proc = run("sleep", "0h0m0.3s")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start >= 0.3
    assert run("sleep", "1 hour").returncode == 2


def test_default_listeners_answer_on_ipv4_and_ipv6(tmp_path):
    certs = tmp_path / "certs"
    subprocess.run([BINARY, "certs", "generate", "--out", str(certs), "--dns", "localhost",
                    "--ip", "127.0.0.1", "--ip", "::1"], check=True, capture_output=True)
    port, metrics_port, probe_port = free_port(), free_port(), free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([BINARY, "serve", "--listen", f":{port}",
                             "--metrics-bind-address", f":{metrics_port}",
                             "--health-probe-bind-address", f":{probe_port}",
                             "--tls-cert-file", str(certs / "tls.crt"),
                             "--tls-key-file", str(certs / "tls.key")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        ca = str(certs / "ca.crt")
        deadline = time.time() + 20
        answered = set()
        while time.time() < deadline and len(answered) < 6:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            for name, url, kw in [
                    ("tls-v4", f"https://127.0.0.1:{port}/healthz", {"verify": ca}),
                    ("tls-v6", f"https://[::1]:{port}/healthz", {"verify": ca}),
                    ("metrics-v4", f"http://127.0.0.1:{metrics_port}/metrics", {}),
                    ("metrics-v6", f"http://[::1]:{metrics_port}/metrics", {}),
                    ("probe-v4", f"http://127.0.0.1:{probe_port}/healthz", {}),
                    ("probe-v6", f"http://[::1]:{probe_port}/healthz", {})]:
                try:
                    if requests.get(url, timeout=1, **kw).status_code == 200:
                        answered.add(name)
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        assert answered == {"tls-v4", "tls-v6", "metrics-v4", "metrics-v6", "probe-v4",
                            "probe-v6"}, \
            (answered, (tmp_path / "server.log").read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.parametrize("lease,renew,retry,named", [
    ("10s", "10s", "2s", "--leader-election-lease-duration (10s) must be greater than "
                         "--leader-election-renew-deadline (10s)"),
    ("15s", "20s", "2s", "--leader-election-lease-duration (15s) must be greater than"),
    ("15s", "10s", "10s", "--leader-election-renew-deadline (10s) must be greater than 1.2 x "
                          "--leader-election-retry-period (10s)"),
    ("15s", "10s", "0s", "must be positive"),
])
def test_lease_timings_that_client_go_refuses_exit_2_with_the_rule(lease, renew, retry, named):
    proc = run("serve", "--leader-election-lease-duration", lease,
               "--leader-election-renew-deadline", renew, "--leader-election-retry-period", retry)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert named in proc.stderr, proc.stderr
