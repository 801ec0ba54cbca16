"""The `asyncwarp` command: info, demo, conformance, bench.

`asyncwarp info` says which backends work here and, for each that does not,
why and what to install; `asyncwarp demo` runs a real kernel on the default
backend and checks it against numpy.
"""

from __future__ import annotations

import argparse
import platform
import sys


def cmd_info(args) -> int:
    import asyncwarp as aw
    from asyncwarp import backends
    from asyncwarp.core import config

    cfg = config.current()
    print(f"asyncwarp {aw.__version__}  (Python {platform.python_version()}, "
          f"{platform.machine()})")
    print(f"default backend: {cfg.backend} -> {backends.resolve(cfg.backend, cfg.device)}, "
          f"warp width W={cfg.warp_width}, device={cfg.device!r}")
    print("backends:")
    for name, (ok, reason) in backends.status(cfg.device).items():
        print(f"  {name:7s} {'yes' if ok else 'no '}  {reason}")
        if ok and name != "sim":
            try:
                caps = backends.get(name, cfg.device).caps()
                print(f"          device: {caps.name} ({caps.vendor}), driver {caps.driver}, "
                      f"subgroup {caps.subgroup_size}, shared {caps.shared_memory_bytes} B, "
                      f"progress {caps.progress}")
            except Exception as e:  # info must always print something useful
                print(f"          device query failed: {e}")
    try:
        from asyncwarp.backends.cuda.ptxas import find_ptxas

        print(f"ptxas: {find_ptxas(cfg.ptxas)}")
    except Exception as e:
        print(f"ptxas: not found ({e})")
    print("environment:")
    for var, (_, meaning) in config.ENV_VARS.items():
        print(f"  {var:24s} {meaning}")
    return 0


def cmd_demo(args) -> int:
    from asyncwarp.demo import run_demo

    return run_demo(backend=args.backend, warp_width=args.warp_width, size=args.size)


def cmd_conformance(args) -> int:
    try:
        from conformance.runner import main as conformance_main
    except ImportError as e:
        print(f"the conformance suite is not importable here: {e}; run from a source "
              "checkout (pip install -e .)", file=sys.stderr)
        return 2
    return conformance_main(args.rest)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:  # its own parser: pass every option through untouched
        return cmd_conformance(argparse.Namespace(rest=argv[1:]))
    parser = argparse.ArgumentParser(prog="asyncwarp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends, devices, why a backend is missing")
    demo = sub.add_parser("demo", help="run an example kernel and check it against numpy")
    demo.add_argument("--backend", default=None, help="auto | sim | cuda | vulkan")
    demo.add_argument("--warp-width", type=int, default=None, choices=(32, 64))
    demo.add_argument("--size", type=int, default=None, help="elements (default per backend)")
    conf = sub.add_parser("conformance", help="run the conformance suite (see --help)",
                          add_help=False)
    conf.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        return {"info": cmd_info, "demo": cmd_demo, "conformance": cmd_conformance}[
            args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `asyncwarp info | head`: the reader left, which is fine
        sys.stderr.close()
        return 0
    except Exception as e:  # one line for the user, not a traceback of compiler internals
        from asyncwarp.core.errors import AsyncWarpError

        if isinstance(e, (AsyncWarpError, ValueError, TypeError)):
            print(f"asyncwarp: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
