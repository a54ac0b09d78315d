"""Fixtures for the end-to-end tests against a real control plane (tests/e2e/controlplane.sh).

The tests are normally run by tests/e2e/run-e2e.sh, which starts the control plane, generates the
serving certificates, registers the CRDs and webhooks and exports:

    BG_KUBECONFIG     admin kubeconfig of the e2e control plane
    BG_CERT_DIR       directory with ca.crt, tls.crt and tls.key for the backup-guard server
    BG_WEBHOOK_PORT   port the webhook configurations point at (https://127.0.0.1:<port>)
    BG_METRICS_PORT   port for --metrics-listen
    BACKUP_GUARD_BIN  the backup-guard binary (default: <repo>/build/backup-guard)

Run by hand against a plane started with `controlplane.sh up`, the fixtures find the kubeconfig with
`controlplane.sh env`; the server fixture then generates certificates and registers the webhooks
itself. A missing control plane or binary is a test failure, never a skip.

Markers:
    no_webhook   the test needs only the control plane; run-e2e.sh runs these before the webhooks
                 are registered (so failurePolicy Fail cannot interfere with them).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

import chart_identity
from bg_e2e import (  # noqa: F401 - re-exported for tests
    E2E_DIR, FINALIZER, GROUP, NAMESPACE, PLURALS, VERSION, BackupGuardServer, Longhorn, Metrics,
    NamespacedLonghorn, WebhookConfigs, backup_guard_bin, free_port, generate_certs, run,
    wait_until,
)

# The tests delete and recreate targets and settings within milliseconds; a lookup cache would
# answer from the previous state, so the servers the tests start read the API every time.
SERVER_ARGS = ["--lookup-cache-ttl", "0"]


def pytest_configure(config):  # noqa: D103 - pytest hook
    config.addinivalue_line(
        "markers", "no_webhook: needs only the control plane, not the backup-guard server"
    )
    config.addinivalue_line(
        "markers", "acceptance: one of docs/CONTRACT.md's acceptance scenarios; tests/e2e/run-engine-versions.sh "
        "runs these on every pinned engine version"
    )
    config.addinivalue_line(
        "markers", "disruptive: stops a server or changes the webhook configurations for a "
        "while (restored afterwards); such tests run after all the others"
    )
    config.addinivalue_line(
        "markers", "engine_upgrade: upgrades the engine's CRDs in place from the oldest pinned "
        "version (the plane must have started on it; the test fails otherwise). run-e2e.sh leaves "
        "these out unless BG_PYTEST_MARK selects them; run-engine-versions.sh does on v1.7.2. "
        "They run last of all"
    )
    config.addinivalue_line(
        "markers", "processor: the finalizer processor suite; `make e2e-chart-rbac` runs it with "
        "every server under the chart's ServiceAccount and RBAC (BG_E2E_SERVER_IDENTITY=chart)"
    )


def pytest_collection_modifyitems(config, items):  # noqa: D103 - pytest hook
    # Stable partition: the tests that take the webhook out of the API server's path for a while
    # run last, so a failed restore cannot make unrelated tests fail, and the API server metrics
    # of the other tests are not mixed with deliberate webhook failures. The CRD upgrade tests run
    # after those: every other test of the run sees the CRDs the plane started with.
    items.sort(key=lambda item: (item.get_closest_marker("engine_upgrade") is not None,
                                 item.get_closest_marker("disruptive") is not None))


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    """Admin kubeconfig of the e2e control plane (never the user's own KUBECONFIG)."""
    path = os.environ.get("BG_KUBECONFIG")
    if not path:
        proc = subprocess.run([str(E2E_DIR / "controlplane.sh"), "env"],
                              capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("KUBECONFIG=")]
        if proc.returncode != 0 or not lines:
            pytest.fail("no e2e control plane: run tests/e2e/run-e2e.sh, or start one with "
                        f"tests/e2e/controlplane.sh up\n{proc.stderr}")
        path = lines[-1].split("=", 1)[1]
    p = Path(path)
    if not p.is_file():
        pytest.fail(f"kubeconfig {p} does not exist")
    return p


@pytest.fixture(scope="session")
def api_client(kubeconfig) -> client.ApiClient:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.VersionApi(api).get_code()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"the e2e API server is not reachable with {kubeconfig}: {e}")
    yield api
    api.close()


