"""kubeconfig as kubectl reads it, against the real API server: an exec credential plugin that
prints a ServiceAccount token made with `kubectl create token`, its token refreshed when the
plugin's expirationTimestamp passes and when the API server answers 401, $KUBECONFIG merged from
two files, and --context.

The plugin is a small shell script written by each test. It appends one JSON line per run to a
log (the KUBERNETES_EXEC_INFO it got, whether it had a standard input), and the tests assert on
that log; the commands run are `backup-guard uninstall --dry-run` (lists, deletes nothing) and
`backup-guard serve`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bg_e2e import BackupGuardServer, backup_guard_bin, wait_until
from processor_support import log

EXEC_API = "client.authentication.k8s.io/v1"
SA_NAMESPACE = "default"


@pytest.fixture(scope="module")
def admin(kubeconfig) -> dict:
    """The admin kubeconfig of the control plane, as a dict (one cluster, one admin user)."""
    return yaml.safe_load(Path(kubeconfig).read_text())


@pytest.fixture(scope="module")
def sa_token(kubectl) -> str:
    """A token of a ServiceAccount bound to cluster-admin, from `kubectl create token`."""
    sa = "bg-e2e-exec-plugin"
    kubectl("create", "serviceaccount", "-n", SA_NAMESPACE, sa, check=False)
    kubectl("create", "clusterrolebinding", sa, "--clusterrole=cluster-admin",
            f"--serviceaccount={SA_NAMESPACE}:{sa}", check=False)
    token = kubectl("create", "token", "-n", SA_NAMESPACE, sa, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, f"not a JWT: {token[:20]}..."
    yield token
    kubectl("delete", "clusterrolebinding", sa, "--ignore-not-found", check=False)
    kubectl("delete", "serviceaccount", "-n", SA_NAMESPACE, sa, "--ignore-not-found", check=False)


class Plugin:
    """An exec plugin script in `directory`: prints `tokens[i]` on its i-th run (the last one
    after that), with an expirationTimestamp `expires_in` seconds ahead when set, and logs each
    run to runs.jsonl."""

    def __init__(self, directory: Path, tokens: list[str], expires_in: int | None = None):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "runs.jsonl"
        for i, token in enumerate(tokens):
            (directory / f"token-{i + 1}").write_text(token)
        expiry = (f'expiry=$(date -u -d "+{expires_in} seconds" +%Y-%m-%dT%H:%M:%SZ)\n'
                  'status=\'"token":"\'$token\'","expirationTimestamp":"\'$expiry\'"\'\n'
                  if expires_in is not None else 'status=\'"token":"\'$token\'"\'\n')
        self.path = directory / "get-token"
        self.path.write_text(
            "#!/bin/sh\n"
            f"dir={directory}\n"
            'n=$(( $(cat "$dir/runs.jsonl" 2>/dev/null | wc -l) + 1 ))\n'
            f"last={len(tokens)}\n"
            '[ "$n" -gt "$last" ] && i=$last || i=$n\n'
            'token=$(cat "$dir/token-$i")\n'
            'if [ -t 0 ]; then tty=true; else tty=false; fi\n'
            'printf \'{"run":%s,"arg":"%s","env":"%s","stdin_tty":%s,"info":%s}\\n\' '
            '"$n" "$1" "$PLUGIN_ENV" "$tty" "$KUBERNETES_EXEC_INFO" >> "$dir/runs.jsonl"\n'
            + expiry +
            f"echo '{{\"apiVersion\":\"{EXEC_API}\",\"kind\":\"ExecCredential\","
            "\"status\":{'\"$status\"'}}'\n")
        self.path.chmod(0o755)

    def runs(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def exec_user(plugin: Plugin) -> dict:
    return {"exec": {"apiVersion": EXEC_API, "command": str(plugin.path), "args": ["from-args"],
                     "env": [{"name": "PLUGIN_ENV", "value": "from-env"}],
                     "interactiveMode": "IfAvailable", "provideClusterInfo": True}}


def write_kubeconfig(path: Path, clusters=(), users=(), contexts=(), current: str | None = None):
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": n, "cluster": c} for n, c in clusters],
           "users": [{"name": n, "user": u} for n, u in users],
           "contexts": [{"name": n, "context": c} for n, c in contexts]}
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def admin_parts(admin: dict) -> tuple[dict, dict]:
    return admin["clusters"][0]["cluster"], admin["users"][0]["user"]


def uninstall_dry_run(*args, env_kubeconfig: str | None = None, home: Path | None = None,
                      timeout: float = 120) -> subprocess.CompletedProcess:
    """`backup-guard uninstall --dry-run` in a namespace without engine objects (confirmed by
    typing it, as it has no engine Setting): it only lists."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    if env_kubeconfig is not None:
        env["KUBECONFIG"] = env_kubeconfig
    if home is not None:
        env["HOME"] = str(home)
    ns = "bg-e2e-kubeconfig-empty"
    cmd = [str(backup_guard_bin()), "uninstall", "--dry-run", "--namespace", ns,
           "--confirm-namespace", ns, *map(str, args)]
    log("running " + " ".join(cmd[1:]) + (f" with KUBECONFIG={env_kubeconfig}"
                                          if env_kubeconfig is not None else ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    log(f"uninstall exited {proc.returncode}; stderr: {proc.stderr.strip()[-2000:]}")
    return proc


def test_exec_plugin_token_from_kubectl_create_token_reaches_the_api(admin, sa_token, tmp_path):
    cluster, _ = admin_parts(admin)
    plugin = Plugin(tmp_path / "plugin", [sa_token])
    kc = write_kubeconfig(tmp_path / "config", clusters=[("e2e", cluster)],
                          users=[("sa", exec_user(plugin))],
                          contexts=[("sa", {"cluster": "e2e", "user": "sa"})], current="sa")
    proc = uninstall_dry_run("--kubeconfig", kc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = plugin.runs()
    # One process, one token: the plugin ran once however many requests the command made.
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["arg"] == "from-args" and run["env"] == "from-env"
    assert run["stdin_tty"] is False
    assert run["info"]["apiVersion"] == EXEC_API and run["info"]["kind"] == "ExecCredential"
    # IfAvailable without a terminal: not interactive.
    assert run["info"]["spec"]["interactive"] is False
    assert run["info"]["spec"]["cluster"]["server"] == cluster["server"].rstrip("/")
    # provideClusterInfo: the CA goes as data, whichever way the kubeconfig names it.
    ca = cluster.get("certificate-authority-data") or \
        base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    assert run["info"]["spec"]["cluster"]["certificate-authority-data"] == ca


def test_a_token_the_api_server_refuses_is_replaced_by_running_the_plugin_again(
        admin, sa_token, tmp_path):
    cluster, _ = admin_parts(admin)
    # The first run prints a token the API server does not know: 401, then the plugin runs again.
    plugin = Plugin(tmp_path / "plugin", ["not-a-valid-token", sa_token])
    kc = write_kubeconfig(tmp_path / "config", clusters=[("e2e", cluster)],
                          users=[("sa", exec_user(plugin))],
                          contexts=[("sa", {"cluster": "e2e", "user": "sa"})], current="sa")
    proc = uninstall_dry_run("--kubeconfig", kc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["run"] for r in plugin.runs()] == [1, 2]


def test_an_expiring_exec_token_is_refreshed_while_the_server_runs(admin, sa_token, cert_dir,
                                                                   tmp_path):
    cluster, _ = admin_parts(admin)
    # The token itself is valid for an hour; the plugin says it expires in 2 s, so a server that
    # keeps calling the API must run the plugin again and again.
    plugin = Plugin(tmp_path / "plugin", [sa_token], expires_in=2)
    kc = write_kubeconfig(tmp_path / "config", clusters=[("e2e", cluster)],
                          users=[("sa", exec_user(plugin))],
                          contexts=[("sa", {"cluster": "e2e", "user": "sa"})], current="sa")
    server = BackupGuardServer(kc, cert_dir, log_dir=tmp_path, name="exec-refresh",
                               extra_args=["--leader-elect=false", "--api-probe-interval", "1s",
                                           "--lookup-cache-ttl", "0"])
    server.start(timeout=60)
    try:
        wait_until(lambda: len(plugin.runs()) >= 3, timeout=60,
                   message="the exec plugin to run again after its tokens expired")
        # Still ready: the API keeps answering with the refreshed tokens.
        server.wait_ready(30)
        log(f"plugin runs: {len(plugin.runs())}")
    finally:
        tail = server.log_tail(400)
        server.stop()
    assert tail.count("exec credential plugin gave a token") >= 3, tail
    # Refreshed because the timestamp passed, before the API server could refuse a token.
    assert "refused the exec plugin's token" not in tail, tail


def test_kubeconfig_merged_from_two_files_and_context_switch(admin, sa_token, tmp_path):
    cluster, admin_user = admin_parts(admin)
    plugin = Plugin(tmp_path / "plugin", [sa_token])
    # First file: the current context and the plugin user, but no cluster entry. Second file: the
    # cluster, an admin context, and a "sa" user that the first file's shadows.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_kubeconfig(tmp_path / "a" / "config", users=[("sa", exec_user(plugin))],
                             contexts=[("via-plugin", {"cluster": "e2e", "user": "sa"})],
                             current="via-plugin")
    second = write_kubeconfig(tmp_path / "b" / "config", clusters=[("e2e", cluster)],
                              users=[("sa", {"token": "shadowed-and-never-sent"}),
                                     ("admin", admin_user)],
                              contexts=[("admin", {"cluster": "e2e", "user": "admin"}),
                                        ("broken", {"cluster": "e2e", "user": "nobody"})],
                              current="admin")
    merged = f"{first}:{tmp_path / 'missing'}:{second}"

    proc = uninstall_dry_run(env_kubeconfig=merged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(plugin.runs()) == 1, "the first file's current-context and user should win"

    # --context switches to the second file's admin context: a client certificate, no plugin.
    proc = uninstall_dry_run("--context", "admin", env_kubeconfig=merged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(plugin.runs()) == 1

    # A context whose user exists in neither file is an error naming the field.
    proc = uninstall_dry_run("--context", "broken", env_kubeconfig=merged)
    assert proc.returncode != 0
    assert "contexts[1].context.user" in proc.stderr and '"nobody" not found' in proc.stderr, \
        proc.stderr
    proc = uninstall_dry_run("--context", "no-such-context", env_kubeconfig=merged)
    assert proc.returncode != 0 and 'context "no-such-context" not found' in proc.stderr

    # --kubeconfig wins over $KUBECONFIG: only the second file, whose current context is admin.
    proc = uninstall_dry_run("--kubeconfig", second, env_kubeconfig=str(first))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(plugin.runs()) == 1


def test_home_kube_config_is_the_fallback(admin, sa_token, tmp_path):
    cluster, _ = admin_parts(admin)
    plugin = Plugin(tmp_path / "plugin", [sa_token])
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    write_kubeconfig(home / ".kube" / "config", clusters=[("e2e", cluster)],
                     users=[("sa", exec_user(plugin))],
                     contexts=[("sa", {"cluster": "e2e", "user": "sa"})], current="sa")
    proc = uninstall_dry_run(home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(plugin.runs()) == 1
    # No flag, no $KUBECONFIG, no pod and no ~/.kube/config: a clear error.
    proc = uninstall_dry_run(home=tmp_path / "empty-home")
    assert proc.returncode != 0 and "no cluster" in proc.stderr, proc.stderr
