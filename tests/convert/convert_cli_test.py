"""The converter CLI, and the probes CLI on converted / official checkpoints."""

import json
import os

import numpy as np
import pytest
from absl import flags
from keras import ops

import keras_flexpredict as kfp
from keras_flexpredict.convert import cli
from keras_flexpredict.testing.official_fixtures import fixture_state_dicts
from keras_flexpredict.testing.official_fixtures import write_official_checkpoint
from keras_flexpredict.testing.test_case import TestCase

torch = pytest.importorskip("torch")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SHARED = os.path.join(FIXTURES, "official_tiny16.pth.tar")
TINY_MASKER = '{"num_targets": 1, "target_scale": [0.2, 0.3], "min_keep": 1, "reference": false}'


def parse(argv, define=cli.define_flags):
    fv = flags.FlagValues()
    define(fv)
    fv(["cli"] + list(argv))
    return fv


class ConvertCLITest(TestCase):
    def test_official_to_keras_encoder__self_check_gates_the_write(self):
        out = os.path.join(self.get_temp_dir(), "enc.keras")
        with self.assertRaisesRegex(ValueError, "Self-check failed.*nothing was written"):
            cli.convert(parse([f"--source={SHARED}", f"--output={out}", "--num_heads=2", "--tolerance=1e-12", "--verbose=0"]))
        self.assertFalse(os.path.exists(out))
        result = cli.convert(parse([f"--source={SHARED}", f"--output={out}", "--num_heads=2", "--verbose=0"]))
        self.assertLessEqual(result["self_check"]["target_encoder"], 1e-5)
        loaded = kfp.models.ViTEncoder.from_preset(out)
        fixture = np.load(os.path.join(FIXTURES, "official_tiny16.npz"))
        targets = kfp.models.FlexPredict._normalize(loaded(fixture["images"]))
        self.assertLessEqual(np.max(np.abs(ops.convert_to_numpy(targets) - fixture["target_features"])), 1e-5)

    def test_official_to_flexpredict_preset__predictor_checked(self):
        path = os.path.join(self.get_temp_dir(), "ijepa.pth.tar")
        write_official_checkpoint(path, fixture_state_dicts(np.load(os.path.join(FIXTURES, "ijepa_w32_p14.npz"))))
        out = os.path.join(self.get_temp_dir(), "flex")
        result = cli.convert(parse([
            f"--source={path}", f"--output={out}", "--model=flexpredict", "--positional_noise=none",
            "--num_heads=4", f"--masker={TINY_MASKER}", "--verbose=0",
        ]))
        self.assertEqual(sorted(result["self_check"]), ["encoder", "predictor", "target_encoder"])
        for diff in result["self_check"].values():
            self.assertLessEqual(diff, 1e-5)
        model = kfp.models.FlexPredict.from_preset(out)
        self.assertEqual(model.predictor.positional_noise, "none")

    def test_bad_flags__named_before_work(self):
        out = self.get_temp_dir()  # exists
        with self.assertRaisesRegex(ValueError, "--output exists; pass --overwrite"):
            cli.convert(parse([f"--source={SHARED}", f"--output={out}"]))
        with self.assertRaisesRegex(ValueError, "Received: model='all'"):
            cli.convert(parse([f"--source={SHARED}", f"--output={out}/x", "--model=all"]))
        with self.assertRaisesRegex(ValueError, "--masker must be a JSON object"):
            cli.convert(parse([f"--source={SHARED}", f"--output={out}/x", "--model=flexpredict", "--masker=[1]"]))
        with self.assertRaisesRegex(ValueError, "Unknown model source"):
            cli.convert(parse([f"--source={out}/none.bin", f"--output={out}/x"]))


class ProbesOnConvertedCheckpointTest(TestCase):
    def test_converted_preset__probe_end_to_end(self):
        from keras_flexpredict.evaluation import cli as probes

        folder = os.path.join(self.get_temp_dir(), "converted")
        cli.convert(parse([f"--source={SHARED}", f"--output={folder}", "--num_heads=2", "--verbose=0"]))
        common = ["--data=procedural", "--protocol=knn", "--num_train=24", "--num_test=8", "--knn_k=3",
                  "--batch_size=16", "--verbose=0"]
        output = os.path.join(self.get_temp_dir(), "result.json")
        report = probes.evaluate(parse([f"--encoder={folder}", f"--output={output}", *common], probes.define_flags))
        self.assertEqual(report["image_size"], [96, 96])
        self.assertEqual(report["feature_dim"], 64)
        self.assertTrue(0.0 <= report["top1"]["knn"] <= 1.0)
        with open(output) as f:
            self.assertEqual(json.load(f)["num_train"], 24)
