"""Backend branches live in utils/backend_adapter.py; layers and models never import
distribution/; the adapter's capabilities give the same numbers on every backend."""

import os
import re

import keras
import numpy as np

from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils import backend_adapter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "keras_flexpredict")
ADAPTER = os.path.join("keras_flexpredict", "utils", "backend_adapter.py")
BRANCH = re.compile(r"\bbackend\(\)\s*(==|!=|in\b|not in\b)")
DISTRIBUTION_IMPORT = re.compile(
    r"^\s*(from\s+keras_flexpredict\.distribution\b|import\s+keras_flexpredict\.distribution\b"
    r"|from\s+keras_flexpredict\s+import\s+.*\bdistribution\b)"
)


def _lines(top):
    for folder, _, files in os.walk(top):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        yield os.path.relpath(path, ROOT), number, line


class BackendAdapterLayoutTest(TestCase):
    def test_backend_branches__only_in_the_adapter(self):
        offenders = [
            f"{rel}:{n}: {line.strip()}"
            for rel, n, line in _lines(PACKAGE)
            if rel != ADAPTER and BRANCH.search(line)
        ]
        if offenders:
            self.fail(
                "Branch on the Keras backend outside keras_flexpredict/utils/backend_adapter.py; "
                "add a capability function there instead:\n" + "\n".join(offenders)
            )

    def test_layers_and_models__do_not_import_distribution(self):
        offenders = []
        for room in ("layers", "models"):
            offenders += [
                f"{rel}:{n}: {line.strip()}"
                for rel, n, line in _lines(os.path.join(PACKAGE, room))
                if DISTRIBUTION_IMPORT.search(line)
            ]
        if offenders:
            self.fail(
                "layers/ and models/ must not import keras_flexpredict.distribution (move what they "
                "need to utils/ and re-export it from distribution):\n" + "\n".join(offenders)
            )


class BackendAdapterTest(TestCase):
    def test_ema_update___matches_the_formula(self):
        rng = np.random.default_rng(0)
        teachers = [keras.Variable(rng.normal(size=s).astype("float32")) for s in ((3, 4), (5,))]
        students = [keras.Variable(rng.normal(size=s).astype("float32")) for s in ((3, 4), (5,))]
        before = [np.asarray(t.numpy()) for t in teachers]
        m = 0.9
        backend_adapter.ema_update_(list(zip(teachers, students)), keras.ops.convert_to_tensor(m, "float32"))
        for teacher, student, old in zip(teachers, students, before):
            self.assertAllClose(teacher, m * old + (1 - m) * np.asarray(student.numpy()), atol=1e-6)

    def test_ema_update___momentum_one_keeps_the_teacher(self):
        teacher = keras.Variable(np.ones((2, 2), "float32"))
        student = keras.Variable(np.zeros((2, 2), "float32"))
        backend_adapter.ema_update_([(teacher, student)], keras.ops.convert_to_tensor(1.0, "float32"))
        self.assertAllClose(teacher, np.ones((2, 2)))

    def test_multiply_variables___scales_every_variable(self):
        variables = [keras.Variable(np.full((2, 3), 2.0, "float32")), keras.Variable(np.ones((4,), "float32"))]
        optimizer = keras.optimizers.AdamW()
        backend_adapter.multiply_variables_(
            variables, lambda: keras.ops.convert_to_tensor(0.5, "float32"), optimizer=optimizer
        )
        self.assertAllClose(variables[0], np.ones((2, 3)))
        self.assertAllClose(variables[1], np.full((4,), 0.5))

    def test_replicas__single_process(self):
        self.assertEqual(backend_adapter.replica_context(), (0, 1))
        self.assertEqual(backend_adapter.torch_world_size(), 1)
        self.assertEqual(backend_adapter.jax_process_count(), 1)
        self.assertEqual(backend_adapter.process_index(), 0)
        self.assertIsNone(backend_adapter.torch_process_group())
        loss = keras.ops.convert_to_tensor(3.0)
        self.assertAllClose(backend_adapter.scale_loss_for_replicas(loss), 3.0)

    def test_runs_on__exactly_one_backend(self):
        running = [b for b in ("jax", "tensorflow", "torch") if backend_adapter.runs_on(b)]
        self.assertEqual(running, [keras.backend.backend()])

    def test_shapes_may_vary__only_eager_torch(self):
        tensor = keras.ops.zeros((2,))
        self.assertEqual(backend_adapter.shapes_may_vary(tensor), keras.backend.backend() == "torch")
        self.assertFalse(backend_adapter.shapes_may_vary(np.zeros((2,))))

    def test_graph_shapes_may_vary__only_tensorflow_outside_xla(self):
        tensor = keras.ops.zeros((2,))
        on_tf = keras.backend.backend() == "tensorflow"
        self.assertEqual(backend_adapter.graph_shapes_may_vary(tensor), on_tf)
        self.assertFalse(backend_adapter.graph_shapes_may_vary(np.zeros((2,))))
        self.assertFalse(backend_adapter.graph_shapes_may_vary(keras.KerasTensor((None, 2))))
        if on_tf:
            import tensorflow as tf

            for jit_compile, want in ((False, True), (True, False)):
                seen = []
                tf.function(lambda x: seen.append(backend_adapter.graph_shapes_may_vary(x)) or x, jit_compile=jit_compile)(tensor)
                self.assertEqual(seen, [want])
