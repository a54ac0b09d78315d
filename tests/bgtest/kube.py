"""The API server of the test control plane.

`api_client(kubeconfig)` is the official `kubernetes` client. `Kube` is a raw REST client for the
tests that need the wire itself (exact status codes, dry-run queries, streamed watches, many
threads): `requests` with the kubeconfig's server, CA and client certificate, which the official
client's kubeconfig loader reads."""
from __future__ import annotations

import base64
import json
import threading
import time

import requests
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from bgtest.metrics import Metrics

GROUP = "longhorn.io"
VERSION = "v1beta2"
GROUP_PATH = f"/apis/{GROUP}/{VERSION}"
MUTATING_CONFIG = "backup-guard-mutating"
VALIDATING_CONFIG = "backup-guard-validating"
MERGE_PATCH = "application/merge-patch+json"


def api_client(kubeconfig) -> k8s_client.ApiClient:
    """An ApiClient of the official client for the kubeconfig's current context."""
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


def kube_configuration(kubeconfig) -> k8s_client.Configuration:
    cfg = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return cfg


class Kube:
    """Raw REST client for the admin kubeconfig (client certificate), one session per thread,
    never through a proxy. `timeout` is the default of each request."""

    def __init__(self, kubeconfig, timeout: float = 30):
        cfg = kube_configuration(kubeconfig)
        self.kubeconfig = str(kubeconfig)
        self.server = cfg.host.rstrip("/")
        self.ca = cfg.ssl_ca_cert
        self.cert = (cfg.cert_file, cfg.key_file)
        self.timeout = timeout
        self._local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # never a proxy
            s.verify = self.ca
            s.cert = self.cert
            self._local.session = s
        return s

    def request(self, method: str, path: str, *, body=None, params=None,
                content_type: str = "application/json", timeout=None,
                stream: bool = False) -> requests.Response:
        headers = {"Accept": "application/json"}
        kw = {}
        if body is not None:
            headers["Content-Type"] = content_type
            kw["data"] = json.dumps(body)
        return self.session().request(method, self.server + path, params=params, headers=headers,
                                      timeout=self.timeout if timeout is None else timeout,
                                      stream=stream, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        """The decoded body of a 2xx answer; AssertionError otherwise."""
        r = self.request(method, path, **kw)
        if r.status_code >= 300:
            raise AssertionError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else {}

    def get_or_none(self, path: str):
        r = self.request("GET", path)
        if r.status_code == 404:
            return None
        if r.status_code >= 300:
            raise AssertionError(f"GET {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json()

    # -- paths

    @staticmethod
    def lh(ns: str, plural: str, name: str = "", sub: str = "") -> str:
        """The path of longhorn.io objects: a collection, one object or its subresource."""
        p = f"{GROUP_PATH}/namespaces/{ns}/{plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p

    @staticmethod
    def secret(ns: str, name: str) -> str:
        return f"/api/v1/namespaces/{ns}/secrets/{name}"

    @staticmethod
    def webhook_config(kind: str, name: str) -> str:
        plural = {"mutating": "mutatingwebhookconfigurations",
                  "validating": "validatingwebhookconfigurations"}[kind]
        return f"/apis/admissionregistration.k8s.io/v1/{plural}/{name}"

    # -- reads

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> Metrics:
        """The API server's own /metrics."""
        r = self.request("GET", "/metrics", timeout=30)
        r.raise_for_status()
        return Metrics(r.text)

    apiserver_metrics = metrics

    def list_items(self, ns: str, plural: str) -> list[dict]:
        return self.ok("GET", self.lh(ns, plural), timeout=30).get("items", [])

    def ca_bundles(self) -> dict[str, str]:
        """caBundle (decoded PEM) of every webhook in both configurations, keyed by webhook name."""
        out = {}
        for kind, name in (("mutating", MUTATING_CONFIG), ("validating", VALIDATING_CONFIG)):
            obj = self.ok("GET", self.webhook_config(kind, name))
            for hook in obj.get("webhooks", []):
                b = hook.get("clientConfig", {}).get("caBundle", "")
                out[hook["name"]] = base64.b64decode(b).decode() if b else ""
        return out

    def secret_data(self, ns: str, name: str) -> dict[str, str] | None:
        obj = self.get_or_none(self.secret(ns, name))
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    # -- namespaces and clean-up

    def ensure_namespace(self, ns: str):
        r = self.request("POST", "/api/v1/namespaces",
                         body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if r.status_code not in (201, 409):
            raise AssertionError(f"creating namespace {ns}: HTTP {r.status_code}: {r.text[:300]}")

    def delete_namespace(self, ns: str):
        self.request("DELETE", f"/api/v1/namespaces/{ns}")

    def release(self, ns: str, plural: str, name: str):
        """Removes every finalizer of one object."""
        return self.request("PATCH", self.lh(ns, plural, name),
                            body={"metadata": {"finalizers": None}}, content_type=MERGE_PATCH)

    def strip_finalizers(self, ns: str, plural: str):
        for it in self.ok("GET", self.lh(ns, plural)).get("items", []):
            if it["metadata"].get("finalizers"):
                self.release(ns, plural, it["metadata"]["name"])

    def purge(self, ns: str, plurals=("backups", "systembackups", "backupvolumes",
                                      "backuptargets", "settings"), timeout: float = 60):
        """Deletes every object of these kinds in ns (finalizers removed after the delete), waits
        until they are gone, then deletes the namespace. Best effort, returns problems."""
        problems = []
        deadline = time.monotonic() + timeout
        for plural in plurals:
            try:
                self.request("DELETE", self.lh(ns, plural), timeout=60)  # deletecollection
                while time.monotonic() < deadline:
                    items = self.list_items(ns, plural)
                    if not items:
                        break
                    for it in items:
                        if it["metadata"].get("finalizers"):
                            self.release(ns, plural, it["metadata"]["name"])
                    time.sleep(0.3)
                else:
                    problems.append(f"{plural} still present in {ns}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"{plural} in {ns}: {e!r}")
        try:
            self.delete_namespace(ns)
        except Exception as e:  # noqa: BLE001
            problems.append(f"namespace {ns}: {e!r}")
        return problems


def kubeconfig_from_env(var: str, runner: str) -> str:
    """The admin kubeconfig a suite's runner passes in $var; fails the session without one."""
    import os

    import pytest

    kc = os.environ.get(var, "")
    if not kc or not os.path.isfile(kc):
        pytest.fail(f"{var} is not set to a kubeconfig file: run {runner}, which starts the "
                    "control plane", pytrace=False)
    return kc


def reachable(kube: Kube, timeout: float = 30) -> Kube:
    """kube, once the API server answers /readyz; fails the session otherwise."""
    import pytest

    from bgtest.wait import wait_until

    try:
        wait_until(kube.ready, timeout, 0.5, "the API server /readyz")
    except AssertionError as e:
        pytest.fail(f"control plane not reachable: {e}", pytrace=False)
    return kube
