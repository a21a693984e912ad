"""Importing Keras without JAX when another backend was chosen.

Keras 3.15's `keras.callbacks` imports JAX whenever JAX is installed, whatever the
backend (a compatibility patch for `jax.monitoring` in its Orbax callback). A
torch process then maps and touches JAX's libraries for nothing: ~100-130 MiB of
resident memory (ViT-Tiny 224/16 batch 8, the train step's peak RSS 1.77 -> 1.62-1.65
GiB). `keras_flexpredict` imports Keras through `import_keras`, first thing.

Not on TensorFlow: TensorFlow imports JAX itself (`tf.lite`, for its JAX converter), and
hiding JAX there would leave that converter off for the whole process.
"""

import os
import sys

__all__ = ["import_keras"]


def import_keras():
    """`import keras`, hiding JAX from Keras's own import when `KERAS_BACKEND` names
    a backend that does not use JAX (torch, numpy, openvino) and neither Keras nor JAX
    is loaded yet. JAX stays importable afterwards (`import jax` later works as usual,
    and Keras's JAX-based callbacks import it when used); with `KERAS_BACKEND` unset,
    `jax` or `tensorflow` (see the module), or when Keras is already imported, this is
    a plain `import keras`.

    >>> keras = import_keras()
    >>> keras.ops.convert_to_numpy(keras.ops.ones((2,))).tolist()
    [1.0, 1.0]
    """
    backend = os.environ.get("KERAS_BACKEND", "").strip().lower()
    if "keras" in sys.modules or "jax" in sys.modules or backend in ("", "jax", "tensorflow"):
        import keras

        return keras
    sys.modules["jax"] = None  # `import jax` raises ImportError, which Keras catches
    try:
        import keras
    finally:
        if "jax" in sys.modules and sys.modules["jax"] is None:
            del sys.modules["jax"]
    return keras
