"""docs/CONTRACT.md's "Upgrade" acceptance scenario across the engine's CRD versions.

The scenario's objects are made under the oldest pinned engine's CRDs (v1.7.2) while no
backup-guard webhook is registered, as an older release leaves them: SystemBackups without owner
references, and the fields that v1.7.2 does not have pruned (Backup status.backupTargetName,
BackupVolume spec.backupTargetName/volumeName, ...). backup-guard's processor starts for the
namespace, and the engine's CRDs are then upgraded in place through every later pinned version
(v1.8.0, v1.9.0, v1.10.0; tests/engine/versions.txt) while it runs. After each step:

- the API server serves the new schema (a dry-run create keeps exactly the fields it has), every
  longhorn.io CRD still has status.storedVersions [v1beta2], and the installed schemas of the kinds
  backup-guard reads are the file's;
- backup-guard still serves: both servers answer /readyz, the processor still holds its lease, the
  API server's calls to the mutating and validating webhooks are answered, and the processor still
  sees and releases a failed Backup that is deleted;
- no scenario object was deleted, released, labelled or rewritten; the only write allowed is a
  SystemBackup's new owner reference to `default` (SPEC's upgrade rule); a field can only go
  because the new schema does not have it.

Then every SystemBackup has its BackupTarget owner reference, and once the confirmation flag is
set `backup-guard uninstall` completes with nothing left, releasing nothing before the rules allow.

The plane must have started on v1.7.2's CRDs (BG_ENGINE_VERSION=v1.7.2): selected on any other,
the test fails rather than skips. run-e2e.sh leaves it out unless BG_PYTEST_MARK selects it, and
tests/e2e/run-engine-versions.sh selects it explicitly on v1.7.2. It runs after every other test
(marker engine_upgrade), and the CRDs the plane started with are put back afterwards.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests
import yaml

from bg_e2e import (
    FINALIZER, GROUP, NAMESPACE, REPO_ROOT, VERSION, Longhorn, api_error, error_message, run,
    unique,
)
from processor_support import (  # noqa: F401 - fixtures
    CR_ONLY_LABEL, UNINSTALL_KINDS, WatchRecorder, WebhooksAbsent, backup_obj, brief,
    check_release_order, finalizers_of, labels_of, log, ns_lh, poll, populate, proc_ns,
    run_uninstall, scrape, start_processor, target_owner_refs, volume_obj,
)
from test_uninstall import WATCHED, assert_uninstalled, expected_owner_ref

ENGINE_DIR = REPO_ROOT / "tests" / "engine"
UPGRADE_FROM = "v1.7.2"
# The kinds whose schemas backup-guard reads; their installed v1beta2 schemas are compared with
# the file's after each step.
KINDS = ["BackupTarget", "BackupVolume", "Backup", "SystemBackup", "BackupBackingImage", "Volume",
         "Setting"]


def pinned_versions() -> list[str]:
    versions = []
    for line in (ENGINE_DIR / "versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            versions.append(line.split()[0])
    return versions


def crd_file(version: str) -> str:
    return run([str(ENGINE_DIR / "engine-crds.sh"), version]).stdout.strip().splitlines()[-1]


def _props(node: dict, path: str = "") -> set[str]:
    out = set()
    if not isinstance(node, dict):
        return out
    for key, sub in (node.get("properties") or {}).items():
        out.add(f"{path}.{key}")
        out |= _props(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out |= _props(node["items"], f"{path}[]")
    return out


def schema_of(crd: dict) -> dict:
    """What is compared of one CRD: its versions (name, served, storage) and every property path
    of its v1beta2 schema."""
    spec = crd["spec"]
    [v1beta2] = [v for v in spec["versions"] if v["name"] == VERSION]
    return {"versions": sorted((v["name"], bool(v.get("served")), bool(v.get("storage")))
                               for v in spec["versions"]),
            "paths": _props(v1beta2["schema"]["openAPIV3Schema"])}


class CrdSet:
    """The engine's CRDs of one pinned version, read from tests/engine/engine-crds.sh's file."""

    def __init__(self, version: str):
        self.version = version
        self.path = crd_file(version)
        with open(self.path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        self.names = sorted(d["metadata"]["name"] for d in docs)
        self.by_kind = {d["spec"]["names"]["kind"]: schema_of(d) for d in docs}

    def fields(self, kind: str, section: str) -> set[str]:
        """Top-level keys of `spec` or `status` that this version's schema of `kind` has."""
        prefix = f".{section}."
        return {p[len(prefix):] for p in self.by_kind[kind]["paths"]
                if p.startswith(prefix) and "." not in p[len(prefix):]}


