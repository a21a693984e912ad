"""Importing Keras without JAX when another backend was chosen, and without TensorFlow
when Keras serializes.

Keras 3.15's `keras.callbacks` imports JAX whenever JAX is installed, whatever the
backend (a compatibility patch for `jax.monitoring` in its Orbax callback). A
torch process then maps and touches JAX's libraries for nothing: ~100-130 MiB of
resident memory (ViT-Tiny 224/16 batch 8, the train step's peak RSS 1.77 -> 1.62-1.65
GiB). `keras_flexpredict` imports Keras through `import_keras`, first thing.

On TensorFlow, `import tensorflow` imports JAX as well, when it is installed:
`tf.lite` binds `jax.jit` at import for its JAX converter
(`TFLiteConverter.experimental_from_jax`). `import_keras` hides JAX from that import too
(a TensorFlow process with every backend installed: 748 -> 642 MiB of RSS after `import
keras_flexpredict`, session 27) and then gives `tf.lite` a `jit` that imports JAX on its
first call, so the converter works as before.

On every backend, Keras's serializer (`serialize_keras_object`, behind any
`get_config()`, `model.save` or checkpoint) asks `tf.available` before testing whether
a value is a `tf.TensorShape`, `tf.DType` or `tf.TypeSpec`, and that question imports
all of TensorFlow (and JAX, through `tf.lite`) when it is installed: +0.66 GiB of
resident memory in a torch or JAX process. `import_keras` gives the serializer a view of
Keras's lazy `tensorflow` module that reports TensorFlow as available only once it has
been imported: no value can be a TensorFlow object before then, so what it serializes
is unchanged. Nothing else in Keras sees the view.
"""

import importlib.util
import os
import sys

__all__ = ["import_keras"]


def import_keras():
    """`import keras`, hiding JAX from Keras's own import (and TensorFlow's) when
    `KERAS_BACKEND` names a backend other than JAX and neither Keras nor JAX is loaded
    yet. JAX stays importable afterwards (`import jax` later works as usual, Keras's
    JAX-based callbacks import it when used, and so does `tf.lite`'s JAX converter);
    with `KERAS_BACKEND` unset or `jax`, or when Keras is already imported, this is a
    plain `import keras`. On every backend, Keras's serializer then imports TensorFlow
    only once something else has (see the module).

    >>> keras = import_keras()
    >>> keras.ops.convert_to_numpy(keras.ops.ones((2,))).tolist()
    [1.0, 1.0]
    """
    backend = os.environ.get("KERAS_BACKEND", "").strip().lower()
    if "keras" in sys.modules or "jax" in sys.modules or backend in ("", "jax"):
        import keras
    else:
        sys.modules["jax"] = None  # `import jax` raises ImportError, which Keras catches
        try:
            import keras
        finally:
            if "jax" in sys.modules and sys.modules["jax"] is None:
                del sys.modules["jax"]
        _give_tf_lite_a_jit_on_first_use()
    _serialize_without_importing_tensorflow()
    return keras


def _jit_on_first_use(*args, **kwargs):
    """`jax.jit`, imported when first called (`tf.lite`'s hook, see the module)."""
    from jax import jit

    return jit(*args, **kwargs)


def _give_tf_lite_a_jit_on_first_use():
    # `tf.lite` found no JAX at import (`_jit = None` in its `util` and `lite` modules):
    # where JAX is installed, its converter gets `jax.jit` on first use instead.
    if importlib.util.find_spec("jax") is None:
        return
    for name in ("tensorflow.lite.python.util", "tensorflow.lite.python.lite"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_jit", _jit_on_first_use) is None:
            module._jit = _jit_on_first_use


class _TensorFlowOnceImported:
    """Keras's lazy `tensorflow` module, `available` only once TensorFlow is imported."""

    def __init__(self, lazy_module):
        self._lazy_module = lazy_module

    @property
    def available(self):
        return sys.modules.get("tensorflow") is not None and self._lazy_module.available

    def __getattr__(self, name):
        return getattr(self._lazy_module, name)


def _serialize_without_importing_tensorflow():
    from keras_flexpredict.utils import keras_internals

    lazy_module = keras_internals.serializer_tensorflow_module()
    if isinstance(lazy_module, _TensorFlowOnceImported) or not hasattr(type(lazy_module), "available"):
        return  # done already, or another Keras layout (keras_internals_test reports it)
    keras_internals.wrap_serializer_tensorflow_module(_TensorFlowOnceImported)
