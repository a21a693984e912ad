"""Times configurations on the backend of `KERAS_BACKEND`; prints one JSON line each.

    KERAS_BACKEND=jax python -m benchmarks.step_benchmark --runs=forward:tiny,train:tiny:stop

`forward:SIZE`: compiled forward of masker, encoder (full image) and predictor, each
through `predict_on_batch` (JAX jit, TF tf.function, torch eager without grad).
`train:SIZE:VARIANT`: `model.fit` train steps of FlexPredict (VARIANT stop, ijepa, or
stop_no_ema, which skips the in-step EMA update to measure its cost); the first step is
reported as compile time, the median of the rest as the steady-state step. Peak memory:
the GPU allocator's peak on a GPU (JAX: process-wide, not reset between runs), else the
process's peak RSS (also cumulative).
"""

import argparse
import json
import os
import platform
import resource
import time

import keras_flexpredict  # first: imports Keras without JAX on torch (utils.keras_import)

import keras
import numpy as np

from keras_flexpredict.models.flex_predict import FlexPredict

SIZES = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224"}


class NoEMAFlexPredict(FlexPredict):
    def update_target_encoder(self):  # benchmark only: the step without the EMA
        pass


def build(size, variant, seed=0):
    noise = "none" if variant == "ijepa" else "stop"
    from keras_flexpredict.models.vit_presets import VIT_PRESETS

    vit = VIT_PRESETS[SIZES[size]]
    cls = NoEMAFlexPredict if variant == "stop_no_ema" else FlexPredict
    return cls.from_preset(
        "stop_vit_base_patch16_224_imagenet",
        encoder=dict(hidden_dim=vit["hidden_dim"], depth=vit["depth"], num_heads=vit["num_heads"]),
        predictor=dict(depth=6, num_heads=vit["num_heads"], positional_noise=noise, seed=seed),
        masker=dict(seed=seed),
    )


def sync(x):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


def peak_memory_mb():
    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        if backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform != "cpu":
                return dev.memory_stats()["peak_bytes_in_use"] / 2**20
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # noqa: BLE001 - memory stats are best effort
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_fn(fn, repeats):
    sync(fn())  # compile / warm up
    sync(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def forward(size, batch, repeats):
    model = build(size, "stop")
    images = np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype("float32")

    class MaskerModel(keras.Model):
        def __init__(self, masker):
            super().__init__()
            self.masker = masker

        def call(self, x):
            return self.masker(x)

    class PredictorModel(keras.Model):
        def __init__(self, predictor):
            super().__init__()
            self.predictor = predictor

        def call(self, inputs):
            return self.predictor(inputs[0], inputs[1])

    masker = MaskerModel(model.masker)
    masks = sync(masker.predict_on_batch(images))
    context = np.random.default_rng(1).normal(
        size=(batch, masks["context_indices"].shape[1], model.encoder.hidden_dim)
    ).astype("float32")
    predictor = PredictorModel(model.predictor)
    return {
        "masker_ms": 1e3 * time_fn(lambda: masker.predict_on_batch(images), repeats),
        "encoder_ms": 1e3 * time_fn(lambda: model.encoder.predict_on_batch(images), repeats),
        "predictor_ms": 1e3 * time_fn(lambda: predictor.predict_on_batch((context, masks)), repeats),
    }


def train(size, variant, batch, steps):
    model = build(size, variant)
    model.compile()
    images = np.random.default_rng(0).normal(size=(batch * steps, 224, 224, 3)).astype("float32")
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step
            times.append(time.perf_counter() - self.t)

    start = time.perf_counter()
    model.fit(images, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()])
    total = time.perf_counter() - start
    steady = float(np.median(times[2:]))
    return {
        "first_step_s": times[0],
        "step_ms": 1e3 * steady,
        "images_per_s": batch / steady,
        "fit_total_s": total,
    }


def reset_peak_memory():
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def run_one(spec, batch, steps, repeats):
    """`spec` = "forward:tiny" or "train:small:ijepa"."""
    parts = spec.split(":")
    what, size = parts[0], parts[1]
    variant = parts[2] if len(parts) > 2 else "stop"
    if what not in ("forward", "train") or size not in SIZES:
        raise ValueError(f"Bad run spec. Received: spec={spec!r}")
    reset_peak_memory()
    result = dict(what=what, size=size, variant=variant, batch=batch)
    if what == "forward":
        result.update(forward(size, batch, repeats))
    else:
        result.update(train(size, variant, batch, steps))
    result["peak_memory_mb"] = peak_memory_mb()
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--runs",
        default="forward:tiny,train:tiny:stop,train:tiny:ijepa,train:tiny:stop_no_ema",
        help="comma-separated specs what:size[:variant], run in this one process",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    common = dict(
        backend=keras.backend.backend(),
        keras=keras.__version__,
        machine=os.environ.get("BENCH_MACHINE", platform.node()),
        device=_device_name(),
    )
    for spec in args.runs.split(","):
        result = dict(common, **run_one(spec, args.batch, args.steps, args.repeats))
        print("RESULT " + json.dumps(result), flush=True)


def _device_name():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


if __name__ == "__main__":
    main()