@pytest.fixture(scope="session")
def custom_objects(api_client) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture(scope="session")
def core_v1(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def longhorn(custom_objects) -> Longhorn:
    """Helper for longhorn.io/v1beta2 objects in longhorn-system."""
    return Longhorn(custom_objects)


@pytest.fixture(scope="session")
def kubectl(kubeconfig):
    """Returns a function that runs the e2e kubectl against the control plane."""
    binary = os.environ.get("KUBECTL")
    if not binary:
        binary = run([str(E2E_DIR / "build-tools.sh"), "--print-path", "kubectl"]).stdout.strip()

    def _kubectl(*args, check=True, input=None) -> subprocess.CompletedProcess:
        cmd = [binary, f"--kubeconfig={kubeconfig}", *map(str, args)]
        if check:
            return run(cmd, input=input)
        return subprocess.run(cmd, capture_output=True, text=True, input=input)

    return _kubectl


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory) -> Path:
    """ca.crt, tls.crt and tls.key for the server (BG_CERT_DIR, or generated by backup-guard)."""
    env = os.environ.get("BG_CERT_DIR")
    if env:
        d = Path(env)
        for name in ("ca.crt", "tls.crt", "tls.key"):
            if not (d / name).is_file():
                pytest.fail(f"BG_CERT_DIR={d} has no {name}")
        return d
    return generate_certs(tmp_path_factory.mktemp("certs"))


def _register(kubeconfig: Path, url: str, ca_file: Path, failure_policy: str = "Fail"):
    run([str(E2E_DIR / "register.sh"), "--kubeconfig", str(kubeconfig), "--url", url,
         "--ca-file", str(ca_file), "--failure-policy", failure_policy])


@pytest.fixture(scope="session")
def backup_guard(kubeconfig, cert_dir, tmp_path_factory) -> BackupGuardServer:
    """The backup-guard server the registered webhooks point at, for the whole session.

    Uses BG_WEBHOOK_PORT/BG_METRICS_PORT when run-e2e.sh registered the webhooks; otherwise picks
    free ports and registers the webhooks for them itself.
    """
    port = int(os.environ["BG_WEBHOOK_PORT"]) if os.environ.get("BG_WEBHOOK_PORT") else None
    metrics = int(os.environ["BG_METRICS_PORT"]) if os.environ.get("BG_METRICS_PORT") else None
    log_dir = Path(os.environ.get("BG_LOG_DIR") or tmp_path_factory.mktemp("logs"))
    server = BackupGuardServer(kubeconfig, cert_dir, port=port, metrics_port=metrics,
                               extra_args=SERVER_ARGS, log_dir=log_dir)
    if port is None:
        _register(kubeconfig, server.url, server.ca_file)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def backup_guard_factory(kubeconfig, cert_dir, tmp_path, kubectl):
    """Starts extra backup-guard processes (own ports, custom args); all are stopped afterwards.

    Note: the webhook configurations point at the session server, not at these.

    With BG_E2E_SERVER_IDENTITY=chart each one runs under the chart's own ServiceAccount and RBAC
    for its namespace and Lease (chart_identity.py), and its log must show no refused call.
    """
    started: list[BackupGuardServer] = []
    as_chart = chart_identity.enabled()
    identities: set[tuple[str, str]] = set()

    def _start(extra_args=None, start=True, **kw) -> BackupGuardServer:
        args = [*SERVER_ARGS, *(extra_args or [])]
        identity = kubeconfig
        if as_chart:
            ns = kw.get("namespace", NAMESPACE)
            lease = chart_identity.lease_of(args)
            identities.add((ns, lease))
            identity = chart_identity.server_kubeconfig(
                kubectl, kubeconfig, ns, lease, tmp_path / f"chart-sa-{ns}-{lease}.kubeconfig")
        s = BackupGuardServer(identity, cert_dir, extra_args=args, log_dir=tmp_path,
                              name=f"backup-guard-{len(started)}", **kw)
        started.append(s)
        return s.start() if start else s

    yield _start
    for s in started:
        s.stop()
    for ns, lease in identities:
        chart_identity.release(kubectl, ns, lease)
    if as_chart:
        refused = {str(s.log_path): chart_identity.refused_calls(s.log_path.read_text(
            errors="replace")) for s in started if s.log_path.exists()}
        refused = {path: lines for path, lines in refused.items() if lines}
        assert not refused, "calls refused under the chart's RBAC:\n" + "\n".join(
            f"{path} ({len(lines)} lines), first: {lines[0]}" for path, lines in refused.items())