# --------------------------------------------------------------------------------------------
# which schema the API server serves


def probe_volume_spec() -> dict:
    return volume_obj("probe", standby=False)["spec"]


def served_schema(longhorn_system: Longhorn) -> set[str]:
    """The Volume spec keys a dry-run create keeps: the API server prunes the fields that the
    schema it serves does not have."""
    body = Longhorn.body("Volume", unique("schema-probe"), spec=probe_volume_spec())
    got = longhorn_system.create(body, dry_run="All")
    return set(got.get("spec") or {})


def wait_served(longhorn_system: Longhorn, crds: CrdSet, timeout: float = 60):
    """Waits until the API server serves `crds`' schemas (it swaps a CRD's storage
    asynchronously after an update)."""
    want = set(probe_volume_spec()) & crds.fields("Volume", "spec")
    last = {}

    def served():
        last["keys"] = served_schema(longhorn_system)
        return last["keys"] == want
    poll(served, timeout=timeout, interval=0.2,
         message=lambda: f"the API server to serve {crds.version}'s Volume schema: a dry-run create "
                         f"keeps {sorted(last.get('keys', []))}, expected {sorted(want)}")


def apply_crds(kubectl, crds: CrdSet, longhorn_system: Longhorn):
    """Upgrades (or downgrades) the engine's CRDs in place, as register.sh installs them: a
    server-side apply that takes over every field, then Established and the new schema served."""
    t = time.monotonic()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", crds.path)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds.path)
    wait_served(longhorn_system, crds)
    log(f"CRDs of {crds.version} applied and served in {time.monotonic() - t:.1f}s")


def check_installed(kubectl, crds: CrdSet):
    """Every longhorn.io CRD of the file is installed, Established, with storedVersions
    [v1beta2]; the kinds backup-guard reads have exactly the file's versions and schemas."""
    items = json.loads(kubectl("get", "crd", "-o", "json").stdout)["items"]
    installed = {c["metadata"]["name"]: c for c in items if c["spec"]["group"] == GROUP}
    problems = []
    missing = sorted(set(crds.names) - set(installed))
    if missing:
        problems.append(f"CRDs missing: {missing}")
    for name in crds.names:
        crd = installed.get(name)
        if crd is None:
            continue
        stored = (crd.get("status") or {}).get("storedVersions")
        if stored != [VERSION]:
            problems.append(f"{name}: status.storedVersions is {stored}, expected [{VERSION}]")
        established = [c for c in (crd.get("status") or {}).get("conditions") or []
                       if c["type"] == "Established"]
        if not established or established[0]["status"] != "True":
            problems.append(f"{name}: not Established: {established}")
        kind = crd["spec"]["names"]["kind"]
        if kind in KINDS:
            got, want = schema_of(crd), crds.by_kind[kind]
            if got["versions"] != want["versions"]:
                problems.append(f"{kind}: versions {got['versions']}, the file has "
                                f"{want['versions']}")
            if got["paths"] != want["paths"]:
                problems.append(f"{kind}: the installed v1beta2 schema differs from {crds.version}'s:"
                                f" extra {sorted(got['paths'] - want['paths'])[:10]}, missing "
                                f"{sorted(want['paths'] - got['paths'])[:10]}")
    assert not problems, f"after applying {crds.version}'s CRDs:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# backup-guard still serves


