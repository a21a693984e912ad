"""One way to write files and folders so that a crash never leaves half of one.

Every writer goes to a temporary name in the destination's own folder (same file
system), is flushed, then renamed over the destination with `os.replace`: a reader sees
the old version or the complete new one, never a partial write.

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "sub", "a.json")
>>> _ = atomic_write_json(path, {"step": 3})
>>> open(path).read()
'{\\n  "step": 3\\n}\\n'
>>> with atomic_directory(os.path.join(os.path.dirname(path), "preset")) as tmp:
...     _ = atomic_write_text(os.path.join(tmp, "config.json"), "{}")
>>> sorted(os.listdir(os.path.join(os.path.dirname(path), "preset")))
['config.json']
"""

import contextlib
import json
import os
import shutil
import tempfile


def _prepare(path):
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"`path` must name a file, not a folder. Received: path={path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def atomic_write_bytes(path, data, mode=0o644):
    """Writes `data` (bytes) to `path` atomically; creates missing parent folders.

    Returns the absolute path written.
    """
    path = _prepare(path)
    fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file readable by its owner only.
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    return path


def atomic_write_text(path, text, encoding="utf-8"):
    """Writes the string `text` to `path` atomically. Returns the absolute path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path, obj, indent=2, **dumps_kwargs):
    """Writes `obj` as JSON (with a final newline) to `path` atomically.

    The text is produced before the disk is touched, so an unserialisable value raises
    and leaves the old file in place. Returns the absolute path.
    """
    text = json.dumps(obj, indent=indent, **dumps_kwargs)
    return atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_directory(directory):
    """Context manager: yields an empty temporary folder next to `directory`; on a
    clean exit the folder replaces `directory` (an existing one is swapped out and
    removed), on an exception it is deleted and `directory` is left as it was.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", suffix=".partial", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if os.path.lexists(directory):
            old = tmp + ".old"
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
