"""The servers the tests start, run under the chart's own ServiceAccount and RBAC instead of the
admin kubeconfig: BG_E2E_SERVER_IDENTITY=chart (tests/e2e/README.md, "Least privilege").

For a server in namespace NS with Lease L (`--leader-election-id`, default `backup-guard`), the
chart's `templates/serviceaccount.yaml` and `templates/rbac.yaml` are rendered by helm for a release
in NS whose full name is L (so its Role names that Lease) with file certificates (as the servers
here use: no Secret, no webhook configuration writes, nothing cluster-wide), applied with the admin
kubeconfig, and the server gets a kubeconfig with a token of that ServiceAccount (TokenRequest,
as `kubectl create token`). When the server stops, its log must show no refused call.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes import config as kube_config

from bg_e2e import E2E_DIR

ROOT = E2E_DIR.parents[1]
CHART_DIR = ROOT / "charts" / "backup-guard"
DEFAULT_LEASE = "backup-guard"  # serve's default --leader-election-id


def enabled() -> bool:
    identity = os.environ.get("BG_E2E_SERVER_IDENTITY", "admin")
    if identity not in ("admin", "chart"):
        raise ValueError(f"BG_E2E_SERVER_IDENTITY must be admin or chart, not {identity!r}")
    return identity == "chart"


def _helm() -> str:
    return os.environ.get("HELM") or subprocess.run(
        [str(E2E_DIR / "build-tools.sh"), "--print-path", "helm"], capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1]


def lease_of(args: list[str]) -> str:
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--leader-election-id"]
    return values[-1] if values else DEFAULT_LEASE


def render(ns: str, lease: str) -> list[dict]:
    """The chart's ServiceAccount, Role and RoleBinding for a release in `ns` named `lease`."""
    proc = subprocess.run(
        [_helm(), "template", "e2e", str(CHART_DIR), "--namespace", ns,
         "--set", f"fullnameOverride={lease}",
         "--set", "certificates.mode=existingSecret",
         "--set", "certificates.existingSecret.name=e2e-file-certificates",
         "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Role", "RoleBinding", "ServiceAccount"], \
        f"file certificates need nothing cluster-wide, the chart renders {kinds}"
    return objects


# Held on the identity's objects while its servers run: a test's namespace is deleted before its
# servers stop, and a Role gone under a running server would show as refused calls.
HOLD = "e2e.backup-guard.longhorn.io/server-running"


def server_kubeconfig(kubectl, admin_kubeconfig: Path, ns: str, lease: str, path: Path) -> Path:
    """Applies the chart's RBAC for (ns, lease), held by a finalizer until `release`, and writes a
    kubeconfig with a token of its ServiceAccount."""
    objects = render(ns, lease)
    for o in objects:
        o["metadata"]["finalizers"] = [HOLD]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    [sa] = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    config = yaml.safe_load(Path(admin_kubeconfig).read_text())
    with client.ApiClient(_admin_configuration(admin_kubeconfig)) as api_client:
        token = client.CoreV1Api(api_client).create_namespaced_service_account_token(
            sa, ns, client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    cluster = config["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa}}],
        "current-context": sa}))
    return path


def release(kubectl, ns: str, lease: str):
    """Lets the identity's objects go with their namespace (after its servers stopped)."""
    for kind in ("rolebinding", "role", "serviceaccount"):
        kubectl("patch", kind, lease, "-n", ns, "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}', check=False)


def _admin_configuration(admin_kubeconfig: Path) -> client.Configuration:
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(admin_kubeconfig),
                                 client_configuration=configuration)
    return configuration


def refused_calls(log_text: str) -> list[str]:
    """Log lines of calls the API server refused (RBAC)."""
    return [line for line in log_text.splitlines()
            if "HTTP 403" in line or "forbidden" in line.lower()]
