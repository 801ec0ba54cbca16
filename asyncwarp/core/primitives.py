"""The async primitives of the kernel language: Channel, Barrier, Semaphore and Event.

The classes are what kernels name (`aw.Channel(aw.i32, 4)`); calling one inside
a kernel runs a frontend builtin registered here, which allocates block memory,
initialises it and returns a compile-time object whose methods emit the IR of
each operation (awaited ones as `ir.Suspend`). docs/async.md states what each
primitive guarantees.
"""

from __future__ import annotations

from . import ir
from .frontend_hooks import Awaitable, KernelObject, Literal, register_builtin
from .passes.lower_async_prep import emit_group_barrier
from .types import ArrayType, ScalarType, bool_, i32, u32, u64

_HEAD, _TAIL, _CLOSED = 0, 1, 2  # the channel's control words


class _KernelOnly:
    """Host side of a primitive: it only exists inside kernels."""

    def __init__(self, *args, **kwargs):
        raise TypeError(
            f"aw.{type(self).__name__}(...) can only be created inside "
            "@aw.kernel code (at its top level, before the first await)"
        )


class Channel(_KernelOnly):
    """`aw.Channel(dtype, capacity)`: a bounded multi-producer multi-consumer queue.

    Lives in block memory; a message is one value per lane (W values).
    `await ch.send(v)`, `v = await ch.recv()`, `ok, v = await ch.recv_ok()` and
    `ch.close()` are warp-level: every lane of the warp reaches them together.
    Messages from one warp arrive in the order it sent them. `recv()` on a
    closed and drained channel returns 0 (use `recv_ok()` to tell).
    """


class Barrier(_KernelOnly):
    """`aw.Barrier(count)`: an async barrier of `count` warps; `await bar.wait()`."""


class Semaphore(_KernelOnly):
    """`aw.Semaphore(initial)`: `await sem.acquire()` takes one permit per warp; `sem.release()`."""


class Event(_KernelOnly):
    """`aw.Event(flags, i)`: the flag `flags[i]` in global memory, for waits between blocks.

    `ev.set()` stores 1 with release order at device scope, `await ev.wait()`
    waits until it is non-zero (acquire), `ev.is_set()` tests it without waiting.
    """


# ------------------------------------------------------------------ helpers


def _const(v: int, t: ScalarType = u32) -> ir.Const:
    return ir.Const(v, t)


def _lane0(b: ir.Builder) -> ir.Var:
    return b.op("eq", b.op("lane"), _const(0, i32))


def _first_lane_of_block(b: ir.Builder) -> ir.Var:
    return b.op("land", b.op("eq", b.op("warp_id"), _const(0, i32)), _lane0(b))


def _if(b: ir.Builder, cond: ir.Value, then, else_=None) -> None:
    """`if cond: then(builder)` with nested builders (else_ likewise)."""
    tb = b.nested()
    then(tb)
    eb = b.nested()
    if else_ is not None:
        else_(eb)
    b.emit(ir.If(cond, tb.block, eb.block, b.loc))


def _broadcast(b: ir.Builder, v: ir.Value) -> ir.Var:
    """Lane 0's value on every lane (lane 0 decides for the warp)."""
    return b.op("shuffle", v, _const(0, i32))


def _int_arg(fe, x, what: str, loc: ir.Loc, minimum: int) -> int:
    value = fe.const_int(x, loc, what)
    if value < minimum:
        fe.error(f"{what} must be at least {minimum}, got {value}", loc)
    return value


def _arg(fe, args: list, kwargs: dict, pos: int, name: str, call: str, loc: ir.Loc):
    if pos < len(args):
        if name in kwargs:
            fe.error(f"{call} got {name!r} twice", loc)
        return args[pos]
    if name not in kwargs:
        fe.error(f"{call} is missing its argument {name!r}", loc)
    return kwargs[name]


def _check_kwargs(fe, kwargs: dict, allowed: tuple, call: str, loc: ir.Loc) -> None:
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        fe.error(f"{call} got unexpected keyword argument(s) {', '.join(bad)}", loc)


