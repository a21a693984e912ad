"""torch: `model.fit` in 2 gloo processes on 127.0.0.1 keeps the replicas identical and
equal to one process trained on the same global batches.

What is compared, and why equality is expected: each process trains on its half of
every global batch (`local_batch_rows`); `FlexPredict.fit` adds `TorchDataParallel`,
which broadcasts rank 0's variables (rank 1 starts from other weights on purpose) and
averages the gradients before every update. Masks: each rank keeps its rows of one
global draw, so they equal one process's masks. Every image has the same number of
target tokens, so the mean of the two local mean-loss gradients is the global-batch
gradient. StoP noise is folded with the rank (ranks must not share noise): the
training comparison uses sigma=0 and the noise is checked separately. Tolerance 1e-6
absolute on the weights after 3 JEPAAdamW steps (measured: ~4e-9).
"""

import os

import numpy as np
import pytest

from keras_flexpredict.testing import TestCase

import _harness as h  # noqa: E402


@pytest.mark.all_backends
class TorchDDPTest(TestCase):
    def test_two_gloo_processes__replicas_identical_and_equal_one_process(self):
        out = h.out_dir(self)
        port = h.free_port()
        processes = {}
        for rank in range(2):
            env = h.base_env(
                "torch", RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port
            )
            processes[f"torch rank {rank}"] = h.start(
                "_torch_worker.py", [out], env, os.path.join(out, f"worker_{rank}.log")
            )
        processes["one-process reference"] = h.start(
            "_torch_worker.py", [out, "--reference"], h.base_env("torch"), os.path.join(out, "reference.log")
        )
        h.wait_all(processes)
        done = [h.read_json(out, f"done_{rank}.json") for rank in range(2)]
        reference = h.read_json(out, "reference.json")
        weights = [np.load(os.path.join(out, f"weights_{rank}.npz")) for rank in range(2)]
        ref_weights = np.load(os.path.join(out, "weights_reference.npz"))

        self.assertTrue(any(k.startswith("target_encoder/") for k in ref_weights.files))
        for key in ref_weights.files:
            # Replicas (teacher included) bit-identical, and equal to one process.
            np.testing.assert_array_equal(weights[0][key], weights[1][key], err_msg=key)
            np.testing.assert_allclose(weights[0][key], ref_weights[key], atol=1e-6, rtol=0, err_msg=key)
        # Each rank logs its local mean; their average is the global-batch loss.
        local = np.mean([d["local_losses"] for d in done], axis=0)
        np.testing.assert_allclose(local, reference["losses"], rtol=1e-5)
        for d in done:
            self.assertEqual(d["num_replicas"], 2)
            self.assertEqual(d["steps"], [3, 3])  # global steps

        probes = [np.load(os.path.join(out, f"probes_{rank}.npz")) for rank in range(2)]
        ref_probes = np.load(os.path.join(out, "probes_reference.npz"))
        # Masks: the ranks' rows of one global draw; different across ranks.
        np.testing.assert_array_equal(
            np.concatenate([p["target_indices"] for p in probes]), ref_probes["target_indices"]
        )
        self.assertFalse(np.array_equal(probes[0]["target_indices"], probes[1]["target_indices"]))
        # Noise: rank 0 draws what one process draws, rank 1 something else.
        np.testing.assert_allclose(probes[0]["noise"], ref_probes["noise"], atol=1e-6)
        self.assertGreater(np.abs(probes[0]["noise"] - probes[1]["noise"]).max(), 1e-3)

        # Contrast: Keras's plain fit does not average gradients, replicas drift apart,
        # and TorchDataParallel's check catches it.
        plain = [np.load(os.path.join(out, f"weights_plain_{rank}.npz")) for rank in range(2)]
        drift = max(np.abs(plain[0][k] - plain[1][k]).max() for k in plain[0].files)
        self.assertGreater(drift, 1e-6)
        self.assertTrue(all(d["drift_detected"] for d in done))
        # configure("ddp") made the group, so it destroys it at exit (a gloo group left
        # to the interpreter's teardown can abort a rank).
        for rank in range(2):
            self.assertEqual(h.read_json(out, f"exit_{rank}.json"), {"initialized": False})
