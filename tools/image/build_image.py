#!/usr/bin/env python3
"""Builds the backup-guard container image without a container runtime.

  build_image.py oci --binary PATH --out DIR --source URL --revision REV --version V --epoch N
      writes DIR/layout (an OCI image layout) and DIR/<name>-<version>.tar (the same layout plus
      the manifest.json of `docker save`, which `docker load` and crane's tarball reader use), and
      prints the image's digest (the manifest's) on stdout.
  build_image.py rootfs --binary PATH --out DIR
      writes the same root filesystem as a folder (the Dockerfile copies it onto `scratch`).

The root filesystem is distroless-like: the binary at /backup-guard, exactly the shared libraries
it loads (as ldd resolves them on this Debian host) and its dynamic loader, the CA bundle, /etc/passwd
and /etc/group with the non-root user 65532, /tmp, the Debian copyright files of what is shipped,
and nothing else (no shell).

Reproducible: every tar entry is sorted, owned by 0:0 (the home folder by 65532), stamped with
--epoch (SOURCE_DATE_EPOCH, the commit time), and the gzip stream carries no name or time, so the
same inputs give the same bytes, and so the same digest. Only the Python standard library is used.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

USER_ID = 65532  # distroless' "nonroot", the user the chart's securityContext names
ENTRYPOINT = ["/backup-guard"]
# The webhook TLS listener (serve --listen) and the plain metrics listener (--metrics-listen).
EXPOSED_PORTS = ["8080/tcp", "9443/tcp"]
HOME = "home/nonroot"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"nonroot:x:{USER_ID}:{USER_ID}:nonroot:/{HOME}:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnonroot:x:{USER_ID}:\nnobody:x:65534:\n"
# Without the file glibc's default for hosts is "dns [!UNAVAIL=return] files"; the usual order.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"

# Debian architecture -> OCI platform (the ones Debian 12 and Kubernetes nodes share).
PLATFORMS = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
}

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class BuildError(Exception):
    """A bad input or a host that cannot supply a file; the message says which."""


class Entry:
    """One root filesystem entry: a folder, a file (bytes) or a symlink."""

    def __init__(self, path, kind, mode, data=b"", target="", owner=0):
        self.path, self.kind, self.mode = path, kind, mode
        self.data, self.target, self.owner = data, target, owner


def run(argv):
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError as e:
        raise BuildError(f"{argv[0]} is not installed") from e
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{' '.join(argv)} failed: {e.stderr.strip()}") from e


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror}") from e


def shared_libraries(binary):
    """The libraries the loader maps for `binary`, as (soname, resolved path), and the loader."""
    libs, loader = [], None
    for line in run(["ldd", binary]).splitlines():
        line = line.strip()
        if "not found" in line:
            raise BuildError(f"{binary}: shared library {line.split()[0]} not found")
        m = re.match(r"^(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append((m.group(1), m.group(2)))
            continue
        m = re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            loader = m.group(1)
        # linux-vdso.so.1 has no file: the kernel maps it.
    if loader is None:
        raise BuildError(f"{binary} is not a dynamically linked executable ldd understands")
    return libs, loader


def debian_packages(paths):
    """The packages that own `paths`, each looked up under its merged-/usr aliases too."""
    aliases = {}
    for path in paths:
        real = os.path.realpath(path)
        names = [path, real]
        names += [p[len("/usr") :] if p.startswith("/usr/") else "/usr" + p for p in (path, real)]
        aliases[path] = list(dict.fromkeys(names))
    every = sorted({name for names in aliases.values() for name in names})
    # One query for all (it exits 1 when some alias is unknown, which is expected).
    result = subprocess.run(["dpkg-query", "-S", *every], capture_output=True, text=True)
    owner = {}
    for line in result.stdout.splitlines():
        package, _, name = line.partition(": ")
        if "," not in package and "diversion" not in package:
            owner[name.strip()] = package.split(":")[0].strip()  # drop an ":amd64" qualifier
    packages = set()
    for path, names in aliases.items():
        found = [owner[n] for n in names if n in owner]
        if not found:
            raise BuildError(f"no Debian package owns {path}: the image ships only packaged files")
        packages.add(found[0])
    return packages


def root_filesystem(binary):
    """Every entry of the image's root filesystem."""
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise BuildError(f"{binary} is not an executable file")
    entries = {}

    def add(entry):
        parts = entry.path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in entries:
                entries[parent] = Entry(parent, "dir", 0o755)
        entries[entry.path] = entry

    add(Entry("backup-guard", "file", 0o755, read_file(binary)))
    libs, loader = shared_libraries(binary)
    for soname, path in libs:
        # Where the loader looks on its own (no ld.so.cache): the multiarch folder under /usr/lib.
        folder = os.path.dirname(os.path.realpath(path)).lstrip("/")
        add(Entry(f"{folder}/{soname}", "file", 0o755, read_file(os.path.realpath(path))))
    # The loader must sit at the binary's PT_INTERP path, which ldd prints as is.
    add(Entry(loader.lstrip("/"), "file", 0o755, read_file(os.path.realpath(loader))))
    packages = debian_packages([path for _, path in libs] + [loader])

    # update-ca-certificates generates the bundle from the ca-certificates package's certificates.
    add(Entry(CA_BUNDLE.lstrip("/"), "file", 0o644, read_file(CA_BUNDLE)))
    packages.add("ca-certificates")
    # OpenSSL's default verify paths on Debian point at the bundle.
    add(Entry("usr/lib/ssl/cert.pem", "symlink", 0o777, target=CA_BUNDLE))
    add(Entry("usr/lib/ssl/certs", "symlink", 0o777, target="/etc/ssl/certs"))

    add(Entry("etc/passwd", "file", 0o644, PASSWD.encode()))
    add(Entry("etc/group", "file", 0o644, GROUP.encode()))
    add(Entry("etc/nsswitch.conf", "file", 0o644, NSSWITCH.encode()))
    add(Entry(HOME, "dir", 0o700, owner=USER_ID))
    add(Entry("tmp", "dir", 0o1777))
    for package in sorted(packages):
        copyright_file = f"/usr/share/doc/{package}/copyright"
        add(Entry(copyright_file.lstrip("/"), "file", 0o644, read_file(copyright_file)))
    return [entries[p] for p in sorted(entries, key=lambda p: p.split("/"))]


