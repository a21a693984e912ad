import numpy as np

from keras_flexpredict import distribution as kd
from keras_flexpredict.testing import TestCase


class DataShardingTest(TestCase):
    def test_local_batch_rows__processes_rebuild_every_global_batch(self):
        global_batch, shards = 6, 3
        rows = [kd.local_batch_rows(20, global_batch, shards, i) for i in range(shards)]
        local = global_batch // shards
        for step in range(20 // global_batch):  # the incomplete last global batch is dropped
            batch = np.concatenate([r[step * local : (step + 1) * local] for r in rows])
            np.testing.assert_array_equal(batch, np.arange(step * global_batch, (step + 1) * global_batch))
        self.assertEqual(sum(len(r) for r in rows), 18)
        with self.assertRaisesRegex(ValueError, "global_batch_size=7"):
            kd.local_batch_rows(20, 7, 2, 0)
        with self.assertRaisesRegex(ValueError, "index=2"):
            kd.local_batch_rows(20, 4, 2, 2)
        with self.assertRaisesRegex(ValueError, "num_shards=0"):
            kd.local_batch_rows(20, 4, 0, 0)

    def test_shard_global_batches__contiguous_chunk_per_process(self):
        import tensorflow as tf

        images = np.arange(24, dtype="float32").reshape(12, 2)
        dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(12))).batch(4, drop_remainder=True)
        shards = [list(kd.shard_global_batches(dataset, 2, i).as_numpy_iterator()) for i in range(2)]
        self.assertEqual([len(s) for s in shards], [3, 3])
        for step in range(3):
            labels = np.concatenate([shards[i][step][1] for i in range(2)])
            np.testing.assert_array_equal(labels, np.arange(4 * step, 4 * step + 4))
            np.testing.assert_array_equal(shards[0][step][0], images[4 * step : 4 * step + 2])
        self.assertIs(kd.shard_global_batches(dataset, 1, 0), dataset)

    def test_shard_global_batches__needs_a_static_divisible_global_batch(self):
        import tensorflow as tf

        unbatched = tf.data.Dataset.range(8)
        with self.assertRaisesRegex(ValueError, "batched"):
            kd.shard_global_batches(unbatched.map(lambda x: tf.reshape(x, (1,))).batch(2), 2, 0)
        with self.assertRaisesRegex(ValueError, "global_batch_size=3"):
            kd.shard_global_batches(unbatched.batch(3, drop_remainder=True), 2, 0)
