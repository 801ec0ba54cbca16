"""Compile errors of the frontend: the message, its file:line:col, the source line and caret.

Each kernel marks the line the error must point at with a `# <-` comment; the
expected column is where `at` (a piece of that line) starts.
"""

from __future__ import annotations

import inspect

import pytest

import asyncwarp as aw
from asyncwarp.core.errors import CompileError
from asyncwarp.core.frontend import compile_function

F32 = aw.Array[aw.f32]
I32 = aw.Array[aw.i32]
U32 = aw.Array[aw.u32]


def marked_line(fn) -> tuple[int, str]:
    """The file line number and text of the line marked `# <-` in fn's source."""
    lines, first = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if "# <-" in line:
            return first + i, line.rstrip("\n")
    raise AssertionError(f"{fn.__name__} has no line marked # <-")


def expect_error(
    fn, types, *fragments, at: str | None = None, W: int = 32, marked=None
) -> CompileError:
    """Compile fn and check the error; `marked` holds the `# <-` line if fn does not."""
    with pytest.raises(CompileError) as info:
        compile_function(fn, list(types), warp_width=W)
    err = info.value
    message = str(err)
    line, text = marked_line(marked or fn)
    assert f"test_frontend_errors.py:{line}:" in message, message
    assert err.loc.line == line
    for fragment in fragments:
        assert fragment in message, message
    if at is not None:
        col = text.index(at)
        assert err.loc.col == col, message
        rendered = message.splitlines()
        stripped = text.lstrip()
        caret = "    " + " " * (col - (len(text) - len(stripped))) + "^"
        assert rendered[1] == "    " + stripped and rendered[2] == caret, message
    return err


# ---------------------------------------------------------------- unsupported constructs


def test_list_literal():
    def k(a: I32):
        xs = [1, 2]  # <-
        a[0] = xs

    expect_error(k, [I32], "construct list literals is not supported", at="[1, 2]")


def test_dict_literal_and_comprehension():
    def k(a: I32):
        a[0] = {1: 2}  # <-

    def c(a: I32):
        a[0] = [i for i in range(3)]  # <-

    expect_error(k, [I32], "dict literals", at="{1: 2}")
    expect_error(c, [I32], "list comprehensions", "write a for loop", at="[i for")


def test_lambda_and_nested_function():
    def k(a: I32):
        f = lambda x: x  # noqa: E731  # <-
        a[0] = f(1)

    def n(a: I32):
        def inner(x):  # <-
            return x

        a[0] = inner(1)

    expect_error(k, [I32], "construct lambdas", at="lambda")
    expect_error(n, [I32], "nested functions", "@aw.func", at="def inner")


@pytest.mark.parametrize("case", ["with", "try", "global", "import", "assert", "class", "del"])
def test_unsupported_statements(case):
    def with_(a: I32):
        with open("x"):  # <-
            a[0] = 1

    def try_(a: I32):
        try:  # <-
            a[0] = 1
        except Exception:
            pass

    def global_(a: I32):
        global F32  # <-
        a[0] = 1

    def import_(a: I32):
        import math  # <-

        a[0] = math.pi

    def assert_(a: I32, n: aw.i32):
        assert n > 0  # <-

    def class_(a: I32):
        class C:  # <-
            pass

    def del_(a: I32, n: aw.i32):
        x = n
        del x  # <-

    kernels = {"with": (with_, "with statements"), "try": (try_, "try statements"),
               "global": (global_, "global statements"), "import": (import_, "imports"),
               "assert": (assert_, "assert statements"), "class": (class_, "class definitions"),
               "del": (del_, "del statements")}  # fmt: skip
    fn, what = kernels[case]
    types = [I32] + [aw.i32] * (len(inspect.signature(fn).parameters) - 1)
    expect_error(fn, types, f"construct {what} is not supported in kernels")


def test_strings_star_args_and_walrus():
    def s(a: I32):
        x = "text"  # <-
        a[0] = x

    def star(a: I32, n: aw.i32):
        a[0] = max(*(n, n))  # <-

    def walrus(a: I32, n: aw.i32):
        if (m := n) > 0:  # <-
            a[0] = m

    expect_error(s, [I32], "strings are not supported")
    expect_error(star, [I32, aw.i32], "star-arguments")
    expect_error(walrus, [I32, aw.i32], "assignment expressions (:=)", at="m := n")