def layer_tar(entries, epoch):
    """The uncompressed layer: sorted entries, fixed owners and times."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, e.owner, e.owner, "", ""
            info.mode = e.mode
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return out.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    # No file name and time 0 in the gzip header: the stream depends on the data alone.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def platform():
    arch = run(["dpkg", "--print-architecture"]).strip()
    if arch not in PLATFORMS:
        raise BuildError(f"no OCI platform for the Debian architecture {arch}")
    oci_arch, variant = PLATFORMS[arch]
    result = {"architecture": oci_arch, "os": "linux"}
    if variant:
        result["variant"] = variant
    return result


def build_oci(args):
    """Writes the layout and the tarball; returns the manifest's digest."""
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", args.name):
        raise BuildError(f"--name {args.name!r} is not a valid repository name")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", args.version):
        raise BuildError(f"--version {args.version!r} is not a valid image tag")
    created = datetime.datetime.fromtimestamp(args.epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")

    layer = layer_tar(root_filesystem(args.binary), args.epoch)
    layer_gz = gzip_bytes(layer)
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.source": args.source,
        "org.opencontainers.image.title": "backup-guard",
        "org.opencontainers.image.version": args.version,
    }
    config = canonical_json(
        {
            **platform(),
            "created": created,
            "config": {
                "User": f"{USER_ID}:{USER_ID}",
                "Entrypoint": ENTRYPOINT,
                "ExposedPorts": {port: {} for port in EXPOSED_PORTS},
                "WorkingDir": "/",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
            "history": [{"created": created, "created_by": "tools/image/build_image.py"}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": descriptor(MEDIA_CONFIG, config),
            "layers": [descriptor(MEDIA_LAYER, layer_gz)],
            "annotations": labels,
        }
    )
    reference = f"{args.name}:{args.version}"
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                descriptor(
                    MEDIA_MANIFEST,
                    manifest,
                    platform=platform(),
                    annotations={
                        # containerd and `docker load` name the image after this one.
                        "io.containerd.image.name": f"docker.io/library/{reference}",
                        "org.opencontainers.image.ref.name": args.version,
                    },
                )
            ],
        }
    )
    blobs = {sha256(b).split(":")[1]: b for b in (layer_gz, config, manifest)}
    files = {f"blobs/sha256/{h}": b for h, b in blobs.items()}
    files["index.json"] = index
    files["oci-layout"] = canonical_json({"imageLayoutVersion": "1.0.0"})

    layout = os.path.join(args.out, "layout")
    if os.path.exists(layout):
        raise BuildError(f"{layout} exists; remove it first")
    for name, data in files.items():
        path = os.path.join(layout, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    # `docker save`'s manifest.json beside the layout: older `docker load` and crane's tarball
    # reader take the image from it, newer ones from index.json.
    files["manifest.json"] = canonical_json(
        [
            {
                "Config": f"blobs/sha256/{sha256(config).split(':')[1]}",
                "RepoTags": [reference],
                "Layers": [f"blobs/sha256/{sha256(layer_gz).split(':')[1]}"],
            }
        ]
    )
    archive = [Entry("blobs", "dir", 0o755), Entry("blobs/sha256", "dir", 0o755)]
    archive += [Entry(name, "file", 0o644, data) for name, data in sorted(files.items())]
    tarball = os.path.join(args.out, f"{args.name}-{args.version}.tar")
    with open(tarball, "wb") as f:
        f.write(layer_tar(archive, args.epoch))
    return sha256(manifest)


def write_rootfs(args):
    """The root filesystem as a folder, for `COPY --from=build /rootfs/ /` in the Dockerfile."""
    if os.path.exists(args.out) and os.listdir(args.out):
        raise BuildError(f"{args.out} is not empty")
    os.makedirs(args.out, exist_ok=True)
    for e in root_filesystem(args.binary):
        path = os.path.join(args.out, e.path)
        if e.kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif e.kind == "symlink":
            os.symlink(e.target, path)
            continue
        else:
            with open(path, "wb") as f:
                f.write(e.data)
        os.chmod(path, e.mode)
        os.chown(path, e.owner, e.owner)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    oci = sub.add_parser("oci", help="write the OCI layout and tarball, print the digest")
    oci.add_argument("--binary", required=True, help="the backup-guard executable to ship")
    oci.add_argument("--out", required=True, help="folder for layout/ and the tarball")
    oci.add_argument("--name", default="backup-guard", help="repository name in the tarball")
    oci.add_argument("--version", required=True, help="tag and org.opencontainers.image.version")
    oci.add_argument("--revision", required=True, help="org.opencontainers.image.revision")
    oci.add_argument("--source", required=True, help="org.opencontainers.image.source")
    oci.add_argument("--epoch", required=True, help="SOURCE_DATE_EPOCH: every time in the image")
    rootfs = sub.add_parser("rootfs", help="write the root filesystem as a folder")
    rootfs.add_argument("--binary", required=True)
    rootfs.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "rootfs":
            write_rootfs(args)
            return 0
        if not re.fullmatch(r"[0-9]{1,11}", args.epoch):
            raise BuildError(f"--epoch {args.epoch!r} is not a Unix time in seconds")
        args.epoch = int(args.epoch)
        for flag in ("revision", "source"):
            if not getattr(args, flag).strip():
                raise BuildError(f"--{flag} is empty")
        print(build_oci(args))
        return 0
    except BuildError as e:
        print(f"build_image: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
