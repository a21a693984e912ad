"""Writing probe results as JSON, atomically."""

import json

import numpy as np

from keras_flexpredict.utils.atomic_write import atomic_write_text


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
    return atomic_write_text(path, text + "\n")
