import importlib.util
import os
import subprocess
import sys
import textwrap

import keras

from keras_flexpredict.testing import TestCase

_CHECK = textwrap.dedent(
    """
    import sys
    import keras_flexpredict
    import keras
    loaded = "jax" in sys.modules
    import jax  # still importable afterwards
    print(keras.backend.backend(), loaded, float(jax.numpy.ones(3).sum()))
    """
)


_TF_LITE_FROM_JAX = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras_flexpredict
    loaded = "jax" in sys.modules
    import tensorflow as tf

    def f(x):
        import jax.numpy as jnp
        return jnp.sin(x) + 1.0

    converter = tf.lite.TFLiteConverter.experimental_from_jax([f], [[("x", np.zeros(3, np.float32))]])
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = np.array([0.0, np.pi / 2, 0.0], np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    print(loaded, np.round(y, 4).tolist())
    """
)


class ImportKerasTest(TestCase):
    def _run(self, backend):
        if importlib.util.find_spec("jax") is None:
            self.skipTest("JAX is not installed here: nothing to hide.")
        env = dict(os.environ, KERAS_BACKEND=backend)
        result = subprocess.run(
            [sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True, timeout=300
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        return result.stdout.split()[-3:]

    def test_torch_imports_keras_without_jax(self):
        if keras.backend.backend() != "torch":
            self.skipTest("Checked in the torch run (one subprocess per backend run).")
        self.assertEqual(self._run("torch"), ["torch", "False", "3.0"])

    def test_tensorflow_imports_keras_without_jax(self):
        # TensorFlow's own import would import JAX too (tf.lite's JAX converter).
        if keras.backend.backend() != "tensorflow":
            self.skipTest("Checked in the TensorFlow run (one subprocess per backend run).")
        self.assertEqual(self._run("tensorflow"), ["tensorflow", "False", "3.0"])

    def test_tensorflow_lites_jax_converter_still_converts(self):
        if keras.backend.backend() != "tensorflow":
            self.skipTest("Checked in the TensorFlow run (one subprocess per backend run).")
        if importlib.util.find_spec("jax") is None:
            self.skipTest("JAX is not installed here: no converter to keep.")
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(
            [sys.executable, "-c", _TF_LITE_FROM_JAX], env=env, capture_output=True, text=True, timeout=300
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual(result.stdout.strip().splitlines()[-1], "False [1.0, 2.0, 1.0]")

    def test_jax_backend_still_gets_jax(self):
        if keras.backend.backend() != "jax":
            self.skipTest("Checked in the JAX run (one subprocess per backend run).")
        self.assertEqual(self._run("jax"), ["jax", "True", "3.0"])


_SERIALIZE = textwrap.dedent(
    """
    import os, sys, tempfile
    import numpy as np
    import keras_flexpredict
    import keras
    from keras_flexpredict.layers import MultiBlockMasker
    from keras_flexpredict.models import ViTEncoder
    from keras_flexpredict.utils.keras_internals import serializer_tensorflow_module

    config = MultiBlockMasker(grid_size=(14, 14)).get_config()
    encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
    x = np.ones((1, 16, 16, 3), "float32")
    expected = keras.ops.convert_to_numpy(encoder(x))
    path = os.path.join(tempfile.mkdtemp(), "encoder.keras")
    encoder.save(path)
    revived = keras.saving.load_model(path)
    same = np.allclose(keras.ops.convert_to_numpy(revived(x)), expected)
    before = "tensorflow" in sys.modules or serializer_tensorflow_module().available
    import tensorflow as tf  # once imported, its objects serialize as before
    shape = keras.saving.serialize_keras_object(tf.TensorShape([2, 3]))
    print(before, same, shape == [2, 3], config["grid_size"] == (14, 14))
    """
)


class SerializeWithoutTensorFlowTest(TestCase):
    def test_save_and_get_config_do_not_import_tensorflow(self):
        if keras.backend.backend() == "tensorflow":
            self.skipTest("TensorFlow is loaded by its own backend.")
        if importlib.util.find_spec("tensorflow") is None:
            self.skipTest("TensorFlow is not installed here: nothing would import it.")
        env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
        result = subprocess.run(
            [sys.executable, "-c", _SERIALIZE], env=env, capture_output=True, text=True, timeout=300
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual(result.stdout.split()[-4:], ["False", "True", "True", "True"])
