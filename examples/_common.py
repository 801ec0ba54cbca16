"""Shared command-line handling for the examples: --backend and --warp-width."""

from __future__ import annotations

import argparse

import asyncwarp as aw


def setup(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default=None, help="auto | sim | cuda | vulkan")
    p.add_argument("--warp-width", type=int, default=None, choices=(32, 64))
    a = p.parse_args()
    aw.init(backend=a.backend, warp_width=a.warp_width)
    return a


def report(name: str, ok: bool) -> None:
    from asyncwarp import backends
    from asyncwarp.core import config

    cfg = config.current()
    print(f"{name}: backend={backends.resolve(cfg.backend, cfg.device)} W={cfg.warp_width} "
          f"{'OK' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit(1)