def check_serving(lh, server, session_server, target_uid: str, step: str):
    for s in (server, session_server):
        assert s.running(), f"{step}: backup-guard exited:\n{s.log_tail()}"
        r = requests.get(f"{s.url}/readyz", verify=str(s.ca_file), timeout=5)
        assert r.status_code == 200, f"{step}: {s.url}/readyz answered {r.status_code} {r.text}"
    assert scrape(server).value("backup_guard_leader") == 1, \
        f"{step}: the processor lost its lease:\n{server.log_tail()}"
    # The API server calls the session server's webhooks: a SystemBackup is mutated (its lookup of
    # the default BackupTarget goes through the upgraded CRD) ...
    sb = lh.create(Longhorn.body("SystemBackup", unique("probe-sb")), dry_run="All")
    assert finalizers_of(sb) == [FINALIZER], f"{step}: not mutated: {brief(sb)}"
    assert target_owner_refs(sb) == [expected_owner_ref(target_uid)], f"{step}: {brief(sb)}"
    assert (sb.get("spec") or {}).get("volumeBackupPolicy") == "if-not-present", brief(sb)
    # ... and a Backup without the backup-volume label is refused by the validating webhook.
    e = api_error(lh.create, Longhorn.body("Backup", unique("probe-backup"),
                                           spec={"snapshotName": "probe"}), dry_run="All")
    assert e.status == 422 and "backup-volume" in error_message(e), \
        f"{step}: the validating webhook did not answer as expected: {e.status} {error_message(e)}"


def check_processor_releases(lh, server, step: str):
    """A failed Backup (state Error, no backup-volume label: it never uploaded) that is deleted
    now is released by the processor: it still watches Backups after the CRD was swapped."""
    name = f"probe-failed-{step.replace('.', '-')}"
    labels = {"backup-target": "default", "backup-volume": "vol-1"}  # required on CREATE
    lh.apply(backup_obj(name, "vol-1", "default", "Error", labels=labels))
    lh.patch("Backup", name, {"metadata": {"labels": {"backup-volume": None}}})
    t = time.monotonic()
    lh.delete("Backup", name)
    poll(lambda: lh.gone("Backup", name), timeout=20,
         message=lambda: f"{step}: the processor to release the deleted failed Backup {name}: "
                         f"{brief(lh.get_or_none('Backup', name) or {})}\n{server.log_tail()}")
    log(f"{step}: a deleted failed Backup was released in {time.monotonic() - t:.2f}s")


# --------------------------------------------------------------------------------------------
# nothing was changed wrongly


def scenario_objects(sc) -> list[tuple[str, str]]:
    return ([("Volume", n) for n in sc.volumes] + [("BackupTarget", "default")]
            + [("BackupVolume", n) for n in sc.backup_volumes]
            + [("Backup", n) for n in sc.backups]
            + [("SystemBackup", n) for n in sc.system_backups]
            + [("BackupBackingImage", n) for n in sc.backing_images])


def snapshot(lh, sc) -> dict:
    return {(k, n): lh.get(k, n) for k, n in scenario_objects(sc)}


