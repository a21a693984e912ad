import json
import os
from unittest import mock

import numpy as np

from keras_flexpredict.testing import TestCase
from recipes import ablation

MINUSCULE = [
    "model.encoder.hidden_dim=16",
    "model.encoder.depth=1",
    "model.predictor.hidden_dim=8",
    "model.predictor.depth=1",
    "data.num_images=32",
    "data.batch_size=16",
    "train.epochs=1",
    "optimizer.warmup_epochs=0",
    "monitor.diagnostics_images=8",
]


class AblationTest(TestCase):
    def test_statistics__mean_std_and_t_interval(self):
        s = ablation.statistics([0.2, 0.4, 0.9])
        self.assertAlmostEqual(s["mean"], 0.5)
        self.assertAlmostEqual(s["std"], float(np.std([0.2, 0.4, 0.9], ddof=1)))
        self.assertAlmostEqual(s["ci95"], 4.303 * s["std"] / np.sqrt(3))
        self.assertTrue(np.isnan(ablation.statistics([0.3])["std"]))

    def test_run_ablation__minuscule_cells_table_figure_and_resume(self):
        out = self.get_temp_dir()
        kwargs = dict(output_dir=out, variants=["stop", "ijepa"], seeds=[3], overrides=MINUSCULE,
                      num_probe_train=40, num_probe_test=20)
        summary = ablation.run_ablation(**kwargs)
        cells = sorted(os.listdir(os.path.join(out, "cells")))
        self.assertEqual(cells, ["ijepa__seed3.json", "random__seed3.json", "stop__seed3.json"])
        cell = {}
        for variant in ("stop", "ijepa"):
            with open(os.path.join(out, "cells", f"{variant}__seed3.json")) as f:
                cell[variant] = json.load(f)
        self.assertIn("target_rankme", cell["stop"]["final_diagnostics"])
        self.assertEqual(summary["stats"]["stop"]["probe_shape_logreg"]["values"],
                         [cell["stop"]["probes"]["probe_shape_logreg"]])
        self.assertAlmostEqual(
            summary["vs_ijepa"]["stop"]["probe_count_knn"]["mean"],
            cell["stop"]["probes"]["probe_count_knn"] - cell["ijepa"]["probes"]["probe_count_knn"],
        )
        self.assertEqual(len(summary["probes"]), 6)  # 3 labels x (logreg, knn)
        with open(os.path.join(out, "table.md")) as f:
            table = f.read()
        for title in ("random init", "I-JEPA", "StoP (sigma 0.25)", "Paired difference"):
            self.assertIn(title, table)
        self.assertGreater(os.path.getsize(os.path.join(out, "ablation.png")), 1000)

        # Started again: every cell is read back, nothing is trained or probed.
        with mock.patch("recipes.pretrain.run", side_effect=AssertionError("retrained")), mock.patch.object(
            ablation, "_probe", side_effect=AssertionError("reprobed")
        ):
            again = ablation.run_ablation(**kwargs)
        self.assertEqual(again["stats"], summary["stats"])

    def test_run_ablation__bad_arguments_are_named(self):
        with self.assertRaisesRegex(ValueError, "variant='stoop'"):
            ablation.run_ablation(variants=["stoop"])
        with self.assertRaisesRegex(ValueError, r"seeds=\[0, 0\]"):
            ablation.run_ablation(seeds=[0, 0])
