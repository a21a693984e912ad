"""The `monitor` section of a recipe: training diagnostics and an online probe.

    "monitor": {
      "diagnostics_every": 1,      # epochs between TrainingDiagnostics (0: off)
      "diagnostics_images": 64,    # size of its fixed batch (first training images)
      "std_threshold": 0.05,       # collapse warning below this target_std
      "rank_threshold": 2.0,       # ... or below this target_rankme
      "probe_every": 0,            # epochs between OnlineProbe runs (0: off)
      "probe_num_train": 1000,     # labelled procedural images it trains on
      "probe_num_test": 500,       # ... and scores on (other seeds than training)
      "probe_labels": ["shape", "count", "position"],
      "probe_knn_k": 20            # also a kNN probe (null: logistic regression only)
    }

These are the `monitor` section of `recipes.config.default_config()`, where keys and
types are checked; `validate` checks the values.

The online probe of a recipe needs labels, so it takes `data.source: "procedural"`;
with other data use `kfp.callbacks.OnlineProbe` from Python with your labelled arrays
(`recipes.pretrain.run(config, extra_callbacks=[probe])`).
"""

import inspect

import numpy as np

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int

DEFAULTS = {
    "diagnostics_every": 1,
    "diagnostics_images": 64,
    "std_threshold": 0.05,
    "rank_threshold": 2.0,
    "probe_every": 0,
    "probe_num_train": 1000,
    "probe_num_test": 500,
    "probe_labels": ["shape", "count", "position"],
    "probe_knn_k": 20,
}
PROBE_LABELS = ("shape", "count", "position", "color")
# Seeds of the probe's labelled images, far from any training seed.
PROBE_SEED = 1000


def _fail(key, value, why):
    raise ValueError(f"Recipe key `monitor.{key}` {why}. Received: monitor.{key}={value!r}")


def _is_int(value, low):
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def validate(monitor, data):
    """A complete, checked `monitor` section (defaults filled in)."""
    if not isinstance(monitor, dict):
        raise ValueError(f"Recipe section `monitor` must be a dict. Received: monitor={monitor!r}")
    for key in monitor:
        if key not in DEFAULTS:
            _fail(key, monitor[key], f"is not a known key of section `monitor` ({sorted(DEFAULTS)})")
    out = dict(DEFAULTS, **monitor)
    for key, low in (("diagnostics_every", 0), ("diagnostics_images", 2), ("probe_every", 0),
                     ("probe_num_train", 2), ("probe_num_test", 1)):
        check_int(f"monitor.{key}", out[key], minimum=low)
    for key in ("std_threshold", "rank_threshold"):
        if not isinstance(out[key], (int, float)):
            _fail(key, out[key], "must be a number >= 0")
        check_float(f"monitor.{key}", out[key], minimum=0)
    labels = out["probe_labels"]
    if not isinstance(labels, list) or not labels or any(label not in PROBE_LABELS for label in labels):
        _fail("probe_labels", labels, f"must be a non-empty list of {PROBE_LABELS}")
    if out["probe_knn_k"] is not None and not _is_int(out["probe_knn_k"], 1):
        _fail("probe_knn_k", out["probe_knn_k"], "must be a positive int or null")
    if out["probe_knn_k"] is not None and out["probe_knn_k"] > out["probe_num_train"]:
        _fail("probe_knn_k", out["probe_knn_k"], f"must be at most monitor.probe_num_train ({out['probe_num_train']})")
    if out["probe_every"] and data["source"] != "procedural":
        _fail(
            "probe_every",
            out["probe_every"],
            "needs labelled built-in data (data.source 'procedural'); with your own data pass "
            "kfp.callbacks.OnlineProbe to recipes.pretrain.run(extra_callbacks=...)",
        )
    return out


def first_training_images(config, num_images):
    """The first `num_images` images of the recipe's training pipeline (one pass)."""
    from recipes import config as recipe_config

    fn, kwargs = recipe_config.dataset_arguments(config["data"])
    images = []
    count = 0
    for batch in fn(**kwargs).as_numpy_iterator():
        batch = batch[0] if isinstance(batch, tuple) else batch
        images.append(batch)
        count += batch.shape[0]
        if count >= num_images:
            break
    images = np.concatenate(images, axis=0)[:num_images]
    return images.astype(np.float32)


def procedural_probe_split(data, num_images, seed, labels=("shape", "count", "position")):
    """`(images, {label: class ids})` of labelled procedural images drawn like the
    recipe's `data` section (same generator arguments, another seed), normalised as
    the pretraining pipeline (ImageNet mean and std). Counts become 0-based."""
    from keras_flexpredict.data import IMAGENET_MEAN
    from keras_flexpredict.data import IMAGENET_STD
    from keras_flexpredict.data import make_procedural_shapes

    names = set(inspect.signature(make_procedural_shapes).parameters) - {"num_images", "seed"}
    generator = {k: v for k, v in data.items() if k in names}
    drawn = make_procedural_shapes(num_images, seed=seed, **generator)
    images = (drawn["images"].astype(np.float32) / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    out = {}
    for label in labels:
        values = np.asarray(drawn["labels"][label]).astype(np.int64)
        out[label] = values - 1 if label == "count" else values
    return images, out


def make_callbacks(config):
    """The `TrainingDiagnostics` and `OnlineProbe` callbacks a recipe asks for (to go
    before the CSV and TensorBoard loggers)."""
    from keras_flexpredict.callbacks import OnlineProbe
    from keras_flexpredict.callbacks import TrainingDiagnostics

    monitor = config["monitor"]
    callbacks = []
    if monitor["diagnostics_every"]:
        callbacks.append(
            TrainingDiagnostics(
                first_training_images(config, monitor["diagnostics_images"]),
                every_n_epochs=monitor["diagnostics_every"],
                std_threshold=monitor["std_threshold"],
                rank_threshold=monitor["rank_threshold"],
                seed=config["train"]["seed"],
            )
        )
    if monitor["probe_every"]:
        labels = tuple(monitor["probe_labels"])
        train = procedural_probe_split(config["data"], monitor["probe_num_train"], PROBE_SEED, labels)
        test = procedural_probe_split(config["data"], monitor["probe_num_test"], PROBE_SEED + 1, labels)
        callbacks.append(
            OnlineProbe(
                train, test, every_n_epochs=monitor["probe_every"], protocol="search",
                l2_strengths=(1e-4, 1e-3, 1e-2, 1e-1), max_iter=300, knn_k=monitor["probe_knn_k"],
            )
        )
    return callbacks
