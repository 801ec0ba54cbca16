"""Kernel arguments from other libraries: device arrays over DLPack or __cuda_array_interface__
(zero-copy, as numba-cuda reads them), their layout checks, and scalar packing.

Nothing here calls the driver; runtime.py resolves devices and launches.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ...core.types import ScalarType

# DLPack (dlpack.h): device types and dtype codes.
KDL_CUDA, KDL_CUDA_MANAGED = 2, 13
_DL_CODES = {0: "int", 1: "uint", 2: "float", 6: "bool"}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


@dataclass
class DeviceView:
    """Where another library's 1-D device array lives; `owner` must outlive the launch."""

    ptr: int
    device: int | None  # CUDA ordinal; None: ask the driver (cuPointerGetAttribute)
    dtype: np.dtype
    shape: tuple
    strides: tuple | None  # in bytes; None: contiguous
    readonly: bool
    owner: object


def _dl_dtype(dt: _DLDataType, where: str) -> np.dtype:
    kind = _DL_CODES.get(dt.code)
    if kind is None or dt.lanes != 1:
        raise TypeError(
            f"{where}: DLPack dtype (code {dt.code}, {dt.bits} bits, {dt.lanes} "
            "lanes) has no kernel type"
        )
    if kind == "bool":
        return np.dtype(np.bool_)
    return np.dtype(f"{kind}{dt.bits}")


def _from_dlpack(value, where: str) -> DeviceView:
    # A capsule still named "dltensor" calls the producer's deleter when it is
    # garbage collected (DLPack's Python specification), so holding it in
    # `owner` for the launch and then dropping it is the whole protocol.
    capsule = value.__dlpack__()
    tensor = _DLManagedTensor.from_address(_capsule_pointer(capsule, b"dltensor")).dl_tensor
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    dtype = _dl_dtype(tensor.dtype, where)
    strides = None
    if tensor.strides:
        strides = tuple(tensor.strides[i] * dtype.itemsize for i in range(tensor.ndim))
    return DeviceView(
        ptr=(tensor.data or 0) + tensor.byte_offset,
        device=tensor.device.device_id,
        dtype=dtype,
        shape=shape,
        strides=strides,
        readonly=False,
        owner=capsule,
    )


def _from_cai(value, cai: dict, where: str) -> DeviceView:
    if cai.get("mask") is not None:
        raise ValueError(f"{where}: masked arrays cannot be passed to kernels")
    ptr, readonly = cai["data"]
    strides = cai.get("strides")
    return DeviceView(
        ptr=int(ptr or 0),
        device=None,
        dtype=np.dtype(cai["typestr"]),
        shape=tuple(cai["shape"]),
        strides=tuple(strides) if strides else None,
        readonly=bool(readonly),
        owner=value,
    )


def device_view(value, where: str) -> DeviceView | None:
    """A zero-copy view of a CUDA array (DLPack first, then the CUDA array interface).

    None for anything else, host arrays with a DLPack CPU device included.
    """
    if isinstance(value, np.ndarray):
        return None
    dl_device = getattr(value, "__dlpack_device__", None)
    if dl_device is not None and hasattr(value, "__dlpack__"):
        dev_type, _ = dl_device()
        if dev_type in (KDL_CUDA, KDL_CUDA_MANAGED):
            return _from_dlpack(value, where)
    cai = getattr(value, "__cuda_array_interface__", None)
    if cai is not None:
        return _from_cai(value, cai, where)
    return None


def check_layout(dtype, shape, strides, want: np.dtype, where: str) -> None:
    """TypeError/ValueError unless the array is 1-D, contiguous and of dtype `want`."""
    dtype = np.dtype(dtype)
    if dtype != want:
        raise TypeError(
            f"{where} must have dtype {want}, got {dtype}; convert it with .astype({want})"
        )
    if len(shape) != 1:
        raise ValueError(f"{where} must be 1-D, got shape {tuple(shape)}; pass a flattened view")
    if strides is not None and shape[0] > 1 and strides[0] != dtype.itemsize:
        raise ValueError(
            f"{where} must be contiguous (stride {strides[0]} bytes, element "
            f"{dtype.itemsize}); pass a contiguous copy"
        )


def scalar_buffer(value, t: ScalarType, where: str) -> np.ndarray:
    """A one-element buffer holding a scalar parameter as PTX reads it (bool as .u32)."""
    is_boolean = isinstance(value, (bool, np.bool_))
    if t.is_bool:
        if not is_boolean:
            raise TypeError(f"{where} must be a bool, got {type(value).__name__}")
        return np.array([1 if value else 0], dtype=np.uint32)
    if t.is_int:
        if is_boolean or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{where} must be an integer ({t}), got {type(value).__name__}")
        lo, hi = t.limits
        if not lo <= int(value) <= hi:
            raise ValueError(f"{where}={value} does not fit in {t} [{lo}, {hi}]")
        return np.array([value], dtype=t.dtype)
    if is_boolean or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a number ({t}), got {type(value).__name__}")
    return np.array([value], dtype=t.dtype)