def _require_top_level(fe, loc: ir.Loc, call: str) -> None:
    """Primitives live for the whole kernel: created by every warp together, before any await."""
    if not fe.at_kernel_top_level():
        fe.error(
            f"{call} must be created at the kernel's top level, not inside a branch, "
            "a loop or an @aw.func",
            loc,
            hint="create it at the start of the kernel and pass it to functions",
        )
    if fe.has_awaited():
        fe.error(
            f"{call} must be created before the kernel's first await",
            loc,
            hint="its block memory is initialised and then published with a block "
            "barrier, which every warp must reach before any task starts",
        )


def _no_args(fe, args: list, kwargs: dict, call: str, loc: ir.Loc) -> None:
    if args or kwargs:
        fe.error(f"{call} takes no arguments", loc)


class _Wait(Awaitable):
    """An awaitable whose wait is emitted by a function of (builder, loc)."""

    def __init__(self, describe: str, emit):
        self.describe = describe
        self._emit = emit

    def emit_await(self, fe, loc: ir.Loc):
        b = fe.b
        b.loc = loc
        return self._emit(b, loc)


# ------------------------------------------------------------------ Channel


class _ChannelWait(_Wait):
    """A send or receive: records which task awaits it (the frontend picks each
    channel's protocol from that), then emits its wait."""

    def __init__(self, channel: ChannelObject, role: str, describe: str, emit):
        super().__init__(describe, emit)
        self.channel, self.role = channel, role

    def emit_await(self, fe, loc: ir.Loc):
        fe.note_channel_use(self.channel.index, self.role)
        return super().emit_await(fe, loc)


