"""Helpers and fixtures for the finalizer-processor, uninstall and leader-election e2e tests
(test_processor.py, test_uninstall.py, test_leader_election.py).

Every test here works in a namespace of its own (`proc_ns`) and starts its own `backup-guard serve`
processes with `--namespace <that namespace>` and a lease name of its own, so the session server
(whose processor runs in longhorn-system) never acts on these objects. The session server still
answers the webhooks for every namespace: its lookups use the request's namespace.

Only the official `kubernetes` client, `requests` and the standard library are used.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import threading
import time
from calendar import timegm
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from bg_e2e import FINALIZER, GROUP, VERSION, Longhorn, backup_guard_bin, wait_until
from bgtest.metrics import Metrics as _Metrics
from bgtest.metrics import scrape_text
from bgtest.wait import wait_until as _wait_until
from engine_objects import EngineObjects, engine_objects_binary

CR_ONLY_LABEL = "longhorn.io/delete-custom-resource-only"
DELETE_TARGET_ANNOTATION = "longhorn.io/delete-backup-target-from-longhorn"
CONFIRMATION_FLAG = "deleting-confirmation-flag"
MUTATING_CONFIG = "backup-guard-mutating"
VALIDATING_CONFIG = "backup-guard-validating"
TARGET_URL = "s3://backupbucket@us-east-1/backupstore"

# The kinds an uninstall must empty, in docs/CONTRACT.md's uninstall order.
UNINSTALL_KINDS = ["Volume", "BackupTarget", "BackupVolume", "Backup", "SystemBackup",
                   "BackupBackingImage"]
# Short leader-election timings, so a restarted or second processor takes over quickly.
FAST_LEASE = ["--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s",
              "--leader-election-retry-period", "1s"]

_seq = itertools.count(1)


def log(msg: str):
    """Progress lines (visible with -s, and in the captured output of a failed test)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def poll(predicate, timeout: float, interval: float = 0.1, message="condition"):
    """Polls predicate() until truthy (returned); fails the test with `message` on timeout.
    `message` may be a callable, evaluated only on failure (for log tails and object dumps)."""
    return wait_until(predicate, timeout, interval, message)


def parse_time(ts: str) -> float:
    return float(timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))


def labels_of(obj: dict) -> dict:
    return obj.get("metadata", {}).get("labels") or {}


def finalizers_of(obj: dict) -> list:
    return obj.get("metadata", {}).get("finalizers") or []


def target_owner_refs(obj: dict) -> list[dict]:
    return [r for r in obj.get("metadata", {}).get("ownerReferences") or []
            if r.get("kind") == "BackupTarget"]


def brief(obj: dict) -> str:
    """One line describing an object's deletion state, for failure messages."""
    md = obj.get("metadata", {})
    return (f"{obj.get('kind')} {md.get('name')}: deletionTimestamp={md.get('deletionTimestamp')} "
            f"finalizers={md.get('finalizers')} labels={md.get('labels')} "
            f"owners={[r.get('name') for r in md.get('ownerReferences') or []]} "
            f"status={obj.get('status')}")


# --------------------------------------------------------------------------------------------
# namespace + clean-up


