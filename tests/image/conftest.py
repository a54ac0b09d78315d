"""Fixtures for the image tests: the image run-image-tests.sh built, crane, a local registry, and
the image's root filesystem as crane exports it (not as our own builder wrote it)."""

import json
import os
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest.ports import free_port  # noqa: E402,F401 - used by the tests
from bgtest.wait import wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "tools" / "image" / "build_image.py"


@dataclass
class Image:
    dir: Path
    binary: Path  # the stripped executable the image was built from
    version: str
    revision: str
    source: str
    epoch: int
    digest: str

    @property
    def layout(self):
        return self.dir / "layout"

    @property
    def tarball(self):
        return self.dir / f"backup-guard-{self.version}.tar"

    def build_args(self, out, **override):
        """build_image.py's arguments for the same inputs (some of them overridden)."""
        values = {
            "binary": self.binary,
            "version": self.version,
            "revision": self.revision,
            "source": self.source,
            "epoch": self.epoch,
            **override,
        }
        args = ["python3", str(BUILDER), "oci", "--out", str(out)]
        for key, value in values.items():
            args += [f"--{key}", str(value)]
        return args


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run tests/image/run-image-tests.sh", returncode=2)
    return value


@pytest.fixture(scope="session")
def image():
    image_dir = Path(_env("BG_IMAGE_DIR"))
    return Image(
        dir=image_dir,
        binary=Path(_env("BG_IMAGE_BINARY")),
        version=_env("BG_IMAGE_VERSION"),
        revision=_env("BG_IMAGE_REVISION"),
        source=_env("BG_IMAGE_SOURCE"),
        epoch=int(_env("BG_IMAGE_EPOCH")),
        digest=(image_dir / "digest").read_text().strip(),
    )


@pytest.fixture(scope="session")
def crane():
    path = _env("BG_CRANE")

    def run(*args, **kwargs):
        return subprocess.run(
            [path, *args], check=True, capture_output=True, timeout=120, **kwargs
        ).stdout

    return run


def wait_for_port(port, proc, timeout=60):
    """Waits until something listens on 127.0.0.1:port; fails at once when proc exits."""
    def listening():
        if proc.poll() is not None:
            return "exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    if wait_until(listening, timeout, 0.1, f"something to listen on 127.0.0.1:{port}") == "exited":
        raise AssertionError(f"process exited with {proc.returncode} before listening")


@pytest.fixture(scope="session")
def registry(crane, tmp_path_factory):
    """An in-memory registry (`crane registry serve`) holding the layout, pushed by crane."""
    port = free_port()
    log = tmp_path_factory.mktemp("registry") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [os.environ["BG_CRANE"], "registry", "serve", "--address", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def pushed(image, crane, registry):
    """The reference crane pushed the OCI layout to, with the digest the registry computed."""
    ref = f"{registry}/backup-guard:{image.version}"
    crane("push", str(image.layout), ref, "--insecure")
    return ref


@pytest.fixture(scope="session")
def config(crane, pushed):
    return json.loads(crane("config", pushed, "--insecure"))


@pytest.fixture(scope="session")
def rootfs(image, crane, tmp_path_factory):
    """The root filesystem crane exports from the tarball, unpacked with owners and modes."""
    base = tmp_path_factory.mktemp("rootfs")
    flat = base / "rootfs.tar"
    with open(image.tarball, "rb") as stdin:
        crane("export", "-", str(flat), stdin=stdin)
    root = base / "root"
    root.mkdir()
    with tarfile.open(flat) as tar:
        members = tar.getmembers()
    # GNU tar as root keeps the owners and every mode bit (the sticky /tmp).
    subprocess.run(["tar", "-xpf", str(flat), "--same-owner", "-C", str(root)], check=True)
    # What a container runtime adds at start: mount points for /proc and /dev.
    (root / "proc").mkdir()
    (root / "dev").mkdir()
    return root, members