def test_while_else_and_non_range_for():
    def we(a: I32, n: aw.i32):
        while n > 0:  # <-
            n -= 1
        else:
            a[0] = 1

    def fa(a: I32):
        for x in a:  # <-
            a[0] = x

    expect_error(we, [I32, aw.i32], "while ... else is not supported")
    expect_error(fa, [I32], "for loops can only iterate over range(...)", "length")


def test_generator_kernel():
    def k(a: I32):
        yield 1  # <-

    expect_error(k, [I32], "generators (yield)")


# ---------------------------------------------------------------- calls


def helper(x):
    return x + 1


@aw.func
def ping(x):
    return pong(x)


@aw.func
def pong(x):
    return ping(x)  # <-


@aw.func
def recurse(n):
    if n == 0:
        return 0
    return recurse(n - 1)  # <-


@aw.func
def plain_sync(x):
    return x


@aw.func
async def some_async(a):
    await aw.yield_now()


def test_calling_a_plain_python_function():
    def k(a: I32):
        a[0] = helper(1)  # <-

    expect_error(k, [I32], "helper is a plain Python function", "mark it @aw.func", at="helper(1)")


def test_recursion_direct_and_mutual():
    def direct(a: I32):
        a[0] = recurse(3)

    def mutual(a: I32):
        a[0] = ping(1)

    err = expect_error(
        direct, [I32], "recursion is not supported", "recurse -> recurse", marked=recurse.fn
    )
    assert "loop" in err.hint
    expect_error(mutual, [I32], "ping -> pong -> ping", marked=pong.fn)


def test_python_builtins_that_kernels_cannot_call():
    def k(a: I32):
        a[0] = len(a)  # <-

    def p(a: I32):
        print(a[0])  # <-

    def r(a: I32):
        a[0] = range(3)  # <-

    expect_error(k, [I32], "len() is not supported", "pass the length as a scalar")
    expect_error(p, [I32], "print() is not supported")
    expect_error(r, [I32], "range() is only supported as the iterable of a for loop")


def test_keyword_argument_errors_of_device_functions():
    def k(a: I32):
        a[0] = plain_sync(y=1)  # <-

    expect_error(k, [I32], "bad arguments for plain_sync()", "x")


# ---------------------------------------------------------------- names and types


def test_name_errors():
    def undefined(a: I32):
        a[0] = nowhere  # noqa: F821  # <-

    def before(a: I32, n: aw.i32):
        if n > 0:
            a[0] = later  # noqa: F821  # <-
        later = 1  # noqa: F841

    expect_error(undefined, [I32], "name 'nowhere' is not defined", at="nowhere")
    expect_error(before, [I32, aw.i32], "'later' is used before it is assigned")


def test_assigning_another_type_names_both_and_suggests_a_cast():
    def k(a: F32, x: aw.f32):
        y = 0
        y = x  # <-
        a[0] = y

    err = expect_error(k, [F32, aw.f32], "'y' is i32", "first assigned at line", "f32 value")
    assert "aw.i32(" in err.hint


def test_augmented_assignment_cannot_change_the_type():
    def k(a: I32, n: aw.i32):
        x = n
        x /= 2  # <-
        a[0] = x

    expect_error(k, [I32, aw.i32], "'x' is i32", "f32")


def test_literal_that_does_not_fit():
    def k(a: U32, x: aw.u32):
        if x > -1:  # <-
            a[0] = 1

    expect_error(k, [U32, aw.u32], "the literal -1 does not fit u32")


def test_float_index_and_bool_arrays():
    def fi(a: I32, x: aw.f32):
        a[x] = 1  # <-

    def ba(a: I32):
        flags = aw.shared(aw.bool_, 32)  # <-
        flags[0] = True

    expect_error(fi, [I32, aw.f32], "array index must be an integer, not f32", "aw.i32")
    err = expect_error(ba, [I32], "arrays of bool are not supported")
    assert "u32" in err.hint


def test_bool_array_parameter():
    def k(a, n: aw.i32):  # <-
        a[0] = n

    with pytest.raises(CompileError, match="arrays of bool are not supported"):
        compile_function(k, [aw.Array[aw.bool_], aw.i32], warp_width=32)


def test_store_needs_the_element_type():
    def k(a: F32, i: aw.i32):
        a[0] = i * 2  # <-

    err = expect_error(k, [F32, aw.i32], "is i32, expected f32")
    assert "aw.f32(" in err.hint


