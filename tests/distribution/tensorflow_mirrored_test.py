"""TensorFlow `MirroredStrategy` over 2 logical CPUs gives the loss and weights of no
strategy on the same global batches.

What is compared, and why equality is expected: under a strategy each replica runs the
step on its half of the global batch. The masker draws the masks of the whole global
batch from the (replicated) seed state and each replica keeps its rows, so the masks
are those of one device. StoP noise is folded with the replica id (replicas must not
share noise), so it differs from one device by design: the training comparison uses
sigma=0, and the noise is checked separately (different per replica, reproducible,
replica 0 equal to one device). `FlexPredict.compute_loss` divides the replica-local
mean by the replica count (tf.distribute sums gradients); without that the logged loss
is 2x and the updates differ. Tolerances: 1e-5 relative on losses, 1e-6 absolute on the
weights after 3 JEPAAdamW steps (measured: ~2e-8).
"""

import os

import numpy as np
import pytest

from keras_flexpredict.testing import TestCase

import _harness as h  # noqa: E402


@pytest.mark.all_backends
class TensorFlowMirroredTest(TestCase):
    def test_mirrored_two_replicas__same_loss_and_weights_as_no_strategy(self):
        out = h.out_dir(self)
        worker = h.start("_tf_worker.py", [out], h.base_env("tensorflow"), os.path.join(out, "worker.log"))
        h.wait_all({"TensorFlow worker": worker})
        r = h.read_json(out, "results.json")

        self.assertEqual(r["num_replicas"], 2)
        self.assertEqual(r["variable_class"], "MirroredVariable")
        np.testing.assert_allclose(r["mirrored_losses"], r["reference_losses"], rtol=1e-5)
        self.assertLess(r["weight_diff"], 1e-6)
        # The in-step EMA assigns keep the teacher identical on both replicas.
        self.assertEqual(r["teacher_replica_spread"], 0.0)
        self.assertEqual(r["student_replica_spread"], 0.0)
        # Schedules count global steps.
        self.assertEqual(r["steps"], [3, 3])
        self.assertTrue(r["masks_are_rows_of_global_draw"])
        self.assertTrue(r["masks_differ_across_replicas"])
        self.assertTrue(r["noise_differs_across_replicas"])
        self.assertTrue(r["noise_reproducible"])
        self.assertTrue(r["noise_replica0_equals_one_device"])
