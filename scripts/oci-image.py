#!/usr/bin/env python3
"""Builds an OCI image archive (one layer) without Docker or a registry, for `ctr images import`.

    oci-image.py --name docker.io/vaultlet/agent:0.1.0 --out agent.tar \
        --user 65532:65532 --entrypoint '["/vaultlet-agent"]' --cmd '["run"]' \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --file target/.../vaultlet-agent:/vaultlet-agent:0755 \
        --symlink /bin/sh:busybox

    oci-image.py --describe agent.tar     prints {"name", "config", "files"} of an archive as JSON

The archive is reproducible: sorted entries, owner 0:0, mtime 0.
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.mtime = mode, kind, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if kind == tarfile.SYMTYPE:
        info.linkname = target
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layer(files, symlinks, dirs):
    """files: [(src, dest, mode)], symlinks: [(dest, target)], dirs: [(dest, mode)]."""
    entries = {}
    for dest, mode in dirs:
        entries[dest.strip("/")] = ("dir", None, mode)
    for src, dest, mode in files:
        with open(src, "rb") as f:
            entries[dest.strip("/")] = ("file", f.read(), mode)
    for dest, target in symlinks:
        entries[dest.strip("/")] = ("link", target, 0o777)
    # Parent directories of everything, 0755.
    for path in list(entries):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            entries.setdefault("/".join(parts[:i]), ("dir", None, 0o755))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            kind, data, mode = entries[path]
            if kind == "dir":
                add(tar, path + "/", mode=mode, kind=tarfile.DIRTYPE)
            elif kind == "link":
                add(tar, path, mode=mode, kind=tarfile.SYMTYPE, target=data)
            else:
                add(tar, path, data, mode)
    return out.getvalue()


def build(args):
    files = []
    for spec in args.file:
        src, dest, *mode = spec.split(":")
        files.append((src, dest, int(mode[0], 8) if mode else 0o755))
    symlinks = [tuple(s.split(":", 1)) for s in args.symlink]
    dirs = [(d.split(":")[0], int(d.split(":")[1], 8) if ":" in d else 0o755) for d in args.dir]
    layer_tar = layer(files, symlinks, dirs)
    layer_digest, layer_size = blob(layer_tar)
    config = {"User": args.user, "Env": args.env, "WorkingDir": "/"}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    config_json = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "created": "1970-01-01T00:00:00Z",
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = blob(config_json)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_size = blob(manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1],
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    with tarfile.open(args.out, mode="w") as tar:
        add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add(tar, "index.json", index)
        add(tar, "blobs/", kind=tarfile.DIRTYPE, mode=0o755)
        add(tar, "blobs/sha256/", kind=tarfile.DIRTYPE, mode=0o755)
        for digest, data in sorted(
            [(layer_digest, layer_tar), (config_digest, config_json), (manifest_digest, manifest)]
        ):
            add(tar, "blobs/sha256/" + digest.split(":")[1], data)
    print(f"{args.name}: {args.out} ({layer_size // 1024} KiB layer)", file=sys.stderr)


def describe(path):
    with tarfile.open(path) as tar:
        def read(name):
            return tar.extractfile(name).read()

        index = json.loads(read("index.json"))
        entry = index["manifests"][0]
        manifest = json.loads(read("blobs/sha256/" + entry["digest"].split(":")[1]))
        config = json.loads(read("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
        layer_tar = read("blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1])
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as layer_file:
        files = {
            "/" + m.name.rstrip("/"): {"mode": oct(m.mode), "type": "dir" if m.isdir() else "link" if m.issym() else "file", "uid": m.uid}
            for m in layer_file.getmembers()
        }
    return {"name": entry["annotations"]["io.containerd.image.name"], "config": config["config"], "files": files}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--describe", metavar="ARCHIVE")
    p.add_argument("--name")
    p.add_argument("--out")
    p.add_argument("--user", default="0:0")
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE]")
    p.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    p.add_argument("--dir", action="append", default=[], help="DEST[:MODE]")
    args = p.parse_args()
    if args.describe:
        print(json.dumps(describe(args.describe), indent=2, sort_keys=True))
    elif args.name and args.out:
        build(args)
    else:
        p.error("--describe ARCHIVE, or --name and --out")


if __name__ == "__main__":
    main()