def test_annotation_that_is_not_a_type():
    def k(a: I32, n: 5):  # <-
        a[0] = n

    expect_error(k, [I32, aw.i32], "annotation of parameter 'n' is not a type", at="n: 5")


def test_annotation_that_disagrees_with_the_argument():
    def k(a: I32, n: aw.i64):  # <-
        a[0] = 1

    expect_error(k, [I32, aw.i32], "parameter 'n' is annotated i64 but gets i32")


def test_operators_on_the_wrong_types():
    def bits(a: F32, x: aw.f32):
        a[0] = x & 1  # <-

    def power(a: I32, n: aw.i32):
        a[0] = 2**n + n**n  # <-

    def inv(a: I32, p: aw.bool_):
        if ~p:  # <-
            a[0] = 1

    def isop(a: I32, n: aw.i32):
        if n is None:  # <-
            a[0] = 1

    expect_error(bits, [F32, aw.f32], "bitwise operators need integers, not f32")
    expect_error(power, [I32, aw.i32], "** needs a non-negative compile-time integer exponent")
    expect_error(inv, [I32, aw.bool_], "~ needs an integer", "use `not`")
    expect_error(isop, [I32, aw.i32], "operator 'is' is not supported")


def test_math_needs_floats():
    def k(a: F32, i: aw.i32):
        a[0] = aw.sqrt(i)  # <-

    err = expect_error(k, [F32, aw.i32], "aw.sqrt needs a float argument, not i32")
    assert "aw.sqrt(aw.f32(x))" in err.hint


def test_attribute_of_an_array_and_slices():
    def shape(a: I32):
        a[0] = a.shape  # <-

    def sl(a: I32):
        a[0] = a[1:3]  # <-

    expect_error(shape, [I32], "arrays have no attribute 'shape'", "scalar arguments")
    expect_error(sl, [I32], "slices are not supported")


def test_tuple_to_a_single_name_and_bad_unpacking():
    def one(a: I32, x: aw.i32):
        t = x, x  # <-
        a[0] = t

    def three(a: I32, x: aw.i32):
        p, q, r = x, x  # <-
        a[0] = p + q + r

    expect_error(one, [I32, aw.i32], "cannot assign a tuple of 2 values to 't'", "a, b = ...")
    expect_error(three, [I32, aw.i32], "cannot unpack 2 values into 3 names")


def test_rebinding_compile_time_names():
    def k(a: I32, b: I32):
        c = a
        c = b  # <-
        c[0] = 1

    expect_error(k, [I32, I32], "'c' is already bound at compile time")


# ---------------------------------------------------------------- returns


@aw.func
def mixed(x):
    if x > 0:
        return x
    return  # <-


@aw.func
def falls_off(x):  # <-
    if x > 0:
        return x


def test_return_errors():
    def kernel_value(a: I32):
        return 1  # <-

    def uses_mixed(a: I32):
        a[0] = mixed(1)

    def uses_falls_off(a: I32):
        a[0] = falls_off(1)

    expect_error(kernel_value, [I32], "a kernel cannot return a value")
    expect_error(
        uses_mixed, [I32], "mixed returns a value at line", "every return in it", marked=mixed.fn
    )
    expect_error(uses_falls_off, [I32], "can reach its end without a return", marked=falls_off.fn)


@aw.func
def two_types(x, y: aw.f32):
    if x > 0:
        return x
    return y  # <-


def test_returns_of_different_types():
    def k(a: I32, n: aw.i32):
        a[0] = aw.i32(two_types(n, 1.0))

    expect_error(
        k, [I32, aw.i32], "two_types returns i32 at line", "but f32 here", marked=two_types.fn
    )


def test_using_a_function_that_returns_nothing():
    def k(a: I32):
        a[0] = fill_nothing(a)  # <-

    expect_error(k, [I32], "has no value (the function called returns nothing)")


@aw.func
def fill_nothing(a):
    a[0] = 1


# ---------------------------------------------------------------- memory builtins


