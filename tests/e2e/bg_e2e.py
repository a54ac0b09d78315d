"""Helpers for the e2e tests: constants, polling, the longhorn.io object helper and the
backup-guard server process wrapper. The fixtures that use them are in conftest.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest import server as _server  # noqa: E402
from bgtest.controlplane import state_dir  # noqa: E402
from bgtest.kube import GROUP, VERSION  # noqa: E402,F401 - re-exported
from bgtest.metrics import Metrics  # noqa: E402,F401 - re-exported
from bgtest.ports import free_port  # noqa: E402,F401 - re-exported
from bgtest.server import backup_guard_bin  # noqa: E402,F401 - re-exported
from bgtest.wait import wait_until as _wait_until  # noqa: E402

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
NAMESPACE = "longhorn-system"
FINALIZER = "longhorn.io"

# kind -> plural of the engine's kinds the tests use
PLURALS = {
    "BackupTarget": "backuptargets",
    "BackupVolume": "backupvolumes",
    "Backup": "backups",
    "SystemBackup": "systembackups",
    "BackupBackingImage": "backupbackingimages",
    "Volume": "volumes",
    "Setting": "settings",
}



def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, message="condition"):
    """Polls predicate() until it returns a truthy value, which is returned; fails on timeout.
    `message` may be a callable, evaluated only on timeout."""
    return _wait_until(predicate, timeout, interval, message, fail=pytest.fail)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Runs a command, failing the test with its output when it exits non-zero."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def generate_certs(out_dir: Path) -> Path:
    """Serving certificate for 127.0.0.1/localhost made by `backup-guard certs generate`."""
    try:
        return _server.generate_certs(_binary(), out_dir)
    except AssertionError as e:
        pytest.fail(str(e))


def _binary() -> Path:
    binary = backup_guard_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"backup-guard binary not found at {binary} (build it or set BACKUP_GUARD_BIN)")
    return binary


class Longhorn:
    """Thin helper over CustomObjectsApi for the longhorn.io/v1beta2 kinds."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str = NAMESPACE):
        self.api = api
        self.namespace = namespace

    @staticmethod
    def body(kind: str, name: str, spec=None, labels=None, annotations=None, **extra) -> dict:
        obj = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
        }
        if labels:
            obj["metadata"]["labels"] = dict(labels)
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        if spec is not None:
            obj["spec"] = spec
        obj.update(extra)
        return obj

    def create(self, obj: dict, namespace: str | None = None, **kw) -> dict:
        return self.api.create_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[obj["kind"]], obj, **kw)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        return self.api.get_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name)

    def get_or_none(self, kind: str, name: str, namespace: str | None = None):
        try:
            return self.get(kind, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        return self.api.list_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind],
            label_selector=label_selector)["items"]

    def patch(self, kind: str, name: str, patch: dict, namespace: str | None = None) -> dict:
        return self.api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, patch)

    def patch_status(self, kind: str, name: str, status: dict, namespace: str | None = None) -> dict:
        return self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, {"status": status})

    def delete(self, kind: str, name: str, namespace: str | None = None, **kw):
        return self.api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, **kw)

    def delete_any(self, kind: str, name: str):
        """Deletes the object (gone already is fine); a BackupTarget is first annotated so that
        the validating webhook lets it go."""
        try:
            if kind == "BackupTarget":
                self.patch(kind, name, {"metadata": {"annotations": {
                    DELETE_TARGET_ANNOTATION: "true"}}})
            self.delete(kind, name)
        except ApiException as e:
            if e.status != 404:
                raise

    def remove_finalizers(self, kind: str, name: str, namespace: str | None = None):
        try:
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name,
                {"metadata": {"finalizers": None}})
        except ApiException as e:
            if e.status not in (404, 422):
                raise

    def wait_gone(self, kind: str, name: str, namespace: str | None = None, timeout: float = 30.0):
        wait_until(lambda: self.get_or_none(kind, name, namespace) is None, timeout=timeout,
                   message=f"{kind} {namespace or self.namespace}/{name} to be gone")

    def purge(self, namespace: str | None = None, timeout: float = 30.0):
        """Deletes every object of every kind in the namespace, removing finalizers as needed."""
        ns = namespace or self.namespace
        for kind in PLURALS:
            for obj in self.list(kind, ns):
                name = obj["metadata"]["name"]
                try:
                    self.delete(kind, name, ns)
                except ApiException as e:
                    if e.status != 404:
                        # a validating webhook may refuse; force it through
                        self.remove_finalizers(kind, name, ns)
                self.remove_finalizers(kind, name, ns)
        for kind in PLURALS:
            wait_until(lambda k=kind: not self.list(k, ns), timeout=timeout,
                       message=f"no {kind} left in {ns}")