class Ns(Longhorn):
    """Longhorn helper bound to one test namespace. `apply` creates objects through the engine's
    own Go types and typed client (tests/engine), so they have exactly its field names and types."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, kubeconfig=None):
        super().__init__(api, namespace)
        self.kubeconfig = kubeconfig
        self._engine = None

    @property
    def engine(self) -> EngineObjects:
        if self._engine is None:
            kubeconfig = self.kubeconfig or os.environ.get("BG_KUBECONFIG")
            if not kubeconfig:
                pytest.fail("no kubeconfig for the engine's typed client (BG_KUBECONFIG)")
            self._engine = EngineObjects(engine_objects_binary(), kubeconfig, self.namespace)
        return self._engine

    def apply(self, *objs: dict) -> list[dict]:
        """Creates each object ({"kind", "metadata", "spec", "status"}) with the engine's typed
        client, then writes its status; returns them as the API server holds them."""
        return self.engine.apply(list(objs))

    def names(self, kind: str, label_selector: str = "") -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.list(kind, label_selector=label_selector))

    def counts(self, kinds=UNINSTALL_KINDS) -> dict:
        return {k: len(self.list(k)) for k in kinds}

    def leftovers(self, kinds=UNINSTALL_KINDS) -> list[str]:
        return [brief(o) for k in kinds for o in self.list(k)]

    def set_flag(self, value: str):
        if self.get_or_none("Setting", CONFIRMATION_FLAG) is None:
            self.create(self.body("Setting", CONFIRMATION_FLAG, value=value))
        else:
            self.patch("Setting", CONFIRMATION_FLAG, {"value": value})

    def delete_quietly(self, kind: str, name: str):
        try:
            self.delete(kind, name)
        except ApiException as e:
            if e.status != 404:
                raise

    def gone(self, kind: str, name: str) -> bool:
        return self.get_or_none(kind, name) is None


def cleanup_namespace(custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str,
                      timeout: float = 30.0):
    """Deletes every longhorn.io object of the namespace (finalizers stripped after the delete,
    so the mutating webhook never puts the SystemBackup finalizer back), then the namespace."""
    lh = Ns(custom, ns)
    problems = []
    try:
        lh.set_flag("true")  # lets the validating webhook allow the default BackupTarget delete
    except ApiException as e:
        problems.append(f"setting the flag: {e.status} {e.reason}")
    kinds = ["SystemBackup", "Backup", "BackupBackingImage", "BackupVolume", "Volume",
             "BackupTarget", "Setting"]
    for kind in kinds:
        try:
            items = lh.list(kind)
        except ApiException as e:
            problems.append(f"listing {kind}: {e.status} {e.reason}")
            continue
        for obj in items:
            name = obj["metadata"]["name"]
            try:
                lh.delete_any(kind, name)
                lh.remove_finalizers(kind, name)
            except ApiException as e:
                problems.append(f"{kind} {name}: {e.status} {e.reason}")
    def emptied() -> bool:
        left = [(k, o["metadata"]["name"]) for k in kinds for o in lh.list(k)]
        for kind, name in left:  # a finalizer may have come back on an object not yet deleting
            lh.remove_finalizers(kind, name)
        return not left

    try:
        _wait_until(emptied, timeout, 0.3, "the namespace's objects to be gone")
    except AssertionError:
        problems.append(f"objects still present after {timeout}s: {lh.leftovers(kinds)}")
    try:
        core.delete_namespace(ns)
    except ApiException as e:
        if e.status != 404:
            problems.append(f"deleting namespace: {e.status} {e.reason}")
    if problems:
        pytest.fail(f"clean-up of namespace {ns} failed: {problems}")


@pytest.fixture
def proc_ns(core_v1, custom_objects, request) -> str:
    """A fresh namespace for one processor test; every longhorn.io object in it is removed
    afterwards (finalizers stripped) and the namespace deleted."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:30].strip("-")
    name = f"bgp-{base}-{os.getpid() % 1000}-{int(time.time() * 1000) % 100000}-{next(_seq)}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    cleanup_namespace(custom_objects, core_v1, name)


@pytest.fixture
def ns_lh(custom_objects, proc_ns, kubeconfig) -> Ns:
    return Ns(custom_objects, proc_ns, kubeconfig)


# --------------------------------------------------------------------------------------------
# the scenario of docs/CONTRACT.md's acceptance tests


@dataclass
class Scenario:
    namespace: str
    target_uid: str = ""
    volumes: list = field(default_factory=list)
    backup_volumes: list = field(default_factory=list)
    completed_backups: list = field(default_factory=list)
    failed_backups: list = field(default_factory=list)
    system_backups: list = field(default_factory=list)
    backing_images: list = field(default_factory=list)

    @property
    def backups(self) -> list:
        return self.completed_backups + self.failed_backups

    def total(self) -> int:
        return (1 + len(self.volumes) + len(self.backup_volumes) + len(self.backups)
                + len(self.system_backups) + len(self.backing_images))


def obj(kind: str, name: str, labels=None, spec=None, status=None, finalizer=True, **meta) -> dict:
    """An engine object in the form `Ns.apply` takes."""
    body = {"kind": kind, "metadata": {"name": name, **meta}}
    if labels:
        body["metadata"]["labels"] = dict(labels)
    if finalizer:
        body["metadata"]["finalizers"] = [FINALIZER]
    if spec is not None:
        body["spec"] = spec
    if status is not None:
        body["status"] = status
    return body


def target_obj(name: str = "default", url: str = TARGET_URL, available: bool = True,
               finalizer: bool = True) -> dict:
    return obj("BackupTarget", name, finalizer=finalizer,
               spec={"backupTargetURL": url, "credentialSecret": "", "pollInterval": "5m0s"},
               status={"available": available})


