"""fold_lanes: map the logical warp of W lanes onto physical subgroups of H invocations.

The last pass before emission (docs/internals.md, "Lowered IR" and "Lane
mapping"). H == W is one-to-one; H > W packs H/W warps per subgroup and uses
clustered subgroup ops; H < W gives each invocation F = W/H logical lanes
("copies"): divergent variables become F variables `name#f`, divergent control
flow is replicated per copy, and collectives combine the copies locally, then
across the subgroup.
"""

from __future__ import annotations

import itertools

from .. import ir
from ..ops import COLLECTIVE, info, opcodes, result_type
from ..types import ArrayType, bool_, i32, u64

_ASYNC = (ir.Suspend, ir.Join, ir.Select)
_REDUCE_KIND = {"warp_sum": "add", "warp_min": "min", "warp_max": "max"}
_COLLECTIVES = tuple(n for n in opcodes() if info(n).category == COLLECTIVE)
_PER_LANE_EFFECTS = ("atomic", "atomic_cas", "pbar_arrive")  # each logical lane performs its own
_BLOCK_LEVEL = ("barrier", "block_all", "shared_alloc")
_NO_LOOP = object()  # Break/Continue here would leave a replicated region: malformed


def fold_lanes(
    kernel: ir.Kernel, subgroup: int, warps: int, levels: dict[ir.Var, int] | None = None
) -> ir.Kernel:
    """A new kernel in lowered form for subgroups of `subgroup` (H) invocations.

    `warps` is the number of logical warps per block; `levels` (Var -> uniformity
    level) defaults to core.uniformity.analyze(kernel) and is only needed when H < W.
    """
    W = kernel.attrs.get("warp_width")
    if not isinstance(W, int) or W < 1 or W & (W - 1) or W > 64:
        # ballot returns one u64 bit per lane, so a warp has at most 64 lanes
        raise RuntimeError(
            f"kernel {kernel.name!r}: attrs warp_width must be a power of two <= 64, got {W!r}"
        )
    H = subgroup
    if not isinstance(H, int) or H < 1 or H & (H - 1) or H > 128:
        raise ValueError(f"subgroup size must be a power of two in 1..128, got {subgroup!r}")
    if not isinstance(warps, int) or warps < 1:
        raise ValueError(f"warps must be a positive integer, got {warps!r}")
    for s in kernel.walk():
        if isinstance(s, _ASYNC):
            raise RuntimeError(
                f"{s.loc}: {type(s).__name__} reached fold_lanes; lower_async must run first"
            )
        if isinstance(s, ir.Op) and s.opcode.startswith("sg_"):
            raise RuntimeError(f"{s.loc}: kernel {kernel.name!r} is already folded ({s.opcode})")
    divergence = None
    if H < W:
        if levels is None:
            from .. import uniformity

            levels = uniformity.analyze(kernel)
        divergence = _Divergence(kernel, levels)
    folder = _Folder(W, H, warps, divergence)
    body = folder.entry_copies(kernel.params)
    body += folder.uniform_block(kernel.body, _NO_LOOP)[0]
    attrs = dict(kernel.attrs)
    attrs.update(
        subgroup=H,
        fold=max(W // H, 1),
        warps=warps,
        block_size=warps * min(W, H) if H < W else warps * W,
    )
    return ir.Kernel(kernel.name, list(kernel.params), body, kernel.loc, attrs)


class _Divergence:
    """Which variables and If/Loop statements are divergent (differ between lanes of a warp).

    Seeded by the uniformity levels and closed under the rules of docs/internals.md
    ("Uniformity"): a variable assigned in a divergent context is divergent; a loop
    is divergent if its condition or the context of one of its Breaks is; code after
    a Break/Continue in a divergent context runs in that context. Prefix sums, and
    shuffles of divergent values from divergent lanes, are divergent collectives.
    """

    def __init__(self, kernel: ir.Kernel, levels: dict):
        self.vars = {
            v
            for v, lvl in levels.items()
            if lvl is not None and lvl >= ir.DIVERGENT and not isinstance(v.type, ArrayType)
        }
        # If/Loop statements (hashed by identity) whose code runs per lane
        self.regions = {
            s for s in kernel.walk() if isinstance(s, (ir.If, ir.Loop)) and s.level == ir.DIVERGENT
        }
        self.loops: list = []
        self.changed = True
        while self.changed:
            self.changed = False
            self._block(kernel.body, False)

    def is_div(self, value) -> bool:
        return isinstance(value, ir.Var) and value in self.vars

    def _mark(self, var: ir.Var | None = None, region=None) -> None:
        if var is not None and var not in self.vars:
            if isinstance(var.type, ArrayType):
                raise RuntimeError(f"array {var!r} would be divergent: arrays are never replicated")
            self.vars.add(var)
            self.changed = True
        if region is not None and region not in self.regions:
            self.regions.add(region)
            self.changed = True

    def _op_divergent(self, op: ir.Op) -> bool:
        opc, a = op.opcode, op.args
        if opc in ("lane", "atomic", "atomic_cas", "warp_prefix_sum"):
            return True
        if opc == "shuffle":  # every lane reads the same lane when the source is uniform
            return self.is_div(a[0]) and self.is_div(a[1])
        if opc == "shuffle_xor":
            return self.is_div(a[0])
        if opc in _COLLECTIVES or opc == "block_all":
            return False
        if opc == "load":
            return self.is_div(a[1])
        return any(self.is_div(x) for x in a)

    def _block(self, block: list, div: bool) -> bool:
        """Analyse a block in a (divergent or not) context; True if lanes may leave it apart."""
        left = False
        for s in block:
            if isinstance(s, ir.Op):
                if s.dst is not None and (div or self._op_divergent(s)):
                    self._mark(s.dst)
            elif isinstance(s, ir.If):
                d = div or s in self.regions or self.is_div(s.cond)
                if d:
                    self._mark(region=s)
                split = self._block(s.then, d)
                split = self._block(s.else_, d) or split
                if split:  # the rest of the enclosing loop body runs for some lanes only
                    div = left = True
            elif isinstance(s, ir.Loop):
                self._loop(s, div)
            elif isinstance(s, (ir.Break, ir.Continue)):
                if div and isinstance(s, ir.Break):
                    if not self.loops:
                        raise RuntimeError(f"{s.loc}: break outside a loop")
                    self._mark(region=self.loops[-1])
                return left or div
        return left

    def _loop(self, s: ir.Loop, div: bool) -> None:
        d = div or s in self.regions or self.is_div(s.cond)
        if d:
            self._mark(region=s)
        self.loops.append(s)
        if self._block(s.header, d):
            self._mark(region=s)
        self._block(s.body, d)
        self._block(s.latch, d)
        self.loops.pop()


class _LoopBody:
    """A uniform loop being emitted once: per-copy `continued` flags, made on demand."""

    def __init__(self, folder: _Folder):
        self.folder = folder
        self.skips: list[ir.Var] = []

    def skip(self, f: int) -> ir.Var:
        if not self.skips:
            name = f"continued{next(self.folder.names)}"
            self.skips = [ir.Var(f"{name}#{g}", bool_) for g in range(self.folder.F)]
        return self.skips[f]


class _Folder:
    def __init__(self, W: int, H: int, warps: int, divergence: _Divergence | None):
        self.W, self.H, self.warps = W, H, warps
        self.F = max(W // H, 1)
        self.cluster = min(W, H)
        self.div_vars = divergence.vars if divergence else set()
        self.regions = divergence.regions if divergence else set()
        self.copies: dict[ir.Var, list[ir.Var]] = {}
        self.names = itertools.count()

    # ---------------------------------------------------------------- values

    def val(self, value, f: int):
        """The value copy f sees: its own copy of a divergent variable, else the value."""
        if isinstance(value, ir.Var) and value in self.div_vars:
            c = self.copies.get(value)
            if c is None:
                c = self.copies[value] = [
                    ir.Var(f"{value.name}#{g}", value.type) for g in range(self.F)
                ]
            return c[f]
        return value

    def emit(
        self,
        out: list,
        opcode: str,
        args: tuple,
        loc: ir.Loc,
        into: ir.Var | None = None,
        type=None,
        **attrs,
    ) -> ir.Var:
        dst = into
        if dst is None:
            dst = ir.Var(f"_f{next(self.names)}", type or result_type(opcode, args, attrs))
        out.append(ir.Op(dst, opcode, tuple(args), attrs, loc))
        return dst

    def arith(self, out: list, opcode: str, a, b, loc: ir.Loc) -> ir.Value:
        """An i32 band/bxor/shr, folded when both operands are constants."""
        if isinstance(a, ir.Const) and isinstance(b, ir.Const):
            x, y = int(a.value), int(b.value)
            r = {"band": x & y, "bxor": x ^ y, "shr": x >> y}[opcode]
            return ir.Const(r, i32)
        return self.emit(out, opcode, (a, b), loc)

    def entry_copies(self, params: list) -> list:
        """Per-copy variables of scalar parameters reassigned in divergent code.

        The parameter itself is never replicated; its copies start from its value.
        """
        return [
            ir.Op(self.val(p, f), "copy", (p,), {}, ir.NO_LOC)
            for p in params
            if p in self.div_vars
            for f in range(self.F)
        ]

    # ---------------------------------------------------------------- uniform code

    def uniform_block(self, block: list, loop) -> tuple[list, bool]:
        """Emit a block run by all copies together; True if copies may have left via continue."""
        out: list = []
        for i, s in enumerate(block):
            left = False
            if isinstance(s, ir.Op):
                self.uniform_op(s, out)
            elif isinstance(s, ir.If):
                if s in self.regions:
                    for f in range(self.F):
                        stmts, split = self.clone_stmt(s, f, loop)
                        out += stmts
                        left = left or split
                else:
                    then, l1 = self.uniform_block(s.then, loop)
                    else_, l2 = self.uniform_block(s.else_, loop)
                    out.append(ir.If(s.cond, then, else_, s.loc, self.level(s.level)))
                    left = l1 or l2
            elif isinstance(s, ir.Loop):
                if s in self.regions:
                    for f in range(self.F):
                        out += self.clone_stmt(s, f, None)[0]
                else:
                    out.append(self.uniform_loop(s))
            elif isinstance(s, (ir.Break, ir.Continue)):
                out.append(type(s)(s.loc))
                return out, False  # the rest of the block is dead
            else:
                raise RuntimeError(f"unknown IR statement {s!r}")
            if left:
                # Some copies continued: the rest of the loop body runs per copy, guarded.
                for f in range(self.F):
                    rest, _ = self.clone_block(block[i + 1 :], f, loop)
                    out += self.guarded(rest, loop, f)
                return out, True
        return out, False

    def uniform_loop(self, s: ir.Loop) -> ir.Loop:
        body_ctx = _LoopBody(self)
        header, _ = self.uniform_block(s.header, _NO_LOOP)
        body, _ = self.uniform_block(s.body, body_ctx)
        latch, _ = self.uniform_block(s.latch, _NO_LOOP)
        reset = [ir.Op(v, "copy", (ir.Const(False, bool_),), {}, s.loc) for v in body_ctx.skips]
        return ir.Loop(header, s.cond, reset + body, latch, s.loc, self.level(s.level))

    def level(self, logical: int | None) -> int | None:
        """The level of emitted-once control flow, relative to the physical subgroup.

        With H > W a subgroup holds several warps, so warp-uniform code may diverge in it.
        """
        if self.H > self.W and logical == ir.WARP_UNIFORM:
            return ir.DIVERGENT
        return logical

    def guarded(self, stmts: list, loop, f: int) -> list:
        if not stmts:
            return []
        go = []
        cond = self.emit(go, "lnot", (loop.skip(f),), ir.NO_LOC)
        return go + [ir.If(cond, stmts, [], ir.NO_LOC, ir.DIVERGENT)]

    def uniform_op(self, op: ir.Op, out: list) -> None:
        opc = op.opcode
        if opc in _COLLECTIVES:
            self.collective(op, out)
        elif opc == "block_all" and self.is_div(op.args[0]):
            # block_all needs one predicate per invocation: AND the copies first.
            p = self.val(op.args[0], 0)
            for f in range(1, self.F):
                p = self.emit(out, "land", (p, self.val(op.args[0], f)), op.loc)
            out.append(ir.Op(op.dst, opc, (p,), dict(op.attrs), op.loc))
        elif opc in _BLOCK_LEVEL:
            out.append(ir.Op(op.dst, opc, op.args, dict(op.attrs), op.loc))
        elif (
            opc in _PER_LANE_EFFECTS
            or self.is_div(op.dst)
            or (op.dst is None and any(self.is_div(a) for a in op.args))
        ):
            for f in range(self.F):
                self.clone_op(op, f, out, replicated=False)
        else:
            if any(self.is_div(a) for a in op.args):
                raise RuntimeError(
                    f"{op.loc}: uniform {op.dst!r} = {opc} reads a divergent "
                    "operand: the uniformity levels are inconsistent"
                )
            self.clone_op(op, 0, out, replicated=False)

    def is_div(self, value) -> bool:
        return isinstance(value, ir.Var) and value in self.div_vars

    # ---------------------------------------------------------------- replicated code

    def clone_block(self, block: list, f: int, loop) -> tuple[list, bool]:
        """Copy f's version of a block inside a replicated region; True if copy f continued."""
        out: list = []
        for i, s in enumerate(block):
            stmts, split = self.clone_stmt(s, f, loop)
            out += stmts
            if isinstance(s, (ir.Break, ir.Continue)):
                return out, split
            if split:
                rest, _ = self.clone_block(block[i + 1 :], f, loop)
                return out + self.guarded(rest, loop, f), True
        return out, False

    def clone_stmt(self, s, f: int, loop) -> tuple[list, bool]:
        if isinstance(s, ir.Op):
            out: list = []
            self.clone_op(s, f, out, replicated=True)
            return out, False
        if isinstance(s, ir.If):
            then, l1 = self.clone_block(s.then, f, loop)
            else_, l2 = self.clone_block(s.else_, f, loop)
            return [ir.If(self.val(s.cond, f), then, else_, s.loc, ir.DIVERGENT)], l1 or l2
        if isinstance(s, ir.Loop):
            header = self.clone_block(s.header, f, None)[0]
            body = self.clone_block(s.body, f, None)[0]
            latch = self.clone_block(s.latch, f, None)[0]
            cond = None if s.cond is None else self.val(s.cond, f)
            return [ir.Loop(header, cond, body, latch, s.loc, ir.DIVERGENT)], False
        if isinstance(s, (ir.Break, ir.Continue)):
            if loop is None:  # targets a loop replicated with this region
                return [type(s)(s.loc)], False
            if isinstance(s, ir.Continue) and isinstance(loop, _LoopBody):
                # Copy f leaves this iteration of a loop that the other copies go on with.
                flag = ir.Op(loop.skip(f), "copy", (ir.Const(True, bool_),), {}, s.loc)
                return [flag], True
            raise RuntimeError(
                f"{s.loc}: divergent {type(s).__name__.lower()} leaves a loop "
                "that is emitted once for all copies (its level should be "
                "divergent)"
            )
        raise RuntimeError(f"unknown IR statement {s!r}")

    def clone_op(self, op: ir.Op, f: int, out: list, replicated: bool) -> None:
        """Copy f's version of a non-collective op (specials mapped to physical lanes)."""
        opc, loc = op.opcode, op.loc
        if replicated and (opc in _COLLECTIVES or opc in _BLOCK_LEVEL):
            raise RuntimeError(
                f"{loc}: {opc} in divergent control flow reached fold_lanes; the "
                "uniformity check must reject it first"
            )
        dst = None if op.dst is None else self.val(op.dst, f)
        if opc == "lane":
            self.lane(out, f, loc, into=dst)
        elif opc == "warp_id":
            self.warp_id(out, loc, into=dst)
        elif opc == "num_warps":
            self.emit(out, "copy", (ir.Const(self.warps, i32),), loc, into=dst)
        else:
            args = tuple(self.val(a, f) for a in op.args)
            out.append(ir.Op(dst, opc, args, dict(op.attrs), loc))

    # ---------------------------------------------------------------- lane mapping

    def lane(self, out: list, f: int, loc: ir.Loc, into: ir.Var | None = None) -> ir.Var:
        H, W = self.H, self.W
        if H == W or (H < W and f == 0):
            return self.emit(out, "sg_lane", (), loc, into=into)
        inv = self.emit(out, "sg_lane", (), loc)
        if H < W:  # copy-major: copy f of invocation p is lane f*H + p
            return self.emit(out, "add", (inv, ir.Const(f * H, i32)), loc, into=into)
        return self.emit(out, "band", (inv, ir.Const(W - 1, i32)), loc, into=into)

    def warp_id(self, out: list, loc: ir.Loc, into: ir.Var | None = None) -> ir.Var:
        H, W = self.H, self.W
        if H <= W:
            return self.emit(out, "sg_id", (), loc, into=into)
        # H/W warps per subgroup: warp = sg_id * (H/W) + sg_lane / W
        sid = self.emit(out, "sg_id", (), loc)
        first = self.emit(out, "mul", (sid, ir.Const(H // W, i32)), loc)
        inv = self.emit(out, "sg_lane", (), loc)
        within = self.emit(out, "shr", (inv, ir.Const(W.bit_length() - 1, i32)), loc)
        return self.emit(out, "add", (first, within), loc, into=into)

    # ---------------------------------------------------------------- collectives

    def collective(self, op: ir.Op, out: list) -> None:
        """Lower a logical collective: combine the copies locally, then across the subgroup."""
        opc, loc, F, C = op.opcode, op.loc, self.F, self.cluster
        if opc == "warp_sync":
            out.append(ir.Op(None, "sg_barrier", (), {}, loc))
            return
        x = op.args[0]
        xs = [self.val(x, f) for f in range(F)]
        into = None if self.is_div(op.dst) else op.dst
        if opc in _REDUCE_KIND:
            kind = _REDUCE_KIND[opc]
            local = xs[0]
            if kind == "add" or self.is_div(x):  # min/max of equal copies is the copy
                for f in range(1, F):
                    local = self.emit(out, kind, (local, xs[f]), loc)
            r = self.emit(out, "sg_reduce", (local,), loc, into=into, op=kind, cluster=C)
            self.bind(op.dst, [r] * F, out, loc)
        elif opc == "warp_prefix_sum":
            # Copy f of lane p: the totals of copies < f, then the scan of copy f.
            results, before = [], None
            for f in range(F):
                last = into if F == 1 else self.target(op.dst, f)
                scan = self.emit(
                    out,
                    "sg_scan",
                    (xs[f],),
                    loc,
                    into=None if f else last,
                    op="add",
                    inclusive=True,
                    cluster=C,
                )
                results.append(
                    scan
                    if before is None
                    else self.emit(out, "add", (before, scan), loc, into=last)
                )
                if f < F - 1:
                    total = self.emit(out, "sg_reduce", (xs[f],), loc, op="add", cluster=C)
                    before = (
                        total if before is None else self.emit(out, "add", (before, total), loc)
                    )
            self.bind(op.dst, results, out, loc)
        elif opc in ("warp_any", "warp_all"):
            combine, sg_op = ("lor", "sg_any") if opc == "warp_any" else ("land", "sg_all")
            local = xs[0]
            for f in range(1, F):
                local = self.emit(out, combine, (local, xs[f]), loc)
            r = self.emit(out, sg_op, (local,), loc, into=into, cluster=C)
            self.bind(op.dst, [r] * F, out, loc)
        elif opc == "ballot":
            # Bit f*H + p of the warp's mask is copy f of invocation p (copy-major lanes).
            r = self.emit(out, "sg_ballot", (xs[0],), loc, into=into if F == 1 else None, cluster=C)
            for f in range(1, F):
                bits = self.emit(out, "sg_ballot", (xs[f],), loc, cluster=C)
                shifted = self.emit(out, "shl", (bits, ir.Const(f * self.H, u64)), loc)
                r = self.emit(out, "bor", (r, shifted), loc, into=into if f == F - 1 else None)
            self.bind(op.dst, [r] * F, out, loc)
        elif F > 1 and not self.is_div(x):
            self.bind(op.dst, [x] * F, out, loc)  # every lane holds x: any lane's x is x
        elif opc == "shuffle":
            self.shuffle(op, xs, out, into)
        else:
            self.shuffle_xor(op, xs, out, into)

    def target(self, dst: ir.Var, f: int) -> ir.Var | None:
        """Where copy f's result of a per-lane collective goes directly (dst's copy f)."""
        return self.val(dst, f) if self.is_div(dst) else None

    def bind(self, dst: ir.Var, results: list, out: list, loc: ir.Loc) -> None:
        """Give the collective's result to dst (each copy of it, if it is divergent)."""
        if self.is_div(dst):
            for f, r in enumerate(results):
                if r is not self.val(dst, f):
                    self.emit(out, "copy", (r,), loc, into=self.val(dst, f))
        elif any(r is not results[0] for r in results):
            raise RuntimeError(
                f"{loc}: collective result {dst!r} differs between lanes but its level is uniform"
            )
        elif results[0] is not dst:
            self.emit(out, "copy", (results[0],), loc, into=dst)

    def logical_index(self, value, out: list, loc: ir.Loc) -> ir.Value:
        """value mod W as an i32 (W is a power of two, so a mask also wraps negatives)."""
        if isinstance(value, ir.Const):
            return ir.Const(int(value.value) & (self.W - 1), i32)
        t = self.emit(out, "band", (value, ir.Const(self.W - 1, value.type)), loc)
        return t if value.type == i32 else self.emit(out, "cast", (t,), loc, type=i32)

    def read_lane(self, xs: list, src: ir.Value, out: list, loc: ir.Loc, into=None) -> ir.Var:
        """The value of x at logical lane src (0..W-1) of the same warp."""
        H, W, F = self.H, self.W, self.F
        if H == W:
            return self.emit(out, "sg_shuffle", (xs[0], src), loc, into=into)
        if H > W:  # the warp's lanes start at the invocation sg_lane & ~(W-1)
            inv = self.emit(out, "sg_lane", (), loc)
            base = self.emit(out, "band", (inv, ir.Const(-W, i32)), loc)
            phys = self.emit(out, "add", (base, src), loc)
            return self.emit(out, "sg_shuffle", (xs[0], phys), loc, into=into)
        # Logical lane src is copy src / H of invocation src % H.
        inv = self.arith(out, "band", src, ir.Const(H - 1, i32), loc)
        copy = self.arith(out, "shr", src, ir.Const(H.bit_length() - 1, i32), loc)
        vals = [self.emit(out, "sg_shuffle", (xs[g], inv), loc) for g in range(F)]
        return self.pick(copy, vals, out, loc, into)

    def pick(self, copy: ir.Value, vals: list, out: list, loc: ir.Loc, into=None) -> ir.Var:
        """vals[copy] for a run-time copy index, as a chain of selects."""
        if isinstance(copy, ir.Const):
            chosen = vals[int(copy.value)]
            return chosen if into is None else self.emit(out, "copy", (chosen,), loc, into=into)
        r = vals[-1]
        for g in range(len(vals) - 2, -1, -1):
            is_g = self.emit(out, "eq", (copy, ir.Const(g, i32)), loc)
            r = self.emit(out, "select", (is_g, vals[g], r), loc, into=into if g == 0 else None)
        return r

    def shuffle(self, op: ir.Op, xs: list, out: list, into) -> None:
        s, loc = op.args[1], op.loc
        if not self.is_div(s):  # one source lane for all copies: read it once
            r = self.read_lane(xs, self.logical_index(s, out, loc), out, loc, into)
            self.bind(op.dst, [r] * self.F, out, loc)
            return
        results = [
            self.read_lane(
                xs, self.logical_index(self.val(s, f), out, loc), out, loc, self.target(op.dst, f)
            )
            for f in range(self.F)
        ]
        self.bind(op.dst, results, out, loc)

    def shuffle_xor(self, op: ir.Op, xs: list, out: list, into) -> None:
        m, loc, H, F = op.args[1], op.loc, self.H, self.F
        if self.H >= self.W:
            mask = self.logical_index(m, out, loc)
            src = self.emit(out, "bxor", (self.lane(out, 0, loc), mask), loc)
            r = self.read_lane(xs, src, out, loc, into)
            self.bind(op.dst, [r] * F, out, loc)
            return
        if self.is_div(m):
            results = []
            for f in range(F):
                mask = self.logical_index(self.val(m, f), out, loc)
                src = self.emit(out, "bxor", (self.lane(out, f, loc), mask), loc)
                results.append(self.read_lane(xs, src, out, loc, self.target(op.dst, f)))
            self.bind(op.dst, results, out, loc)
            return
        # A uniform mask: (f*H + p) ^ m is copy f ^ (m / H) of invocation p ^ (m % H),
        # so one shuffle per copy serves every copy.
        mask = self.logical_index(m, out, loc)
        low = self.arith(out, "band", mask, ir.Const(H - 1, i32), loc)
        inv = self.emit(out, "bxor", (self.emit(out, "sg_lane", (), loc), low), loc)
        high = self.arith(out, "shr", mask, ir.Const(H.bit_length() - 1, i32), loc)
        vals = [self.emit(out, "sg_shuffle", (xs[g], inv), loc) for g in range(F)]
        results = []
        for f in range(F):
            copy = high if f == 0 else self.arith(out, "bxor", high, ir.Const(f, i32), loc)
            results.append(self.pick(copy, vals, out, loc, self.target(op.dst, f)))
        self.bind(op.dst, results, out, loc)
