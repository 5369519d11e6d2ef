""".npy files that hold pickled objects (learnable-triangulation's labels dict), read
without running code: the pickle may build numpy arrays, dtypes and scalars and Python's
plain containers, nothing else (np.load(allow_pickle=True) would call anything the file
names)."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray

# numpy's array-building functions, under numpy 2's module names and numpy 1's
_NUMPY = {(module, name) for module in ("numpy._core.multiarray", "numpy.core.multiarray")
          for name in ("_reconstruct", "scalar")}
_PLAIN = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
          "float", "complex", "bool", "slice", "range"}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY:
            return getattr(multiarray, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        if module in ("builtins", "__builtin__") and name in _PLAIN:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"it holds {module}.{name}, which is not array data "
                                     f"(loading it could run code)")


def load_object_npy(path: str | Path) -> object:
    """The object a pickled .npy holds (a 0-d object array unwrapped), or its plain array;
    ValueError naming the file when it is not an .npy or its pickle names anything but
    array data."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read_header(fh)
            if not dtype.hasobject:
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            array = _ArraysOnly(fh).load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not a readable labels .npy file ({exc})") from None
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise ValueError(f"{path}: its pickle is not the array its header describes")
    return array.item() if array.dtype == object and array.shape == () else array