def default_target(lh: Ns, url: str = TARGET_URL, finalizer: bool = True, name="default",
                   available: bool = True) -> dict:
    [target] = lh.apply(target_obj(name, url, available, finalizer))
    return target


def backup_volume_obj(volume: str, target: str = "default") -> dict:
    return obj("BackupVolume", f"bv-{volume}",
               labels={"backup-target": target, "backup-volume": volume},
               spec={"backupTargetName": target, "volumeName": volume})


def backup_volume(lh: Ns, volume: str, target: str = "default") -> dict:
    return lh.apply(backup_volume_obj(volume, target))[0]


def backup_obj(name: str, volume: str, target: str, state: str, labels=None) -> dict:
    completed = state == "Completed"
    return obj("Backup", name,
               labels={"backup-volume": volume, "backup-target": target} if labels is None
               else labels,
               spec={"snapshotName": f"snap-{name}", "labels": {}, "backupMode": "incremental",
                     "backupBlockSize": "2097152"},
               status={"state": state, "backupTargetName": target if completed else "",
                       "volumeName": volume,
                       "url": f"{TARGET_URL}?backup={name}&volume={volume}" if completed else "",
                       "size": "1048576" if completed else "",
                       "error": "" if completed else "failed to upload the backup: refused"})


def completed_backup(lh: Ns, name: str, volume: str, target: str = "default") -> dict:
    return lh.apply(backup_obj(name, volume, target, "Completed"))[0]


def failed_backup(lh: Ns, name: str, volume: str, webhook: bool = True,
                  target: str = "default") -> dict:
    """A Backup as a failed upload leaves it: state Error, empty status.backupTargetName, no
    backup-volume label. With the validating webhook in place the label is required on CREATE, so
    it is created with it and the label is then removed (UPDATE of backups is not intercepted)."""
    labels = {"backup-target": target}
    if webhook:
        labels["backup-volume"] = volume
    lh.apply(backup_obj(name, volume, target, "Error", labels=labels))
    if webhook:
        lh.patch("Backup", name, {"metadata": {"labels": {"backup-volume": None}}})
    got = lh.get("Backup", name)
    assert "backup-volume" not in labels_of(got), brief(got)
    assert got["status"]["backupTargetName"] == "", brief(got)
    return got


def system_backup_obj(name: str, state: str = "Ready") -> dict:
    return obj("SystemBackup", name, spec={"volumeBackupPolicy": "if-not-present"},
               status={"state": state, "version": "v1.10.0" if state == "Ready" else ""})


def system_backup(lh: Ns, name: str, state: str = "Ready") -> dict:
    return lh.apply(system_backup_obj(name, state))[0]


def backing_image_backup_obj(image: str, target: str = "default") -> dict:
    return obj("BackupBackingImage", f"bbi-{image}",
               labels={"backup-target": target, "backing-image": image},
               spec={"backingImage": image, "backupTargetName": target, "userCreated": True},
               status={"state": "Completed", "url": f"{TARGET_URL}?backingImage={image}"})


def backing_image_backup(lh: Ns, image: str, target: str = "default") -> dict:
    return lh.apply(backing_image_backup_obj(image, target))[0]


def volume_obj(name: str, standby: bool) -> dict:
    """A Volume with the fields the engine's schema requires a value for (its enumerations)."""
    return obj("Volume", name, spec={
        "Standby": standby, "backupTargetName": "default", "size": "2147483648",
        "numberOfReplicas": 3, "frontend": "" if standby else "blockdev", "accessMode": "rwo",
        "dataEngine": "v1", "dataLocality": "disabled", "replicaAutoBalance": "ignored",
        "snapshotDataIntegrity": "ignored", "restoreVolumeRecurringJob": "ignored",
        "unmapMarkSnapChainRemoved": "ignored", "replicaSoftAntiAffinity": "ignored",
        "replicaZoneSoftAntiAffinity": "ignored", "replicaDiskSoftAntiAffinity": "ignored",
        "offlineRebuilding": "ignored", "backupBlockSize": "2097152",
        "backupCompressionMethod": "lz4", "freezeFilesystemForSnapshot": "ignored",
        "fromBackup": f"{TARGET_URL}?backup=b&volume={name}" if standby else ""})


