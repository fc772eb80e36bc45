#!/usr/bin/env python3
"""`make oci`: the filter module as an OCI image layout, for Istio's WasmPlugin and
Envoy Gateway's EnvoyExtensionPolicy (both pull Wasm modules as OCI images).

    python3 envoy/oci_image.py [--wasm target/wasm32-wasip1/release/envoy_oauth2.wasm]
                               [--out target/oci] [--tag 0.1.0]

Writes one OCI image layout (https://github.com/opencontainers/image-spec,
image-layout.md) holding two manifests, tagged in index.json:
- `<tag>` (the "compat" variant of the Wasm image spec, which Istio and Envoy Gateway
  read): an ordinary OCI image, one tar+gzip layer holding `plugin.wasm`, and the
  manifest annotation `module.wasm.image/variant: compat`;
- `<tag>-wasm` (the "oci" variant): a Wasm artifact, config
  `application/vnd.module.wasm.config.v1+json` and the module itself as the one layer
  `application/vnd.module.wasm.content.layer.v1+wasm`.

Reproducible: the same module gives the same digests (tar entry with fixed mtime,
owner and mode; gzip without name or time; canonical JSON; no creation date).
Prints the compat manifest's digest, the value to pin in a WasmPlugin or policy.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory: blobs by digest, and index.json."""

    def __init__(self, out: Path):
        if out.exists():
            shutil.rmtree(out)
        (out / "blobs/sha256").mkdir(parents=True)
        (out / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
        self.out = out
        self.manifests: list[dict] = []

    def blob(self, media_type: str, data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.out / "blobs/sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def manifest(self, tag: str, manifest: dict) -> str:
        d = self.blob(OCI_MANIFEST, canonical(manifest))
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.manifests.append(d)
        return d["digest"]

    def close(self) -> None:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": self.manifests}
        (self.out / "index.json").write_bytes(canonical(index))


def plugin_layer(wasm: bytes) -> tuple[bytes, bytes]:
    """(tar+gzip layer, uncompressed tar): one file, `plugin.wasm`, fixed metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mtime, info.mode = len(wasm), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as g:
        g.write(tar_bytes)
    return gz.getvalue(), tar_bytes


def build(wasm_path: Path, out: Path, tag: str) -> dict:
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{wasm_path} is not a WebAssembly module")
    layout = Layout(out)
    annotations = {
        "org.opencontainers.image.title": "envoy-oauth2",
        "org.opencontainers.image.description":
            "OAuth2 token endpoint (root_id oauth2_token) and bearer guard (root_id oauth2_guard)",
        "org.opencontainers.image.version": tag,
    }
    # compat: an ordinary image whose one layer holds plugin.wasm.
    layer_tgz, layer_tar = plugin_layer(wasm)
    config = {
        "architecture": "wasm", "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
        "config": {},
    }
    compat = layout.manifest(tag, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": layout.blob(OCI_CONFIG, canonical(config)),
        "layers": [layout.blob(OCI_LAYER_TGZ, layer_tgz)],
        "annotations": dict(annotations, **{"module.wasm.image/variant": "compat"}),
    })
    # oci: the Wasm artifact, the module as the layer itself.
    # The proxy-wasm ABI of the Rust SDK 0.2, and the filters' root_ids.
    runtime = {"type": "envoy_proxy", "abiVersions": ["v0.2.1"],
               "config": {"rootIds": ["oauth2_token", "oauth2_guard"]}}
    artifact = layout.manifest(f"{tag}-wasm", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": layout.blob(WASM_CONFIG, canonical(runtime)),
        "layers": [dict(layout.blob(WASM_LAYER, wasm),
                        annotations={"org.opencontainers.image.title": "plugin.wasm"})],
        "annotations": annotations,
    })
    layout.close()
    return {"compat": compat, "wasm": artifact, "module_sha256": hashlib.sha256(wasm).hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", type=Path, default=ROOT / "target/wasm32-wasip1/release/envoy_oauth2.wasm")
    ap.add_argument("--out", type=Path, default=ROOT / "target/oci")
    ap.add_argument("--tag", default="0.1.0")
    a = ap.parse_args()
    if not a.wasm.exists():
        sys.exit(f"{a.wasm} not found: run `make build` first (`make oci` does)")
    d = build(a.wasm, a.out, a.tag)
    print(f"OCI image layout: {a.out}")
    print(f"  {a.tag} (compat, for Istio and Envoy Gateway): {d['compat']}")
    print(f"  {a.tag}-wasm (Wasm artifact):                  {d['wasm']}")
    print(f"  module sha256 (Envoy's vm_config.code.remote): {d['module_sha256']}")
    print(f"push: skopeo copy oci:{a.out}:{a.tag} docker://REGISTRY/envoy-oauth2:{a.tag}")


if __name__ == "__main__":
    main()
