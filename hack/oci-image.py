#!/usr/bin/env python3
"""Writes a one-layer OCI image archive (oci-layout, index.json, blobs/sha256/...) without any daemon.

This machine has no Docker engine and no registry, so the node's images (the operator's and the
pause image) are written here and imported with `ctr images import`, or `kind load image-archive`.
The layer is reproducible: entries sorted, owned by root unless told otherwise, mtime 0.

  oci-image.py --ref REF --out FILE [--entrypoint JSON] [--cmd JSON] [--user U:G] [--port 8080]
               [--env K=V] [--file SRC:DEST[:MODE]] [--text DEST:CONTENT] [--dir DEST[:MODE[:UID:GID]]]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(message):
    print(f"oci-image: {message}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="image reference, e.g. registry.local/name:tag")
    parser.add_argument("--out", required=True, help="archive to write")
    parser.add_argument("--entrypoint", type=json.loads, default=None)
    parser.add_argument("--cmd", type=json.loads, default=None)
    parser.add_argument("--user", default="")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--port", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE] (octal)")
    parser.add_argument("--text", action="append", default=[], help="DEST:CONTENT (mode 0644)")
    parser.add_argument("--dir", action="append", default=[], help="DEST[:MODE[:UID:GID]]")
    return parser.parse_args()


class Layer:
    """The root filesystem as tar entries, parents created as needed."""

    def __init__(self):
        self.entries = {}

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            self.entries.setdefault(parent, ("dir", 0o755, 0, 0, None))

    def add_dir(self, path, mode=0o755, uid=0, gid=0):
        self._parents(path)
        self.entries[path.strip("/")] = ("dir", mode, uid, gid, None)

    def add_bytes(self, path, data, mode=0o644):
        self._parents(path)
        self.entries[path.strip("/")] = ("file", mode, 0, 0, data)

    def tar(self):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name in sorted(self.entries):
                kind, mode, uid, gid, data = self.entries[name]
                info = tarfile.TarInfo(name)
                info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    archive.addfile(info)
                else:
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def build_layer(args):
    layer = Layer()
    for spec in args.dir:
        parts = spec.split(":")
        mode = int(parts[1], 8) if len(parts) > 1 else 0o755
        uid, gid = (int(parts[2]), int(parts[3])) if len(parts) > 3 else (0, 0)
        layer.add_dir(parts[0], mode, uid, gid)
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) < 2:
            fail(f"--file {spec!r}: expected SRC:DEST[:MODE]")
        source, dest = parts[0], parts[1]
        if not os.path.isfile(source):
            fail(f"--file {spec!r}: {source} is not a file")
        mode = int(parts[2], 8) if len(parts) > 2 else os.stat(source).st_mode & 0o777
        with open(os.path.realpath(source), "rb") as handle:
            layer.add_bytes(dest, handle.read(), mode)
    for spec in args.text:
        dest, _, content = spec.partition(":")
        layer.add_bytes(dest, content.encode())
    return layer.tar()


def main():
    args = parse_args()
    if ":" not in args.ref.rsplit("/", 1)[-1]:
        fail(f"--ref {args.ref!r} needs a tag (name:tag)")
    layer_tar = build_layer(args)
    layer_gz = gzip.compress(layer_tar, mtime=0)
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env],
            "WorkingDir": args.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "hack/oci-image.py", "created": "1970-01-01T00:00:00Z"}],
        "created": "1970-01-01T00:00:00Z",
    }
    if args.entrypoint is not None:
        config["config"]["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        config["config"]["Cmd"] = args.cmd
    if args.port:
        config["config"]["ExposedPorts"] = {(p if "/" in p else f"{p}/tcp"): {} for p in args.port}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": blob(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": blob(layer_gz), "size": len(layer_gz)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": blob(manifest_bytes),
            "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd names the imported image after the first; other tools read the second.
            "annotations": {
                "io.containerd.image.name": args.ref,
                "org.opencontainers.image.ref.name": args.ref.rsplit(":", 1)[1],
            },
        }],
    }

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as archive:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, args.out)
    print(args.ref)


if __name__ == "__main__":
    main()