def volume(lh: Ns, name: str, standby: bool) -> dict:
    return lh.apply(volume_obj(name, standby))[0]


def populate(lh: Ns, webhook: bool = True, backups: int = 20) -> Scenario:
    """Creates docs/CONTRACT.md's acceptance scenario in lh.namespace: 3 Volumes (one DR), the `default`
    BackupTarget, 3 BackupVolumes, `backups` Backups (half Completed, half failed), 3 Ready
    SystemBackups and 2 BackupBackingImages, all with the longhorn.io finalizer, and the
    confirmation flag "false". `webhook`: whether backup-guard's webhooks are registered now."""
    sc = Scenario(lh.namespace)
    lh.set_flag("false")
    sc.target_uid = default_target(lh)["metadata"]["uid"]
    vols = ["vol-1", "vol-2", "vol-dr"]
    batch = []  # one run of the engine's typed client for everything but the failed Backups
    for v in vols:
        batch.append(volume_obj(v, standby=(v == "vol-dr")))
        sc.volumes.append(v)
    for v in vols:
        batch.append(backup_volume_obj(v))
        sc.backup_volumes.append(f"bv-{v}")
    failed = []
    for i in range(backups):
        v = vols[i % len(vols)]
        name = f"backup-{i:02d}"
        if i % 2 == 0:
            batch.append(backup_obj(name, v, "default", "Completed"))
            sc.completed_backups.append(name)
        else:
            failed.append((name, v))
            sc.failed_backups.append(name)
    for i in range(1, 4):
        batch.append(system_backup_obj(f"system-backup-{i}"))
        sc.system_backups.append(f"system-backup-{i}")
    for img in ("image-a", "image-b"):
        batch.append(backing_image_backup_obj(img))
        sc.backing_images.append(f"bbi-{img}")
    lh.apply(*batch)
    labels = lambda v: {"backup-target": "default", **({"backup-volume": v} if webhook else {})}
    lh.apply(*[backup_obj(n, v, "default", "Error", labels=labels(v)) for n, v in failed])
    if webhook:  # the label the validating webhook required on CREATE goes, as after a failure
        for n, _ in failed:
            lh.patch("Backup", n, {"metadata": {"labels": {"backup-volume": None}}})
    return sc


# --------------------------------------------------------------------------------------------
# processes


def server_args(ns: str, lease: str | None = None, *extra) -> list[str]:
    # At most 50 characters: under BG_E2E_SERVER_IDENTITY=chart the Lease is the chart's full name.
    return ["--leader-election-id", lease or f"bgp-{ns}"[:50].rstrip("-"), *FAST_LEASE,
            "--resync-period", "5s", *extra]


def start_processor(factory, ns: str, *extra, lease: str | None = None):
    """`backup-guard serve --namespace ns` (admission + processor) through backup_guard_factory,
    waiting until it holds the lease."""
    server = factory(extra_args=server_args(ns, lease, *extra), namespace=ns)
    poll(lambda: scrape(server).value("backup_guard_leader") == 1, timeout=20,
         message=lambda: f"the processor in {ns} to become leader; log:\n{server.log_tail()}")
    return server


class Metrics(_Metrics):
    """bgtest's Metrics, whose value() is the single matching sample's (None when none or
    several match)."""

    def value(self, name: str, /, **labels):
        return self.single(name, **labels)


def scrape(server) -> Metrics:
    return Metrics(scrape_text(f"{server.metrics_url}/metrics", timeout=3))


def uninstall_cmd(kubeconfig, ns: str, *args) -> list[str]:
    """The uninstall's receipt goes to a temporary folder unless `args` names one (the last
    --receipt wins), not into the working directory."""
    receipts = Path(os.environ.get("BG_STATE_DIR") or "/tmp") / "receipts"
    receipts.mkdir(parents=True, exist_ok=True)
    receipt = receipts / f"{ns}-{time.strftime('%Y%m%dT%H%M%S')}-{next(_seq)}.json"
    return [str(backup_guard_bin()), "uninstall", "--kubeconfig", str(kubeconfig),
            "--namespace", ns, "--receipt", str(receipt), *args]


