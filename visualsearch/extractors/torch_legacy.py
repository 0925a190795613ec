"""Read a legacy (pre-1.6, non-zip) PyTorch ``state_dict`` file into numpy arrays, without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. ``torch.load`` (and plain
``pickle.load``) would therefore execute code from the weights file. Here every pickle in the file goes through
:class:`_RestrictedUnpickler`, which resolves only the handful of names a state dict needs and refuses the rest,
so a tampered file fails with :class:`pickle.UnpicklingError` instead of running anything.

Legacy layout (torch/serialization.py ``_legacy_save``), one stream of consecutive pickles and raw bytes:

1. magic number pickle, 2. protocol version pickle, 3. sys_info pickle,
4. the object itself; tensor storages appear as persistent ids
   ``('storage', storage_type, key, location, numel, view_metadata)``,
5. a pickle of the storage keys, in the order their data follows,
6. for each key: an int64 little-endian element count, then ``count * element_size`` raw little-endian bytes.
"""
from __future__ import annotations

import collections
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from os import PathLike
from typing import Any, BinaryIO

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype (little-endian, as torch writes them on every platform we support).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _Sealed:
    """Objects the pickle may receive but never modify: a BUILD opcode (``__setstate__``) on them is refused,
    so a crafted file cannot rewrite a dtype, swap a buffer or otherwise reach memory it should not."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set state on {type(self).__name__}")


@dataclass(frozen=True)
class _StorageType(_Sealed):
    """Stand-in for ``torch.FloatStorage`` & co.: all we need from the class is its element dtype."""

    __slots__ = ("dtype",)
    dtype: np.dtype


class _Storage(_Sealed):
    """A storage as ``persistent_load`` made it: a contiguous 1-D buffer (filled after the main pickle)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        object.__setattr__(self, "array", array)


class _TensorRef(_Sealed):
    """A tensor to cut out of a storage once its bytes are read; never a live view the pickle could misuse."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        for name, value in zip(self.__slots__, (storage, offset, size, stride)):
            object.__setattr__(self, name, value)

    @property
    def nbytes(self) -> int:
        return math.prod(self.size) * self.storage.array.itemsize

    def to_array(self) -> np.ndarray:
        buffer = self.storage.array
        return np.lib.stride_tricks.as_strided(
            buffer[self.offset :] if self.offset < buffer.size else buffer[:0],
            shape=self.size,
            strides=tuple(st * buffer.itemsize for st in self.stride),
            writeable=False,
        ).copy()


def _rebuild_tensor_v2(
    storage: _Storage, storage_offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_ignored: Any
) -> _TensorRef:
    """Mirror of ``torch._utils._rebuild_tensor_v2``: records a strided view into a storage.

    Only storages made by ``persistent_load`` are accepted (not a tensor passed off as one), and bounds are
    checked against that storage, because ``as_strided`` would otherwise happily read outside the buffer.
    """
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor storage is not a storage record")
    storage_offset = int(storage_offset)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in size + stride):
        raise pickle.UnpicklingError("invalid tensor geometry")
    if 0 not in size:
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= storage.array.size:
            raise pickle.UnpicklingError("tensor view exceeds its storage")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data: _TensorRef, requires_grad: bool, backward_hooks: Any) -> _TensorRef:
    """``nn.Parameter`` wrapper (files saved from ``model.parameters()``): the data is all we keep."""
    return data


# The only globals a state-dict pickle may reference. Anything else (os.system, builtins.eval, ...) is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_ALLOWED_GLOBALS` and records the storages it meets."""

    def __init__(self, file: BinaryIO, max_bytes: int = 2**40) -> None:
        super().__init__(file)
        self.storages: dict[str, np.ndarray] = {}
        self.max_bytes = max_bytes  # no storage can be larger than the file that carries its bytes

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> _Storage:
        # Legacy storage id: ('storage', storage_type, key, location, numel, view_metadata).
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("invalid storage record")
        if storage_type.dtype not in _STORAGE_DTYPES.values() or numel * storage_type.dtype.itemsize > self.max_bytes:
            raise pickle.UnpicklingError("storage larger than the file or of an unknown type")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = np.empty(numel, dtype=storage_type.dtype)
        if root.dtype != storage_type.dtype or root.size != numel:
            raise pickle.UnpicklingError("storage key reused with another type or size")
        if view is None:
            return _Storage(root)
        # A view into a shared storage: (view_key, offset, view_size).
        _view_key, offset, view_size = view
        if not (isinstance(offset, int) and isinstance(view_size, int)):
            raise pickle.UnpicklingError("invalid storage view")
        if offset < 0 or view_size < 0 or offset + view_size > root.size:
            raise pickle.UnpicklingError("storage view out of bounds")
        return _Storage(root[offset : offset + view_size])


