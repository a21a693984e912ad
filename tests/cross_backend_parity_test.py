"""The same saved models, inputs and indices give the same outputs on every backend."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_flexpredict.testing import TestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "_parity_worker.py")
# The first creates and saves the models (eager torch builds them fastest); the other
# two load them, in parallel.
BACKENDS = ("torch", "jax", "tensorflow")
RTOL = 1e-5  # float32 relative error allowed between backends, per element
ATOL = 1e-5  # absolute floor for entries near zero (outputs are LayerNorm'd, O(1))
TIMEOUT_S = 300


def _inputs():
    rng = np.random.default_rng(123)
    return {
        "images": rng.standard_normal((2, 16, 16, 3)).astype("float32"),
        # 4x4 grid; the first example has two padding slots in its context.
        "context_indices": np.array([[0, 1, 4, 5, 9, 0, 0], [2, 3, 6, 7, 10, 11, 15]], "int32"),
        "context_mask": np.array([[True] * 5 + [False] * 2, [True] * 7]),
        "target_indices": np.array(
            [[[10, 11, 14, 15], [8, 12, 0, 0], [2, 3, 6, 7]],
             [[0, 1, 4, 5], [8, 9, 12, 13], [14, 0, 0, 0]]], "int32"),
        "target_mask": np.array(
            [[[True] * 4, [True, True, False, False], [True] * 4],
             [[True] * 4, [True] * 4, [True, False, False, False]]]),
        "context": rng.standard_normal((2, 7, 32)).astype("float32"),
    }


def _start(backend, directory, create=False):
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
    )
    args = [sys.executable, WORKER, directory] + (["--create"] if create else [])
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait(process, backend):
    try:
        log, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        raise AssertionError(f"{backend} worker timed out after {TIMEOUT_S}s:\n{log[-4000:]}")
    if process.returncode != 0:
        raise AssertionError(f"{backend} worker failed (exit {process.returncode}):\n{log[-4000:]}")


@pytest.mark.all_backends
class CrossBackendParityTest(TestCase):
    def test_saved_encoder_and_predictor_agree_on_jax_torch_tensorflow(self):
        directory = self.get_temp_dir()
        with open(os.path.join(directory, "inputs.npz"), "wb") as f:
            np.savez(f, **_inputs())
        # The first backend creates and saves the models; the others only load them.
        _wait(_start(BACKENDS[0], directory, create=True), BACKENDS[0])
        others = {b: _start(b, directory) for b in BACKENDS[1:]}
        for backend, process in others.items():
            _wait(process, backend)

        outputs = {b: dict(np.load(os.path.join(directory, f"outputs_{b}.npz"))) for b in BACKENDS}
        reference = outputs[BACKENDS[0]]
        expected_shapes = {
            "encoder_full": (2, 16, 32),
            "encoder_context": (2, 7, 32),
            "encoder_second_to_last": (2, 16, 32),
            "predictor": (2, 3, 4, 32),
            "pipeline": (2, 3, 4, 32),
        }
        self.assertEqual({k: v.shape for k, v in reference.items()}, expected_shapes)
        for name, value in reference.items():
            self.assertTrue(np.all(np.isfinite(value)), name)
            self.assertGreater(np.abs(value).max(), 0.1, name)  # not a trivial output
        for backend in BACKENDS[1:]:
            for name, expected in reference.items():
                actual = outputs[backend][name]
                message = f"{name}: {backend} vs {BACKENDS[0]}"
                np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=message)
                relative = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
                self.assertLess(relative, RTOL, message)
