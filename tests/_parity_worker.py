"""One backend's half of `tests/cross_backend_parity_test.py` (not a test itself).

Usage: `KERAS_BACKEND=<backend> python tests/_parity_worker.py DIR [--create]`

With `--create` it first builds a tiny `ViTEncoder` and `JEPAPredictor`, gives every
trainable weight a random value from a fixed NumPy seed, and saves both as `.keras`
files in DIR. It then (always) loads the two `.keras` files, runs them on the arrays of
`DIR/inputs.npz` and writes the outputs to `DIR/outputs_<backend>.npz`. Every file is
written under a temporary name and renamed, so a reader never sees half a file.
"""

import os
import sys

ENCODER = dict(image_size=16, patch_size=4, hidden_dim=32, depth=2, num_heads=4)
PREDICTOR = dict(
    encoder_dim=32, hidden_dim=16, depth=2, num_heads=4, grid_size=(4, 4),
    positional_noise="stop", sigma=0.25, seed=0,
)


def _atomic(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def _randomize(model, rng):
    for w in model.trainable_weights:
        value = rng.standard_normal(tuple(w.shape)) * 0.2
        if "gamma" in w.path:
            value = 1.0 + value
        w.assign(value.astype("float32"))


def create(directory, inputs):
    import numpy as np

    from keras_flexpredict.models import JEPAPredictor
    from keras_flexpredict.models import ViTEncoder

    rng = np.random.default_rng(0)
    encoder = ViTEncoder(**ENCODER)
    encoder(inputs["images"])
    _randomize(encoder, rng)
    predictor = JEPAPredictor(**PREDICTOR)
    predictor(inputs["context"], _masks(inputs))
    _randomize(predictor, rng)
    for name, model in (("encoder", encoder), ("predictor", predictor)):
        # `Model.save` wants the `.keras` suffix, so the temporary name keeps it.
        tmp = os.path.join(directory, f"{name}.tmp{os.getpid()}.keras")
        model.save(tmp)
        os.replace(tmp, os.path.join(directory, f"{name}.keras"))


def _masks(inputs):
    return {k: inputs[k] for k in ("context_indices", "context_mask", "target_indices", "target_mask")}


def _compiled(model):
    """`model.__call__`, on JAX as one jitted program (the way JAX users run a model;
    eager JAX compiles every op separately, which would dominate this test's time)."""
    import keras

    if keras.backend.backend() != "jax":
        return model
    import jax

    def stateless(trainable, non_trainable, *args, **kwargs):
        return model.stateless_call(trainable, non_trainable, *args, **kwargs)[0]

    jitted = jax.jit(stateless, static_argnames=("last_n_layers", "training"))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return lambda *args, **kwargs: jitted(trainable, non_trainable, *args, **kwargs)


def run(directory):
    import keras
    import numpy as np
    from keras import ops

    import keras_flexpredict  # noqa: F401  (registers the classes for loading)

    inputs = dict(np.load(os.path.join(directory, "inputs.npz")))
    if "--create" in sys.argv:
        create(directory, inputs)
    encoder = keras.saving.load_model(os.path.join(directory, "encoder.keras"))
    predictor = keras.saving.load_model(os.path.join(directory, "predictor.keras"))
    masks = _masks(inputs)
    images = inputs["images"]
    encode, predict = _compiled(encoder), _compiled(predictor)
    context = encode(
        images, context_indices=masks["context_indices"], context_mask=masks["context_mask"]
    )
    outputs = {
        "encoder_full": encode(images),
        "encoder_context": context,
        "encoder_second_to_last": encode(images, last_n_layers=2)[0],
        "predictor": predict(inputs["context"], masks, training=False),
        "pipeline": predict(context, masks, training=False),
    }
    outputs = {k: np.asarray(ops.convert_to_numpy(v), dtype=np.float32) for k, v in outputs.items()}

    def write(path):
        with open(path, "wb") as f:
            np.savez(f, **outputs)

    _atomic(os.path.join(directory, f"outputs_{keras.backend.backend()}.npz"), write)


if __name__ == "__main__":
    run(sys.argv[1])