class ChannelObject(KernelObject):
    """A channel inside a kernel: a ring of `capacity` slots of W values.

    data[slot * W + lane] holds the message (data[slot] when every message is
    warp-uniform, `compact`); ctl holds head (next receive),
    tail (next send) and closed. Two protocols hand the slots over.

    In general (several sending or receiving warps) it is a Vyukov ring:
    seq[slot] is the slot's ticket, 2p when it is free for the sender of
    position p, 2p + 1 once message p is published (receiving it makes it
    2(p + capacity), free for the next lap); doubling keeps "published" and
    "free" apart even with one slot. Lane 0 reserves a position with a CAS on
    head or tail and tells its warp.

    When the frontend found one sending warp and one receiving warp (`single`),
    each side keeps its position in a register (`sent`, `received`) and each
    slot has two phase barriers (pbar_* ops; mbarriers on CUDA sm_80+):
    bars[slot] completes a lap when the slot is full, bars[capacity + slot] when
    it is free again. A send or receive is then a test by every lane, a warp
    vote and an arrival by every lane: no CAS, no shuffles, no seq (head and tail
    unused).
    """

    kind = "aw.Channel"

    def __init__(
        self,
        elem: ScalarType,
        capacity: int,
        W: int,
        data,
        slots,
        ctl,
        loc: ir.Loc,
        index: int,
        single: bool,
    ):
        self.elem, self.capacity, self.W = elem, capacity, W
        self.data, self.ctl = data, ctl
        # the slots' hand-over words: phase barriers (single) or tickets (Vyukov ring)
        self.bars, self.seq = (slots, None) if single else (None, slots)
        self.where = f"the channel of line {loc.line}"
        self.index, self.single = index, single
        # the frontend found every message warp-uniform (single protocol only)
        self.compact = False
        # the single protocol's positions, one register per warp (only its side uses it)
        self.sent: ir.Var | None = None
        self.received: ir.Var | None = None

    def call_method(self, fe, name: str, args: list, kwargs: dict, loc: ir.Loc):
        call = f"ch.{name}(...)"
        if name == "send":
            _check_kwargs(fe, kwargs, ("value",), call, loc)
            value = fe.value(
                _arg(fe, args, kwargs, 0, "value", call, loc), self.elem, loc, what="the message"
            )
            fe.note_channel_value(self.index, value)
            send = self._send_single if self.single else self._send
            return _ChannelWait(
                self, "send", f"send on {self.where}", lambda b, at: send(b, value, at)
            )
        if name in ("recv", "recv_ok"):
            _no_args(fe, args, kwargs, call, loc)
            with_ok = name == "recv_ok"
            recv = self._recv_single if self.single else self._recv
            return _ChannelWait(
                self, "recv", f"{name} on {self.where}", lambda b, at: recv(b, at, with_ok)
            )
        if name == "close":
            _no_args(fe, args, kwargs, call, loc)
            fe.b.op(
                "store", self.ctl, _const(_CLOSED, i32), _const(1), order="release", scope="block"
            )
            return None
        return super().call_method(fe, name, args, kwargs, loc)

    def _slot(self, b: ir.Builder, pos: ir.Value) -> ir.Var:
        return b.op("cast", b.op("mod", pos, _const(self.capacity)), type=i32)

    def _index(self, b: ir.Builder, slot: ir.Value) -> ir.Value:
        if self.compact:  # one word per message: every lane writes and reads the same one
            return slot
        return b.op("add", b.op("mul", slot, _const(self.W, i32)), b.op("lane"))

    @staticmethod
    def _ticket(b: ir.Builder, pos: ir.Value, published: bool) -> ir.Var:
        twice = b.op("mul", pos, _const(2))
        return b.op("add", twice, _const(1)) if published else twice

    # ---- one sending warp, one receiving warp: phase barriers per slot

    def _slot_test(self, b: ir.Builder, bar: ir.Value, pos: ir.Value, free: bool) -> ir.Var:
        """Whether lap pos // capacity of a slot's `full` (or `free`) barrier is complete,
        as this lane sees it (acquire).

        Lap L of `full` completes when message L * capacity + slot is published; the
        sender of lap L waits for lap L - 1 of `free` (the parity of the lap before
        lap 0 counts as complete, so every slot starts free)."""
        parity = b.op("band", b.op("floordiv", pos, _const(self.capacity)), _const(1))
        if free:
            parity = b.op("bxor", parity, _const(1))
        return b.op("pbar_test", self.bars, bar, parity, count=self.W)

    def _slot_done(self, b: ir.Builder, bar: ir.Value, pos: ir.Value, free: bool) -> ir.Var:
        """_slot_test, true only when every lane saw the lap complete."""
        return b.op("warp_all", self._slot_test(b, bar, pos, free))

    def _arrive(self, b: ir.Builder, bar: ir.Value) -> None:
        """Every lane arrives once it is done with its value of the slot (release): a phase
        is one warp's W arrivals. No warp sync first: each arrival orders its own lane's
        access, and the phase completes only after all of them (an mbarrier's waiter
        synchronises with every arrival of the phase it saw complete)."""
        b.op("pbar_arrive", self.bars, bar, count=self.W, warp=True)

    def _send_single(self, b: ir.Builder, value: ir.Value, loc: ir.Loc) -> None:
        ready = b.tmp(bool_, "sent")
        pb = b.nested()
        pos = self.sent
        slot = self._slot(pb, pos)
        ok = self._slot_done(pb, pb.op("add", slot, _const(self.capacity, i32)), pos, True)

        def publish(wb: ir.Builder) -> None:
            wb.op("store", self.data, self._index(wb, slot), value, order="weak", scope="block")
            self._arrive(wb, slot)
            wb.assign(pos, wb.op("add", pos, _const(1)))

        _if(pb, ok, publish)
        pb.assign(ready, ok)
        b.emit(ir.Suspend(pb.block, ready, f"send on {self.where}", loc))

    def _recv_single(self, b: ir.Builder, loc: ir.Loc, with_ok: bool):
        value = b.tmp(self.elem, "received")
        got = b.tmp(bool_, "recv_ok")
        ready = b.tmp(bool_, "recv_ready")
        pb = b.nested()
        pos = self.received
        slot = self._slot(pb, pos)
        pb.assign(got, self._slot_done(pb, slot, pos, False))
        pb.assign(value, _const(0, self.elem) if not self.elem.is_bool else ir.Const(False, bool_))
        pb.assign(ready, got)

        def consume(rb: ir.Builder) -> None:
            rb.assign(
                value, rb.op("load", self.data, self._index(rb, slot), order="weak", scope="block")
            )
            self._arrive(rb, rb.op("add", slot, _const(self.capacity, i32)))
            rb.assign(pos, rb.op("add", pos, _const(1)))

        def maybe_drained(eb: ir.Builder) -> None:
            # Closed, then still no message at our position: every message sent
            # before close() was received.
            closed = eb.op("load", self.ctl, _const(_CLOSED, i32), order="acquire", scope="block")
            sent = self._slot_test(eb, slot, pos, False)
            empty = eb.op("land", eb.op("ne", closed, _const(0)), eb.op("lnot", sent))
            eb.assign(ready, eb.op("warp_all", empty))

        _if(pb, got, consume, maybe_drained)
        what = f"{'recv_ok' if with_ok else 'recv'} on {self.where}"
        b.emit(ir.Suspend(pb.block, ready, what, loc))
        return (got, value) if with_ok else value

    # ---- any number of senders and receivers

    def _send(self, b: ir.Builder, value: ir.Value, loc: ir.Loc) -> None:
        # One attempt per poll; lane 0 reserves position `tail` with a CAS when
        # its slot's ticket says it is free, and tells the warp (shuffle).
        won, at = b.tmp(u32, "send_won"), b.tmp(u32, "send_pos")
        ready = b.tmp(bool_, "sent")
        pb = b.nested()
        pb.assign(won, _const(0))
        pb.assign(at, _const(0))

        def reserve(lb: ir.Builder) -> None:
            pos = lb.op("load", self.ctl, _const(_TAIL, i32), order="relaxed", scope="block")
            ticket = lb.op("load", self.seq, self._slot(lb, pos), order="acquire", scope="block")

            def claim(cb: ir.Builder) -> None:
                old = cb.op(
                    "atomic_cas",
                    self.ctl,
                    _const(_TAIL, i32),
                    pos,
                    cb.op("add", pos, _const(1)),
                    order="relaxed",
                    scope="block",
                )
                cb.assign(won, cb.op("select", cb.op("eq", old, pos), _const(1), _const(0)))

            _if(lb, lb.op("eq", ticket, self._ticket(lb, pos, False)), claim)
            lb.assign(at, pos)

        _if(pb, _lane0(pb), reserve)
        ok = pb.op("ne", _broadcast(pb, won), _const(0))
        pos = _broadcast(pb, at)

        def publish(wb: ir.Builder) -> None:
            slot = self._slot(wb, pos)
            wb.op("warp_sync")  # lane 0 acquired the slot: order the lanes' writes after it
            idx = wb.op("add", wb.op("mul", slot, _const(self.W, i32)), wb.op("lane"))
            wb.op("store", self.data, idx, value, order="weak", scope="block")
            wb.op("warp_sync")  # every lane's write before lane 0's release
            _if(
                wb,
                _lane0(wb),
                lambda rb: rb.op(
                    "store",
                    self.seq,
                    slot,
                    self._ticket(rb, pos, True),
                    order="release",
                    scope="block",
                ),
            )

        _if(pb, ok, publish)
        pb.assign(ready, ok)
        b.emit(ir.Suspend(pb.block, ready, f"send on {self.where}", loc))

    def _recv(self, b: ir.Builder, loc: ir.Loc, with_ok: bool):
        # status 0: retry, 1: received, 2: closed and drained. `closed` is read
        # before the ticket, so every message sent before close() is seen.
        status, at = b.tmp(u32, "recv_status"), b.tmp(u32, "recv_pos")
        value = b.tmp(self.elem, "received")
        got = b.tmp(bool_, "recv_ok")
        ready = b.tmp(bool_, "recv_ready")
        pb = b.nested()
        pb.assign(status, _const(0))
        pb.assign(at, _const(0))

        def take(lb: ir.Builder) -> None:
            closed = lb.op("load", self.ctl, _const(_CLOSED, i32), order="acquire", scope="block")
            pos = lb.op("load", self.ctl, _const(_HEAD, i32), order="relaxed", scope="block")
            ticket = lb.op("load", self.seq, self._slot(lb, pos), order="acquire", scope="block")
            published = self._ticket(lb, pos, True)

            def claim(cb: ir.Builder) -> None:
                old = cb.op(
                    "atomic_cas",
                    self.ctl,
                    _const(_HEAD, i32),
                    pos,
                    cb.op("add", pos, _const(1)),
                    order="relaxed",
                    scope="block",
                )
                cb.assign(status, cb.op("select", cb.op("eq", old, pos), _const(1), _const(0)))

            def maybe_drained(eb: ir.Builder) -> None:
                lag = eb.op("cast", eb.op("sub", ticket, published), type=i32)
                empty = eb.op("lt", lag, _const(0, i32))
                drained = eb.op("land", empty, eb.op("ne", closed, _const(0)))
                eb.assign(status, eb.op("select", drained, _const(2), _const(0)))

            _if(lb, lb.op("eq", ticket, published), claim, maybe_drained)
            lb.assign(at, pos)

        _if(pb, _lane0(pb), take)
        st = _broadcast(pb, status)
        pos = _broadcast(pb, at)
        pb.assign(got, pb.op("eq", st, _const(1)))
        pb.assign(value, _const(0, self.elem) if not self.elem.is_bool else ir.Const(False, bool_))

        def consume(rb: ir.Builder) -> None:
            slot = self._slot(rb, pos)
            rb.op("warp_sync")  # lane 0's acquire of the ticket before the lanes' reads
            idx = rb.op("add", rb.op("mul", slot, _const(self.W, i32)), rb.op("lane"))
            rb.assign(value, rb.op("load", self.data, idx, order="weak", scope="block"))
            rb.op("warp_sync")  # every lane's read before lane 0 frees the slot
            lap = self._ticket(rb, rb.op("add", pos, _const(self.capacity)), False)
            _if(
                rb,
                _lane0(rb),
                lambda sb: sb.op("store", self.seq, slot, lap, order="release", scope="block"),
            )

        _if(pb, got, consume)
        pb.assign(ready, pb.op("ne", st, _const(0)))
        what = f"{'recv_ok' if with_ok else 'recv'} on {self.where}"
        b.emit(ir.Suspend(pb.block, ready, what, loc))
        return (got, value) if with_ok else value


