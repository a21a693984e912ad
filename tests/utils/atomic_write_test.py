import json
import os
import tempfile

import pytest

from keras_flexpredict.utils.atomic_write import atomic_directory
from keras_flexpredict.utils.atomic_write import atomic_write_json
from keras_flexpredict.utils.atomic_write import atomic_write_text


def test_write_json__replaces_and_leaves_no_temporary_files():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "a.json")
    atomic_write_json(path, {"v": 1})
    atomic_write_json(path, {"v": 2})
    assert json.load(open(path)) == {"v": 2}
    assert os.listdir(folder) == ["a.json"]


def test_write_json__unserialisable_value_keeps_old_file():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "a.json")
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})
    assert open(path).read() == "old"
    assert os.listdir(folder) == ["a.json"]


def test_write__folder_path_is_refused():
    with pytest.raises(ValueError, match="must name a file"):
        atomic_write_text(tempfile.mkdtemp(), "x")


def test_directory__swaps_in_on_success_and_keeps_old_on_error():
    parent = tempfile.mkdtemp()
    target = os.path.join(parent, "preset")
    with atomic_directory(target) as tmp:
        atomic_write_text(os.path.join(tmp, "one"), "1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            atomic_write_text(os.path.join(tmp, "two"), "2")
            raise RuntimeError("crash mid-write")
    assert os.listdir(target) == ["one"]
    assert os.listdir(parent) == ["preset"]
    with atomic_directory(target) as tmp:
        atomic_write_text(os.path.join(tmp, "three"), "3")
    assert os.listdir(target) == ["three"]
    assert os.listdir(parent) == ["preset"]
