"""Private Keras API stays in one module, and still exists as we rely on it.

If a test here fails after a Keras upgrade, its message names what changed and the
files of this repository to update (see keras_flexpredict/utils/keras_internals.py).
"""

import importlib
import inspect
import os
import re

import keras
import numpy as np

from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.keras_internals import PRIVATE_API
from keras_flexpredict.testing import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCANNED = ("keras_flexpredict", "recipes", "benchmarks", "tests", "integration_tests")
# The isolation module itself, and this test, which names `keras.src` in its messages.
ALLOWED = (
    os.path.join("keras_flexpredict", "utils", "keras_internals.py"),
    os.path.join("tests", "utils", "keras_internals_test.py"),
)
KERAS_SRC = re.compile(r"\bkeras\.src\b")


def _python_files():
    for top in SCANNED:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def _resolve(dotted):
    """The object at `dotted`: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    return list(inspect.signature(target).parameters.values())


def _signature_problem(obj, expected):
    """None if `obj` takes the parameters `expected` first (any further ones
    optional), else a description of what it takes."""
    params = _parameters(obj)
    names = [p.name for p in params]
    if names[: len(expected)] != list(expected):
        return f"takes ({', '.join(names)})"
    for extra in params[len(expected) :]:
        if extra.default is inspect.Parameter.empty and extra.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            return f"takes a new required parameter `{extra.name}` ({', '.join(names)})"
    return None


def _instance(owner):
    if owner == "keras.optimizers.AdamW":
        optimizer = keras.optimizers.AdamW()
        optimizer.build([keras.Variable(np.zeros((2,), "float32"))])  # creates the moment slots
        return optimizer
    if owner == "keras.layers.Dense":
        return keras.layers.Dense(1)
    if owner == "keras.random.SeedGenerator":
        return keras.random.SeedGenerator(7)
    if owner == "keras.Variable":
        return keras.Variable(np.zeros((2,), "float32"))
    if owner == "keras.Model":
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    raise AssertionError(f"keras_internals_test has no instance for {owner}; add one to `_instance`.")


class KerasInternalsTest(TestCase):
    def test_keras_src__imported_only_by_keras_internals(self):
        offenders = []
        for path in _python_files():
            rel = os.path.relpath(path, ROOT)
            if rel in ALLOWED:
                continue
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if KERAS_SRC.search(line):
                        offenders.append(f"{rel}:{number}: {line.strip()}")
        if offenders:
            self.fail(
                "`keras.src` (private Keras) is used outside keras_flexpredict/utils/keras_internals.py; "
                "use public Keras API or route it through keras_internals (and add it to PRIVATE_API):\n"
                + "\n".join(offenders)
            )

    def test_private_api__every_entry_exists_as_we_rely_on_it(self):
        backend = keras.backend.backend()
        problems = []
        for entry in PRIVATE_API:
            if entry.backends is not None and backend not in entry.backends:
                continue
            where = f"{entry.owner}.{entry.name}"
            update = f"Update {', '.join(entry.users)} (and keras_internals.PRIVATE_API)."
            try:
                if entry.kind == "attribute":
                    instance = _instance(entry.owner)
                    if not hasattr(instance, entry.name):
                        problems.append(
                            f"Keras {keras.__version__}: {entry.owner} instances no longer have `{entry.name}` "
                            f"({entry.note}). {update}"
                        )
                else:
                    obj = getattr(_resolve(entry.owner), entry.name)
                    if entry.params is not None:
                        problem = _signature_problem(obj, entry.params)
                        if problem:
                            problems.append(
                                f"Keras {keras.__version__} changed {where}: we rely on "
                                f"({', '.join(entry.params)}), it now {problem} ({entry.note}). {update}"
                            )
            except (ImportError, AttributeError) as e:
                problems.append(f"Keras {keras.__version__} has no {where} ({e}; {entry.note}). {update}")
                continue
            if entry.source is not None:
                path, text = entry.source
                try:
                    source = inspect.getsource(_resolve(path))
                except (ImportError, AttributeError, OSError, TypeError) as e:
                    problems.append(f"Keras {keras.__version__}: cannot read {path} ({e}). {update}")
                    continue
                if text not in source:
                    problems.append(
                        f"Keras {keras.__version__}: {path} no longer contains `{text}`, which {where} "
                        f"relies on ({entry.note}). {update}"
                    )
        if problems:
            self.fail("\n".join(problems))

    def test_private_api__entries_are_well_formed(self):
        for entry in PRIVATE_API:
            self.assertIn(entry.kind, ("symbol", "method", "attribute"), entry)
            self.assertTrue(entry.users, entry)
            for user in entry.users:
                self.assertTrue(os.path.exists(os.path.join(ROOT, user)), f"{entry}: no file {user}")

    def test_overrides__our_private_overrides_are_listed(self):
        """Every `_name` method our Keras subclasses define that Keras also defines is in
        PRIVATE_API, so a Keras change to it is caught by the test above."""
        from keras_flexpredict.optimizers.jepa_adamw import JEPAAdamW
        from recipes.atomic_backup_and_restore import AtomicBackupAndRestore
        from recipes.atomic_model_checkpoint import AtomicModelCheckpoint

        listed = {(e.owner, e.name) for e in PRIVATE_API}
        for ours, base_name in (
            (JEPAAdamW, "keras.optimizers.AdamW"),
            (AtomicModelCheckpoint, "keras.callbacks.ModelCheckpoint"),
            (AtomicBackupAndRestore, "keras.callbacks.BackupAndRestore"),
        ):
            base = _resolve(base_name)
            for name, value in vars(ours).items():
                if name.startswith("_") and not name.startswith("__") and callable(value) and hasattr(base, name):
                    self.assertIn(
                        (base_name, name), listed,
                        f"{ours.__name__}.{name} overrides a private Keras method; list it in "
                        "keras_internals.PRIVATE_API",
                    )

    def test_public_replacements__behave_as_we_rely_on(self):
        # keras.saving.save_model writes any layer, not only models (distributed_saving,
        # testing.TestCase.run_saving_test).
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        path = os.path.join(self.get_temp_dir(), "layer.keras")
        keras.saving.save_model(layer, path)
        loaded = keras.saving.load_model(path)
        x = np.ones((1, 3), "float32")
        self.assertAllClose(loaded(x), layer(x))
        # Public names that replaced keras.src imports.
        self.assertTrue(callable(keras.StatelessScope))
        generator = keras.random.SeedGenerator(3)
        self.assertEqual(keras_internals.seed_generator_initial_seed(generator), 3)

    def test_no_autocast__reads_float32_under_a_mixed_policy(self):
        class Probe(keras.layers.Layer):
            def build(self, shape):
                self.v = self.add_weight(shape=(2,), initializer="ones")

            def call(self, x):
                self.seen = [keras.backend.standardize_dtype(self.v.value.dtype)]
                with keras_internals.no_autocast():
                    self.seen.append(keras.backend.standardize_dtype(self.v.value.dtype))
                return x

        probe = Probe(dtype="mixed_bfloat16")
        probe(np.ones((1, 2), "float32"))
        self.assertEqual(probe.seen, ["bfloat16", "float32"])
