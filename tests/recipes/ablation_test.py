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

    def test_summarize__paired_differences_and_table(self):
        cells = {}
        for seed, (stop, ijepa, rand) in zip((0, 1, 2), ((0.5, 0.4, 0.2), (0.7, 0.5, 0.3), (0.6, 0.6, 0.1))):
            for variant, value in (("stop", stop), ("ijepa", ijepa), ("random", rand)):
                cells[variant, seed] = {"probes": {"probe_shape_logreg": value, "probe_shape_knn": value / 2}}
        summary = ablation.summarize(cells, ["random", "stop", "ijepa"], [0, 1, 2])
        self.assertAlmostEqual(summary["stats"]["stop"]["probe_shape_logreg"]["mean"], 0.6)
        self.assertAlmostEqual(summary["vs_ijepa"]["stop"]["probe_shape_logreg"]["mean"], 0.1)
        self.assertAllClose(summary["vs_ijepa"]["stop"]["probe_shape_knn"]["values"], [0.05, 0.1, 0.0])
        self.assertNotIn("ijepa", summary["vs_ijepa"])
        table = ablation.format_table(summary)
        self.assertIn("| StoP (sigma 0.25) | 30.0 ± 5.0 [±12.4] | 60.0 ± 10.0 [±24.8] |", table)
        self.assertIn("| random init | -15.0 [±21.5] | -30.0 [±43.0] |", table)

    def test_run_ablation__minuscule_cell_table_figure_and_resume(self):
        out = self.get_temp_dir()
        kwargs = dict(output_dir=out, variants=["stop"], seeds=[3], overrides=MINUSCULE,
                      num_probe_train=40, num_probe_test=20)
        summary = ablation.run_ablation(**kwargs)
        self.assertEqual(sorted(os.listdir(os.path.join(out, "cells"))), ["random__seed3.json", "stop__seed3.json"])
        with open(os.path.join(out, "cells", "stop__seed3.json")) as f:
            cell = json.load(f)
        self.assertIn("target_rankme", cell["final_diagnostics"])
        self.assertEqual(len(cell["probes"]), 8)  # 4 labels x (logreg, knn)
        self.assertEqual(summary["stats"]["stop"]["probe_shape_logreg"]["values"], [cell["probes"]["probe_shape_logreg"]])
        with open(os.path.join(out, "table.md")) as f:
            table = f.read()
        for title in ("random init", "StoP (sigma 0.25)"):
            self.assertIn(title, table)
        self.assertGreater(os.path.getsize(os.path.join(out, "ablation.png")), 1000)

        # Started again: every cell is read back, nothing is trained or probed.
        with mock.patch("recipes.pretrain.run", side_effect=AssertionError("retrained")), mock.patch.object(
            ablation, "_probe", side_effect=AssertionError("reprobed")
        ):
            again = ablation.run_ablation(**kwargs)
        self.assertEqual(json.dumps(again["stats"]), json.dumps(summary["stats"]))
        self.assertEqual(cell["knn_removed_components"], ablation.KNN_REMOVED_COMPONENTS)
        self.assertIn(f"without their {ablation.KNN_REMOVED_COMPONENTS} largest principal directions", table)

        # Another kNN setting: every cell is probed again, no pretraining is repeated.
        with mock.patch("keras_flexpredict.models.FlexPredict.fit", side_effect=AssertionError("retrained")):
            raw = ablation.run_ablation(**kwargs, knn_removed_components=0)
        for key in ("probe_shape_logreg", "probe_count_logreg", "probe_position_logreg"):
            self.assertEqual(raw["stats"]["stop"][key]["values"], summary["stats"]["stop"][key]["values"])
        with open(os.path.join(out, "cells", "stop__seed3.json")) as f:
            self.assertEqual(json.load(f)["knn_removed_components"], 0)

        # A cell probed before a label joined PROBE_LABELS is probed again, not retrained.
        with open(os.path.join(out, "cells", "stop__seed3.json")) as f:
            cell = json.load(f)
        cell["probes"] = {k: v for k, v in cell["probes"].items() if "color" not in k}
        with open(os.path.join(out, "cells", "stop__seed3.json"), "w") as f:
            json.dump(cell, f)
        with mock.patch("keras_flexpredict.models.FlexPredict.fit", side_effect=AssertionError("retrained")):
            again = ablation.run_ablation(**kwargs, knn_removed_components=0)
        self.assertEqual(
            again["stats"]["stop"]["probe_color_knn"]["values"], raw["stats"]["stop"]["probe_color_knn"]["values"]
        )

    def test_variants__each_builds_the_model_it_names(self):
        from recipes import pretrain

        expected = {
            "stop_sigma0.1": ("sigma", 0.1), "stop_sigma0.5": ("sigma", 0.5), "stop_learned": ("covariance", "learned"),
            "stop_low_rank": ("noise_rank", 8), "stop_isotropic": ("covariance", "isotropic"),
            "stop_noise_context": ("noise_on", "context"), "stop_noise_both": ("noise_on", "both"),
            "ijepa": ("positional_noise", "none"), "stop": ("noise_on", "masked"),
        }
        for variant, (recipe, extra, _) in ablation.VARIANTS.items():
            with self.subTest(variant=variant):
                config = pretrain.prepare_config(recipe, list(extra) + list(MINUSCULE))[0]
                predictor = pretrain.build_model(config).predictor
                name, value = expected[variant]
                self.assertEqual(getattr(predictor, name), value)

    def test_run_ablation__bad_arguments_are_named(self):
        with self.assertRaisesRegex(ValueError, "variant='stoop'"):
            ablation.run_ablation(variants=["stoop"])
        with self.assertRaisesRegex(ValueError, r"seeds=\[0, 0\]"):
            ablation.run_ablation(seeds=[0, 0])
        with self.assertRaisesRegex(ValueError, "knn_removed_components=16"):
            ablation.run_ablation(output_dir=self.get_temp_dir(), overrides=MINUSCULE, knn_removed_components=16)
