import csv
import os
import warnings

import keras
import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.callbacks.training_diagnostics import _rankme
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


def frozen_ema():
    # Momentum 1: the teacher never moves, so a collapsed teacher stays collapsed.
    return kfp.callbacks.EMATargetCallback(start_momentum=1.0, end_momentum=1.0)


def collapse_teacher(model):
    """Final LayerNorm scale 0: every token of every image is the same vector."""
    norm = model.target_encoder.norm
    norm.gamma.assign(np.zeros(norm.gamma.shape, "float32"))
    norm.beta.assign(np.linspace(-1.0, 1.0, norm.beta.shape[0]).astype("float32"))


def numpy_reference(model, images, masks):
    """Every diagnostic recomputed in plain NumPy, loop by loop."""
    tokens = to_numpy(model.target_encoder(images, training=False)).astype(np.float64)
    b, n, d = tokens.shape
    normalized = np.empty_like(tokens)
    for i in range(b):
        for j in range(n):
            t = tokens[i, j]
            normalized[i, j] = (t - t.mean()) / np.sqrt(((t - t.mean()) ** 2).mean() + 1e-5)
    flat = normalized.reshape(b * n, d)
    std = np.mean([np.sqrt(((flat[:, k] - flat[:, k].mean()) ** 2).mean()) for k in range(d)])
    pooled = tokens.mean(axis=1)
    pooled = pooled - pooled.mean(axis=0)
    # Singular values from the eigenvalues of the Gram matrix (not an SVD).
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(pooled @ pooled.T), 0.0, None))
    p = singular / singular.sum() + 1e-7
    rank = np.exp(-np.sum(p * np.log(p)))
    kernel = to_numpy(model.predictor.context_projection.kernel).astype(np.float64)
    bias = to_numpy(model.predictor.context_projection.bias).astype(np.float64)
    context = model.encoder(
        images, context_indices=masks["context_indices"], context_mask=masks["context_mask"], training=False
    )
    predictions = to_numpy(model.predictor(context, masks, training=False)).astype(np.float64)
    out = {
        "target_std": std,
        "target_rankme": rank,
        "context_projection_norm": np.sqrt((kernel**2).sum()),
        "context_projection_bias_norm": np.sqrt((bias**2).sum()),
    }
    valid_rows = []
    for m in range(masks["target_indices"].shape[1]):
        total, count = 0.0, 0
        for i in range(b):
            for k in range(masks["target_indices"].shape[2]):
                if not masks["target_mask"][i, m, k]:
                    continue
                diff = predictions[i, m, k] - normalized[i, masks["target_indices"][i, m, k]]
                total += np.sum(np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5))
                count += d
                valid_rows.append(predictions[i, m, k])
        out[f"block_loss_{m}"] = total / count
    out["prediction_variance"] = np.var(np.stack(valid_rows), axis=0).mean()
    return out


class TrainingDiagnosticsTest(TestCase):
    def test_rankme__known_singular_values(self):
        features = np.zeros((4, 3))
        features[0, 0], features[1, 1] = 3.0, 1.0  # singular values 3, 1, 0
        p = np.array([0.75, 0.25, 0.0]) + 1e-7
        self.assertAlmostEqual(_rankme(features), float(np.exp(-np.sum(p * np.log(p)))), places=6)
        self.assertAlmostEqual(_rankme(np.ones((5, 4))), 1.0, places=5)
        self.assertAlmostEqual(_rankme(np.eye(6)), 6.0, places=4)

    def test_compute__matches_numpy_reference(self):
        model = tiny_flexpredict()
        images = structured_images(8)
        diagnostics = kfp.callbacks.TrainingDiagnostics(images, seed=3)
        values = diagnostics.compute(model)
        reference = numpy_reference(model, images, diagnostics.masks)
        self.assertEqual(set(values), set(reference) | {"diagnostics_time_s"})
        for key, expected in reference.items():
            self.assertAllClose(values[key], expected, atol=1e-5, rtol=1e-4, msg=key)
        # Fixed masks: a second call gives the same numbers; healthy init is not collapsed.
        again = diagnostics.compute(model)
        self.assertEqual({k: v for k, v in again.items() if k != "diagnostics_time_s"},
                         {k: v for k, v in values.items() if k != "diagnostics_time_s"})
        self.assertGreater(values["target_std"], 0.05)
        self.assertGreater(values["target_rankme"], 2.0)

    def test_compute__collapsed_teacher_has_zero_std_and_rank_one(self):
        model = tiny_flexpredict()
        collapse_teacher(model)
        values = kfp.callbacks.TrainingDiagnostics(structured_images(8)).compute(model)
        self.assertLess(values["target_std"], 1e-3)
        self.assertAlmostEqual(values["target_rankme"], 1.0, places=3)

    def fit_with_diagnostics(self, model, csv_path=None):
        images = structured_images(16)
        diagnostics = kfp.callbacks.TrainingDiagnostics(images[:8])
        callbacks = [frozen_ema(), diagnostics]
        if csv_path:
            callbacks.append(keras.callbacks.CSVLogger(csv_path))
        # Eager (no compile time) but on JAX, whose op-by-op dispatch is slower than jit.
        model.compile(optimizer="adamw", run_eagerly=keras.backend.backend() != "jax")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(images, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
        collapse = [w for w in caught if "collapsed" in str(w.message)]
        return history, collapse

    def test_fit__collapse_warns_once_with_step_and_figures(self):
        model = tiny_flexpredict()
        collapse_teacher(model)
        history, collapse = self.fit_with_diagnostics(model)
        self.assertEqual(len(collapse), 1)
        message = str(collapse[0].message)
        self.assertIn("epoch 1 (optimiser step 2)", message)
        self.assertIn("target_std=", message)
        self.assertIn("target_rankme=1", message)
        self.assertEqual(len(history.history["target_std"]), 2)

    def test_fit__healthy_run_is_silent_and_logs_reach_csv(self):
        path = os.path.join(self.get_temp_dir(), "log.csv")
        history, collapse = self.fit_with_diagnostics(tiny_flexpredict(), csv_path=path)
        self.assertEqual(collapse, [])
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 2)
        for key in ("target_std", "target_rankme", "context_projection_norm", "block_loss_0", "prediction_variance"):
            self.assertAllClose(float(rows[-1][key]), history.history[key][-1], rtol=1e-6, msg=key)

    def test_init__bad_arguments_are_named(self):
        images = np.zeros((4, 32, 32, 3), "float32")
        with self.assertRaisesRegex(ValueError, "every_n_epochs=0"):
            kfp.callbacks.TrainingDiagnostics(images, every_n_epochs=0)
        with self.assertRaisesRegex(ValueError, "std_threshold=-1"):
            kfp.callbacks.TrainingDiagnostics(images, std_threshold=-1)
        with self.assertRaisesRegex(ValueError, r"shape=\(32, 32, 3\)"):
            kfp.callbacks.TrainingDiagnostics(images[0])
        with self.assertRaisesRegex(ValueError, "dtype=uint8"):
            kfp.callbacks.TrainingDiagnostics(images.astype("uint8"))
