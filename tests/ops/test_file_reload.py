"""File-mode certificates reload under admission load with zero failed calls.

The server reads --tls-cert-file/--tls-key-file from a kubelet-style Secret mount (..data ->
..vN, tls.crt -> ..data/tls.crt). Leaves are ECDSA P-256, SANs localhost and 127.0.0.1, all
signed by one CA made with openssl, which is the webhooks' caBundle. Under load, ..data is
swapped atomically several times; each swap must be served without a restart and without a
failed call. Then a broken pair (a key that does not match the certificate) is swapped in: it is
rejected, the previous certificate keeps serving, reloads_total{result="failure"} goes up, and
admission carries on; a good pair afterwards is picked up again.
"""
from __future__ import annotations

import os
import time

import pytest

from apicheck import assert_healthy, webhook_health
from opslib import (AdmissionLoad, BackupGuard, KubeletDir, OpensslCa, cert_not_after,
                    pem_fingerprint, register_webhooks, served_certificate, wait_until)

SWAPS = 4
PAUSE = 2.0  # seconds of load between steps


@pytest.fixture
def file_server(binary, kubeconfig, register_sh, work_dir, load_namespace):
    ca = OpensslCa(os.path.join(work_dir, "ca"))
    mount = KubeletDir(os.path.join(work_dir, "mount"))
    mount.swap(*ca.leaf())
    server = BackupGuard(binary, "file-mode", work_dir,
                         ["--tls-cert-file", mount.cert, "--tls-key-file", mount.key,
                          "--kubeconfig", kubeconfig, "--leader-elect=false",
                          "--enable-processor=false"])
    register_webhooks(register_sh, kubeconfig, server.url, ca.crt)
    try:
        server.start()
        server.wait_ready()
        yield server, ca, mount
    finally:
        rc = server.stop()
        assert rc in (0, None), f"file-mode server exited with {rc} on SIGTERM:\n{server.log_tail(15)}"


def test_file_mode_reload_under_load(kube, file_server, load_namespace, figures):
    server, ca, mount = file_server
    with open(ca.crt) as f:
        ca_pem = f.read()
    pid = server.pid
    leaves = [ca.leaf() for _ in range(SWAPS + 2)]  # made before the load starts
    with open(os.path.join(mount.dir, "..data", "tls.crt")) as f:
        first = pem_fingerprint(f.read())
    assert served_certificate(server.port, ca_pem).fingerprint == first

    def reloads(result):
        return server.metrics().sum("backup_guard_certificate_reloads_total", result=result)

    success_before, failure_before = reloads("success"), reloads("failure")
    answered_before = server.metrics().sum("backup_guard_admission_requests_total")
    api_before = kube.apiserver_metrics()
    load = AdmissionLoad(kube, load_namespace, "file", threads=2, rate=12).start()
    t0 = time.monotonic()
    pickups = []
    served_history = [first]
    broken = {}
    try:
        time.sleep(PAUSE)
        # Good swaps: each is served within a couple of poll intervals, verified by the CA.
        for cert, key in leaves[:SWAPS]:
            want = pem_fingerprint(cert)
            swapped = time.monotonic()
            mount.swap(cert, key)
            wait_until(f"the server to serve {want}",
                       lambda: served_certificate(server.port, ca_pem).fingerprint == want, 10, 0.1)
            pickups.append(round(time.monotonic() - swapped, 2))
            served_history.append(want)
            served = served_certificate(server.port, ca_pem)
            assert served.verified, f"served certificate does not verify: {served.error}"
            mount.remove_old()
            time.sleep(PAUSE)

        # A broken pair: the certificate of one leaf with the key of another.
        good = served_history[-1]
        failures_then = reloads("failure")
        mount.swap(leaves[SWAPS][0], leaves[SWAPS + 1][1])
        wait_until("reloads_total{result=\"failure\"} to go up",
                   lambda: reloads("failure") > failures_then, 10, 0.2)
        deadline = time.monotonic() + PAUSE
        kept = []
        while time.monotonic() < deadline:
            kept.append(served_certificate(server.port, ca_pem).fingerprint)
            time.sleep(0.2)
        broken = {"served_after_broken_pair": sorted(set(kept)), "expected": good}

        # Recovery: a good pair again (a new version dir, as kubelet would write it).
        cert, key = ca.leaf()
        want = pem_fingerprint(cert)
        swapped = time.monotonic()
        mount.swap(cert, key)
        wait_until("the server to serve a good pair after the broken one",
                   lambda: served_certificate(server.port, ca_pem).fingerprint == want, 10, 0.1)
        pickups.append(round(time.monotonic() - swapped, 2))
        served_history.append(want)
        mount.remove_old()
        t_last = time.monotonic()
        time.sleep(PAUSE)
    finally:
        load.stop()
        load.cleanup()
    api_after = kube.apiserver_metrics()
    health = webhook_health(api_before, api_after)
    success_delta = reloads("success") - success_before
    failure_delta = reloads("failure") - failure_before
    expiry = server.metrics().sum("backup_guard_certificate_expiry_timestamp_seconds",
                                  certificate="serving")
    figures["file_mode_reload"] = {
        "load": load.summary(),
        "webhook_calls_sent_by_apiserver": health["requests"],
        "webhook_answer_codes_seen_by_apiserver": health["codes"],
        "good_swaps": len(pickups),
        "pickup_seconds": pickups,
        "reloads_success_delta": success_delta,
        "reloads_failure_delta": failure_delta,
        "broken_pair": broken,
        "server_warnings": server.log_problems(),
        "windows_ok_failed": {"before": load.ok_between(0, t0 + PAUSE),
                              "swaps": load.ok_between(t0 + PAUSE, t_last),
                              "after": load.ok_between(t_last, float("inf"))},
    }

    assert not load.failures, f"{len(load.failures)} failed admission calls, first ones:\n" + "\n".join(
        f"{f.op} (t+{f.at - t0:.1f}s): {f.detail}" for f in load.failures[:10])
    assert broken["served_after_broken_pair"] == [broken["expected"]], \
        f"after the broken pair the server must keep serving the previous certificate: {broken}"
    assert "certificate reload rejected" in server.log_text(), "no log line for the rejected pair"
    assert failure_delta == 1, f"reloads_total{{result=failure}} should go up by 1, went up by {failure_delta}"
    assert success_delta == SWAPS + 1, \
        f"reloads_total{{result=success}} should go up by {SWAPS + 1}, went up by {success_delta}"
    assert len(set(served_history)) == SWAPS + 2, served_history
    assert server.running() and server.pid == pid, "the server restarted or exited"
    assert expiry == cert_not_after(served_certificate(server.port).pem), \
        "backup_guard_certificate_expiry_timestamp_seconds{certificate=serving} is not the served notAfter"
    for window, (ok, bad) in figures["file_mode_reload"]["windows_ok_failed"].items():
        assert ok > 0 and bad == 0, f"window {window}: {ok} ok, {bad} failed"
    assert_healthy(health, load.expected_denials())
    answered = server.metrics().sum("backup_guard_admission_requests_total") - answered_before
    assert answered == sum(health["requests"].values()), \
        f"the server counted {answered} admission requests, the API server sent {health['requests']}"
