"""The reference interpreter (the `sim` device): runs lowered IR lane-exact on the CPU.

Each physical subgroup is a generator walking the IR with an active-lane mask
(core.interpreter_exec), interleaved by a round-robin, seeded random or unfair
scheduler at scheduling points; stuck spins and barriers raise DeadlockError and
runaway kernels WatchdogTimeout, each naming the subgroups and source lines.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from . import ir
from .errors import DeadlockError, WatchdogTimeout
from .interpreter_exec import YIELD_BARRIER, YIELD_SLEEP, Program, compile_program, run_block
from .types import ArrayType, ScalarType

SCHEDULERS = ("round_robin", "random", "unfair")
DEFAULT_MAX_STEPS = 50_000_000

_programs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class RunStats:
    """What a run did: op executions, subgroup switches, who finished when."""

    steps: int = 0
    switches: int = 0
    finish_order: list = field(default_factory=list)  # (block, subgroup) in finishing order
    clock_ns: int = 0


class _Machine:
    """Global run state: step count, virtual clock, memory write version."""

    __slots__ = ("name", "grid", "steps", "sleep_ns", "mem_version")

    def __init__(self, name: str, grid: int):
        self.name = name
        self.grid = grid
        self.steps = 0
        self.sleep_ns = 0
        self.mem_version = 0

    def clock(self) -> int:
        # One virtual nanosecond per executed op, plus what `sleep` added.
        return self.steps + self.sleep_ns


class _Block:
    __slots__ = ("index", "shared", "subgroups", "arrived", "finished")

    def __init__(self, index: int):
        self.index = index
        self.shared: dict = {}
        self.subgroups: list = []
        self.arrived: list = []
        self.finished = 0


class _Subgroup:
    __slots__ = (
        "machine",
        "block",
        "sg_id",
        "lane",
        "live_mask",
        "regs",
        "loops",
        "where",
        "gen",
        "fingerprint",
        "last_fingerprint",
        "stuck_version",
        "barrier_pred",
        "barrier_result",
        "waiting",
        "done",
        "scalar_slots",
    )

    def __init__(self, machine, block, sg_id, program: Program, regs: list, live: int):
        H = program.H
        self.machine = machine
        self.block = block
        self.sg_id = sg_id
        self.lane = np.arange(H, dtype=np.int32)
        self.live_mask = self.lane < live
        self.regs = regs
        self.scalar_slots = program.scalar_slots
        self.loops: list = []
        self.where = None
        self.fingerprint = None
        self.last_fingerprint = None
        self.stuck_version = None
        self.barrier_pred = True
        self.barrier_result = False
        self.waiting = False
        self.done = False
        self.gen = self._main(program)

    def _main(self, program: Program):
        yield from run_block(program.code, self, self.live_mask)

    def registers_digest(self) -> int:
        regs = self.regs
        return hash(b"".join(regs[i].tobytes() for i in self.scalar_slots))

    def describe(self) -> dict:
        """Where this subgroup is, for deadlock and watchdog reports."""
        where = self.where
        loc = getattr(where, "loc", None)
        attrs = getattr(where, "attrs", None) or {}
        if self.waiting:
            state = "waiting at a barrier"
        elif self.stuck_version is not None:
            state = "spinning without progress"
        else:
            state = "running"
        what = attrs.get("what", "")
        construct = getattr(where, "opcode", None) or ("loop" if where is not None else "start")
        return {
            "block": self.block.index,
            "subgroup": self.sg_id,
            "state": state,
            "at": str(loc) if loc is not None else "?",
            "op": construct,
            "what": what,
        }


def _format_pending(pending: list) -> str:
    lines = []
    for p in pending:
        what = f" waiting for {p['what']}" if p["what"] else ""
        lines.append(
            f"  block {p['block']} subgroup {p['subgroup']}: {p['state']} at "
            f"{p['at']} ({p['op']}){what}"
        )
    return "\n".join(lines)


def _deadlock(machine: _Machine, why: str, subgroups) -> DeadlockError:
    pending = [s.describe() for s in subgroups]
    return DeadlockError(
        f"deadlock in kernel {machine.name!r}: {why}\n{_format_pending(pending)}", pending
    )


def _convert_args(kernel: ir.Kernel, args: list, H: int) -> list:
    if len(args) != len(kernel.params):
        raise TypeError(
            f"kernel {kernel.name!r} takes {len(kernel.params)} arguments "
            f"({', '.join(p.name for p in kernel.params)}), got {len(args)}"
        )
    values = []
    for p, a in zip(kernel.params, args, strict=True):
        t = p.type
        if isinstance(t, ArrayType):
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype != t.elem.dtype:
                got = (
                    f"ndarray {a.dtype}[{a.ndim}-d]"
                    if isinstance(a, np.ndarray)
                    else type(a).__name__
                )
                raise TypeError(
                    f"argument {p.name!r} of kernel {kernel.name!r} must be a 1-D "
                    f"numpy array of {t.elem.dtype}, got {got}"
                )
            values.append(a)
            continue
        values.append(np.full(H, _scalar_arg(kernel, p, t, a), dtype=t.dtype))
    return values


def _scalar_arg(kernel: ir.Kernel, p: ir.Var, t: ScalarType, a):
    if isinstance(a, np.ndarray) and a.ndim == 0:
        a = a[()]
    what = f"argument {p.name!r} of kernel {kernel.name!r} ({t})"
    if t.is_bool:
        if not isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{what} must be a bool, got {type(a).__name__}")
        return bool(a)
    if t.is_int:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{what} must be an integer, got {type(a).__name__}")
        lim = np.iinfo(t.dtype)
        if not lim.min <= int(a) <= lim.max:
            raise ValueError(f"{what}: {int(a)} is out of range [{lim.min}, {lim.max}]")
        return int(a)
    if not isinstance(a, (int, float, np.integer, np.floating)) or isinstance(a, (bool, np.bool_)):
        raise TypeError(f"{what} must be a number, got {type(a).__name__}")
    return a


def program_for(kernel: ir.Kernel) -> Program:
    """The compiled form of a lowered kernel, cached per kernel object (do not mutate it after)."""
    prog = _programs.get(kernel)
    if prog is None:
        prog = _programs[kernel] = compile_program(kernel)
    return prog


def run(
    kernel: ir.Kernel,
    grid: int,
    args: list,
    *,
    scheduler: str = "round_robin",
    seed: int = 0,
    max_steps: int | None = None,
    watchdog_ns: int = 0,
) -> RunStats:
    """Run lowered `kernel` on `grid` blocks; numpy arrays in `args` are written in place.

    scheduler: "round_robin" (switch at every scheduling point), "random" (seeded
    choice at every point) or "unfair" (a subgroup runs until it finishes or
    waits at a barrier). Raises DeadlockError, WatchdogTimeout (max_steps op
    executions, or watchdog_ns of virtual clock) and IndexError (out of bounds).
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}")
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"grid must be a positive number of blocks, got {grid!r}")
    prog = program_for(kernel)
    H = prog.H
    param_values = _convert_args(kernel, args, H)
    machine = _Machine(kernel.name, int(grid))
    per_block = -(-prog.block_size // H)  # the last subgroup may be partial
    zeros = {d: np.zeros(H, dtype=d) for d in set(prog.slot_dtypes) if d is not None}
    initial = [zeros[d] if d is not None else None for d in prog.slot_dtypes]
    for slot, value in zip(prog.param_slots, param_values, strict=True):
        initial[slot] = value
    blocks = []
    for b in range(int(grid)):
        block = _Block(b)
        for s in range(per_block):
            live = min(H, prog.block_size - s * H)
            block.subgroups.append(_Subgroup(machine, block, s, prog, list(initial), live))
        blocks.append(block)
    limit = DEFAULT_MAX_STEPS if max_steps is None else max_steps
    with np.errstate(all="ignore"):
        stats = _Scheduler(machine, blocks, scheduler, seed, limit, watchdog_ns).run()
    stats.steps = machine.steps
    stats.clock_ns = machine.clock()
    return stats


class _RunQueue:
    """The subgroups that may run, and which one runs next under each policy."""

    def __init__(self, subgroups: list, policy: str, seed: int):
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.queue: deque = deque(subgroups)  # round_robin, unfair: front runs next
        self.pool: list = list(subgroups)  # random: any may run next
        self.where = {sg: i for i, sg in enumerate(self.pool)}

    def __bool__(self) -> bool:
        return bool(self.pool if self.policy == "random" else self.queue)

    def pick(self):
        if self.policy == "random":
            return self.pool[int(self.rng.integers(len(self.pool)))]
        if self.policy == "round_robin":
            return self.queue.popleft()  # put back by keep() unless it stopped
        return self.queue[0]  # unfair: the front one runs until it stops

    def keep(self, sg) -> None:
        """`sg` reached a scheduling point and may run again."""
        if self.policy == "round_robin":
            self.queue.append(sg)

    def drop(self, sg) -> None:
        """`sg` finished or waits at a barrier."""
        if self.policy == "random":
            i = self.where.pop(sg)
            last = self.pool.pop()
            if last is not sg:
                self.pool[i] = last
                self.where[last] = i
        elif self.policy == "unfair":
            self.queue.remove(sg)

    def add(self, sg, first: bool = False) -> None:
        """`sg` may run again after a barrier; `first`: next under "unfair"."""
        if self.policy == "random":
            self.where[sg] = len(self.pool)
            self.pool.append(sg)
        elif first and self.policy == "unfair":
            self.queue.appendleft(sg)
        else:
            self.queue.append(sg)


class _Scheduler:
    def __init__(self, machine, blocks, policy, seed, max_steps, watchdog_ns):
        self.machine = machine
        self.blocks = blocks
        self.policy = policy
        self.max_steps = max_steps
        self.watchdog_ns = watchdog_ns
        self.live = [sg for b in blocks for sg in b.subgroups]
        self.runnable = _RunQueue(self.live, policy, seed)
        self.stats = RunStats()

    def run(self) -> RunStats:
        previous = None
        machine = self.machine
        while self.runnable:
            sg = self.runnable.pick()
            if sg is not previous:
                self.stats.switches += previous is not None
                previous = sg
            try:
                token = next(sg.gen)
            except StopIteration:
                self.runnable.drop(sg)
                self._finish(sg)
                continue
            if token == YIELD_BARRIER:
                self.runnable.drop(sg)
                self._arrive(sg)
            else:
                self.runnable.keep(sg)
                if token == YIELD_SLEEP:
                    self._spun(sg)
            if machine.steps > self.max_steps:
                raise self._timeout(
                    f"{machine.steps} op executions exceed max_steps={self.max_steps}"
                )
            if self.watchdog_ns and machine.clock() > self.watchdog_ns:
                raise self._timeout(
                    f"virtual clock {machine.clock()} ns exceeds the watchdog "
                    f"budget of {self.watchdog_ns} ns"
                )
        if self.live:
            raise _deadlock(machine, "no subgroup can run", self.live)
        return self.stats

    def _timeout(self, why: str) -> WatchdogTimeout:
        pending = [s.describe() for s in self.live]
        return WatchdogTimeout(
            f"watchdog stopped kernel {self.machine.name!r}: {why}\n{_format_pending(pending)}",
            pending,
        )

    def _finish(self, sg) -> None:
        sg.done = True
        self.live.remove(sg)
        self.stats.finish_order.append((sg.block.index, sg.sg_id))
        block = sg.block
        block.finished += 1
        if block.arrived:
            raise _deadlock(
                self.machine,
                f"subgroup {sg.sg_id} of block {block.index} finished while others wait at a "
                "barrier it never reaches (barriers need every subgroup of the block)",
                block.arrived,
            )

    def _arrive(self, sg) -> None:
        block = sg.block
        if block.finished:
            gone = [s.sg_id for s in block.subgroups if s.done]
            raise _deadlock(
                self.machine,
                f"subgroup {sg.sg_id} of block {block.index} waits at a barrier that subgroups "
                f"{gone}, already finished, never reach",
                [sg],
            )
        sg.waiting = True
        block.arrived.append(sg)
        if len(block.arrived) < len(block.subgroups):
            return
        kinds = {s.where.opcode for s in block.arrived}
        if len(kinds) > 1:
            raise _deadlock(
                self.machine,
                f"subgroups of block {block.index} meet at different "
                f"kinds of barrier ({', '.join(sorted(kinds))})",
                block.arrived,
            )
        # block_all: the AND of the predicate over the active lanes of every subgroup.
        result = all(s.barrier_pred for s in block.arrived)
        for s in block.arrived:
            s.barrier_result = result
            s.waiting = False
            if s is not sg:
                self.runnable.add(s)
        # The last to arrive never really stopped: under "unfair" it keeps running.
        self.runnable.add(sg, first=True)
        block.arrived = []

    def _spun(self, sg) -> None:
        # A subgroup that reaches the same `sleep` with the same registers and lane
        # mask while memory is unchanged will repeat itself forever unless another
        # subgroup writes memory.
        fp = sg.fingerprint
        sg.stuck_version = fp[3] if fp == sg.last_fingerprint else None
        sg.last_fingerprint = fp
        if sg.stuck_version is None:
            return
        machine = self.machine
        if self.policy == "unfair":
            others = [s for s in self.live if s is not sg]
            raise _deadlock(
                machine,
                "a subgroup spins without progress and the unfair scheduler never runs another "
                f"subgroup while it does (no forward progress between subgroups); {len(others)} "
                "other subgroups never get to run",
                [sg],
            )
        version = machine.mem_version
        if all(s.waiting or s.stuck_version == version for s in self.live):
            raise _deadlock(
                machine,
                "every live subgroup waits at a barrier or spins without "
                "progress, and no memory write can wake them",
                self.live,
            )
