"""The image as a registry, a container runtime and a user see it (run by run-image-tests.sh)."""

import datetime
import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from conftest import ROOT, free_port, wait_for_port

USER = "65532:65532"
# The runtime's part, played by unshare and chroot: a private mount and PID namespace with /proc,
# then the entrypoint as the image's user, with an empty environment.
RUN_IN_IMAGE = (
    'mount -t proc proc "$0/proc" && exec chroot --userspec=' + USER + ' "$0" /backup-guard "$@"'
)


def in_image(root, *args):
    return [
        "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
        "/bin/sh", "-c", RUN_IN_IMAGE, str(root), *args,
    ]


def run_in_image(root, *args, timeout=60):
    return subprocess.run(
        in_image(root, *args), capture_output=True, text=True, timeout=timeout, env={}
    )


def entrypoint_pid(proc):
    """The host PID of the process unshare forked (the entrypoint, after chroot's exec)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def blob(layout, digest):
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_layout_is_accepted_by_crane_with_the_printed_digest(image, crane, pushed):
    # crane read the layout (index.json, manifest, blobs) and pushed it; the registry names the
    # manifest by the digest it computed itself.
    assert crane("digest", pushed, "--insecure").decode().strip() == image.digest
    crane("validate", "--remote", pushed, "--insecure")  # re-hashes every blob it pulls
    index = json.loads((image.layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest
    assert json.loads((image.layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_tarball_is_accepted_by_crane_and_names_the_image_for_docker_load(image, crane):
    assert b"PASS" in crane("validate", "--tarball", str(image.tarball))
    with tarfile.open(image.tarball) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        index = json.load(tar.extractfile("index.json"))
    # docker load reads manifest.json (before 25) or index.json (25 on), both present.
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    assert manifest[0]["RepoTags"] == [f"backup-guard:{image.version}"]
    assert set(manifest[0]["Layers"] + [manifest[0]["Config"]]) <= set(names)
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == f"docker.io/library/backup-guard:{image.version}"
    assert annotations["org.opencontainers.image.ref.name"] == image.version
    assert index["manifests"][0]["digest"] == image.digest


def test_two_builds_from_the_same_inputs_give_the_same_digest(image, tmp_path):
    again = subprocess.run(
        image.build_args(tmp_path / "again"), check=True, capture_output=True, text=True
    ).stdout.strip()
    assert again == image.digest
    assert (tmp_path / "again" / image.tarball.name).read_bytes() == image.tarball.read_bytes()
    # The time is the only input that changes between commits of the same tree: it shows.
    later = subprocess.run(
        image.build_args(tmp_path / "later", epoch=image.epoch + 1),
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert later != image.digest


def test_config_has_the_user_entrypoint_ports_and_labels(image, config):
    assert config["os"] == "linux"
    c = config["config"]
    assert c["User"] == USER
    assert c["Entrypoint"] == ["/backup-guard"]
    assert "Cmd" not in c
    assert sorted(c["ExposedPorts"]) == ["8080/tcp", "9443/tcp"]
    labels = c["Labels"]
    assert labels["org.opencontainers.image.source"] == image.source
    assert labels["org.opencontainers.image.revision"] == image.revision
    assert labels["org.opencontainers.image.version"] == image.version
    created = datetime.datetime.fromtimestamp(image.epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels["org.opencontainers.image.created"] == created
    assert config["created"] == created
    assert all(h["created"] == created for h in config["history"])


def test_config_agrees_with_the_dockerfile(image, config):
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text[text.rindex("\nFROM ") :]
    assert re.search(r"^ARG BG_VERSION=(\S+)$", final_stage, re.M).group(1) == image.version
    for line in re.findall(r"^FROM (\S+)", text, re.M):
        assert line == "scratch" or re.search(r"@sha256:[0-9a-f]{64}$", line), f"{line} is not pinned"
    user = re.search(r"^USER (\S+)$", final_stage, re.M).group(1)
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", final_stage, re.M).group(1))
    ports = re.search(r"^EXPOSE (.+)$", final_stage, re.M).group(1).split()
    assert user == config["config"]["User"]
    assert entrypoint == config["config"]["Entrypoint"]
    assert sorted(f"{p}/tcp" for p in ports) == sorted(config["config"]["ExposedPorts"])


def test_rootfs_has_no_shell_and_a_non_root_user(rootfs):
    root, members = rootfs
    names = {m.name.rstrip("/") for m in members}
    for shell in ("bin/sh", "bin/bash", "usr/bin/sh", "usr/bin/bash", "bin/busybox"):
        assert shell not in names
    assert not [n for n in names if re.match(r"^(usr/)?s?bin/", n)], "no program folders"
    executables = sorted(
        m.name for m in members if m.isfile() and m.mode & 0o111 and not re.search(r"\.so", m.name)
    )
    assert executables == ["backup-guard"]
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" in passwd
    assert "nonroot:x:65532:" in (root / "etc/group").read_text().splitlines()
    home = next(m for m in members if m.name.rstrip("/") == "home/nonroot")
    assert (home.uid, home.gid) == (65532, 65532)
    others = [m.name for m in members if m.name.rstrip("/") != "home/nonroot" and (m.uid or m.gid)]
    assert others == []
    tmp = next(m for m in members if m.name.rstrip("/") == "tmp")
    assert tmp.mode & 0o1777 == 0o1777


def test_rootfs_carries_the_ca_bundle(rootfs):
    root, _ = rootfs
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    count = bundle.read_text().count("-----BEGIN CERTIFICATE-----")
    assert count > 50, f"{count} certificates"
    # Every certificate parses (openssl stops at the first bad one).
    subprocess.run(["openssl", "storeutl", "-noout", "-certs", str(bundle)], check=True,
                   capture_output=True)
    # OpenSSL's default file on Debian, a link that resolves inside the image.
    assert os.readlink(root / "usr/lib/ssl/cert.pem") == "/etc/ssl/certs/ca-certificates.crt"


def elf_needed(path):
    out = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True)
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout))


def test_rootfs_ships_exactly_the_libraries_the_binary_needs(rootfs):
    root, members = rootfs
    shipped = {Path(m.name).name: root / m.name for m in members if m.isfile() and ".so" in m.name}
    # The loader, named by the binary's program header.
    headers = subprocess.run(["readelf", "-l", str(root / "backup-guard")], check=True,
                             capture_output=True, text=True).stdout
    interpreter = re.search(r"Requesting program interpreter: (\S+)\]", headers).group(1)
    assert (root / interpreter.lstrip("/")).is_file()
    # The NEEDED closure from the binary, read from the ELF files (not from ldd, the builder's way).
    needed, todo = set(), [root / "backup-guard"]
    while todo:
        for name in elf_needed(todo.pop()) - needed:
            needed.add(name)
            assert name in shipped, f"{name} is needed but not shipped"
            todo.append(shipped[name])
    assert set(shipped) == needed | {Path(interpreter).name}


def test_binary_from_the_image_prints_its_version(image, rootfs):
    root, _ = rootfs
    result = run_in_image(root, "version")
    assert result.returncode == 0, result.stderr
    assert image.version in result.stdout


def test_serve_from_the_image_answers_healthz_over_tls(rootfs):
    root, _ = rootfs
    # The image's binary makes its own certificates, as the image's user, into the image's /tmp.
    result = run_in_image(root, "certs", "generate", "--out", "/tmp/tls", "--dns", "localhost",
                          "--ip", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    port, metrics_port = free_port(), free_port()
    log = root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            in_image(root, "serve", "--listen", f"127.0.0.1:{port}",
                     "--metrics-listen", f"127.0.0.1:{metrics_port}",
                     "--tls-cert-file", "/tmp/tls/tls.crt", "--tls-key-file", "/tmp/tls/tls.key",
                     "--shutdown-delay", "0s"),
            stdout=out, stderr=subprocess.STDOUT, env={},
        )
    try:
        wait_for_port(port, proc)
        context = ssl.create_default_context(cafile=str(root / "tmp/tls/ca.crt"))
        with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=context,
                                    timeout=10) as response:
            assert response.status == 200
        wait_for_port(metrics_port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert r.status == 200
            assert b"# TYPE" in r.read()
    finally:
        # unshare ignores SIGTERM while it waits: the stop signal goes to the entrypoint, as a
        # runtime sends it (to PID 1 of the container's namespace).
        os.kill(entrypoint_pid(proc), signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()


def test_builder_rejects_bad_input_with_a_clear_error(image, tmp_path):
    cases = [
        ({"binary": tmp_path / "missing"}, "is not an executable file"),
        ({"epoch": "yesterday"}, "is not a Unix time in seconds"),
        ({"version": "0.1.0 beta"}, "is not a valid image tag"),
        ({"source": " "}, "--source is empty"),
    ]
    for i, (override, message) in enumerate(cases):
        result = subprocess.run(image.build_args(tmp_path / str(i), **override),
                                capture_output=True, text=True)
        assert result.returncode == 1, override
        assert message in result.stderr, result.stderr
        assert not (tmp_path / str(i) / "layout").exists()


def test_configure_without_googletest_when_tests_are_off(tmp_path):
    # GoogleTest made unavailable: the image's configuration (BG_BUILD_TESTS=OFF) still works and
    # has no test target, while the default configuration needs it.
    off = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "off"), "-G", "Ninja",
         "-DBG_BUILD_TESTS=OFF", "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON"],
        capture_output=True, text=True,
    )
    assert off.returncode == 0, off.stderr
    targets = subprocess.run(["ninja", "-C", str(tmp_path / "off"), "-t", "targets", "all"],
                             check=True, capture_output=True, text=True).stdout
    assert re.search(r"^backup-guard: ", targets, re.M)
    assert not re.search(r"_test: ", targets)
    on = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "on"), "-G", "Ninja",
         "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON"],
        capture_output=True, text=True,
    )
    assert on.returncode != 0
    assert "GTest" in on.stderr


def test_layer_digest_is_the_sha256_of_its_bytes(image):
    manifest = json.loads(blob(image.layout, image.digest))
    for descriptor in [manifest["config"], *manifest["layers"]]:
        data = blob(image.layout, descriptor["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"]
        assert len(data) == descriptor["size"]


def test_dockerfile_rootfs_folder_is_the_image_layer(image, rootfs, tmp_path):
    # The Dockerfile copies `build_image.py rootfs` onto scratch: the same files, modes and owners.
    _, members = rootfs
    folder = tmp_path / "rootfs"
    subprocess.run(["python3", str(ROOT / "tools/image/build_image.py"), "rootfs",
                    "--binary", str(image.binary), "--out", str(folder)], check=True)
    written = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        data = os.readlink(path) if kind == "link" else path.read_bytes() if kind == "file" else ""
        mode = 0 if kind == "link" else st.st_mode & 0o7777
        written[str(path.relative_to(folder))] = (kind, mode, st.st_uid, data)
    root, _ = rootfs
    layer = {}
    for m in members:
        name = m.name.rstrip("/")
        kind = "link" if m.issym() else "dir" if m.isdir() else "file"
        data = m.linkname if kind == "link" else (root / name).read_bytes() if kind == "file" else ""
        layer[name] = (kind, 0 if kind == "link" else m.mode, m.uid, data)
    assert written == layer
