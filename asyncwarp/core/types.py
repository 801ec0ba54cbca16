"""Scalar and array types of the kernel language and the IR.

Every value in the IR has one of these types. Scalar types map one-to-one onto
numpy dtypes, PTX register types and SPIR-V types; array types describe a 1-D
view of global or block (shared) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScalarType:
    """A scalar: kind is 'bool', 'int' (signed), 'uint' or 'float'."""

    name: str
    kind: str
    bits: int

    @property
    def dtype(self) -> np.dtype:
        return _DTYPES[self.name]  # built once: launches read it for every argument

    @property
    def limits(self) -> tuple[int, int]:
        """(min, max) of an integer type."""
        return _LIMITS[self.name]

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind == "int"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def nbytes(self) -> int:
        return max(self.bits // 8, 1)

    def __call__(self, value):  # pragma: no cover - only meaningful inside kernels
        raise TypeError(
            f"aw.{self.name}(...) is a cast inside @aw.kernel/@aw.func code; "
            f"on the host use numpy (np.{_NUMPY[self.name]})"
        )

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


bool_ = ScalarType("bool", "bool", 8)
i32 = ScalarType("i32", "int", 32)
u32 = ScalarType("u32", "uint", 32)
i64 = ScalarType("i64", "int", 64)
u64 = ScalarType("u64", "uint", 64)
f32 = ScalarType("f32", "float", 32)
f64 = ScalarType("f64", "float", 64)

_NUMPY = {
    "bool": "bool",
    "i32": "int32",
    "u32": "uint32",
    "i64": "int64",
    "u64": "uint64",
    "f32": "float32",
    "f64": "float64",
}

_DTYPES = {name: np.dtype(np_name) for name, np_name in _NUMPY.items()}
_LIMITS = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    for name, dt in _DTYPES.items()
    if dt.kind in "iu"
}

SCALAR_TYPES: tuple[ScalarType, ...] = (bool_, i32, u32, i64, u64, f32, f64)
BY_NAME: dict[str, ScalarType] = {t.name: t for t in SCALAR_TYPES}
_BY_DTYPE = {np.dtype(_NUMPY[t.name]): t for t in SCALAR_TYPES}


def from_dtype(dtype) -> ScalarType:
    """The scalar type of a numpy dtype; ValueError for dtypes kernels cannot use."""
    dt = np.dtype(dtype)
    try:
        return _BY_DTYPE[dt]
    except KeyError:
        names = ", ".join(_NUMPY[t.name] for t in SCALAR_TYPES)
        raise ValueError(f"dtype {dt} is not supported in kernels (supported: {names})") from None


@dataclass(frozen=True)
class ArrayType:
    """A 1-D array of `elem` in 'global' (device) or 'shared' (block) memory."""

    elem: ScalarType
    space: str = "global"

    def __repr__(self) -> str:
        return f"{self.elem}[{'' if self.space == 'global' else 'shared'}]"

    __str__ = __repr__


class _ArrayAnnotation:
    """`aw.Array[aw.f32]`: the annotation of a global-array kernel parameter."""

    def __getitem__(self, elem: ScalarType) -> ArrayType:
        if not isinstance(elem, ScalarType):
            raise TypeError(f"aw.Array[...] takes a scalar type such as aw.f32, not {elem!r}")
        return ArrayType(elem, "global")


Array = _ArrayAnnotation()

Type = ScalarType | ArrayType


def promote(a: ScalarType, b: ScalarType) -> ScalarType:
    """The common type of a binary arithmetic operation (C-like, documented in the README).

    float beats int; wider beats narrower; for equal width, unsigned beats signed;
    bool promotes to i32.
    """
    if a == b:
        return i32 if a.is_bool else a
    if a.is_bool:
        a = i32
    if b.is_bool:
        b = i32
    if a.is_float or b.is_float:
        floats = [t for t in (a, b) if t.is_float]
        return max(floats, key=lambda t: t.bits)
    bits = max(a.bits, b.bits)
    unsigned = any(t.kind == "uint" and t.bits == bits for t in (a, b))
    return {(32, False): i32, (32, True): u32, (64, False): i64, (64, True): u64}[(bits, unsigned)]