def check_unchanged(lh, sc, base: dict, crds: CrdSet, target_uid: str, step: str):
    """Compares every scenario object with `base`, taken before backup-guard started."""
    problems, pruned = [], []
    for (kind, name), before in base.items():
        now = lh.get_or_none(kind, name)
        if now is None:
            problems.append(f"{kind} {name} is gone")
            continue
        md, md0 = now["metadata"], before["metadata"]
        if md.get("deletionTimestamp"):
            problems.append(f"{kind} {name} is being deleted: {brief(now)}")
        for key in ("finalizers", "labels", "annotations"):
            if md.get(key) != md0.get(key):
                problems.append(f"{kind} {name}: metadata.{key} {md0.get(key)} -> {md.get(key)}")
        if kind == "SystemBackup":
            refs = md.get("ownerReferences")
            if refs and refs != [expected_owner_ref(target_uid)]:
                problems.append(f"SystemBackup {name}: owner references {refs}")
        elif md["resourceVersion"] != md0["resourceVersion"] or \
                md.get("ownerReferences") != md0.get("ownerReferences"):
            problems.append(f"{kind} {name} was written (resourceVersion {md0['resourceVersion']}"
                            f" -> {md['resourceVersion']}): {brief(now)}")
        for section in ("spec", "status"):
            old, new = before.get(section) or {}, now.get(section) or {}
            for key in new:
                if key not in old:
                    problems.append(f"{kind} {name}: {section}.{key} appeared: {new[key]!r}")
                elif new[key] != old[key]:
                    problems.append(f"{kind} {name}: {section}.{key} {old[key]!r} -> {new[key]!r}")
            for key in old:
                if key in new:
                    continue
                if key in crds.fields(kind, section):
                    problems.append(f"{kind} {name}: {section}.{key} was lost, and {crds.version}'s"
                                    f" schema has it")
                else:  # read through a schema that no longer has it: pruned, not a write
                    pruned.append(f"{kind}.{section}.{key}")
    extra = {k: sorted(set(lh.names(k)) - {n for kk, n in base if kk == k}) for k in UNINSTALL_KINDS}
    extra = {k: v for k, v in extra.items() if v}
    if extra:
        problems.append(f"objects that are not the scenario's: {extra}")
    assert not problems, f"{step}:\n" + "\n".join(problems)
    if pruned:
        log(f"{step}: fields pruned on read by {crds.version}'s schema: {sorted(set(pruned))}")


def check_made_as_by_an_old_release(lh, sc):
    """What v1.7.2's CRDs and the missing webhooks left: no owner references, the fields v1.7.2
    does not have pruned (the engine's v1.10.0 types sent them all)."""
    for name in sc.system_backups:
        sb = lh.get("SystemBackup", name)
        assert not sb["metadata"].get("ownerReferences"), f"made as by an old release: {brief(sb)}"
        assert finalizers_of(sb) == [FINALIZER], brief(sb)
    for name in sc.completed_backups:
        b = lh.get("Backup", name)
        assert "backupTargetName" not in b["status"], f"v1.7.2 prunes it: {brief(b)}"
        assert b["status"]["state"] == "Completed" and b["status"]["url"], brief(b)
    for name in sc.failed_backups:
        b = lh.get("Backup", name)
        assert "backupTargetName" not in b["status"], f"v1.7.2 prunes it: {brief(b)}"
        assert "backup-volume" not in labels_of(b), brief(b)
    for name in sc.backup_volumes:
        bv = lh.get("BackupVolume", name)
        spec = bv.get("spec") or {}
        assert "backupTargetName" not in spec and "volumeName" not in spec, \
            f"v1.7.2 prunes them: {brief(bv)} spec={spec}"
    for name in sc.backing_images:
        bbi = lh.get("BackupBackingImage", name)
        spec = bbi.get("spec") or {}
        assert "backupTargetName" not in spec and "backingImage" not in spec, \
            f"v1.7.2 prunes them: {brief(bbi)} spec={spec}"
    for name in sc.volumes:
        v = lh.get("Volume", name)
        assert "backupTargetName" not in v["spec"], f"v1.7.2 prunes it: {brief(v)}"


# --------------------------------------------------------------------------------------------


@pytest.fixture
def start_crds(kubectl, longhorn):
    """The CRDs the plane started with (which must be the oldest pinned engine's); put back
    afterwards when the test changed them, so that nothing after it sees other CRDs."""
    started_on = os.environ.get("BG_ENGINE_VERSION", "")
    if started_on != UPGRADE_FROM:
        pytest.fail(f"this test upgrades the engine's CRDs from {UPGRADE_FROM}; the control plane "
                    f"started on {started_on or '(BG_ENGINE_VERSION unset)'}. Run it with "
                    f"BG_ENGINE_VERSION={UPGRADE_FROM} (tests/e2e/run-engine-versions.sh does)")
    crds = CrdSet(UPGRADE_FROM)
    state = {"crds": crds, "changed": False}
    yield state
    if state["changed"]:
        log(f"putting the CRDs of {UPGRADE_FROM} back")
        apply_crds(kubectl, crds, longhorn)
        check_installed(kubectl, crds)