@register_builtin(Channel)
def _make_channel(fe, args: list, kwargs: dict, loc: ir.Loc) -> ChannelObject:
    call = "aw.Channel(dtype, capacity)"
    _check_kwargs(fe, kwargs, ("dtype", "capacity"), call, loc)
    elem = _arg(fe, args, kwargs, 0, "dtype", call, loc)
    if not isinstance(elem, ScalarType):
        fe.error(f"{call}: dtype must be a scalar type such as aw.f32, got {elem!r}", loc)
    capacity = _int_arg(
        fe, _arg(fe, args, kwargs, 1, "capacity", call, loc), f"{call}: capacity", loc, 1
    )
    if len(args) > 2:
        fe.error(f"{call} takes 2 arguments, got {len(args)}", loc)
    _require_top_level(fe, loc, "aw.Channel(...)")
    W = fe.warp_width
    index = fe.channels_created
    fe.channels_created += 1
    single = index in fe.single_warp_channels
    compact = single and index in fe.uniform_message_channels
    data = fe.shared_alloc(elem, capacity if compact else capacity * W, "chan_data")
    if single:  # a full and a free phase barrier per slot
        slots = fe.shared_alloc(u64, 2 * capacity, "chan_bars")
    else:  # a ticket per slot
        slots = fe.shared_alloc(u32, capacity, "chan_seq")
    ctl = fe.shared_alloc(u32, 3, "chan_ctl")
    b = fe.b
    b.loc = loc

    def per_slot(wb: ir.Builder, n: int, init) -> None:
        # warp 0's lanes share the n words
        k = wb.tmp(i32, "slot")
        wb.assign(k, wb.op("lane"))
        hb = wb.nested()
        more = hb.op("lt", k, _const(n, i32))
        body = wb.nested()
        init(body, k)
        latch = wb.nested()
        latch.assign(k, latch.op("add", k, _const(W, i32)))
        wb.emit(ir.Loop(hb.block, more, body.block, latch.block, loc))

    def init_ticket(body: ir.Builder, k: ir.Var) -> None:
        # slot k starts free for the sender of position k (ticket 2k)
        ticket = body.op("mul", body.op("cast", k, type=u32), _const(2))
        body.op("store", slots, k, ticket, order="weak", scope="block")

    def init_bars(wb: ir.Builder) -> None:
        per_slot(wb, 2 * capacity, lambda body, k: body.op("pbar_init", slots, k, count=W))

    def init_tickets(wb: ir.Builder) -> None:
        per_slot(wb, capacity, init_ticket)

    def init_control(ib: ir.Builder) -> None:
        for word in (_HEAD, _TAIL, _CLOSED):
            ib.op("store", ctl, _const(word, i32), _const(0), order="weak", scope="block")

    _if(b, b.op("eq", b.op("warp_id"), _const(0, i32)), init_bars if single else init_tickets)
    _if(b, _first_lane_of_block(b), init_control)
    b.op("barrier")
    channel = ChannelObject(elem, capacity, W, data, slots, ctl, loc, index, single)
    channel.compact = compact
    if single:
        channel.sent, channel.received = b.tmp(u32, "chan_sent"), b.tmp(u32, "chan_received")
        b.assign(channel.sent, _const(0))
        b.assign(channel.received, _const(0))
    return channel


