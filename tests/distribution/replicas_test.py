"""Per-replica randomness and loss scaling, in one process: the replica is faked by
patching `replica_context`, so the same logic runs on all three backends (real
replicas: tensorflow_mirrored_test, torch_ddp_test)."""

from unittest import mock

import keras
import numpy as np
from keras import ops

from keras_flexpredict import distribution as kd
from keras_flexpredict.layers import MultiBlockMasker
from keras_flexpredict.layers import StochasticPositionalEmbedding
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy

MASKER = dict(grid_size=(8, 8), min_keep=4, seed=11)


def _as_replica(replica_id, num_replicas):
    """Patches every place that asks which replica is running."""
    fake = lambda backend=None: (replica_id, num_replicas)  # noqa: E731
    return (
        mock.patch("keras_flexpredict.utils.replicas.replica_context", fake),
        mock.patch("keras_flexpredict.layers.multi_block_masker.replica_context", fake),
    )


class ReplicasTest(TestCase):
    def _masks(self, replica_id, num_replicas, batch_size):
        first, second = _as_replica(replica_id, num_replicas)
        with first, second:
            return to_numpy(MultiBlockMasker(**MASKER)(batch_size))

    def _noise(self, replica_id, num_replicas):
        first, second = _as_replica(replica_id, num_replicas)
        layer = StochasticPositionalEmbedding(sigma=1.0, covariance="isotropic", seed=5)
        psi = np.zeros((2, 3, 8), "float32")
        with first, second:
            return to_numpy(layer(psi, training=True) - layer.mask_token)

    def test_replica_context__single_process_is_one_replica(self):
        self.assertEqual(kd.replica_context(), (0, 1))
        generator = keras.random.SeedGenerator(3)
        self.assertIs(kd.replica_seed(generator), generator)

    def test_masker__each_replica_keeps_its_rows_of_the_global_draw(self):
        global_masks = self._masks(0, 1, 8)
        local = [self._masks(r, 4, 2) for r in range(4)]
        for key, value in global_masks.items():
            np.testing.assert_array_equal(np.concatenate([m[key] for m in local]), value, err_msg=key)
        # Block sizes once per global batch: every replica has the same target block size.
        counts = {int(n) for m in local for n in m["target_mask"].sum(-1).ravel()}
        self.assertEqual(len(counts), 1, msg=f"target block sizes: {counts}")
        self.assertFalse(np.array_equal(local[0]["context_indices"], local[1]["context_indices"]))

    def test_stop_noise__differs_per_replica_reproducible_replica0_unchanged(self):
        single = self._noise(0, 1)
        replicas = [self._noise(r, 3) for r in range(3)]
        np.testing.assert_allclose(replicas[0], single, atol=1e-6)
        for r in (1, 2):
            self.assertGreater(np.abs(replicas[r] - single).max(), 1e-2)
        self.assertGreater(np.abs(replicas[1] - replicas[2]).max(), 1e-2)
        np.testing.assert_allclose(self._noise(2, 3), replicas[2], atol=1e-6)

    def test_fold_seed__replica_zero_unchanged_others_distinct(self):
        seed = keras.random.SeedGenerator(123).next()
        folded = [tuple(np.asarray(to_numpy(kd.fold_seed(seed, r))).tolist()) for r in range(64)]
        self.assertEqual(folded[0], tuple(np.asarray(to_numpy(seed)).tolist()))
        self.assertEqual(len(set(folded)), 64)
        self.assertEqual(len({f[1] for f in folded}), 1)  # the counter half is untouched

    def test_fold_seed_and_masker__traced_replica_id_as_python_int(self):
        # On TPU the replica id is a tensor, not a Python int: same results.
        if self.backend == "jax":
            self.skipTest("JAX runs one global program: no replica id.")
        seed = keras.random.SeedGenerator(123).next()
        for r in (0, 1, 5):
            self.assertAllEqual(kd.fold_seed(seed, ops.convert_to_tensor(r, "int32")), kd.fold_seed(seed, r))
        as_int = self._masks(1, 2, 4)
        fake = lambda backend=None: (ops.convert_to_tensor(1, "int32"), 2)  # noqa: E731
        with mock.patch("keras_flexpredict.layers.multi_block_masker.replica_context", fake):
            as_tensor = to_numpy(MultiBlockMasker(**MASKER)(4))
        for key in as_int:
            np.testing.assert_array_equal(as_tensor[key], as_int[key], err_msg=key)

    def test_scale_loss_for_replicas__identity_outside_a_strategy(self):
        loss = ops.convert_to_tensor(3.0)
        self.assertAllClose(kd.scale_loss_for_replicas(loss), 3.0)

    def test_scale_loss_for_replicas__divides_in_a_tensorflow_replica_context(self):
        if self.backend != "tensorflow":
            self.skipTest("Only tf.distribute sums replica gradients.")
        import tensorflow as tf

        class Context:
            num_replicas_in_sync = 4

        with mock.patch.object(tf.distribute, "has_strategy", return_value=True), mock.patch.object(
            tf.distribute, "in_cross_replica_context", return_value=False
        ), mock.patch.object(tf.distribute, "get_replica_context", return_value=Context()):
            self.assertAllClose(kd.scale_loss_for_replicas(tf.constant(3.0)), 0.75)