@pytest.mark.acceptance
@pytest.mark.disruptive
@pytest.mark.engine_upgrade
def test_upgrade_from_v1_7_2_crds_through_every_pinned_version_then_uninstall(
        start_crds, api_client, custom_objects, backup_guard, backup_guard_factory, kubeconfig,
        kubectl, longhorn, ns_lh):
    lh = ns_lh
    ns = lh.namespace
    versions = pinned_versions()
    assert versions[0] == UPGRADE_FROM, f"{UPGRADE_FROM} is no longer the oldest pinned: {versions}"
    chain = [CrdSet(v) for v in versions[1:]]
    # The dry-run probe must tell every version apart.
    probes = {c.version: frozenset(set(probe_volume_spec()) & c.fields("Volume", "spec"))
              for c in [start_crds["crds"], *chain]}
    assert len(set(probes.values())) == len(probes), f"the Volume probe is ambiguous: {probes}"

    # The plane really serves v1.7.2's CRDs.
    wait_served(longhorn, start_crds["crds"], timeout=5)
    check_installed(kubectl, start_crds["crds"])

    with WebhooksAbsent(api_client, custom_objects, ns):
        sc = populate(lh, webhook=False)
    check_made_as_by_an_old_release(lh, sc)
    base = snapshot(lh, sc)
    target_uid = sc.target_uid
    log(f"{sc.total()} objects made under {UPGRADE_FROM}'s CRDs with no webhook registered")

    t0 = time.monotonic()
    server = start_processor(backup_guard_factory, ns)
    check_serving(lh, server, backup_guard, target_uid, UPGRADE_FROM)
    check_unchanged(lh, sc, base, start_crds["crds"], target_uid, f"{UPGRADE_FROM}, processor running")

    for crds in chain:
        start_crds["changed"] = True
        apply_crds(kubectl, crds, longhorn)
        check_installed(kubectl, crds)
        check_serving(lh, server, backup_guard, target_uid, crds.version)
        check_processor_releases(lh, server, crds.version)
        check_unchanged(lh, sc, base, crds, target_uid, f"after the upgrade to {crds.version}")

    # SPEC's upgrade rule: every SystemBackup got its owner reference, without being updated.
    def all_owned():
        sbs = [lh.get("SystemBackup", n) for n in sc.system_backups]
        return sbs if all(target_owner_refs(sb) for sb in sbs) else None
    sbs = poll(all_owned, timeout=30, message=lambda: (
        "every SystemBackup to get its BackupTarget owner reference: "
        f"{[brief(lh.get('SystemBackup', n)) for n in sc.system_backups]}\n"
        f"processor log:\n{server.log_tail()}"))
    for sb in sbs:
        assert target_owner_refs(sb) == [expected_owner_ref(target_uid)], brief(sb)
        assert finalizers_of(sb) == [FINALIZER], brief(sb)
    check_unchanged(lh, sc, base, chain[-1], target_uid, "before the uninstall")
    log(f"upgraded through {[c.version for c in chain]} with the processor running in "
        f"{time.monotonic() - t0:.1f}s")

    rec = WatchRecorder(kubeconfig, ns, WATCHED).start()
    try:
        lh.set_flag("true")
        t = time.monotonic()
        proc = run_uninstall(kubeconfig, ns, "--release-grace", "5s", "--timeout", "120s")
        log(f"uninstall --release-grace 5s took {time.monotonic() - t:.1f}s")
    finally:
        rec.stop()
    assert_uninstalled(lh, proc, server)
    check_release_order(rec, release_grace=5)
    assert server.running(), f"the processor died:\n{server.log_tail()}"
