"""The tiny recipe end to end through the pretraining CLI: checkpoints, a killed run
that resumes, the exported target encoder read by the evaluation code."""

import csv
import glob
import os

import keras
import numpy as np

from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from recipes import pretrain
from recipes.atomic_model_checkpoint import PARTIAL_PREFIX

# 2 epochs of 2 steps of 4 images, the tiny recipe's model made tinier still.
TINY = [
    "train.epochs=2",
    "train.steps_per_epoch=2",
    "train.checkpoint_every=1",
    "train.verbose=0",
    "data.num_images=16",
    "data.batch_size=4",
    "model.encoder.hidden_dim=32",
    "model.encoder.depth=1",
    "model.predictor.hidden_dim=16",
    "model.predictor.depth=1",
]


class SimulatedKill(Exception):
    pass


class KillAfterEpoch(keras.callbacks.Callback):
    """Stops the process-like run at the end of an epoch, after the recipe's own
    callbacks (backup, logs, checkpoint) have run for it."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise SimulatedKill(f"killed after epoch {epoch}")


class RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def csv_epochs(path):
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


class PretrainCliTest(TestCase):
    def test_tiny_recipe__checkpoints_resume_after_kill_and_export(self):
        out = os.path.join(self.get_temp_dir(), "run")
        argv = ["pretrain", "--config=stop_tiny_procedural", f"--override=train.output_dir={out}"]
        argv += [f"--override={o}" for o in TINY]
        paths = pretrain.output_paths(out)

        # First run: killed at the end of epoch 1 of 2.
        with self.assertRaises(SimulatedKill):
            pretrain.run_from_argv(argv, extra_callbacks=[KillAfterEpoch(0)])
        self.assertTrue(os.path.isfile(os.path.join(paths["checkpoints"], "epoch_0001.weights.h5")))
        self.assertTrue(os.path.isdir(paths["backup"]))
        self.assertEqual(csv_epochs(paths["log_csv"]), [0])
        for unfinished in ("summary", "final_model", "target_encoder"):
            self.assertFalse(os.path.exists(paths[unfinished]), unfinished)

        # The same command again resumes at epoch 2.
        recorder = RecordEpochs()
        summary = pretrain.run_from_argv(argv, extra_callbacks=[recorder])
        self.assertEqual(recorder.epochs, [1])
        self.assertEqual(summary["resumed_from_epoch"], 1)
        self.assertEqual(summary["train_steps"], 4)  # 2 + 2: the counters came back with the weights
        self.assertEqual(summary["optimizer_iterations"], 4)
        self.assertEqual(csv_epochs(paths["log_csv"]), [0, 1])
        self.assertEqual(len(summary["loss_per_epoch"]), 2)
        self.assertTrue(np.all(np.isfinite(summary["loss_per_epoch"])))
        self.assertEqual(
            sorted(os.listdir(paths["checkpoints"])), ["epoch_0001.weights.h5", "epoch_0002.weights.h5"]
        )
        self.assertEqual(glob.glob(os.path.join(out, "**", PARTIAL_PREFIX + "*"), recursive=True), [])
        self.assertFalse(os.path.exists(paths["backup"]))
        self.assertTrue(glob.glob(os.path.join(paths["tensorboard"], "train", "events.out.tfevents.*")))
        with open(paths["log_csv"]) as f:
            header = f.readline()
        for column in ("loss", "learning_rate", "weight_decay", "ema_momentum"):
            self.assertIn(column, header)

        # A completed run is not trained again.
        recorder = RecordEpochs()
        again = pretrain.run_from_argv(argv, extra_callbacks=[recorder])
        self.assertEqual(recorder.epochs, [])
        self.assertEqual(again["train_steps"], 4)

        # The export loads alone and the evaluation code reads it.
        from keras_flexpredict.data import procedural_shapes_dataset
        from keras_flexpredict.evaluation import extract_features_of_splits
        from keras_flexpredict.evaluation import knn_classifier

        encoder = keras.saving.load_model(paths["target_encoder"], compile=False)
        final = keras.saving.load_model(paths["final_model"], compile=False)
        self.assertAllClose(encoder.weights, final.target_encoder.weights)
        splits = [
            procedural_shapes_dataset(12, image_size=32, seed=seed, label="count", batch_size=6) for seed in (1, 2)
        ]
        (x_train, y_train), (x_test, y_test) = extract_features_of_splits(encoder, splits, verbose=0)
        self.assertEqual(x_train.shape, (12, 32))
        self.assertTrue(np.all(np.isfinite(x_train)))
        result = knn_classifier(x_train, y_train, x_test, y_test, k=3)
        self.assertTrue(0.0 <= result["top1"] <= 1.0)
        self.assertEqual(result["num_test"], 12)

    def test_atomic_checkpoint__no_partial_file_under_a_final_name(self):
        from recipes.atomic_model_checkpoint import AtomicModelCheckpoint

        folder = self.get_temp_dir()
        stale = os.path.join(folder, PARTIAL_PREFIX + "epoch_0009.weights.h5")
        with open(stale, "wb") as f:
            f.write(b"truncated")  # what a run killed while saving leaves
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        checkpoint = AtomicModelCheckpoint(
            os.path.join(folder, "epoch_{epoch:04d}.weights.h5"), save_weights_only=True, every_n_epochs=2
        )
        x = np.ones((4, 3), "float32")
        model.fit(x, x[:, :2], epochs=4, verbose=0, callbacks=[checkpoint])
        self.assertEqual(sorted(os.listdir(folder)), ["epoch_0002.weights.h5", "epoch_0004.weights.h5"])
        clone = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        clone.load_weights(os.path.join(folder, "epoch_0004.weights.h5"))
        self.assertAllClose(to_numpy(clone.weights), to_numpy(model.weights))


class PretrainCliDistributionTest(TestCase):
    def tearDown(self):
        if keras.backend.backend() == "jax":
            keras.distribution.set_distribution(None)
        super().tearDown()

    def test_cli__runs_under_the_backends_data_parallel_engine(self):
        # One CPU device here: the same code path as on a GPU node (strategy / Keras
        # distribution scope, distributed dataset, chief-only writers).
        spec = {"jax": "data_parallel", "tensorflow": "mirrored", "torch": "none"}[keras.backend.backend()]
        out = os.path.join(self.get_temp_dir(), "run")
        argv = ["pretrain", "--config=ijepa_tiny_procedural", f"--distribution={spec}"]
        argv += [f"--override=train.output_dir={out}", "--override=train.epochs=1"]
        argv += [f"--override={o}" for o in TINY if not o.startswith("train.epochs")]
        summary = pretrain.run_from_argv(argv)
        self.assertEqual(summary["distribution"], spec)
        self.assertEqual(summary["num_replicas"], 1)
        self.assertEqual(summary["train_steps"], 2)
        self.assertTrue(os.path.isfile(summary["paths"]["target_encoder"]))
        self.assertTrue(os.path.isfile(summary["paths"]["summary"]))

    def test_cli__bad_distribution_fails_before_any_work(self):
        out = os.path.join(self.get_temp_dir(), "run")
        wrong = "ddp" if keras.backend.backend() != "torch" else "mirrored"
        for spec in ("pipeline_parallel", wrong):
            argv = ["pretrain", "--config=stop_tiny_procedural", f"--distribution={spec}", f"--override=train.output_dir={out}"]
            with self.assertRaisesRegex(ValueError, f"spec='{spec}'"):
                pretrain.run_from_argv(argv)
        self.assertFalse(os.path.exists(out))
