"""JAX `keras.distribution` runs of a tiny FlexPredict on 8 host devices and on two
processes, compared with one device on the same global batch.

What is compared, and why equality is expected: under JAX the train step is ONE
program over the global batch, sharded by XLA. The masker draws the masks of the whole
global batch (block sizes once per global batch, positions per image) and the StoP
layer the noise of every token, from the same replicated seed state, and JAX's random
numbers do not depend on the sharding. So with the same initial weights and the same
global batches, one device, `DataParallel` and `ModelParallel` compute the same masks,
noise (sigma=0.25 here, not a special case), losses and updates; only the order of the
cross-device float reductions differs. Tolerances: 1e-5 relative on losses, 1e-6
absolute on the weights after 3 AdamW steps (measured: ~2e-8).
"""

import os

import numpy as np
import pytest

from keras_flexpredict.testing import TestCase

import _harness as h  # noqa: E402  (tests/distribution is on sys.path under pytest)

LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6
# Optimisation level 0 roughly halves XLA:CPU compile time; every run in a worker
# uses it, so comparisons are unaffected.
FAST_COMPILE = "--xla_backend_optimization_level=0"
EXPECTED_SPECS = {
    "qkv/kernel": [None, "model"],
    "qkv/bias": ["model"],
    "attention_output/kernel": ["model", None],
    "attention_output/bias": [None],
    "mlp_hidden/kernel": [None, "model"],
    "mlp_hidden/bias": ["model"],
    "mlp_output/kernel": ["model", None],
    "mlp_output/bias": [None],
    "norm1/gamma": [None],
}


@pytest.mark.all_backends
class JAXMultiDeviceTest(TestCase):
    def test_data_parallel_and_model_parallel__match_one_device_and_shard_as_layout_map(self):
        out = h.out_dir(self)
        env = h.base_env("jax", XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
        worker = h.start("_jax_devices_worker.py", [out], env, os.path.join(out, "worker.log"))
        h.wait_all({"8-device JAX worker": worker})
        r = h.read_json(out, "results.json")

        # DataParallel over 8 devices == one device, step by step.
        self.assertEqual(r["data_parallel_mesh"], {"batch": 8})
        np.testing.assert_allclose(r["data_parallel_losses"], r["reference_losses"], rtol=LOSS_RTOL)
        self.assertLess(r["data_parallel_weight_diff"], WEIGHT_ATOL)
        # Teacher (and every other variable) identical on all 8 replicas.
        self.assertEqual(r["data_parallel_teacher_devices"], 8)
        self.assertEqual(r["data_parallel_replica_spread"], 0.0)
        # Schedules count global steps: 3 steps of the global batch, not 3 x 8.
        self.assertEqual(r["data_parallel_steps"], [3, 3])

        # ModelParallel on a (batch 2, model 4) mesh: kernels sharded as vit_layout_map says.
        self.assertEqual(r["model_parallel_mesh"], {"batch": 2, "model": 4})
        specs = r["model_parallel_specs"]
        for part in ("context_encoder", "target_encoder", "predictor"):
            for suffix, expected in EXPECTED_SPECS.items():
                path = next(p for p in specs if p.endswith(f"{part}/block_0/{suffix}"))
                self.assertEqual(specs[path][: len(expected)], expected, msg=path)
                self.assertTrue(all(a is None for a in specs[path][len(expected):]), msg=path)
        sharded_outside_blocks = [p for p in specs if "block_" not in p and any(specs[p])]
        self.assertEqual(sharded_outside_blocks, [], msg="only block kernels may be sharded")
        np.testing.assert_allclose(r["model_parallel_losses"], r["reference_losses"], rtol=LOSS_RTOL)
        self.assertLess(r["model_parallel_weight_diff"], WEIGHT_ATOL)
        self.assertEqual(r["model_parallel_replica_spread"], 0.0)

        # Written under ModelParallel, reloaded under DataParallel and on one device.
        self.assertEqual(r["reload_data_parallel_diff"], 0.0)
        self.assertEqual(r["reload_data_parallel_devices"], 8)
        self.assertEqual(r["reload_data_parallel_spec"], [None, None])
        self.assertEqual(r["reload_none_diff"], 0.0)
        self.assertEqual(r["reload_none_devices"], 1)
        self.assertEqual(r["encoder_reload_diff"], 0.0)

    def test_two_processes__match_one_process_and_checkpoint_reloads_on_one_device(self):
        out = h.out_dir(self)
        port = h.free_port()
        processes = {}
        for rank in range(2):
            env = h.base_env(
                "jax",
                XLA_FLAGS=FAST_COMPILE,
                KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                KERAS_DISTRIBUTION_NUM_PROCESSES=2,
                KERAS_DISTRIBUTION_PROCESS_ID=rank,
            )
            processes[f"JAX process {rank}"] = h.start(
                "_jax_processes_worker.py", [out], env, os.path.join(out, f"worker_{rank}.log")
            )
        processes["one-device reference"] = h.start(
            "_jax_processes_worker.py", [out, "--reference"], h.base_env("jax", XLA_FLAGS=FAST_COMPILE),
            os.path.join(out, "reference.log"),
        )
        h.wait_all(processes)
        workers = [h.read_json(out, f"done_{rank}.json") for rank in range(2)]
        reference = h.read_json(out, "reference.json")

        for rank, w in enumerate(workers):
            self.assertEqual(w["num_replicas"], 2)
            self.assertEqual(w["is_chief"], rank == 0)
            # The loss of the global batch (Keras sharded the tf.data pipeline per process).
            np.testing.assert_allclose(w["losses"], reference["losses"], rtol=LOSS_RTOL)
            self.assertEqual(w["steps"], [3, 3])
            # Reloaded with the block kernels sharded ACROSS the two processes.
            self.assertEqual(w["sharded_spec"], [None, "model"])
            self.assertEqual(w["sharded_local_shape"], [32, 48])
            self.assertFalse(w["sharded_fully_addressable"])
            self.assertTrue(w["optimizer_sharded"])
        # Replicas (and their teachers) identical on both processes.
        w0 = np.load(os.path.join(out, "weights_0.npz"))
        w1 = np.load(os.path.join(out, "weights_1.npz"))
        self.assertEqual(sorted(w0.files), sorted(w1.files))
        self.assertTrue(any(k.startswith("target_encoder/") for k in w0.files))
        for key in w0.files:
            np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        # The checkpoint loads on one device and holds what one process trains.
        self.assertEqual(reference["devices"], [1, 1, 1])
        self.assertLess(reference["checkpoint_vs_reference"], WEIGHT_ATOL)
        self.assertEqual(reference["steps"], [3, 3])
        # Saved again while sharded across processes (gathered to the host): the same.
        self.assertEqual(reference["model_parallel_checkpoint_vs_checkpoint"], 0.0)
        self.assertEqual(reference["encoder_vs_checkpoint"], 0.0)