# ------------------------------------------------------------------ Barrier


class BarrierObject(KernelObject):
    """An async barrier of `count` warps: words[0] counts arrivals, words[1] is the generation."""

    kind = "aw.Barrier"

    def __init__(self, count: ir.Value, words: ir.Var, loc: ir.Loc):
        self.count, self.words = count, words
        self.where = f"the barrier of line {loc.line}"

    def call_method(self, fe, name: str, args: list, kwargs: dict, loc: ir.Loc):
        if name == "wait":
            _no_args(fe, args, kwargs, "bar.wait()", loc)
            return _Wait(
                f"wait on {self.where}",
                lambda b, at: emit_group_barrier(
                    b, self.words, 0, self.count, f"the other warps at {self.where}"
                ),
            )
        return super().call_method(fe, name, args, kwargs, loc)


@register_builtin(Barrier)
def _make_barrier(fe, args: list, kwargs: dict, loc: ir.Loc) -> BarrierObject:
    call = "aw.Barrier(count)"
    _check_kwargs(fe, kwargs, ("count",), call, loc)
    raw = _arg(fe, args, kwargs, 0, "count", call, loc)
    if isinstance(raw, (Literal, ir.Const)):
        count: ir.Value = _const(_int_arg(fe, raw, f"{call}: count", loc, 1))
    else:
        count = fe.value(raw, u32, loc, what="the barrier's warp count")
    _require_top_level(fe, loc, "aw.Barrier(...)")
    words = fe.shared_alloc(u32, 2, "barrier")
    b = fe.b
    b.loc = loc

    def init(ib: ir.Builder) -> None:
        ib.op("store", words, _const(0, i32), _const(0), order="weak", scope="block")
        ib.op("store", words, _const(1, i32), _const(0), order="weak", scope="block")

    _if(b, _first_lane_of_block(b), init)
    b.op("barrier")
    return BarrierObject(count, words, loc)