def run_uninstall(kubeconfig, ns: str, *args, timeout: float = 150) -> subprocess.CompletedProcess:
    """Runs `backup-guard uninstall` to completion (killed and failed after `timeout`)."""
    cmd = uninstall_cmd(kubeconfig, ns, *args)
    log("running " + " ".join(cmd[1:]))
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"uninstall did not finish in {timeout}s: {' '.join(cmd)}\n"
                    f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    log(f"uninstall exited {proc.returncode} after {time.monotonic() - start:.1f}s; stdout:\n"
        f"{proc.stdout}stderr:\n{proc.stderr}")
    return proc


class UninstallProcess:
    """`backup-guard uninstall` in the background; stdout lines are collected as they come."""

    def __init__(self, kubeconfig, ns: str, *args, log_path: Path | None = None):
        self.cmd = uninstall_cmd(kubeconfig, ns, *args)
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.stderr_path = log_path
        err = open(log_path, "ab") if log_path else subprocess.DEVNULL
        log("starting " + " ".join(self.cmd[1:]))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)
        if log_path:
            err.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def stdout(self) -> str:
        with self.cond:
            return "\n".join(l for _, l in self.lines)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""
        except OSError:
            return ""

    def wait_line(self, pattern: str, timeout: float) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, line in self.lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    pytest.fail(f"uninstall printed no line matching {pattern!r} "
                                f"(exit {self.proc.poll()}); stdout:\n{self.stdout()}\n"
                                f"stderr:\n{self.stderr()}")
                self.cond.wait(min(left, 0.2))

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL; returns the exit status (-9 when it was still running)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self.reader.join(5)
        return rc

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"uninstall did not finish in {timeout}s; stdout:\n{self.stdout()}\n"
                        f"stderr:\n{self.stderr()}")
        self.reader.join(5)
        return rc


@pytest.fixture
def uninstaller(kubeconfig, tmp_path):
    """Starts background uninstall processes; any still running is killed afterwards."""
    started: list[UninstallProcess] = []

    def _start(ns: str, *args) -> UninstallProcess:
        p = UninstallProcess(kubeconfig, ns, *args,
                             log_path=tmp_path / f"uninstall-{len(started)}.stderr")
        started.append(p)
        return p

    yield _start
    for p in started:
        if p.running():
            p.kill()


def found_lines(output: str) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2))
            for m in re.finditer(r"found (\d+) (\w+) remaining", output)]


# --------------------------------------------------------------------------------------------
# the webhook configurations, taken out of the API server's path for a while


class WebhooksAbsent:
    """Context manager: deletes backup-guard's two webhook configurations, waits until the API
    server no longer calls them (dry-run probes in `ns`), and on exit recreates them exactly and
    waits until they are called again. As if no (or an older) backup-guard were installed."""

    def __init__(self, api_client: client.ApiClient, custom: client.CustomObjectsApi, ns: str):
        self.api_client = api_client
        self.adm = client.AdmissionregistrationV1Api(api_client)
        self.custom = custom
        self.ns = ns
        self.saved = []

    def __enter__(self):
        self.saved = [
            ("mutating", self.api_client.sanitize_for_serialization(
                self.adm.read_mutating_webhook_configuration(MUTATING_CONFIG))),
            ("validating", self.api_client.sanitize_for_serialization(
                self.adm.read_validating_webhook_configuration(VALIDATING_CONFIG))),
        ]
        try:
            self.adm.delete_mutating_webhook_configuration(MUTATING_CONFIG)
            self.adm.delete_validating_webhook_configuration(VALIDATING_CONFIG)
            self._wait(present=False)
        except BaseException:
            self.restore()
            raise
        log("webhook configurations removed")
        return self

    def __exit__(self, *exc):
        self.restore()
        log("webhook configurations restored")
        return False

    def restore(self):
        for which, body in self.saved:
            body = dict(body)
            body["metadata"] = {k: v for k, v in body["metadata"].items()
                                if k not in ("resourceVersion", "uid", "creationTimestamp",
                                             "generation", "managedFields")}
            create = (self.adm.create_mutating_webhook_configuration if which == "mutating"
                      else self.adm.create_validating_webhook_configuration)
            try:
                create(body)
            except ApiException as e:
                if e.status != 409:
                    raise
        self._wait(present=True)

    def _probe(self) -> tuple[bool, bool]:
        """(validating webhook called, mutating webhook called), by dry-run creates."""
        backup = Longhorn.body("Backup", f"probe-{next(_seq)}", spec={"snapshotName": "probe"})
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "backups",
                                                        backup, dry_run="All")
            validating = False  # a Backup without the backup-volume label got through
        except ApiException:
            validating = True
        sb = Longhorn.body("SystemBackup", f"probe-{next(_seq)}")
        try:
            got = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns,
                                                              "systembackups", sb, dry_run="All")
            mutating = FINALIZER in finalizers_of(got)
        except ApiException:
            mutating = True  # refused: by the validating webhook, so the chain is in place
        return validating, mutating

    def _wait(self, present: bool, timeout: float = 30):
        poll(lambda: self._probe() == (present, present), timeout=timeout, interval=0.1,
             message=f"the API server to {'call' if present else 'stop calling'} the webhooks "
                     f"(last probe {self._probe()})")


