"""`backup-guard uninstall --dry-run=server`, its progress lines and `-o json` (docs/CONTRACT.md
"Uninstall", issue 12), against the real API server, with a small admission webhook of the test's
own (an HTTPS server in this process, registered for the test's namespace only) that refuses or
delays Backup DELETEs:

- `--dry-run=server` sends every planned write with dryRun=All: the webhook is called, its refusal
  is printed naming the webhook, its reason and every Backup, the exit status is 1, and not one
  object changes (same resourceVersions); the client-side dry run never calls it;
- with a webhook that delays each Backup DELETE, progress lines come periodically (every
  --progress-interval) while the counts stay put, and the run completes;
- `-o json`: every stdout line is a JSON event (plan first, done last, progress, webhook).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from processor_support import (  # noqa: F401 - fixtures
    UNINSTALL_KINDS, brief, found_lines, log, ns_lh, poll, populate, proc_ns, run_uninstall,
    uninstaller,
)

WEBHOOK = "guard.uninstall-e2e.backup-guard.test"


class AdmissionServer:
    """An admission webhook on 127.0.0.1: answers every AdmissionReview for a Backup DELETE after
    `delay` seconds, refusing it with `reason` when `refuse` is set; counts the calls, and which
    of them were dry runs."""

    def __init__(self, cert_dir):
        self.refuse = False
        self.delay = 0.0
        self.calls = 0
        self.dry_run_calls = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = body["request"]
                with owner.lock:
                    owner.calls += 1
                    owner.dry_run_calls += 1 if req.get("dryRun") else 0
                if owner.delay:
                    time.sleep(owner.delay)
                response = {"uid": req["uid"], "allowed": not owner.refuse}
                if owner.refuse:
                    response["status"] = {
                        "code": 403,
                        "message": f"e2e guard keeps every {req['kind']['kind']}"}
                out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_dir / "tls.crt"), str(cert_dir / "tls.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def guard(api_client, cert_dir, ns_lh):
    """The test's webhook, registered (failurePolicy Fail) for Backup DELETEs in the test's
    namespace only; removed afterwards."""
    server = AdmissionServer(cert_dir)
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"bg-e2e-guard-{ns_lh.namespace}"[:63]
    admission.create_validating_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": WEBHOOK,
            "clientConfig": {
                "url": f"https://127.0.0.1:{server.port}/validate",
                "caBundle": base64.b64encode((cert_dir / "ca.crt").read_bytes()).decode()},
            "rules": [{"apiGroups": ["longhorn.io"], "apiVersions": ["*"],
                       "operations": ["DELETE"], "resources": ["backups"],
                       "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": ns_lh.namespace}},
        }],
    })
    yield server
    admission.delete_validating_webhook_configuration(name)
    server.stop()


def wait_registered(lh, server: AdmissionServer):
    """Until the API server calls the webhook (a dry-run DELETE of a Backup reaches it)."""
    custom = lh.api
    victim = lh.list("Backup")[0]["metadata"]["name"]

    def called():
        before = server.calls
        try:
            custom.delete_namespaced_custom_object("longhorn.io", "v1beta2", lh.namespace,
                                                   "backups", victim, dry_run="All")
        except client.rest.ApiException:
            pass
        return server.calls > before
    poll(called, timeout=30, interval=0.5, message="the API server to call the test's webhook")


def versions(lh) -> dict:
    return {f"{k}/{o['metadata']['name']}": (o["metadata"]["resourceVersion"],
                                             o["metadata"].get("deletionTimestamp"))
            for k in UNINSTALL_KINDS for o in lh.list(k)}


def events_of(stdout: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output"
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"stdout line is not a JSON event: {line!r}\nstdout:\n{stdout}")
    for e in events:
        assert e.get("event") in ("plan", "progress", "blocker", "webhook", "done"), e
        assert e.get("time", "").endswith("Z"), e
    return events


def test_server_dry_run_names_the_webhook_that_would_refuse_each_object_and_changes_nothing(
        backup_guard, guard, kubeconfig, ns_lh):
    lh = ns_lh
    sc = populate(lh, webhook=True, backups=6)
    lh.set_flag("true")
    wait_registered(lh, guard)
    guard.refuse = True
    before = versions(lh)
    assert before, "nothing populated"

    calls = guard.calls
    client_run = run_uninstall(kubeconfig, lh.namespace, "--dry-run=client")
    assert client_run.returncode == 0, client_run.stdout + client_run.stderr
    assert guard.calls == calls, "the client-side dry run called an admission webhook"
    assert "server dry run" not in client_run.stdout, client_run.stdout

    proc = run_uninstall(kubeconfig, lh.namespace, "--dry-run=server", "--force")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dry run (server): nothing will be changed" in out, out
    assert f'admission webhook "{WEBHOOK}" would refuse 6 writes: e2e guard keeps every Backup\n' \
        in out, out
    for name in sc.backups:
        assert f"    delete Backup {name}\n" in out, f"{name} not named:\n{out}"
    assert guard.dry_run_calls >= 6 and guard.calls - calls >= 6, \
        (guard.calls, guard.dry_run_calls)
    assert versions(lh) == before, "the server dry run changed objects"
    target = lh.get("BackupTarget", "default")
    assert target["spec"]["backupTargetURL"], "the target URL was emptied"

    # The same as events: one webhook event per webhook and reason, with every object.
    jproc = run_uninstall(kubeconfig, lh.namespace, "--dry-run=server", "--force", "-o", "json")
    assert jproc.returncode == 1, jproc.stdout + jproc.stderr
    events = events_of(jproc.stdout)
    assert events[0]["event"] == "plan" and events[0]["dry_run"] == "server", events[0]
    assert events[-1] == {**events[-1], "event": "done", "exit_code": 1,
                          "result": "dry-run-refused"}, events[-1]
    refused = sorted(o["name"] for e in events if e["event"] == "webhook"
                     and e.get("webhook") == WEBHOOK and e.get("denied") and e.get("dry_run")
                     for o in e["objects"] if o["kind"] == "Backup" and o["verb"] == "delete")
    assert refused == sorted(sc.backups), events
    assert "would refuse" in jproc.stderr, "the text goes to stderr with -o json"
    assert versions(lh) == before, "the server dry run changed objects"

    guard.refuse = False
    ok = run_uninstall(kubeconfig, lh.namespace, "--dry-run=server", "--force")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "every admission webhook would admit every write" in ok.stdout, ok.stdout
    assert versions(lh) == before


def test_progress_lines_come_periodically_while_a_slow_webhook_holds_the_counts(
        backup_guard, guard, kubeconfig, ns_lh, uninstaller):
    lh = ns_lh
    populate(lh, webhook=True, backups=8)
    lh.set_flag("true")
    wait_registered(lh, guard)
    guard.delay = 1.0  # each Backup DELETE waits a second in the webhook
    proc = uninstaller(lh.namespace, "--force", "--workers", "1", "--progress-interval", "500ms",
                       "--timeout", "120s")
    rc = proc.wait(150)
    out = proc.stdout()
    assert rc == 0, f"exit {rc}\nstdout:\n{out}\nstderr:\n{proc.stderr()}"
    assert not lh.leftovers(), lh.leftovers()
    progress = [line for line in out.splitlines() if line.startswith("progress: ")]
    log(f"{len(progress)} progress lines, e.g. {progress[:2]}")
    # 8 DELETEs of a second each, one worker: at least 8 s of work, a line every 0.5 s.
    assert len(progress) >= 8, out
    remaining = [line.split("; remaining: ")[1].split("; removed")[0] for line in progress]
    assert max(remaining.count(r) for r in set(remaining)) >= 2, \
        f"no count was printed twice (lines only on change?):\n{out}"
    assert any("Backup " in r for r in remaining), out
    assert all(" elapsed, step " in line and "/s over the last" in line for line in progress), out
    assert out.index("plan: ") < out.index(progress[0]), out


def test_json_output_is_one_event_per_line_plan_progress_done(
        backup_guard, guard, kubeconfig, ns_lh, uninstaller):
    lh = ns_lh
    sc = populate(lh, webhook=True, backups=8)
    lh.set_flag("true")
    wait_registered(lh, guard)
    guard.delay = 0.5
    proc = uninstaller(lh.namespace, "--force", "--workers", "1", "--progress-interval", "300ms",
                       "--timeout", "120s", "-o", "json")
    rc = proc.wait(150)
    assert rc == 0, f"exit {rc}\nstdout:\n{proc.stdout()}\nstderr:\n{proc.stderr()}"
    events = events_of(proc.stdout())
    plan = events[0]
    assert plan["event"] == "plan" and plan["dry_run"] == "none", plan
    assert plan["total"] == sc.total(), (plan, sc.total())
    counts = {s["kind"]: s["count"] for s in plan["steps"]}
    assert counts["Backup"] == len(sc.backups), plan
    assert [s["kind"] for s in plan["steps"]][:6] == [
        "Volume", "BackupTarget", "BackupVolume", "Backup", "SystemBackup",
        "BackupBackingImage"], plan
    done = events[-1]
    assert done["event"] == "done" and done["exit_code"] == 0 and done["result"] == "complete", done
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) >= 3, events
    for p in progress:
        assert set(p) >= {"elapsed_seconds", "step", "remaining", "remaining_total", "removed",
                          "rate_per_second", "recent_rate_per_second", "failing_objects"}, p
        assert p["remaining_total"] == sum(p["remaining"].values()), p
    assert progress[0]["remaining_total"] > progress[-1]["remaining_total"], progress
    assert progress[-1]["removed"] > 0, progress[-1]
    elapsed = [p["elapsed_seconds"] for p in progress]
    assert elapsed == sorted(elapsed), elapsed
    assert "found 0 Backup remaining" in proc.stderr(), "the text goes to stderr with -o json"
    assert not lh.leftovers(), lh.leftovers()