# ------------------------------------------------------------------ Semaphore


class SemaphoreObject(KernelObject):
    """A counting semaphore in block memory: permits[0] is the number of free permits."""

    kind = "aw.Semaphore"

    def __init__(self, permits: ir.Var, loc: ir.Loc):
        self.permits = permits
        self.where = f"the semaphore of line {loc.line}"

    def call_method(self, fe, name: str, args: list, kwargs: dict, loc: ir.Loc):
        if name == "acquire":
            _no_args(fe, args, kwargs, "sem.acquire()", loc)
            return _Wait(f"acquire on {self.where}", self._acquire)
        if name == "release":
            _no_args(fe, args, kwargs, "sem.release()", loc)
            b = fe.b
            b.loc = loc
            b.op("warp_sync")  # the warp's critical section before the permit goes back
            _if(
                b,
                _lane0(b),
                lambda rb: rb.op(
                    "atomic",
                    self.permits,
                    _const(0, i32),
                    _const(1, i32),
                    op="add",
                    order="release",
                    scope="block",
                ),
            )
            return None
        return super().call_method(fe, name, args, kwargs, loc)

    def _acquire(self, b: ir.Builder, loc: ir.Loc) -> None:
        won = b.tmp(i32, "sem_won")
        ready = b.tmp(bool_, "acquired")
        pb = b.nested()
        pb.assign(won, _const(0, i32))

        def take(lb: ir.Builder) -> None:
            free = lb.op("load", self.permits, _const(0, i32), order="relaxed", scope="block")

            def claim(cb: ir.Builder) -> None:
                old = cb.op(
                    "atomic_cas",
                    self.permits,
                    _const(0, i32),
                    free,
                    cb.op("sub", free, _const(1, i32)),
                    order="acquire",
                    scope="block",
                )
                cb.assign(
                    won, cb.op("select", cb.op("eq", old, free), _const(1, i32), _const(0, i32))
                )

            _if(lb, lb.op("gt", free, _const(0, i32)), claim)

        _if(pb, _lane0(pb), take)
        pb.assign(ready, pb.op("ne", _broadcast(pb, won), _const(0, i32)))
        _if(pb, ready, lambda sb: sb.op("warp_sync"))  # lane 0's acquire covers the warp
        b.emit(ir.Suspend(pb.block, ready, f"acquire on {self.where}", loc))


