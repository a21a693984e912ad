"""A NumPy reader of `.safetensors` files (no dependency): tensors are memory-mapped,
so a multi-GB file is read tensor by tensor without a copy in memory."""

import json
import os
import struct

import numpy as np

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened to float32 on read
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors_header(path):
    """`(tensors, data_offset)`: `{name: (dtype, shape, (begin, end))}` of a
    `.safetensors` file and where its data starts.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> write_safetensors(path, {"a": np.ones((2, 3), "float32")})
    >>> read_safetensors_header(path)[0]["a"][:2]
    ('F32', (2, 3))
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"Not a safetensors file (shorter than 8 bytes). Received: path={path}")
        (length,) = struct.unpack("<Q", head)
        if length > os.path.getsize(path) - 8:
            raise ValueError(f"Not a safetensors file (header length {length} past the end). Received: path={path}")
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise ValueError(
                f"Unsupported safetensors dtype for tensor {name!r}. Supported: {sorted(_DTYPES)}. "
                f"Received: dtype={dtype!r}"
            )
        tensors[name] = (dtype, tuple(int(s) for s in info["shape"]), tuple(info["data_offsets"]))
    return tensors, 8 + length


class _LazyTensor:
    """One tensor of a safetensors file; `load()` memory-maps it (BF16 -> float32)."""

    def __init__(self, path, dtype, shape, offsets, data_offset):
        self.path, self.dtype, self.shape = path, dtype, shape
        self._offset = data_offset + offsets[0]
        self._nbytes = offsets[1] - offsets[0]

    def load(self):
        np_dtype = np.dtype(_DTYPES[self.dtype])
        count = int(np.prod(self.shape, dtype=np.int64))
        if count * np_dtype.itemsize != self._nbytes:
            raise ValueError(
                f"Corrupt safetensors entry in {self.path}: shape {self.shape} of {self.dtype} needs "
                f"{count * np_dtype.itemsize} bytes, the header gives {self._nbytes}"
            )
        if count == 0:
            return np.zeros(self.shape, np_dtype)
        array = np.memmap(self.path, dtype=np_dtype, mode="r", offset=self._offset, shape=self.shape)
        if self.dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def open_safetensors(path):
    """`{name: lazy tensor}` of one `.safetensors` file; `tensor.shape` is known
    without reading, `tensor.load()` returns a (memory-mapped) NumPy array."""
    path = os.fspath(path)
    tensors, data_offset = read_safetensors_header(path)
    return {name: _LazyTensor(path, *info, data_offset) for name, info in tensors.items()}


def write_safetensors(path, tensors):
    """Writes `{name: array}` as a `.safetensors` file (float64/32/16 and ints), atomically.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> write_safetensors(path, {"a": np.arange(3, dtype="float32")})
    >>> open_safetensors(path)["a"].load().tolist()
    [0.0, 1.0, 2.0]
    """
    names = {np.dtype(v): k for k, v in _DTYPES.items() if k != "BF16"}
    header, offset, arrays = {}, 0, []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in names:
            raise ValueError(f"Cannot write dtype {array.dtype} of tensor {name!r} as safetensors.")
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = os.fspath(path)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for array in arrays:
            f.write(array.tobytes())
    os.replace(tmp, path)
