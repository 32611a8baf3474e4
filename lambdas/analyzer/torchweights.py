"""Read a PyTorch state dict into numpy arrays without torch.

The offline classifier's weights ship as a `.pth` file in torch's legacy serialization (the
format `torch.save` wrote before 1.6): five pickles and raw storages, back to back --

    magic number, protocol version, system info,
    the state dict (tensors are `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, the
    storage a persistent id `("storage", <Type>Storage, key, location, numel, view)`),
    the storage keys in the order their bytes follow,
    then per storage: numel as a little-endian int64 and numel elements.

Importing torch for this would add a gigabyte to the install. The unpickler here resolves
exactly three globals (OrderedDict, `_rebuild_tensor_v2` and the storage types); any other
global is refused, so a crafted file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class WeightsFormatError(ValueError):
    """The file is not a legacy-format torch state dict this reader understands."""


class _Storage:
    """A storage named by the state dict, filled in once its bytes have been read."""

    def __init__(self, dtype: np.dtype[Any], numel: int) -> None:
        self.dtype, self.numel = dtype, numel
        self.data: np.ndarray | None = None


class _Tensor:
    """A view on a storage, materialised after the storages are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride))
        return np.array(view)  # a contiguous copy: the storage can go


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], *_ignored: Any) -> _Tensor:
    return _Tensor(storage, offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise WeightsFormatError(f"the weights file refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise WeightsFormatError(f"unexpected persistent id {pid!r:.80}")
        _kind, type_name, key, _location, numel, view = pid
        if view is not None:
            raise WeightsFormatError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[type_name], int(numel))
        return self.storages[key]


def _load_plain(file: BinaryIO) -> Any:
    """A header pickle: only plain values (ints, dicts of strings and booleans)."""
    return _PlainUnpickler(file).load()


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise WeightsFormatError(f"the weights header refers to {module}.{name}")


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the state dict at `path`, by name, as numpy arrays."""
    with path.open("rb") as file:
        if _load_plain(file) != LEGACY_MAGIC:
            raise WeightsFormatError(f"{path.name} is not a legacy torch file")
        if _load_plain(file) != LEGACY_PROTOCOL:
            raise WeightsFormatError(f"{path.name} has an unknown protocol version")
        info = _load_plain(file)
        if not isinstance(info, dict) or not info.get("little_endian"):
            raise WeightsFormatError(f"{path.name} is not little-endian")
        unpickler = _StateDictUnpickler(file)
        state = unpickler.load()
        keys = _load_plain(file)
        for key in keys:
            storage = unpickler.storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            raw = file.read(numel * storage.dtype.itemsize)
            if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
                raise WeightsFormatError(f"storage {key} of {path.name} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return {name: tensor.array() for name, tensor in state.items()
            if isinstance(tensor, _Tensor)}
