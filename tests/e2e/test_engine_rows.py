"""docs/ENGINE.md, row by row, through the real API server: every case of tests/engine/rows.json is
built on the engine's own CRDs with the engine's own typed client, deleted, and then a processor
decides. A "release" row must be gone, a "cascade" row gone with its children, a "leave" row still
there with its finalizer and no delete-custom-resource-only label, its children untouched. The unit
test processor/engine_rows_test.cc runs the same cases against the rules alone.

Cases are grouped by what they need of the namespace (the state of `default`, the confirmation
flag); each group gets a namespace and a processor of its own. Everything is built and deleted
before the processors start, so each decides from the finished picture."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from bg_e2e import FINALIZER, REPO_ROOT
from processor_support import (
    CR_ONLY_LABEL, DELETE_TARGET_ANNOTATION, TARGET_URL, Ns, brief, cleanup_namespace,
    finalizers_of, labels_of, log, obj, start_processor, volume_obj,
)

pytestmark = pytest.mark.processor

ROWS = json.loads((REPO_ROOT / "tests" / "engine" / "rows.json").read_text())["rows"]
HOLD = "example.com/hold"  # keeps a target or BackupVolume "being deleted"
LEAVE_SECONDS = 7  # longer than the processors' 5 s resync: every object was looked at again
PLURAL = {"Backup": "backups", "BackupVolume": "backupvolumes", "SystemBackup": "systembackups",
          "BackupBackingImage": "backupbackingimages", "Volume": "volumes"}


def substitute(value, values: dict):
    if isinstance(value, str):
        for k, v in values.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value


class Case:
    def __init__(self, index: int, spec: dict):
        self.spec = spec
        self.row = spec["row"]
        self.expect = spec["expect"]
        self.kind = spec["object"]["kind"]
        self.uses_default = spec.get("targetName") == "default"
        self.target = "default" if self.uses_default else f"t-{index}"
        self.target_state = spec.get("target", "available")
        self.volume = f"vol-{index}"
        self.name = self.volume if spec.get("nameAfterVolume") else f"row-{index}"
        self.children: list[str] = []
        self.values = {"$T": self.target, "$V": self.volume, "$N": self.name}

    def group(self) -> tuple:
        return (self.target_state if self.uses_default else "available",
                bool(self.spec.get("flag")))


def create(lh: Ns, body: dict, raw: bool) -> dict:
    """With the engine's typed client, or, for an object as an engine before v1.8 leaves it, as
    plain JSON (the v1.10 types would write fields those CRDs prune)."""
    if not raw:
        return lh.apply(body)[0]
    status = body.pop("status", None)
    doc = {"apiVersion": "longhorn.io/v1beta2", **body}
    lh.create(doc)
    if status:
        lh.patch_status(body["kind"], body["metadata"]["name"], status)
    return lh.get(body["kind"], body["metadata"]["name"])


def make_target(lh: Ns, name: str, state: str):
    meta = {"annotations": {DELETE_TARGET_ANNOTATION: "true"}} if name == "default" else {}
    finalizers = [HOLD] if state == "deleting" else []
    body = obj("BackupTarget", name, finalizer=False,
               spec={"backupTargetURL": TARGET_URL, "credentialSecret": "", "pollInterval": "5m0s"},
               status={"available": True}, **meta)
    if finalizers:
        body["metadata"]["finalizers"] = finalizers
    return lh.apply(body)[0]


def settle_target(lh: Ns, name: str, state: str):
    if state == "unavailable":
        lh.patch_status("BackupTarget", name, {"available": False})
    elif state == "url-empty":
        lh.patch("BackupTarget", name, {"spec": {"backupTargetURL": ""}})
    elif state in ("deleting", "gone"):
        lh.delete("BackupTarget", name)


def build(lh: Ns, case: Case, targets: dict):
    spec, raw = case.spec, bool(case.spec.get("raw"))
    if case.kind == "Backup":
        bv_state = spec.get("backupVolume", "present")
        if bv_state == "named-after-volume":
            create(lh, obj("BackupVolume", case.volume), raw=True)
        elif bv_state != "gone":
            names = [f"bv-{case.volume}"] + ([f"bv-{case.volume}-again"]
                                              if bv_state == "duplicated" else [])
            for n in names:
                bv = obj("BackupVolume", n,
                         labels={"backup-target": case.target, "backup-volume": case.volume},
                         spec={"backupTargetName": case.target, "volumeName": case.volume})
                if bv_state == "deleting":
                    bv["metadata"]["finalizers"] = [FINALIZER, HOLD]
                lh.apply(bv)
                if bv_state == "deleting":
                    lh.delete("BackupVolume", n)
    for i, child in enumerate(spec.get("children", [])):
        name = f"{case.name}-child-{i}"
        body = substitute(child, {**case.values, "$N": name})
        body["metadata"].update({"name": name, "finalizers": [FINALIZER]})
        create(lh, body, raw)
        case.children.append(name)

    body = substitute(spec["object"], case.values)
    if case.kind == "Volume":
        body = {**volume_obj(case.name, body["spec"]["Standby"]), "kind": "Volume"}
    body["metadata"]["name"] = case.name
    body["metadata"]["finalizers"] = [FINALIZER]
    if body["metadata"].get("ownerReferences") == "$OWNER":
        body["metadata"]["ownerReferences"] = [{
            "apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget", "name": case.target,
            "uid": spec.get("ownerUid", targets[case.target]["metadata"]["uid"])}]
    labels = body["metadata"].get("labels") or {}
    # The validating webhook requires the backup-volume label on CREATE: such a Backup gets it,
    # and loses it afterwards (UPDATE of Backups is not intercepted).
    strip_volume_label = case.kind == "Backup" and "backup-volume" not in labels
    if strip_volume_label:
        body["metadata"]["labels"] = {**labels, "backup-volume": case.volume}
    create(lh, body, raw)
    if strip_volume_label:
        lh.patch("Backup", case.name, {"metadata": {"labels": {"backup-volume": None}}})


def outcome(lh: Ns, case: Case) -> tuple[str, str]:
    """(what happened, a description) of a case's object and children."""
    o = lh.get_or_none(case.kind, case.name)
    kids = [lh.get_or_none("Backup", n) for n in case.children]
    if o is None:
        return ("cascade" if case.children and all(k is None for k in kids) else "release",
                "gone")
    if CR_ONLY_LABEL in labels_of(o) and not spec_labelled(case):
        return "labelled", brief(o)
    if finalizers_of(o) != [FINALIZER] or not o["metadata"].get("deletionTimestamp"):
        return "changed", brief(o)
    for k in kids:
        if k is None or k["metadata"].get("deletionTimestamp") or CR_ONLY_LABEL in labels_of(k):
            return "children touched", brief(k or {})
    return "leave", brief(o)


