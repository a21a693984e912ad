"""Fault injection into the pretraining CLI, in subprocesses, on the current backend.

- SIGKILL at seeded points (mid-epoch, mid-checkpoint, mid-backup, mid-export), then
  the same command again until it completes: the loss curve, every periodic
  checkpoint and the exported models equal those of an uninterrupted run.
- A diverging run: exit status 3, a message naming the step and the value, the last
  good backup and checkpoints kept, nothing exported.
- A folder without one decodable image: an error naming it and its files, before
  anything is written.

The faults come from `recipes.fault_injection` (`KFP_FAULT_AT`), at points drawn with
a seed: `KFP_FAULT_SEED` (default: one per backend).
"""

import csv
import glob
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

from keras_flexpredict.testing import TestCase
from recipes import pretrain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 3 epochs of 2 steps of 4 images out of 12: epochs start mid-pass (positions 0, 8, 16).
TINY = [
    "train.epochs=3",
    "train.steps_per_epoch=2",
    "train.checkpoint_every=1",
    "train.verbose=0",
    "data.num_images=12",
    "data.batch_size=4",
    "model.encoder.hidden_dim=32",
    "model.encoder.depth=1",
    "model.predictor.hidden_dim=16",
    "model.predictor.depth=1",
]
EPOCHS, STEPS = 3, 2
DEFAULT_SEEDS = {"jax": 9, "torch": 8, "tensorflow": 5}  # together: every kind of point
TIMEOUT_S = 300


def argv_for(output_dir, extra=(), tiny=TINY):
    args = ["--config=stop_tiny_procedural", f"--override=train.output_dir={output_dir}"]
    return args + [f"--override={o}" for o in list(tiny) + list(extra)]


def run_cli(args, fault_at=None):
    """`python -m recipes.pretrain args` on this backend: `(returncode, output)`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["KERAS_BACKEND"] = keras.backend.backend()
    env.pop("KFP_FAULT_AT", None)
    if fault_at:
        env["KFP_FAULT_AT"] = fault_at
    done = subprocess.run(
        [sys.executable, "-m", "recipes.pretrain", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S,
    )
    return done.returncode, done.stdout


def kill_points(seed):
    """Two kill points in the order a run meets them: one during training (a step,
    a checkpoint write or a backup write), one later (training or export)."""
    rng = np.random.default_rng(seed)
    total = EPOCHS * STEPS
    # Position of each point in the run (a backup of epoch e is taken after its checkpoint).
    points = {f"step:{k}": 10 * k for k in range(1, total)}
    points.update({f"checkpoint:{e}": 10 * e * STEPS + 3 for e in range(1, EPOCHS + 1)})
    points.update({f"backup:{e}": 10 * e * STEPS + 5 for e in range(1, EPOCHS + 1)})
    points.update({"export:1": 10 * total + 11, "export:2": 10 * total + 12})
    names = sorted(points, key=points.get)
    first = names[rng.integers(0, len(names) - 3)]
    later = [n for n in names if points[n] > points[first]]
    second = later[rng.integers(0, len(later))]
    return [first, second]


def resume_epoch(point):
    """Epochs a rerun skips after a kill at `point`: the backup of epoch `e` is
    taken as epoch `e + 1` begins, after epoch `e`'s checkpoint."""
    kind, index = point.split(":")
    index = int(index)
    if kind == "step":
        return (index - 1) // STEPS
    if kind in ("checkpoint", "backup"):
        return index - 1
    return EPOCHS


class RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def h5_arrays(source):
    """`{dataset path: array}` of a `.weights.h5` file or of the weights in a `.keras` file."""
    if str(source).endswith(".keras"):
        with zipfile.ZipFile(source) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}
    with h5py.File(source, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class FaultInjectionTest(TestCase):
    def assert_same_arrays(self, got, want, what):
        self.assertEqual(sorted(got), sorted(want), what)
        self.assertGreater(len(want), 10, what)
        worst = max(float(np.max(np.abs(got[k].astype(np.float64) - want[k]))) if want[k].size else 0.0 for k in want)
        self.assertLessEqual(worst, 1e-6, f"{what}: max abs difference {worst}")
        return worst

    @pytest.mark.fault_injection
    def test_sigkill_at_seeded_points__rerun_equals_uninterrupted_run(self):
        backend = keras.backend.backend()
        seed = int(os.environ.get("KFP_FAULT_SEED", DEFAULT_SEEDS[backend]))
        points = kill_points(seed)
        tmp = self.get_temp_dir()
        reference, killed = os.path.join(tmp, "reference"), os.path.join(tmp, "killed")
        context = f"backend {backend}, KFP_FAULT_SEED={seed}, kill points {points}"

        # The same command, killed at each point in turn, then run to the end.
        for point in points:
            code, output = run_cli(argv_for(killed), fault_at=point)
            self.assertEqual(code, -9, f"{context}: not killed at {point}:\n{output[-3000:]}")
            self.assertFalse(os.path.exists(os.path.join(killed, "summary.json")), context)
        code, output = run_cli(argv_for(killed))
        self.assertEqual(code, 0, f"{context}:\n{output[-3000:]}")
        resumed = resume_epoch(points[-1])
        if resumed:
            self.assertIn(f"resuming after epoch {resumed}", output, context)

        # The uninterrupted run, in this process; run again, it only reports.
        recorder = RecordEpochs()
        first = pretrain.run_from_argv(["pretrain", *argv_for(reference)], extra_callbacks=[recorder])
        again = pretrain.run_from_argv(["pretrain", *argv_for(reference)], extra_callbacks=[recorder])
        self.assertEqual(recorder.epochs, [0, 1, 2])
        self.assertEqual(again, json.loads(json.dumps(first)))
        self.assertTrue(glob.glob(os.path.join(reference, "tensorboard", "train", "events.out.tfevents.*")))

        want, got = csv_rows(os.path.join(reference, "log.csv")), csv_rows(os.path.join(killed, "log.csv"))
        self.assertEqual([r["epoch"] for r in got], ["0", "1", "2"], context)
        self.assertNotIn("val_loss", got[0])
        losses = np.array([[float(r["loss"]) for r in rows] for rows in (want, got)])
        self.assertLessEqual(float(np.max(np.abs(losses[0] - losses[1]))), 1e-6, f"{context}: {losses}")
        for column in ("learning_rate", "weight_decay", "ema_momentum"):
            self.assertEqual([r[column] for r in got], [r[column] for r in want], column)
        names = [f"epoch_{e:04d}.weights.h5" for e in range(1, EPOCHS + 1)]
        self.assertEqual(sorted(os.listdir(os.path.join(killed, "checkpoints"))), names, context)
        for name in names:
            self.assert_same_arrays(
                h5_arrays(os.path.join(killed, "checkpoints", name)),
                h5_arrays(os.path.join(reference, "checkpoints", name)), f"{context}: {name}",
            )
        worst = 0.0
        for name in ("final.keras", "target_encoder.keras"):
            worst = max(worst, self.assert_same_arrays(
                h5_arrays(os.path.join(killed, name)), h5_arrays(os.path.join(reference, name)), f"{context}: {name}"
            ))
        with open(os.path.join(killed, "summary.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["resumed_from_epoch"], resumed, context)
        self.assertEqual((summary["train_steps"], summary["optimizer_iterations"]), (EPOCHS * STEPS,) * 2)
        self.assertEqual(summary["loss_per_epoch"], [float(r["loss"]) for r in got])
        self.assertEqual(glob.glob(os.path.join(killed, "**", ".partial.*"), recursive=True), [], context)
        self.assertFalse(os.path.exists(os.path.join(killed, "backup")), context)
        print(
            f"{context}: resumed vs uninterrupted, max |loss difference| {np.max(np.abs(losses[0] - losses[1]))}, "
            f"max |weight difference| (final.keras, target_encoder.keras) {worst}"
        )

        # The export loads alone and the evaluation code reads it.
        from keras_flexpredict.data import procedural_shapes_dataset
        from keras_flexpredict.evaluation import extract_features_of_splits
        from keras_flexpredict.evaluation import knn_classifier

        encoder = keras.saving.load_model(os.path.join(killed, "target_encoder.keras"), compile=False)
        splits = [
            procedural_shapes_dataset(12, image_size=32, seed=seed, label="count", batch_size=6) for seed in (1, 2)
        ]
        (x_train, y_train), (x_test, y_test) = extract_features_of_splits(encoder, splits, verbose=0)
        self.assertEqual(x_train.shape, (12, 32))
        self.assertTrue(np.all(np.isfinite(x_train)))
        self.assertTrue(0.0 <= knn_classifier(x_train, y_train, x_test, y_test, k=3)["top1"] <= 1.0)

    @pytest.mark.fault_injection
    def test_diverging_run__exit_status_3_keeps_last_good_state(self):
        # A weight turns NaN after a seeded step of epoch 2 or 3 (as after a learning
        # rate of 1e3, but at a known step on every backend).
        seed = int(os.environ.get("KFP_FAULT_SEED", DEFAULT_SEEDS[keras.backend.backend()]))
        poisoned = int(np.random.default_rng(seed).integers(STEPS + 1, EPOCHS * STEPS))
        out = os.path.join(self.get_temp_dir(), "diverged")
        code, output = run_cli(argv_for(out), fault_at=f"nan:{poisoned}")
        context = f"NaN after step {poisoned}:\n{output[-3000:]}"
        self.assertEqual(code, pretrain.EXIT_NON_FINITE, context)
        match = re.search(r"Training diverged: [^\n]*? (nan|inf|-inf) at [^\n]*?step (\d+)", output)
        self.assertIsNotNone(match, context)
        step = int(match.group(2))
        # The next step's loss, or the weights at the end of the epoch.
        self.assertEqual(step, poisoned if poisoned % STEPS == 0 else poisoned + 1, context)
        bad_epoch = (step - 1) // STEPS + 1  # 1-based epoch of the bad step
        for name in ("final.keras", "target_encoder.keras", "summary.json"):
            self.assertFalse(os.path.exists(os.path.join(out, name)), name)
        # The last good state: checkpoints and backup of the epochs before the bad one.
        good = [f"epoch_{e:04d}.weights.h5" for e in range(1, bad_epoch)]
        self.assertEqual(sorted(os.listdir(os.path.join(out, "checkpoints"))), good, context)
        for name in good:
            for key, array in h5_arrays(os.path.join(out, "checkpoints", name)).items():
                if array.dtype.kind == "f":
                    self.assertTrue(np.all(np.isfinite(array)), f"{name}: {key}")
        with open(os.path.join(out, "backup", "training_metadata.json")) as f:
            self.assertEqual(json.load(f)["epoch"], bad_epoch - 1)
        rows = csv_rows(os.path.join(out, "log.csv"))
        self.assertEqual(len(rows), bad_epoch - 1)
        self.assertTrue(all(np.isfinite(float(r["loss"])) for r in rows))
        self.assertIn(f"backup after epoch {bad_epoch - 1}", output)
        self.assertIn("fresh run", output)

    def test_unreadable_images__none_decodable_fails_first_else_counted_in_summary_and_log(self):
        root = os.path.join(self.get_temp_dir(), "data")
        for name in ("a.jpg", "b.png", "c.jpg"):
            os.makedirs(os.path.join(root, "train", "cls"), exist_ok=True)
            with open(os.path.join(root, "train", "cls", name), "wb") as f:
                f.write(b"\xff\xd8\xff broken jpeg" if name.endswith("jpg") else b"not a png")
        out = os.path.join(self.get_temp_dir(), "run")
        # The tiny recipe on a folder: its procedural-only keys are dropped.
        extra = ["data.source=image_folder", f"data.root={root}", "data.transform=eval"]
        argv = ["pretrain", *argv_for(out, extra, [o for o in TINY if not o.startswith("data.num_images")])]
        with self.assertRaisesRegex(ValueError, r"No image in .*train.* can be decoded.*a\.jpg.*b\.png") as raised:
            pretrain.run_from_argv(argv)
        self.assertIn("3 files", str(raised.exception))
        self.assertFalse(os.path.exists(out))

        # With good images beside them, the run goes on and reports the skipped ones.
        rng = np.random.default_rng(0)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                os.path.join(root, "train", "cls", f"good_{i}.png")
            )
        summary = pretrain.run_from_argv(argv + ["--override=train.epochs=1"])
        self.assertGreater(summary["skipped_images"], 0)
        with open(os.path.join(out, "summary.json")) as f:
            self.assertEqual(json.load(f)["skipped_images"], summary["skipped_images"])
        rows = csv_rows(os.path.join(out, "log.csv"))
        self.assertGreater(int(rows[-1]["skipped_images"]), 0)
        self.assertFalse([c for c in rows[0] if c.startswith("val_")])
