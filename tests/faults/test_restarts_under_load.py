"""Two backup-guard replicas restarted in turn with SIGTERM under steady admission load.

The API server's url-mode webhook configuration takes one URL, so a small TCP load balancer
(tcp_lb.py, a process of its own) stands in for the Service: round-robin per connection over the
replicas whose /readyz answers 200 (polled every 150 ms), bytes passed through, TLS end to end (both
replicas serve the same certificate). The webhooks are registered at the balancer with
failurePolicy Fail and timeoutSeconds 10.

Load: two threads with the official `kubernetes` client, each paced at one cycle per 0.4 s; a cycle
is a SystemBackup CREATE (the answer must carry the mutation: finalizer, defaulted policy, owner
reference), a merge-patch UPDATE of it, a Backup CREATE and DELETE, the SystemBackup's DELETE and
the removal of its finalizer (an UPDATE; a 404 there means the processor released it first). About
30 API calls and 30 webhook calls per second.

Timeline (≈40 s): load; SIGTERM replica A (its counters scraped just before), start it again on
the same ports, wait until the balancer sees it ready; the same for replica B; load until 40 s.

Two modes:
  sigterm                 what the issue asks: SIGTERM straight away; the balancer learns from
                          /readyz (polled every 150 ms) that the replica is going.
  drain-3s-then-sigterm   what the chart's preStop delay gives in a cluster: the replica is first
                          taken out of the balancer's rotation for new connections (an endpoint
                          removal), 3 s later SIGTERM; established keep-alive connections from the
                          API server stay on it, as conntrack keeps them on the old pod (≈30 s).
Measured: failures seen by the client (every one with its error), the API server's
apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error"} and request
counts for our webhooks, our backup_guard_admission_requests_total summed over all four processes,
the balancer's counters (connections refused by a backend, connections with no ready backend).
Expected: zero failed calls.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from faultlib import (FAST_LEASE, FINALIZER, TARGET_URL, Metrics, free_ports, log, percentile,
                      wait_until)
from bgtest.procs import stop_process  # noqa: E402 - tests/ is on sys.path after faultlib

HERE = Path(__file__).resolve().parent
GROUP, VERSION = "longhorn.io", "v1beta2"
LOAD_SECONDS = {"sigterm": 40, "drain-3s-then-sigterm": 30}
DRAIN_SECONDS = 3
CYCLE_SECONDS = 0.4
OUR_WEBHOOKS = re.compile(r".*backup-guard.*")


def apiserver_webhook_figures(m: Metrics) -> dict:
    return {
        "requests": m.sum("apiserver_admission_webhook_request_total", name=OUR_WEBHOOKS),
        "requests_non_200": m.sum("apiserver_admission_webhook_request_total", name=OUR_WEBHOOKS,
                                  code=lambda c: c != "200"),
        "calling_webhook_error": m.sum("apiserver_admission_webhook_rejection_count",
                                       name=OUR_WEBHOOKS, error_type="calling_webhook_error"),
        "apiserver_internal_error": m.sum("apiserver_admission_webhook_rejection_count",
                                          name=OUR_WEBHOOKS, error_type="apiserver_internal_error"),
        "fail_open": m.sum("apiserver_admission_webhook_fail_open_count", name=OUR_WEBHOOKS),
    }


def our_counts(m: Metrics) -> dict:
    out = {"total": 0.0, "by_code": {}}
    for lab, v in m.select("backup_guard_admission_requests_total"):
        out["total"] += v
        out["by_code"][lab.get("code", "?")] = out["by_code"].get(lab.get("code", "?"), 0) + v
    return out


def add_counts(a: dict, b: dict) -> dict:
    out = {"total": a["total"] + b["total"], "by_code": dict(a["by_code"])}
    for k, v in b["by_code"].items():
        out["by_code"][k] = out["by_code"].get(k, 0) + v
    return out


class Load:
    """Two threads of admission traffic through the API server; every failure is recorded."""

    def __init__(self, kubeconfig: str, ns: str, t0: float):
        self.kubeconfig, self.ns, self.t0 = kubeconfig, ns, t0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ops = 0
        self.failures: list[dict] = []
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(2)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)

    def _call(self, what: str, fn, *args, ok_statuses=(), **kw):
        t = time.monotonic()
        try:
            result = fn(*args, _request_timeout=30, **kw)
            return result
        except ApiException as e:
            if e.status in ok_statuses:
                return None
            self._fail(what, f"HTTP {e.status}: {(e.body or '')[:300]}")
        except Exception as e:  # noqa: BLE001 - any client error is a failed call
            self._fail(what, repr(e)[:300])
        finally:
            with self.lock:
                self.ops += 1
                self.latencies.append(time.monotonic() - t)
        return None

    def _fail(self, what: str, error: str):
        with self.lock:
            self.failures.append({"t": round(time.monotonic() - self.t0, 2), "op": what,
                                  "error": error})

    def _run(self, idx: int):
        api = kclient.CustomObjectsApi(kconfig.new_client_from_config(config_file=self.kubeconfig))
        ns = self.ns
        n = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            n += 1
            sb = f"sb-{idx}-{n}"
            bk = f"bk-{idx}-{n}"
            got = self._call("create SystemBackup", api.create_namespaced_custom_object, GROUP,
                             VERSION, ns, "systembackups",
                             {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SystemBackup",
                              "metadata": {"name": sb}, "spec": {}})
            if got is not None:
                md = got.get("metadata", {})
                owners = [r for r in md.get("ownerReferences") or []
                          if r.get("kind") == "BackupTarget"]
                if (FINALIZER not in (md.get("finalizers") or [])
                        or got.get("spec", {}).get("volumeBackupPolicy") != "if-not-present"
                        or not owners):
                    self._fail("create SystemBackup", f"not mutated: {md} {got.get('spec')}")
                self._call("update SystemBackup", api.patch_namespaced_custom_object, GROUP,
                           VERSION, ns, "systembackups", sb,
                           {"metadata": {"labels": {"n": str(n)}}})
            self._call("create Backup", api.create_namespaced_custom_object, GROUP, VERSION, ns,
                       "backups",
                       {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Backup",
                        "metadata": {"name": bk, "labels": {"backup-volume": "vol-1",
                                                            "backup-target": "default"}},
                        "spec": {"snapshotName": f"snap-{bk}", "labels": {}, "backupMode": "full"}})
            self._call("delete Backup", api.delete_namespaced_custom_object, GROUP, VERSION, ns,
                       "backups", bk, ok_statuses=(404,))
            if got is not None:
                self._call("delete SystemBackup", api.delete_namespaced_custom_object, GROUP,
                           VERSION, ns, "systembackups", sb, ok_statuses=(404,))
                self._call("remove SystemBackup finalizer", api.patch_namespaced_custom_object,
                           GROUP, VERSION, ns, "systembackups", sb,
                           {"metadata": {"finalizers": None}}, ok_statuses=(404,))
            next_at += CYCLE_SECONDS
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_at = time.monotonic()


def read_stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("mode", ["sigterm", "drain-3s-then-sigterm"])
def test_two_replicas_restarted_under_load(mode, kube, kubeconfig, servers, namespace, register_sh,
                                           cert_dir, state_dir, pids, figures):
    ns = namespace
    kube.ok("POST", kube.lh(ns, "backuptargets"), body={
        "apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget",
        "metadata": {"name": "default"},
        "spec": {"backupTargetURL": TARGET_URL, "credentialSecret": "", "pollInterval": "300s"}})
    lease = ["--leader-election-id", "faults-restart"] + FAST_LEASE
    a = servers("a", kubeconfig=kubeconfig, namespace=ns, extra=lease)
    b = servers("b", kubeconfig=kubeconfig, namespace=ns, extra=lease)
    a.start(wait=False)
    b.start(wait=False)
    a.wait_ready()
    b.wait_ready()

    lb_port = free_ports(1)[0]
    stats_path = state_dir / f"lb-stats-{mode}.json"
    control_path = state_dir / f"lb-control-{mode}.json"
    control_path.write_text('{"drain": []}')
    lb_log = open(state_dir / f"lb-{mode}.log", "wb")
    lb = subprocess.Popen([sys.executable, str(HERE / "tcp_lb.py"), "--listen",
                           f"127.0.0.1:{lb_port}", "--backend", f"127.0.0.1:{a.port}",
                           "--backend", f"127.0.0.1:{b.port}", "--ca", str(cert_dir / "ca.crt"),
                           "--stats", str(stats_path), "--poll", "0.15",
                           "--control", str(control_path)],
                          stdin=subprocess.DEVNULL, stdout=lb_log, stderr=subprocess.STDOUT)
    lb_log.close()
    pids.add("tcp_lb", lb.pid, "tcp_lb.py")
    registered = False
    load = None
    try:
        wait_until("the balancer to see both replicas ready",
                   lambda: [x["ready"] for x in read_stats(stats_path).get("backends", [])]
                   == [True, True], 20, 0.1)
        subprocess.run([register_sh, "--kubeconfig", kubeconfig, "--url",
                        f"https://127.0.0.1:{lb_port}", "--ca-file", str(cert_dir / "ca.crt"),
                        "--failure-policy", "Fail", "--timeout-seconds", "10"],
                       check=True, capture_output=True, timeout=120)
        registered = True
        probe_api = kclient.CustomObjectsApi(kconfig.new_client_from_config(config_file=kubeconfig))

        def mutated():
            got = probe_api.create_namespaced_custom_object(
                GROUP, VERSION, ns, "systembackups",
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SystemBackup",
                 "metadata": {"name": "probe"}, "spec": {}}, dry_run="All")
            return FINALIZER in (got["metadata"].get("finalizers") or [])
        wait_until("the API server to call the webhooks through the balancer", mutated, 30, 0.5)

        api_before = apiserver_webhook_figures(kube.metrics())
        t0 = time.monotonic()
        t0_wall = time.time()
        load = Load(kubeconfig, ns, t0).start()
        ours = {"total": 0.0, "by_code": {}}
        steps = []

        def restart(server, label):
            time.sleep(6)
            if mode != "sigterm":
                control_path.write_text(json.dumps({"drain": [f"127.0.0.1:{server.port}"]}))
                time.sleep(DRAIN_SECONDS)
            counts = our_counts(server.metrics())
            t_term = time.monotonic()
            rc = server.stop(signal.SIGTERM, timeout=30)
            exit_s = time.monotonic() - t_term
            log(f"{label}: SIGTERM at {t_term - t0:.1f}s, exit {rc} after {exit_s:.2f}s "
                f"({counts['total']:.0f} requests served)")
            server.start(wait=False)
            server.wait_ready(30)
            t_ready = time.monotonic()
            control_path.write_text('{"drain": []}')
            idx = 0 if server is a else 1
            wait_until(f"the balancer to see {label} ready again",
                       lambda: read_stats(stats_path)["backends"][idx]["ready"], 20, 0.05)
            steps.append({"replica": label, "sigterm_at_s": round(t_term - t0, 1),
                          "exit_status": rc, "exit_after_s": round(exit_s, 2),
                          "ready_again_after_s": round(t_ready - t_term, 2),
                          "requests_served_before_stop": counts["total"],
                          "codes": counts["by_code"]})
            return counts

        ours = add_counts(ours, restart(a, "A"))
        ours = add_counts(ours, restart(b, "B"))
        remaining = LOAD_SECONDS[mode] - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        load.stop()
        duration = time.monotonic() - t0
        time.sleep(0.5)
        for s in (a, b):
            ours = add_counts(ours, our_counts(s.metrics()))
        api_after = apiserver_webhook_figures(kube.metrics())
        api_delta = {k: api_after[k] - api_before[k] for k in api_after}
        stats = read_stats(stats_path)
        lb_figures = {"accepted": stats.get("accepted"), "no_backend": stats.get("no_backend"),
                      "pipe_errors": stats.get("pipe_errors"),
                      "backends": [{k: x[k] for k in ("connections", "connect_failures",
                                                       "failure_samples", "probes")}
                                   | {"transitions": [
                                       {"t_s": round(tr["t"] - t0_wall, 2), "ready": tr["ready"],
                                        "why": tr["why"]} for tr in x["transitions"]]}
                                   for x in stats.get("backends", [])]}
        server_5xx = sum(v for c, v in ours["by_code"].items() if c.startswith("5"))
        figures.update({
            "mode": mode, "load_seconds": round(duration, 1), "client_ops": load.ops,
            "client_ops_per_s": round(load.ops / duration, 1),
            "client_failures": len(load.failures), "failure_samples": load.failures[:20],
            "client_latency_p50_ms": round(1000 * percentile(load.latencies, 50), 1),
            "client_latency_max_ms": round(1000 * max(load.latencies), 1),
            "apiserver": api_delta, "ours": ours, "ours_5xx": server_5xx,
            "apiserver_minus_ours": api_delta["requests"] - ours["total"],
            "steps": steps, "balancer": lb_figures,
        })
        log(f"restarts under load: {json.dumps(figures)}")
        assert load.ops > 0.8 * duration / CYCLE_SECONDS * 2 * 4, "the load did not run as paced"
        assert not load.failures and api_delta["calling_webhook_error"] == 0 and server_5xx == 0, (
            f"failed admission calls while replicas restarted: client {len(load.failures)} "
            f"(first: {load.failures[:5]}), API server calling_webhook_error "
            f"+{api_delta['calling_webhook_error']:.0f}, our 5xx {server_5xx:.0f}; "
            f"steps {steps}; balancer {lb_figures}")
        assert all(s["exit_status"] == 0 for s in steps), f"a replica did not exit 0: {steps}"
    finally:
        if load is not None:
            load.stop()
        if registered:
            subprocess.run([register_sh, "--kubeconfig", kubeconfig, "--delete-webhooks"],
                           capture_output=True, timeout=60)
        stop_process(lb, timeout=10)
        pids.remove("tcp_lb")