def spec_labelled(case: Case) -> bool:
    return CR_ONLY_LABEL in (case.spec["object"]["metadata"].get("labels") or {})


def test_every_engine_md_row_through_the_api_server(backup_guard, backup_guard_factory,
                                                    custom_objects, core_v1, kubeconfig):
    cases = [Case(i, r) for i, r in enumerate(ROWS) if "object" in r]
    groups: dict[tuple, list[Case]] = {}
    for c in cases:
        groups.setdefault(c.group(), []).append(c)
    namespaces = []
    try:
        lhs = {}
        for n, (key, members) in enumerate(sorted(groups.items())):
            ns = f"bg-rows-{n}-{int(time.time() * 1000) % 100000}"
            core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            namespaces.append(ns)
            lh = lhs[key] = Ns(custom_objects, ns, kubeconfig)
            default_state, flag = key
            lh.set_flag("true" if flag else "false")
            targets = {"default": make_target(lh, "default", default_state)}
            for c in members:
                if not c.uses_default:
                    targets[c.target] = make_target(lh, c.target, c.target_state)
            for c in members:
                build(lh, c, targets)
            settle_target(lh, "default", default_state)
            for c in members:
                if not c.uses_default:
                    settle_target(lh, c.target, c.target_state)
            for c in members:
                lh.delete(c.kind, c.name)
                if c.kind == "SystemBackup" and "ownerReferences" not in c.spec["object"]["metadata"]:
                    # Made before the upgrade: no owner reference (nothing adds one to an object
                    # being deleted).
                    lh.patch("SystemBackup", c.name, {"metadata": {"ownerReferences": None}})
            log(f"group {key}: {len(members)} cases built and deleted in {ns}")

        servers = [start_processor(backup_guard_factory, lhs[key].namespace, "--release-grace", "2s")
                   for key in sorted(groups)]
        started = time.monotonic()
        pending = {(key, c.row): c for key, members in groups.items() for c in members
                   if c.expect != "leave"}
        deadline = started + 45
        while pending and time.monotonic() < deadline:
            for (key, row), c in list(pending.items()):
                if outcome(lhs[key], c)[0] == c.expect:
                    del pending[(key, row)]
            time.sleep(0.3)
        time.sleep(max(0.0, LEAVE_SECONDS - (time.monotonic() - started)))
        wrong = []
        for key, members in sorted(groups.items()):
            for c in members:
                got, what = outcome(lhs[key], c)
                if got != c.expect:
                    wrong.append(f"{c.row}: expected {c.expect}, got {got}: {what}")
        log(f"{len(cases)} rows decided; {len(wrong)} wrong")
        assert not wrong, "\n".join(wrong) + "\n\nprocessor logs:\n" + "\n---\n".join(
            s.log_tail(15) for s in servers)
    finally:
        for ns in namespaces:
            cleanup_namespace(custom_objects, core_v1, ns)
