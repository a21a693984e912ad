"""Shared by the worker scripts of the multi-device tests (run as subprocesses)."""

import json
import os
import sys

import numpy as np

GLOBAL_BATCH = 8
STEPS = 3
NUM_IMAGES = GLOBAL_BATCH * STEPS


def make_model(sigma=0.25, seed=0, optimizer=None):
    """The tiny model, its weights drawn from a fixed seed (equal on every process)."""
    import keras

    from keras_flexpredict.testing.tiny_models import tiny_flexpredict

    keras.utils.set_random_seed(seed)
    model = tiny_flexpredict(sigma=sigma)
    model.compile(optimizer=optimizer) if optimizer is not None else model.compile()
    return model


def images():
    from keras_flexpredict.testing.tiny_models import structured_images

    return structured_images(NUM_IMAGES)


class StepLosses:
    """Per-step losses from Keras's running epoch means (one epoch)."""

    def __init__(self):
        import keras

        self.means = []
        outer = self

        class _Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.means.append(float(logs["loss"]))

        self.callback = _Record()

    @property
    def losses(self):
        means = np.asarray(self.means, np.float64)
        steps = np.arange(1, len(means) + 1)
        totals = means * steps
        return np.diff(np.concatenate([[0.0], totals])).tolist()


def ema_callback():
    from keras_flexpredict.callbacks import EMATargetCallback

    # Explicit length: a dataset sharded per process has no known size.
    return EMATargetCallback(start_momentum=0.99, end_momentum=1.0, total_steps=STEPS)


def to_numpy(variable):
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def weights_dict(model):
    """`part/index/name` -> NumPy value of every weight of the context encoder, target
    encoder and predictor (variable paths change with auto-numbered model names and
    with loading, the order inside each part does not)."""
    out = {}
    for part in ("encoder", "target_encoder", "predictor"):
        for i, v in enumerate(getattr(model, part).weights):
            out[f"{part}/{i}/{v.name}"] = to_numpy(v)
    return out


def save_npz(path, arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def fail(message):
    print(f"WORKER FAILURE: {message}", file=sys.stderr, flush=True)
    sys.exit(3)