def control_plane_pki() -> Path:
    """The running control plane's pki directory ($BG_STATE_DIR/pki, controlplane.sh's default
    state dir otherwise)."""
    pki = state_dir() / "pki"
    if not pki.is_dir():
        pytest.fail(f"no control-plane pki in {pki} (is BG_STATE_DIR the running plane's?)")
    return pki


def webhook_client_credentials() -> tuple[Path, Path, Path]:
    """(CA, certificate, key) of the client certificate kube-apiserver presents to webhooks
    (its admission-control kubeconfig, written by controlplane.sh)."""
    pki = control_plane_pki()
    files = (pki / "webhook-client-ca.crt", pki / "webhook-client.crt", pki / "webhook-client.key")
    for f in files:
        if not f.is_file():
            pytest.fail(f"{f} is missing: the control plane was started without the webhook "
                        "client certificate (an older controlplane.sh?)")
    return files


def issue_client_cert(out_dir: Path, common_name: str) -> tuple[Path, Path, Path]:
    """A new self-signed CA and a clientAuth certificate it issues, made with openssl in out_dir:
    (CA, certificate, key)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = out_dir / "ca.key", out_dir / "ca.crt"
    key, csr, crt = out_dir / "client.key", out_dir / "client.csr", out_dir / "client.crt"
    ext = out_dir / "client.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2",
         "-subj", f"/CN={common_name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
    return ca_crt, crt, key


class BackupGuardServer(_server.BackupGuard):
    """A `backup-guard serve` process against the e2e control plane."""

    def __init__(self, kubeconfig: Path, cert_dir: Path, port: int | None = None,
                 metrics_port: int | None = None, namespace: str = NAMESPACE,
                 extra_args: list[str] | None = None, log_dir: Path | None = None,
                 name: str = "backup-guard"):
        self.kubeconfig = Path(kubeconfig)
        self.cert_dir = Path(cert_dir)
        self.namespace = namespace
        self.extra_args = list(extra_args or [])
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="backup-guard-e2e-"))
        super().__init__(backup_guard_bin(), name, None, [], port, metrics_port,
                         ca_file=self.cert_dir / "ca.crt")
        self.log_path = self.log_dir / f"{name}-{self.port}.log"

    @property
    def metrics_url(self) -> str:
        return self.metrics_base

    @property
    def ca_file(self) -> Path:
        return self.cert_dir / "ca.crt"

    def command(self) -> list[str]:
        self.args = [*_server.serve_args(self.cert_dir, self.kubeconfig, self.namespace),
                     *self.extra_args]
        return super().command()

    def start(self, timeout: float = 30.0) -> "BackupGuardServer":
        self.binary = str(_binary())
        super().start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0):
        def fail(message: str):
            self.stop()
            pytest.fail(f"backup-guard not ready: {message}")

        super().wait_ready(timeout, 0.2, fail)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after timeout; returns the exit code."""
        rc = super().stop(timeout=timeout)
        self.proc = None
        return rc

    def restart(self, timeout: float = 30.0) -> "BackupGuardServer":
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        return super().log_tail(lines)


# --------------------------------------------------------------------------------------------
# names used by the admission tests

MUTATING_CONFIG = "backup-guard-mutating"
VALIDATING_CONFIG = "backup-guard-validating"
MUTATOR = "mutator.backup-guard.longhorn.io"
VALIDATOR = "validator.backup-guard.longhorn.io"
DELETE_TARGET_ANNOTATION = "longhorn.io/delete-backup-target-from-longhorn"
CONFIRMATION_FLAG = "deleting-confirmation-flag"
DELETE_CR_ONLY_LABEL = "longhorn.io/delete-custom-resource-only"
CR_ONLY_WARNING = "only the custom resource"

_counter = 0


def unique(prefix: str) -> str:
    """An object name that no other test (or earlier run against the same plane) uses."""
    global _counter
    _counter += 1
    return f"{prefix}-{os.getpid() % 10000}-{int(time.time() * 1000) % 1000000}-{_counter}"


def owner_refs(obj: dict, kind: str | None = None) -> list[dict]:
    refs = obj["metadata"].get("ownerReferences") or []
    return [r for r in refs if kind is None or r.get("kind") == kind]


