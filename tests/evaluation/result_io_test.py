import json
import os
from unittest import mock

import numpy as np

from keras_flexpredict.evaluation import write_result_json
from keras_flexpredict.testing.test_case import TestCase


class WriteResultJsonTest(TestCase):
    def test_write__readable_with_numpy_values(self):
        path = os.path.join(self.get_temp_dir(), "sub", "result.json")
        result = {"protocol": "knn", "top1": np.float32(0.75), "k": np.int64(20), "curve": np.arange(3)}
        written = write_result_json(path, result)
        self.assertEqual(written, os.path.abspath(path))
        with open(path) as f:
            self.assertEqual(json.load(f), {"protocol": "knn", "top1": 0.75, "k": 20, "curve": [0, 1, 2]})

    def test_failed_serialisation__keeps_old_file_and_leaves_no_temp(self):
        folder = self.get_temp_dir()
        path = os.path.join(folder, "result.json")
        write_result_json(path, {"top1": 0.5})
        with self.assertRaisesRegex(ValueError, "cannot be written as JSON"):
            write_result_json(path, {"top1": object()})
        with self.assertRaisesRegex(ValueError, "cannot be written as JSON"):
            write_result_json(path, {"top1": float("nan")})
        with open(path) as f:
            self.assertEqual(json.load(f), {"top1": 0.5})
        self.assertEqual(os.listdir(folder), ["result.json"])

    def test_crash_before_rename__keeps_old_file_and_leaves_no_temp(self):
        folder = self.get_temp_dir()
        path = os.path.join(folder, "result.json")
        write_result_json(path, {"top1": 0.5})
        with mock.patch("os.replace", side_effect=OSError("disk gone")):
            with self.assertRaises(OSError):
                write_result_json(path, {"top1": 0.9})
        with open(path) as f:
            self.assertEqual(json.load(f), {"top1": 0.5})
        self.assertEqual(os.listdir(folder), ["result.json"])

    def test_overwrite__replaces_content(self):
        path = os.path.join(self.get_temp_dir(), "result.json")
        write_result_json(path, {"top1": 0.5})
        write_result_json(path, {"top1": 0.9})
        with open(path) as f:
            self.assertEqual(json.load(f), {"top1": 0.9})

    def test_bad_input__raises_naming_value(self):
        folder = self.get_temp_dir()
        with self.assertRaisesRegex(ValueError, "result of type list"):
            write_result_json(os.path.join(folder, "r.json"), [0.5])
        with self.assertRaisesRegex(ValueError, "path="):
            write_result_json(folder, {"top1": 0.5})
