"""Read untrusted pickles (mmdetection3d info files) without running arbitrary code.

`pickle.load` on a third-party file executes whatever callables the file names. The info
files of mmdetection3d (nuScenes, SUN RGB-D, KITTI, ...) hold only plain containers,
numbers, strings and numpy arrays/scalars, so this unpickler resolves exactly those globals
and refuses every other one with `UnsafePickleError` (a named, catchable failure).
Written by hand because the standard library's documented way to restrict globals is
subclassing `pickle.Unpickler.find_class`, which is what this is.
"""
from __future__ import annotations

import io
import pickle


#: The globals a data pickle may name. numpy pickles arrays through `_reconstruct` +
#: `ndarray` + `dtype` (protocol 5: `_frombuffer`) and scalars through `scalar` (module
#: `numpy.core` before numpy 2, `numpy._core` after); protocol-2 files encode byte strings
#: through `_codecs.encode` and name builtins `__builtin__`.
_ALLOWED = frozenset({
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5 arrays
    ("_codecs", "encode"), ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "slice"),  # protocol 2 names
})


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set (see `_ALLOWED`)."""


#: numpy's private helpers moved from numpy.core to numpy._core in numpy 2: either name works
_NUMPY_HOMES = {"_reconstruct": "multiarray", "scalar": "multiarray", "_frombuffer": "numeric"}


def _resolve(module: str, name: str):
    """The object an allowed (module, name) refers to, under this numpy's module names."""
    import importlib

    if module == "__builtin__":
        module = "builtins"
    if module.startswith("numpy") and name in _NUMPY_HOMES:
        for pkg in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{pkg}.{_NUMPY_HOMES[name]}"), name)
            except (ImportError, AttributeError):
                continue
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"pickle refers to {module}.{name}, which is not allowed in a data file")
        return _resolve(module, name)


def load_pickle(path_or_bytes) -> object:
    """Unpickle a data file (path or bytes) allowing only containers, numbers, strings and numpy.

    Raises:
        UnsafePickleError: the file names any other global (it is not read further).
        pickle.UnpicklingError, EOFError, ValueError: the file is corrupt.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return RestrictedUnpickler(io.BytesIO(bytes(path_or_bytes))).load()
    with open(path_or_bytes, "rb") as f:
        return RestrictedUnpickler(f).load()