@pytest.fixture
def test_namespace(core_v1, request):
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"e2e-{base}-{int(time.time() * 1000) % 100000}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core_v1.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture
def lh(custom_objects, test_namespace, backup_guard) -> NamespacedLonghorn:
    """longhorn.io helper for a fresh namespace of its own, with backup-guard serving the webhooks.

    backup-guard looks its BackupTarget and Setting up in the request's namespace, so a test that
    creates its own `default` BackupTarget here is independent of every other test. Afterwards
    every longhorn.io object in the namespace is deleted and its finalizers removed.
    """
    helper = NamespacedLonghorn(custom_objects, test_namespace)
    yield helper
    helper.clean()


@pytest.fixture
def lh_system(custom_objects, backup_guard) -> NamespacedLonghorn:
    """longhorn.io helper for longhorn-system (the server's own namespace); cleaned before and
    after, so the test starts without a default BackupTarget."""
    helper = NamespacedLonghorn(custom_objects, NAMESPACE)
    helper.clean()
    yield helper
    helper.clean()


@pytest.fixture
def webhook_configs(api_client, custom_objects, lh, backup_guard) -> WebhookConfigs:
    """backup-guard's webhook configurations, saved first and put back afterwards; the teardown
    also waits until the API server calls the session server again (it runs before `lh` cleans
    up, which needs the webhooks answering)."""
    configs = WebhookConfigs(api_client, custom_objects)
    saved = configs.save()
    urls = [h.client_config.url for cfg in saved for h in cfg.webhooks]
    if not all(u.startswith(backup_guard.url + "/") for u in urls):
        pytest.fail(f"the webhook configurations do not point at the session server "
                    f"{backup_guard.url} (an earlier test did not restore them?): {urls}")
    yield configs
    configs.restore()
    if not backup_guard.running():
        backup_guard.start()
    configs.wait_active(lh.namespace)


@pytest.fixture
def apiserver_metrics(kubectl):
    """Returns a function that scrapes the API server's /metrics with the admin kubeconfig."""
    def _scrape() -> Metrics:
        return Metrics(kubectl("get", "--raw", "/metrics").stdout)
    return _scrape


def pytest_report_header(config):
    return [
        f"backup-guard binary: {backup_guard_bin()}",
        f"e2e kubeconfig: {os.environ.get('BG_KUBECONFIG', '(from controlplane.sh env)')}",
    ]



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: D103 - pytest hook
    # A failing test that used the session server gets the tail of its log in the report, so a
    # server-side cause (a lookup error, an exception) is visible even after the state dir is gone.
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    server = getattr(item, "funcargs", {}).get("backup_guard")
    if isinstance(server, BackupGuardServer):
        report.sections.append((f"backup-guard log tail ({server.log_path})",
                                server.log_tail(40)))
