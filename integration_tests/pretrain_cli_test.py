"""The pretraining CLI in-process: atomic checkpoints, the distribution engines. (The
tiny recipe killed and resumed, end to end: fault_injection_test.py.)"""

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


class PretrainCliTest(TestCase):
    # The tiny recipe killed and resumed, its checkpoints, logs and exports: see
    # fault_injection_test.py (subprocesses killed with SIGKILL).

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
