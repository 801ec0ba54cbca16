"""The hand-written CUDA C++ baselines: built with nvcc into cubins kept in the repository.

`python -m benchmarks.cubins` rebuilds every baselines/*.cu into
baselines/prebuilt/<name>.sm_90.cubin and records the nvcc version, the flags
and each source's hash in baselines/prebuilt/manifest.json. At run time `load`
uses the prebuilt cubin while its source is unchanged, else rebuilds with the
nvcc it finds (GPU hosts need not have one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "baselines"
PREBUILT = HERE / "prebuilt"
MANIFEST = PREBUILT / "manifest.json"
ARCH = "sm_90"
FLAGS = ("-cubin", f"-arch={ARCH}", "-O3", "-std=c++17")
NVCC_CANDIDATES = ("/usr/local/cuda/bin/nvcc", "/usr/local/cuda-13.0/bin/nvcc")


class BaselineUnavailable(RuntimeError):
    """No prebuilt cubin matches the source and no nvcc can build one."""


def find_nvcc() -> str | None:
    """nvcc from $NVCC, PATH or the usual CUDA install locations."""
    for path in (os.environ.get("NVCC"), shutil.which("nvcc"), *NVCC_CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]  # "Build cuda_13.0.r13.0/compiler...."


def source_hash(name: str) -> str:
    """Hash of a baseline's source and the headers beside it (what its cubin depends on)."""
    h = hashlib.sha256()
    for path in [HERE / f"{name}.cu", *sorted(HERE.glob("*.cuh"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def sources() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.cu"))


def compile_cubin(name: str, nvcc: str, out: Path) -> None:
    proc = subprocess.run(
        [nvcc, *FLAGS, "-o", str(out), str(HERE / f"{name}.cu")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BaselineUnavailable(f"nvcc failed on baselines/{name}.cu:\n{proc.stderr}")


def read_manifest() -> dict:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}


def load(name: str) -> tuple[bytes, str]:
    """(cubin image, where it came from) for baselines/<name>.cu."""
    entry = read_manifest().get("cubins", {}).get(name)
    cubin = PREBUILT / f"{name}.{ARCH}.cubin"
    if entry and entry["source_sha256"] == source_hash(name) and cubin.is_file():
        return cubin.read_bytes(), f"prebuilt ({read_manifest().get('nvcc')})"
    nvcc = find_nvcc()
    if nvcc is None:
        raise BaselineUnavailable(
            f"baselines/{name}.cu changed since its prebuilt cubin was made and no nvcc "
            "is installed here; run `python -m benchmarks.cubins` where nvcc is"
        )
    with tempfile.TemporaryDirectory(prefix="asyncwarp-baseline-") as tmp:
        out = Path(tmp) / f"{name}.cubin"
        compile_cubin(name, nvcc, out)
        return out.read_bytes(), f"built now ({nvcc_version(nvcc)})"


def build_all(nvcc: str | None = None) -> dict:
    """Rebuild every baseline into PREBUILT and rewrite the manifest; returns it."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise BaselineUnavailable("no nvcc found: set $NVCC or put nvcc on PATH")
    PREBUILT.mkdir(exist_ok=True)
    manifest = {"nvcc": nvcc_version(nvcc), "flags": list(FLAGS), "cubins": {}}
    for name in sources():
        out = PREBUILT / f"{name}.{ARCH}.cubin"
        compile_cubin(name, nvcc, out)
        manifest["cubins"][name] = {
            "source_sha256": source_hash(name),
            "cubin_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nvcc", help="the nvcc to use (default: $NVCC, PATH, /usr/local/cuda)")
    args = parser.parse_args(argv)
    manifest = build_all(args.nvcc)
    for name in manifest["cubins"]:
        print(f"built baselines/prebuilt/{name}.{ARCH}.cubin")
    print(f"with {manifest['nvcc']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