def backup_target_ref(target: dict) -> dict:
    """The owner reference docs/CONTRACT.md requires: exactly these four fields."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupTarget",
            "name": target["metadata"]["name"], "uid": target["metadata"]["uid"]}


def api_error(call, *args, **kw) -> ApiException:
    """Runs call, which must fail with an ApiException; returns it (fails the test otherwise)."""
    try:
        result = call(*args, **kw)
    except ApiException as e:
        return e
    pytest.fail(f"expected the API server to refuse the request, but it answered: {result!r}")


def error_message(e: ApiException) -> str:
    """The Status message of an API error (the raw body when it is not a Status)."""
    try:
        return json.loads(e.body).get("message", e.body)
    except (TypeError, ValueError):
        return str(e.body)


def warnings_of(headers) -> list[str]:
    """The texts of the RFC 7234 `Warning: 299 - "text"` headers of a response."""
    values = headers.getlist("Warning") if hasattr(headers, "getlist") else \
        [v for k, v in headers.items() if k.lower() == "warning"]
    texts = []
    for value in values:
        # one header may carry several comma-separated warnings; each text is a quoted string
        texts.extend(m.replace('\\"', '"') for m in re.findall(r'"((?:[^"\\]|\\.)*)"', value))
    return texts


class RawResponse:
    """Status, decoded JSON body and warnings of a request made with _preload_content=False."""

    def __init__(self, resp):
        self.status = resp.status
        self.headers = resp.headers
        self.warnings = warnings_of(resp.headers)
        data = resp.data
        self.body = json.loads(data) if data else None

    def __repr__(self):
        return f"RawResponse(status={self.status}, warnings={self.warnings}, body={self.body!r})"


def raw(call, *args, **kw) -> RawResponse:
    """Calls a kubernetes client method without decoding, so the response headers are visible."""
    return RawResponse(call(*args, _preload_content=False, **kw))


# --------------------------------------------------------------------------------------------
# a longhorn.io helper for one namespace, with a clean-up that never leaves objects stuck


class NamespacedLonghorn(Longhorn):
    """Longhorn helper bound to one namespace, with extra calls the admission tests use."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str):
        super().__init__(api, namespace)

    def replace(self, obj: dict, **kw) -> dict:
        return self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[obj["kind"]], obj["metadata"]["name"], obj, **kw)

    def apply(self, obj: dict, field_manager: str = "e2e-apply", force: bool = True) -> dict:
        """Server-side apply (PATCH application/apply-patch+yaml; JSON is YAML)."""
        api_client = self.api.api_client
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURALS[obj['kind']]}/" \
               f"{obj['metadata']['name']}"
        query = [("fieldManager", field_manager)] + ([("force", "true")] if force else [])
        return api_client.call_api(
            path, "PATCH", {}, query,
            {"Accept": "application/json", "Content-Type": "application/apply-patch+yaml"},
            body=obj, response_type="object", auth_settings=["BearerToken"],
            _return_http_data_only=True)

    def default_target(self, url: str = "s3://backupbucket@us-east-1/", **kw) -> dict:
        return self.create(self.body("BackupTarget", "default",
                                     spec={"backupTargetURL": url, "pollInterval": "300s"}, **kw))

    def setting(self, name: str, value: str) -> dict:
        existing = self.get_or_none("Setting", name)
        if existing is None:
            return self.create(self.body("Setting", name, value=value))
        return self.patch("Setting", name, {"value": value})

    def failed_backup(self, name: str, volume: str = "vol-failed") -> dict:
        """A Backup as a failed backup leaves it: no backup-volume label, status Error, no
        status.backupTargetName. Created with the label (the validating webhook requires it on
        CREATE) and the label then removed (UPDATE of backups is not intercepted)."""
        self.create(self.body("Backup", name, labels={"backup-volume": volume},
                              spec={"snapshotName": f"snap-{name}", "backupMode": "incremental"}))
        self.patch("Backup", name, {"metadata": {"labels": {"backup-volume": None}}})
        self.patch_status("Backup", name, {"state": "Error", "volumeName": volume,
                                           "backupTargetName": "",
                                           "error": "failed to upload the backup"})
        got = self.get("Backup", name)
        assert "backup-volume" not in (got["metadata"].get("labels") or {})
        assert not got["status"].get("backupTargetName")
        return got

    def clean(self, timeout: float = 30.0):
        """Deletes every longhorn.io object here: the default target is annotated so the webhook
        lets it go, and every finalizer is removed after the delete (a SystemBackup being deleted
        is not mutated, so its finalizer stays removed)."""
        order = ["SystemBackup", "Backup", "BackupBackingImage", "BackupVolume", "Volume",
                 "BackupTarget", "Setting"]
        for kind in order:
            for obj in self.list(kind):
                name = obj["metadata"]["name"]
                self.delete_any(kind, name)
                self.strip_finalizers(kind, name)
        for kind in order:
            wait_until(lambda k=kind: not self.list(k), timeout=timeout,
                       message=f"no {kind} left in {self.namespace}")

    def strip_finalizers(self, kind: str, name: str):
        try:
            self.patch(kind, name, {"metadata": {"finalizers": []}})
        except ApiException as e:
            if e.status != 404:
                raise


