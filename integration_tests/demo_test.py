"""The demo (`python -m recipes.demo`, the README's main command) at a miniature size."""

import json
import os

from keras_flexpredict.testing import TestCase
from recipes import demo

MINIATURE = [
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "data.num_images=16",
    "data.batch_size=4",
    "model.encoder.hidden_dim=32",
    "model.encoder.depth=1",
    "model.predictor.hidden_dim=16",
    "model.predictor.depth=1",
]


class DemoTest(TestCase):
    def test_demo__pretrains_both_probes_three_encoders_writes_table_json_and_png(self):
        out = self.get_temp_dir()
        results = demo.run_demo(output_dir=out, overrides=MINIATURE, num_probe_train=60, num_probe_test=30, verbose=0)
        with open(os.path.join(out, "results.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["table"], results["table"])
        self.assertEqual(set(saved["top1"]), {"random", "ijepa", "stop"})
        for encoder in saved["top1"].values():
            for label in demo.PROBE_LABELS:
                for protocol in ("logreg", "knn"):
                    self.assertTrue(0.0 <= encoder[label][protocol] <= 1.0)
        self.assertEqual(saved["probe"]["labels"], ["position", "count", "color"])
        self.assertIn("color knn", results["table"])
        self.assertNotIn("shape", results["table"])
        self.assertAlmostEqual(saved["chance"]["color"], 1 / 6)
        self.assertEqual(saved["recipes"], {"stop": "stop_tiny_procedural", "ijepa": "ijepa_tiny_procedural"})
        self.assertEqual({k: len(v) for k, v in saved["loss_per_epoch"].items()}, {"stop": 1, "ijepa": 1})
        # The training diagnostics (on by default in the recipes) reach the results and the figure.
        self.assertEqual(
            {k: len(v["target_rankme"]) for k, v in saved["diagnostics_per_epoch"].items()}, {"stop": 1, "ijepa": 1}
        )
        for title in ("random init", "I-JEPA", "StoP"):
            self.assertIn(title, results["table"])
        with open(os.path.join(out, "demo.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # Both runs went through the pretraining CLI and exported their target encoders.
        for method in ("stop", "ijepa"):
            self.assertTrue(os.path.isfile(os.path.join(out, "runs", method, "target_encoder.keras")))
        self.assertEqual([f for f in os.listdir(out) if f.startswith(".")], [])

    def test_demo__too_narrow_for_the_knn_probe_or_unknown_label_refused_before_training(self):
        out = os.path.join(self.get_temp_dir(), "demo_output")
        with self.assertRaisesRegex(ValueError, "model.encoder.hidden_dim=8"):
            demo.run_demo(output_dir=out, overrides=["model.encoder.hidden_dim=8"], verbose=0)
        with self.assertRaisesRegex(ValueError, "num_probe_train=8"):
            demo.run_demo(output_dir=out, num_probe_train=8, verbose=0)
        with self.assertRaisesRegex(ValueError, r"probe_labels=\['shape', 'colour'\]"):
            demo.run_demo(output_dir=out, probe_labels=["shape", "colour"], verbose=0)
        self.assertFalse(os.path.exists(os.path.join(out, "runs")))
