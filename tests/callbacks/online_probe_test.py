import keras
import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.evaluation import extract_features_of_splits
from keras_flexpredict.evaluation import knn_classifier
from keras_flexpredict.evaluation import logistic_regression_probe
from keras_flexpredict.evaluation import remove_top_principal_components
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


class OnlineProbeTest(TestCase):
    def test_fit__online_numbers_equal_offline_probe(self):
        images = structured_images(48, seed=1)
        rng = np.random.default_rng(0)
        labels = {"a": rng.integers(0, 3, 48), "b": (images[:, :16].mean(axis=(1, 2, 3)) > 0).astype("int64")}
        train = (images[:32], {k: v[:32] for k, v in labels.items()})
        test = (images[32:], {k: v[32:] for k, v in labels.items()})
        probe = kfp.callbacks.OnlineProbe(
            train, test, every_n_epochs=2, l2_strengths=(1e-3, 1e-1), max_iter=200, knn_k=5, batch_size=16
        )
        model = tiny_flexpredict()
        model.compile(optimizer="adamw", run_eagerly=keras.backend.backend() != "jax")
        # Momentum 1: the teacher after `fit` is the one the last epoch probed.
        ema = kfp.callbacks.EMATargetCallback(start_momentum=1.0, end_momentum=1.0)
        history = model.fit(images[:16], batch_size=8, epochs=3, verbose=0, callbacks=[ema, probe])
        # Epoch 1 (first of the fit) and epoch 2 (every 2nd); not epoch 3.
        self.assertEqual(len(history.history["probe_a_logreg"]), 2)

        batches = [[(x[i : i + 16], y["a"][i : i + 16]) for i in range(0, len(x), 16)] for x, y in (train, test)]
        (x_train, _), (x_test, _) = extract_features_of_splits(model.target_encoder, batches, verbose=0)
        for key in ("a", "b"):
            logreg = logistic_regression_probe(
                x_train, train[1][key], x_test, test[1][key], protocol="search", l2_strengths=(1e-3, 1e-1),
                max_iter=200, seed=0,
            )
            knn = knn_classifier(x_train, train[1][key], x_test, test[1][key], k=5)
            self.assertEqual(history.history[f"probe_{key}_logreg"][-1], logreg["top1"])
            self.assertEqual(history.history[f"probe_{key}_knn"][-1], knn["top1"])

    def test_evaluate__knn_past_top_principal_directions_equals_offline(self):
        images = structured_images(40, seed=3)
        labels = np.arange(40) % 2
        train, test = (images[:28], labels[:28]), (images[28:], labels[28:])
        encoder = tiny_flexpredict().target_encoder
        values = kfp.callbacks.OnlineProbe(
            train, test, l2_strengths=(1e-2,), knn_k=5, knn_removed_components=3, batch_size=8
        ).evaluate(encoder)
        batches = [[(x[i : i + 8], y[i : i + 8]) for i in range(0, len(x), 8)] for x, y in (train, test)]
        (x_train, _), (x_test, _) = extract_features_of_splits(encoder, batches, verbose=0)
        knn_train, knn_test = remove_top_principal_components(x_train, x_test, 3)
        self.assertEqual(values["probe_knn"], knn_classifier(knn_train, train[1], knn_test, test[1], k=5)["top1"])

    def test_fit__too_many_removed_components_refused_before_the_first_epoch(self):
        images = structured_images(16, seed=4)
        split = (images, np.arange(16) % 2)
        model = tiny_flexpredict()
        model.compile(optimizer="adamw", run_eagerly=keras.backend.backend() != "jax")
        width = model.target_encoder.hidden_dim
        probe = kfp.callbacks.OnlineProbe(split, split, knn_k=2, knn_removed_components=width)
        with self.assertRaisesRegex(ValueError, f"knn_removed_components={width}"):
            model.fit(images, batch_size=8, epochs=1, verbose=0, callbacks=[probe])
        self.assertEqual(int(model.optimizer.iterations.numpy()), 0)

    def test_evaluate__dataset_of_batches_and_plain_labels(self):
        images = structured_images(24, seed=2)
        labels = (images.mean(axis=(1, 2, 3)) > np.median(images.mean(axis=(1, 2, 3)))).astype("int64")
        batches = [(images[i : i + 8], labels[i : i + 8]) for i in range(0, 16, 8)]
        probe = kfp.callbacks.OnlineProbe(batches, (images[16:], labels[16:]), l2_strengths=(1e-2,), batch_size=8)
        values = probe.evaluate(tiny_flexpredict().target_encoder)
        self.assertEqual(sorted(values), ["probe_logreg", "probe_time_s"])
        self.assertTrue(0.0 <= values["probe_logreg"] <= 1.0)

    def test_init__bad_arguments_are_named(self):
        images = np.zeros((4, 32, 32, 3), "float32")
        split = (images, np.arange(4))
        with self.assertRaisesRegex(ValueError, "every_n_epochs=0"):
            kfp.callbacks.OnlineProbe(split, split, every_n_epochs=0)
        with self.assertRaisesRegex(ValueError, "knn_k=0"):
            kfp.callbacks.OnlineProbe(split, split, knn_k=0)
        with self.assertRaisesRegex(ValueError, "knn_removed_components=-1"):
            kfp.callbacks.OnlineProbe(split, split, knn_k=2, knn_removed_components=-1)
        with self.assertRaisesRegex(ValueError, r"shape=\(3,\)"):
            kfp.callbacks.OnlineProbe((images, np.arange(3)), split)
        with self.assertRaisesRegex(ValueError, "test_data=None"):
            kfp.callbacks.OnlineProbe(split, None)
        with self.assertRaisesRegex(ValueError, "same label names"):
            kfp.callbacks.OnlineProbe(split, (images, {"x": np.arange(4)}))