# --------------------------------------------------------------------------------------------
# the webhook configurations


class WebhookConfigs:
    """Reads, removes, changes and restores backup-guard's two webhook configurations."""

    def __init__(self, api_client: client.ApiClient, custom_objects: client.CustomObjectsApi):
        self.api_client = api_client
        self.adm = client.AdmissionregistrationV1Api(api_client)
        self.custom = custom_objects
        self.saved = None

    def read(self):
        return (self.adm.read_mutating_webhook_configuration(MUTATING_CONFIG),
                self.adm.read_validating_webhook_configuration(VALIDATING_CONFIG))

    def save(self):
        self.saved = self.read()
        return self.saved

    def delete(self):
        for call, name in ((self.adm.delete_mutating_webhook_configuration, MUTATING_CONFIG),
                           (self.adm.delete_validating_webhook_configuration, VALIDATING_CONFIG)):
            try:
                call(name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def set(self, failure_policy: str | None = None, base_url: str | None = None):
        """Changes the failure policy and/or the server URL of both webhooks."""
        mutating, validating = self.read()
        for cfg in (mutating, validating):
            for hook in cfg.webhooks:
                if failure_policy:
                    hook.failure_policy = failure_policy
                if base_url:
                    path = hook.client_config.url.split("/", 3)[3]
                    hook.client_config.url = f"{base_url}/{path}"
        self.adm.replace_mutating_webhook_configuration(MUTATING_CONFIG, mutating)
        self.adm.replace_validating_webhook_configuration(VALIDATING_CONFIG, validating)

    def restore(self):
        """Puts the saved configurations back exactly (recreating them when deleted)."""
        if self.saved is None:
            return
        mutating, validating = self.saved
        for cfg, read, create, replace in (
            (mutating, self.adm.read_mutating_webhook_configuration,
             self.adm.create_mutating_webhook_configuration,
             self.adm.replace_mutating_webhook_configuration),
            (validating, self.adm.read_validating_webhook_configuration,
             self.adm.create_validating_webhook_configuration,
             self.adm.replace_validating_webhook_configuration),
        ):
            name = cfg.metadata.name
            body = self.api_client.sanitize_for_serialization(cfg)
            for field in ("resourceVersion", "uid", "creationTimestamp", "generation",
                          "managedFields"):
                body["metadata"].pop(field, None)
            try:
                current = read(name)
            except ApiException as e:
                if e.status != 404:
                    raise
                create(body)
            else:
                body["metadata"]["resourceVersion"] = current.metadata.resource_version
                replace(name, body)

    # -- probes: dry-run requests that show which configuration the API server is using now

    def _probe_mutation(self, namespace: str):
        """'mutated', 'refused' (the webhook or its failure policy answered) or 'passed'."""
        body = Longhorn.body("SystemBackup", unique("probe"))
        try:
            got = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "systembackups", body, dry_run="All")
        except ApiException as e:
            return "refused", error_message(e)
        return ("mutated" if FINALIZER in (got["metadata"].get("finalizers") or []) else "passed"), got

    def _probe_validation(self, namespace: str):
        """'denied' (backup-guard answered), 'failed' (calling it failed) or 'passed'."""
        body = Longhorn.body("Backup", unique("probe"), spec={"snapshotName": "probe"})
        try:
            got = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "backups", body, dry_run="All")
        except ApiException as e:
            msg = error_message(e)
            return ("failed" if "failed calling webhook" in msg else "denied"), msg
        return "passed", got

    def probe(self, namespace: str) -> dict:
        """One dry-run request through each webhook; their outcomes (see _probe_*)."""
        return {"mutation": self._probe_mutation(namespace),
                "validation": self._probe_validation(namespace)}

    def wait_state(self, namespace: str, mutation: str, validation: str, timeout: float = 30.0):
        """Waits until the API server's admission chain behaves as expected in namespace."""
        last = {}

        def check():
            last["mutation"] = self._probe_mutation(namespace)
            last["validation"] = self._probe_validation(namespace)
            return last["mutation"][0] == mutation and last["validation"][0] == validation

        wait_until(check, timeout, 0.1,
                   lambda: f"the API server to reach mutation={mutation}, "
                           f"validation={validation}; last probes: {last}")

    def wait_active(self, namespace: str, timeout: float = 30.0):
        """Both webhooks registered and answered by a running backup-guard."""
        self.wait_state(namespace, "mutated" if self._has_target(namespace) else "refused",
                        "denied", timeout)

    def wait_absent(self, namespace: str, timeout: float = 30.0):
        self.wait_state(namespace, "passed", "passed", timeout)

    def _has_target(self, namespace: str) -> bool:
        try:
            t = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                         "backuptargets", "default")
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return bool((t.get("spec") or {}).get("backupTargetURL"))