def test_memory_orders_and_scopes():
    def load_release(a: I32):
        a[0] = aw.load(a, 1, order="release")  # <-

    def store_acquire(a: I32):
        aw.store(a, 1, 2, order="acquire")  # <-

    def unknown(a: I32):
        aw.atomic_add(a, 0, 1, order="sometimes")  # <-

    def scope(a: I32):
        aw.fence(scope="galaxy")  # <-

    def weak_atomic(a: I32):
        aw.atomic_add(a, 0, 1, order="weak")  # <-

    expect_error(load_release, [I32], "aw.load cannot have order 'release'")
    expect_error(store_acquire, [I32], "aw.store cannot have order 'acquire'")
    expect_error(unknown, [I32], "unknown memory order 'sometimes'")
    expect_error(scope, [I32], "scope= of aw.fence must be one of warp, block, device")
    expect_error(weak_atomic, [I32], "aw.atomic_add cannot have order 'weak'")


def test_atomic_value_type_and_kind():
    def mismatch(a: I32, x: aw.f32):
        aw.atomic_add(a, 0, x)  # <-

    def float_max(a: F32):
        aw.atomic_max(a, 0, 1.0)  # <-

    err = expect_error(mismatch, [I32, aw.f32], "the value of aw.atomic_add is f32, expected i32")
    assert "aw.i32(" in err.hint
    expect_error(float_max, [F32], "aw.atomic_max needs an integer array", "atomic_cas")


def test_shared_size_must_be_a_positive_constant():
    def runtime(a: I32, n: aw.i32):
        s = aw.shared(aw.i32, n)  # <-
        s[0] = 1

    def zero(a: I32):
        s = aw.shared(aw.i32, aw.WARP - 32)  # <-
        s[0] = 1

    expect_error(runtime, [I32, aw.i32], "the size of aw.shared must be a compile-time integer")
    expect_error(zero, [I32], "the size of aw.shared must be positive, got 0")


def test_range_step_zero():
    def k(a: I32):
        for i in range(0, 10, 0):  # <-
            a[i] = i

    expect_error(k, [I32], "range() step must not be zero")


# ---------------------------------------------------------------- async


def test_awaiting_things_that_are_not_futures():
    async def value(a: I32):
        await aw.lane()  # <-

    async def sync_fn(a: I32):
        await plain_sync(1)  # <-

    expect_error(value, [I32], "cannot await aw.lane(): it is not a future")
    expect_error(sync_fn, [I32], "plain_sync is not async: call it without await")


def test_coroutine_never_awaited():
    async def k(a: I32):
        some_async(a)  # <-

    def sync(a: I32):
        x = some_async(a)  # <-
        a[0] = x

    never = "coroutine some_async(...) is never awaited: add await"
    expect_error(k, [I32], never, at="some_async(a)")
    expect_error(sync, [I32], "a future", "add await")


def test_unpacking_a_valueless_join_result():
    async def k(a: I32):
        x, y = await aw.join(some_async(a), some_async(a))  # <-
        a[0] = x

    expect_error(k, [I32], "value 1 of the tuple is absent", "unpack it into _")


def test_select_needs_one_result_type():
    @aw.func
    async def as_int(a):
        await aw.yield_now()
        return a[0]

    @aw.func
    async def as_float(a):
        await aw.yield_now()
        return aw.f32(a[0])

    async def k(a: I32):
        i, v = await aw.select(as_int(a), aw.sleep(5), as_float(a))  # <-
        a[0] = i

    expect_error(
        k, [I32], "the futures of aw.select that return a value must all return one type",
        "i32, nothing, f32",
    )


def test_await_inside_a_wait_condition():
    @aw.func
    async def ready(a):
        await aw.yield_now()
        return a[0] > 0

    async def k(a: I32):
        await aw.until(await ready(a))  # <-

    expect_error(k, [I32], "await cannot appear inside a wait condition")


def test_join_arguments_must_be_futures():
    async def k(a: I32):
        await aw.join(some_async(a), aw.lane())  # <-

    async def warps(a: I32):
        await aw.join(some_async(a), some_async(a), warps=(1,))  # <-

    expect_error(k, [I32], "argument 2 of aw.join is not a future")
    expect_error(warps, [I32], "warps= must be a tuple of 2 warp counts")


def test_compiler_frames_are_hidden_from_the_traceback():
    def k(a: I32):
        a[0] = [1]  # <-

    with pytest.raises(CompileError) as info:
        compile_function(k, [I32], warp_width=32)
    frames = [f.name for f in info.traceback]
    assert "visit" not in frames and "generic_visit" not in frames