def _restricted_load(file: BinaryIO, unpickler: _RestrictedUnpickler | None = None) -> Any:
    """Load one pickle from ``file`` through the restricted unpickler (never plain ``pickle.load``).

    Malformed input makes pickle raise all sorts of errors (EOFError, KeyError, TypeError from our rebuild
    helpers...); they are reported as one type so callers need a single ``except``.
    """
    try:
        return (unpickler or _RestrictedUnpickler(file)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:
        raise pickle.UnpicklingError(f"malformed pickle: {exc!r}") from exc


def _read_storage_data(file: BinaryIO, storage: np.ndarray) -> None:
    """Fill ``storage`` in place from ``<int64 count><raw bytes>``, checking the count matches the pickle."""
    header = file.read(8)
    if len(header) != 8:
        raise pickle.UnpicklingError("truncated storage header")
    count = int.from_bytes(header, "little", signed=True)
    if count != storage.size:
        raise pickle.UnpicklingError(f"storage holds {count} elements, pickle declared {storage.size}")
    raw = storage.view(np.uint8)
    if file.readinto(raw) != raw.size:  # type: ignore[attr-defined]
        raise pickle.UnpicklingError("truncated storage data")


def _to_arrays(obj: Any, max_bytes: int) -> dict[str, np.ndarray]:
    """Keep the tensor entries of the loaded mapping, as independent, contiguous, writable arrays.

    Their total size is capped by the file's before anything is copied: a view with stride 0 stays inside its
    storage yet copies into any size (one float repeated 10**12 times is 4 TB), and one tensor can be listed
    under many keys. A real state dict holds each parameter's bytes once, so it always fits.
    """
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a state dict, found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, _TensorRef)}
    if sum(t.nbytes for t in tensors.values()) > max_bytes:
        raise pickle.UnpicklingError("the tensors would take more bytes than the file holds")
    return {name: tensor.to_array() for name, tensor in tensors.items()}


def load_legacy_state_dict(path: str | PathLike[str]) -> dict[str, np.ndarray]:
    """Return ``{parameter name: array}`` from a legacy-format ``torch.save(state_dict)`` file.

    Raises :class:`pickle.UnpicklingError` for files that are not legacy state dicts or that reference
    anything beyond tensors and ordered dicts.
    """
    if zipfile.is_zipfile(path):
        # torch >= 1.6 default format; it is a different container (zip of data.pkl + per-storage files).
        raise pickle.UnpicklingError(f"{path} is a zip-format torch file; only the legacy format is supported")
    with open(path, "rb") as file:
        if _restricted_load(file) != _MAGIC_NUMBER:
            raise pickle.UnpicklingError(f"{path} is not a legacy torch file (bad magic number)")
        if _restricted_load(file) != _PROTOCOL_VERSION:
            raise pickle.UnpicklingError(f"{path}: unsupported torch protocol version")
        sys_info = _restricted_load(file)
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
            raise pickle.UnpicklingError(f"{path}: only little-endian files are supported")
        file_size = os.fstat(file.fileno()).st_size
        main = _RestrictedUnpickler(file, max_bytes=file_size)
        obj = _restricted_load(file, main)
        keys = _restricted_load(file)
        if not isinstance(keys, list) or set(keys) != set(main.storages):
            raise pickle.UnpicklingError(f"{path}: storage key list does not match the pickled tensors")
        for key in keys:
            _read_storage_data(file, main.storages[key])
    return _to_arrays(obj, file_size)
