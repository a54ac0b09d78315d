"""`backup-guard uninstall`'s receipt, `backup-guard verify`, and stale webhooks, against the real
control plane (docs/CONTRACT.md "Uninstall").

Each test works in a namespace of its own. The dead webhook matches only that namespace, so no
other test is ever refused by it, and it is deleted afterwards whatever happens.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from bg_e2e import backup_guard_bin, free_port
from processor_support import (  # noqa: F401 - fixtures
    MUTATING_CONFIG, TARGET_URL, VALIDATING_CONFIG, backup_obj, default_target, log, ns_lh, poll,
    populate, proc_ns, run_uninstall, system_backup_obj,
)

RECEIPT_CONFIGMAP = "backup-guard-uninstall-receipt"
DEAD = "bg-receipt-dead"


def verify(kubeconfig, ns: str, receipt, *args) -> subprocess.CompletedProcess:
    cmd = [str(backup_guard_bin()), "verify", "--kubeconfig", str(kubeconfig), "--namespace", ns,
           "--receipt", str(receipt), *map(str, args)]
    log("running " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    log(f"verify exited {proc.returncode}; stdout:\n{proc.stdout}stderr:\n{proc.stderr}")
    return proc


def volume_of(sc, name: str) -> str:
    # populate() puts Backup i on vols[i % 3].
    return ["vol-1", "vol-2", "vol-dr"][int(name.split("-")[1]) % 3]


def test_receipt_lists_completed_backups_and_ready_system_backups_and_verify_finds_them_back(
        backup_guard, kubeconfig, ns_lh, core_v1, tmp_path):
    lh = ns_lh
    ns = lh.namespace
    sc = populate(lh, webhook=True)
    lh.set_flag("true")
    receipt_file = tmp_path / "receipt.json"

    # The dry run says what the receipt would hold and writes nothing.
    proc = run_uninstall(kubeconfig, ns, "--dry-run", "--receipt", str(receipt_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"receipt (not written in a dry run): {len(sc.completed_backups)} Completed Backups, "
            f"{len(sc.system_backups)} Ready SystemBackups") in proc.stdout
    assert not receipt_file.exists()
    with pytest.raises(ApiException) as e:
        core_v1.read_namespaced_config_map(RECEIPT_CONFIGMAP, ns)
    assert e.value.status == 404

    proc = run_uninstall(kubeconfig, ns, "--force", "--timeout", "120s", "--receipt", str(receipt_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not lh.leftovers(), lh.leftovers()
    assert f"written to {receipt_file} and ConfigMap {ns}/{RECEIPT_CONFIGMAP}" in proc.stdout

    receipt = json.loads(receipt_file.read_text())
    assert receipt["namespace"] == ns
    assert sorted(b["name"] for b in receipt["backups"]) == sorted(sc.completed_backups)
    for b in receipt["backups"]:
        vol = volume_of(sc, b["name"])
        assert b == {"name": b["name"], "volume": vol, "target": "default",
                     "url": f"{TARGET_URL}?backup={b['name']}&volume={vol}"}, b
    assert sorted(s["name"] for s in receipt["systemBackups"]) == sorted(sc.system_backups)
    for s in receipt["systemBackups"]:
        assert s["target"] == "default" and s["version"] == "v1.10.0", s
    # The ConfigMap outlives the uninstall and holds the same receipt.
    cm = core_v1.read_namespaced_config_map(RECEIPT_CONFIGMAP, ns)
    assert json.loads(cm.data["receipt.json"]) == receipt

    # A reinstall: the engine's target sync brings back some of them.
    default_target(lh)
    back = sc.completed_backups[:3]
    lh.apply(*[backup_obj(n, volume_of(sc, n), "default", "Completed") for n in back],
             system_backup_obj(sc.system_backups[0]))
    # One comes back under another volume: not the same backup.
    wrong = sc.completed_backups[3]
    lh.apply(backup_obj(wrong, "vol-other", "default", "Completed"))

    proc = verify(kubeconfig, ns, receipt_file, "-o", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    missing = {m["name"]: m["why"] for m in report["missing"]}
    expected_missing = set(sc.completed_backups[3:]) | set(sc.system_backups[1:])
    assert set(missing) == expected_missing, missing
    assert missing[wrong] == f'found with volume "vol-other", not "{volume_of(sc, wrong)}"'
    assert sorted(b["name"] for b in report["back"]) == sorted(back + sc.system_backups[:1])
    assert report["allBack"] is False

    table = verify(kubeconfig, ns, receipt_file)
    assert table.returncode == 1
    for name in expected_missing:
        assert f" {name}" in table.stdout, (name, table.stdout)

    # Everything back.
    lh.delete("Backup", wrong)
    lh.remove_finalizers("Backup", wrong)
    lh.wait_gone("Backup", wrong)
    lh.apply(*[backup_obj(n, volume_of(sc, n), "default", "Completed")
               for n in sc.completed_backups[3:]],
             *[system_backup_obj(n) for n in sc.system_backups[1:]])
    proc = verify(kubeconfig, ns, receipt_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "none missing" in proc.stdout


def test_verify_rejects_a_bad_receipt_and_an_unreadable_cluster(kubeconfig, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "ConfigMap"}')
    proc = verify(kubeconfig, "longhorn-system", bad)
    assert proc.returncode == 2
    assert "not a backup-guard uninstall receipt" in proc.stderr
    proc = verify(kubeconfig, "longhorn-system", tmp_path / "absent.json")
    assert proc.returncode == 2 and "--receipt" in proc.stderr, proc.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"kind": "BackupGuardUninstallReceipt", "namespace": "x",
                                "backups": [], "systemBackups": []}))
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text("\n".join(
        f"    server: https://127.0.0.1:{free_port()}" if l.strip().startswith("server:") else l
        for l in open(kubeconfig).read().splitlines()) + "\n")
    proc = verify(dead, "longhorn-system", good)
    assert proc.returncode == 2 and "could not be read" in proc.stderr, proc.stderr


def dead_webhook(ns: str) -> dict:
    """failurePolicy Fail on Backup DELETE in `ns` only, at a closed local port."""
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": DEAD},
            "webhooks": [{
                "name": f"{DEAD}.example.com",
                "clientConfig": {"url": f"https://127.0.0.1:{free_port()}/validate"},
                "rules": [{"apiGroups": ["longhorn.io"], "apiVersions": ["v1beta2"],
                           "resources": ["backups"], "operations": ["DELETE"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "failurePolicy": "Fail", "sideEffects": "None",
                "admissionReviewVersions": ["v1"], "timeoutSeconds": 5}]}


def test_a_dead_webhook_is_reported_and_removed_and_cannot_hold_the_uninstall(
        backup_guard, kubeconfig, api_client, ns_lh, tmp_path):
    lh = ns_lh
    ns = lh.namespace
    adm = client.AdmissionregistrationV1Api(api_client)
    populate(lh, webhook=True, backups=6)
    lh.set_flag("true")
    adm.create_validating_webhook_configuration(dead_webhook(ns))
    try:
        # For real: the API server now refuses a Backup DELETE in this namespace.
        def refused():
            try:
                lh.delete("Backup", "backup-00", dry_run="All")
            except ApiException as e:
                return e.status == 500 and "failed calling webhook" in str(e.body)
            return False
        poll(refused, timeout=30, message="the dead webhook to refuse a Backup DELETE")

        proc = run_uninstall(kubeconfig, ns, "--dry-run")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"ValidatingWebhookConfiguration {DEAD} (webhook {DEAD}.example.com, " \
               "failurePolicy Fail" in proc.stdout, proc.stdout
        assert "does not answer" in proc.stdout
        assert adm.read_validating_webhook_configuration(DEAD)

        proc = run_uninstall(kubeconfig, ns, "--force", "--remove-stale-webhooks",
                             "--timeout", "120s", "--receipt", str(tmp_path / "receipt.json"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"deleted stale ValidatingWebhookConfiguration {DEAD}" in proc.stdout
        assert not lh.leftovers(), lh.leftovers()
        with pytest.raises(ApiException) as e:
            adm.read_validating_webhook_configuration(DEAD)
        assert e.value.status == 404
        # backup-guard's own live configurations are not stale and stay.
        assert adm.read_mutating_webhook_configuration(MUTATING_CONFIG)
        assert adm.read_validating_webhook_configuration(VALIDATING_CONFIG)
        assert "deleted stale" not in proc.stdout.replace(
            f"deleted stale ValidatingWebhookConfiguration {DEAD}", "")
    finally:
        try:
            adm.delete_validating_webhook_configuration(DEAD)
        except ApiException as e:
            if e.status != 404:
                raise