@register_builtin(Semaphore)
def _make_semaphore(fe, args: list, kwargs: dict, loc: ir.Loc) -> SemaphoreObject:
    call = "aw.Semaphore(initial)"
    _check_kwargs(fe, kwargs, ("initial",), call, loc)
    raw = _arg(fe, args, kwargs, 0, "initial", call, loc)
    if isinstance(raw, (Literal, ir.Const)):
        initial: ir.Value = _const(_int_arg(fe, raw, f"{call}: initial", loc, 0), i32)
    else:
        initial = fe.value(raw, i32, loc, what="the semaphore's initial permits")
    _require_top_level(fe, loc, "aw.Semaphore(...)")
    permits = fe.shared_alloc(i32, 1, "semaphore")
    b = fe.b
    b.loc = loc
    _if(
        b,
        _first_lane_of_block(b),
        lambda ib: ib.op("store", permits, _const(0, i32), initial, order="weak", scope="block"),
    )
    b.op("barrier")
    return SemaphoreObject(permits, loc)


# ------------------------------------------------------------------ Event


class EventObject(KernelObject):
    """A flag in global memory: set with a release store, awaited with acquire loads."""

    kind = "aw.Event"

    def __init__(self, flags: ir.Var, index: ir.Value, loc: ir.Loc):
        self.flags, self.index = flags, index
        self.where = f"{flags.name}[...] (the event of line {loc.line})"

    def call_method(self, fe, name: str, args: list, kwargs: dict, loc: ir.Loc):
        b = fe.b
        b.loc = loc
        if name == "set":
            _no_args(fe, args, kwargs, "ev.set()", loc)
            b.op(
                "store",
                self.flags,
                self.index,
                _const(1, self.flags.type.elem),
                order="release",
                scope="device",
            )
            return None
        if name == "is_set":
            _no_args(fe, args, kwargs, "ev.is_set()", loc)
            return self._test(b)
        if name == "wait":
            _no_args(fe, args, kwargs, "ev.wait()", loc)
            return _Wait(f"wait on {self.where}", self._wait)
        return super().call_method(fe, name, args, kwargs, loc)

    def _test(self, b: ir.Builder) -> ir.Var:
        flag = b.op("load", self.flags, self.index, order="acquire", scope="device")
        return b.op("ne", flag, _const(0, self.flags.type.elem))

    def _wait(self, b: ir.Builder, loc: ir.Loc) -> None:
        pb = b.nested()
        ready = self._test(pb)
        b.emit(ir.Suspend(pb.block, ready, f"wait on {self.where}", loc, scope="device"))


@register_builtin(Event)
def _make_event(fe, args: list, kwargs: dict, loc: ir.Loc) -> EventObject:
    call = "aw.Event(flags, index)"
    _check_kwargs(fe, kwargs, ("flags", "index"), call, loc)
    flags = _arg(fe, args, kwargs, 0, "flags", call, loc)
    if not (
        isinstance(flags, ir.Var)
        and isinstance(flags.type, ArrayType)
        and flags.type.space == "global"
        and flags.type.elem.is_int
    ):
        fe.error(
            f"{call}: flags must be a global array of integers (a kernel parameter such "
            f"as aw.Array[aw.u32]), got {flags!r}",
            loc,
        )
    index = fe.value(
        _arg(fe, args, kwargs, 1, "index", call, loc), i32, loc, what="the event's index"
    )
    return EventObject(flags, index, loc)


__all__ = ["Channel", "Barrier", "Semaphore", "Event"]
