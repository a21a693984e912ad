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

    def test_tensorflow_keeps_jax_for_its_own_use(self):
        # TensorFlow imports JAX itself (tf.lite's JAX converter); hiding it would turn
        # that converter off for the process.
        if keras.backend.backend() != "tensorflow":
            self.skipTest("Checked in the TensorFlow run (one subprocess per backend run).")
        self.assertEqual(self._run("tensorflow"), ["tensorflow", "True", "3.0"])

    def test_jax_backend_still_gets_jax(self):
        if keras.backend.backend() != "jax":
            self.skipTest("Checked in the JAX run (one subprocess per backend run).")
        self.assertEqual(self._run("jax"), ["jax", "True", "3.0"])