# --------------------------------------------------------------------------------------------
# a watch recorder: every event of the watched kinds in one namespace, in resourceVersion order


@dataclass
class Event:
    plural: str
    type: str
    obj: dict
    rv: int
    wall: float  # time.time() when received

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


class WatchRecorder:
    """Watches the given plurals in a namespace (one thread and one ApiClient each) and records
    every event. resourceVersions of one etcd are its global revision, so they order events of
    different kinds; the API server's watch cache keeps that order per kind."""

    def __init__(self, kubeconfig, ns: str, plurals):
        self.kubeconfig = str(kubeconfig)
        self.ns = ns
        self.plurals = list(plurals)
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.errors: list[str] = []
        self.ready = {p: threading.Event() for p in self.plurals}
        self.threads = []

    def start(self) -> "WatchRecorder":
        for plural in self.plurals:
            t = threading.Thread(target=self._run, args=(plural,), daemon=True)
            t.start()
            self.threads.append(t)
        for plural, ev in self.ready.items():
            if not ev.wait(15):
                pytest.fail(f"the watch on {plural} did not start: {self.errors}")
        return self

    def _run(self, plural: str):
        api = kube_config.new_client_from_config(config_file=self.kubeconfig)
        custom = client.CustomObjectsApi(api)
        try:
            listing = custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural)
            rv = listing["metadata"]["resourceVersion"]
            with self.lock:
                for obj in listing["items"]:
                    self.events.append(Event(plural, "INITIAL", obj,
                                             int(obj["metadata"]["resourceVersion"]), time.time()))
            self.ready[plural].set()
            while not self.stop_flag.is_set():
                w = watch.Watch()
                try:
                    for ev in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION,
                                       self.ns, plural, resource_version=rv, timeout_seconds=2,
                                       allow_watch_bookmarks=False, _request_timeout=10):
                        obj = ev["object"]
                        rv = obj["metadata"]["resourceVersion"]
                        with self.lock:
                            self.events.append(Event(plural, ev["type"], obj, int(rv),
                                                     time.time()))
                        if self.stop_flag.is_set():
                            w.stop()
                except ApiException as e:
                    self.errors.append(f"{plural}: {e.status} {e.reason}")
                    if e.status == 410:
                        return  # events were lost: the checks will fail on missing DELETEDs
                except Exception as e:  # noqa: BLE001 - a read timeout: reconnect from rv
                    if self.stop_flag.is_set():
                        break
                    self.errors.append(f"{plural}: {e!r}")
                    time.sleep(0.1)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{plural}: {e!r}")
            self.ready[plural].set()
        finally:
            api.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)

    def snapshot(self) -> list[Event]:
        with self.lock:
            return sorted(self.events, key=lambda e: e.rv)

    def deleted(self, plural: str | None = None) -> list[Event]:
        return [e for e in self.snapshot()
                if e.type == "DELETED" and (plural is None or e.plural == plural)]

    def wait_for(self, predicate, timeout: float, message: str) -> Event:
        def find():
            for e in self.snapshot():
                if predicate(e):
                    return e
            return None
        return poll(find, timeout=timeout, interval=0.02, message=message)

    def timeline(self) -> str:
        out = []
        for e in self.snapshot():
            if e.type in ("DELETED", "INITIAL"):
                out.append(f"  rv={e.rv} {e.type} {e.plural}/{e.name}")
            else:
                md = e.obj["metadata"]
                out.append(f"  rv={e.rv} {e.type} {e.plural}/{e.name} "
                           f"deleting={'deletionTimestamp' in md} fin={md.get('finalizers')} "
                           f"cr-only={CR_ONLY_LABEL in (md.get('labels') or {})}")
        return "\n".join(out)


