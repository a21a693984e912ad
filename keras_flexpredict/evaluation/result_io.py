"""Writing probe results as JSON, atomically."""

import json
import os
import tempfile

import numpy as np


def _to_json(value):
    """`json.dumps` fallback for NumPy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_result_json(path, result):
    """Writes a result dict to `path` as JSON, atomically.

    The JSON text is produced first (so an unserialisable value raises before the
    disk is touched), written to a temporary file in the same folder, flushed to
    disk, then renamed over `path` with `os.replace`: a reader sees either the old
    file or the complete new one, never a half-written file. Missing parent
    folders are created. NumPy scalars and arrays are converted to plain JSON;
    NaN and infinities are rejected (JSON has no such values).

    Args:
        path: str or path-like. Destination file.
        result: dict with string keys, e.g. what `linear_probe` returns.

    Returns:
        The absolute path written.

    Example:

    >>> import tempfile, os, json
    >>> path = os.path.join(tempfile.mkdtemp(), "result.json")
    >>> _ = write_result_json(path, {"protocol": "knn", "top1": np.float32(0.5)})
    >>> json.load(open(path))["top1"]
    0.5
    """
    if not isinstance(result, dict):
        raise ValueError(
            f"`result` must be a dict. Received: result of type {type(result).__name__}"
        )
    try:
        text = json.dumps(result, indent=2, sort_keys=True, default=_to_json, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`result` cannot be written as JSON ({e}). Received: result={result!r}") from None
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"`path` must name a file, not a folder. Received: path={path}")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; results are for sharing.
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    return path