def check_release_order(rec: WatchRecorder, release_grace: float, target: str = "default"):
    """Asserts from the recorded events that nothing was released before docs/CONTRACT.md's rules allowed
    it: the target after all of its children, a BackupVolume after all of its Backups, and each
    Backup, BackupBackingImage and SystemBackup only when marked delete-custom-resource-only,
    without data (failed), after its parent was gone, or after the uninstall grace period."""
    events = rec.snapshot()
    deleted = {(e.plural, e.name): e for e in events if e.type == "DELETED"}
    problems = []

    def deleted_rv(plural, name):
        e = deleted.get((plural, name))
        return e.rv if e else None

    def past_grace(e: Event) -> bool:
        ts = e.obj["metadata"].get("deletionTimestamp")
        return bool(ts) and e.wall - parse_time(ts) >= release_grace - 1

    target_ev = deleted.get(("backuptargets", target))
    if target_ev is None:
        problems.append(f"no DELETED event for BackupTarget {target}")
    else:
        target_uid = target_ev.obj["metadata"]["uid"]
        for (plural, name), e in deleted.items():
            if plural == "backuptargets":
                continue
            if plural == "systembackups":
                refs = target_owner_refs(e.obj)
                child = not refs or any(r.get("uid") == target_uid for r in refs)
            elif plural in ("backups", "backupvolumes", "backupbackingimages"):
                child = labels_of(e.obj).get("backup-target") == target
            else:
                child = False
            if child and e.rv > target_ev.rv:
                problems.append(f"{plural}/{name} was deleted (rv {e.rv}) after its BackupTarget "
                                f"{target} (rv {target_ev.rv})")
    for (plural, name), e in deleted.items():
        lbl = labels_of(e.obj)
        cr_only = lbl.get(CR_ONLY_LABEL) == "true"
        tgt_rv = deleted_rv("backuptargets", lbl.get("backup-target") or
                            (e.obj.get("spec") or {}).get("backupTargetName") or "")
        if plural == "backupvolumes":
            vol = (e.obj.get("spec") or {}).get("volumeName") or lbl.get("backup-volume")
            for (p2, n2), e2 in deleted.items():
                if p2 == "backups" and labels_of(e2.obj).get("backup-volume") == vol \
                        and e2.rv > e.rv and not past_grace(e):
                    problems.append(f"BackupVolume {name} released (rv {e.rv}) before its Backup "
                                    f"{n2} was gone (rv {e2.rv})")
        elif plural == "backups":
            status = e.obj.get("status") or {}
            if "backupTargetName" in status:
                no_data = not status["backupTargetName"] or not lbl.get("backup-volume")
            else:
                # Made under v1.7.2's CRDs, which prune status.backupTargetName: SPEC's rule for
                # engines before v1.8 ("never uploaded": not Completed and no status.url). Reading
                # the missing field as empty would count every Completed Backup as data-free.
                no_data = (status.get("state") != "Completed" and not status.get("url")) \
                    or not lbl.get("backup-volume")
            bv_rv = None
            for (p2, n2), e2 in deleted.items():
                if p2 == "backupvolumes" and \
                        labels_of(e2.obj).get("backup-volume") == lbl.get("backup-volume"):
                    bv_rv = e2.rv
            parent_gone = any(rv is not None and rv < e.rv for rv in (tgt_rv, bv_rv))
            if not (cr_only or no_data or parent_gone or past_grace(e)):
                problems.append(f"Completed Backup {name} released without a rule allowing it: "
                                f"{brief(e.obj)}")
        elif plural == "backupbackingimages":
            parent_gone = tgt_rv is not None and tgt_rv < e.rv
            if not (cr_only or parent_gone or past_grace(e)):
                problems.append(f"BackupBackingImage {name} released without a rule allowing it: "
                                f"{brief(e.obj)}")
        elif plural == "systembackups":
            state = (e.obj.get("status") or {}).get("state", "")
            owners_gone = all(deleted_rv("backuptargets", r["name"]) is not None
                              and deleted_rv("backuptargets", r["name"]) < e.rv
                              for r in target_owner_refs(e.obj))
            if not (cr_only or state in ("", "Error") or owners_gone or past_grace(e)):
                problems.append(f"SystemBackup {name} released without a rule allowing it: "
                                f"{brief(e.obj)}")
    assert not problems, "release order violated:\n" + "\n".join(problems) + \
        "\ntimeline:\n" + rec.timeline()


def hostname() -> str:
    return socket.gethostname()
