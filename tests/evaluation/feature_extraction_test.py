import keras
import numpy as np
from keras import ops

from evaluation_test_utils import StandInEncoder
from keras_flexpredict.evaluation import extract_features
from keras_flexpredict.evaluation import extract_features_of_splits
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy


def numpy_batches(images, labels, batch_size):
    return [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size)]


class ExtractFeaturesTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.images = rng.normal(size=(23, 8, 8, 3)).astype("float32")
        self.labels = rng.integers(0, 5, size=23)

    def test_mean_pooling__shape_and_values(self):
        encoder = StandInEncoder(hidden_dim=8)
        features, labels = extract_features(encoder, numpy_batches(self.images, self.labels, 4), verbose=0)
        self.assertEqual(features.shape, (23, 8))
        self.assertEqual(features.dtype, np.float32)
        self.assertEqual(labels.dtype, np.int64)
        self.assertAllEqual(labels, self.labels)
        expected = to_numpy(ops.mean(encoder(self.images, training=False), axis=1))
        self.assertAllClose(features, expected, atol=1e-5, rtol=1e-5)

    def test_last_four_layers__concatenated_earliest_first(self):
        encoder = StandInEncoder(hidden_dim=8, depth=5)
        features, _ = extract_features(
            encoder, numpy_batches(self.images, self.labels, 8), last_n_layers=4, verbose=0
        )
        self.assertEqual(features.shape, (23, 4 * 8))
        layers = encoder(self.images, last_n_layers=4, training=False)
        expected = np.concatenate([to_numpy(ops.mean(t, axis=1)) for t in layers], axis=-1)
        self.assertAllClose(features, expected, atol=1e-5, rtol=1e-5)
        # The last slice is the plain last-layer feature.
        last, _ = extract_features(encoder, numpy_batches(self.images, self.labels, 8), verbose=0)
        self.assertAllClose(features[:, -8:], last, atol=1e-6, rtol=1e-6)

    def test_max_pooling__shape_and_values(self):
        encoder = StandInEncoder(hidden_dim=8)
        features, _ = extract_features(
            encoder, numpy_batches(self.images, self.labels, 5), pooling="max", verbose=0
        )
        expected = to_numpy(ops.max(encoder(self.images, training=False), axis=1))
        self.assertAllClose(features, expected, atol=1e-5, rtol=1e-5)

    def test_tf_data_dataset__same_features_as_numpy_batches(self):
        import tensorflow as tf

        encoder = StandInEncoder()
        dataset = tf.data.Dataset.from_tensor_slices((self.images, self.labels)).batch(6)
        from_tf, labels_tf = extract_features(encoder, dataset, verbose=1)
        from_np, labels_np = extract_features(encoder, numpy_batches(self.images, self.labels, 6), verbose=0)
        self.assertAllClose(from_tf, from_np, atol=1e-6, rtol=1e-6)
        self.assertAllEqual(labels_tf, labels_np)

    def test_many_batches__compiled_once(self):
        if self.backend == "torch":
            self.skipTest("torch runs eagerly: every batch executes `call`.")
        one_batch = StandInEncoder()
        extract_features(one_batch, numpy_batches(self.images[:4], self.labels[:4], 4), verbose=0)
        many_batches = StandInEncoder()
        # Six batches, the last one short (3 rows): still a single trace.
        extract_features(many_batches, numpy_batches(self.images, self.labels, 4), verbose=0)
        self.assertEqual(many_batches.trace_count, one_batch.trace_count)

    def test_splits__share_one_compiled_pass_and_match_single_extraction(self):
        train = numpy_batches(self.images[:15], self.labels[:15], 4)
        test = numpy_batches(self.images[15:], self.labels[15:], 5)  # other batch size: cut to 4
        encoder = StandInEncoder()
        (train_x, train_y), (test_x, test_y) = extract_features_of_splits(encoder, [train, test], verbose=0)
        self.assertEqual((train_x.shape, test_x.shape), ((15, 8), (8, 8)))
        self.assertAllEqual(np.concatenate([train_y, test_y]), self.labels)
        expected = to_numpy(ops.mean(encoder(self.images), axis=1))
        self.assertAllClose(np.concatenate([train_x, test_x]), expected, atol=1e-5, rtol=1e-5)
        if self.backend != "torch":
            one_split = StandInEncoder()
            extract_features(one_split, train, verbose=0)
            two_splits = StandInEncoder()
            extract_features_of_splits(two_splits, [train, test], verbose=0)
            self.assertEqual(two_splits.trace_count, one_split.trace_count)

    def test_batch_larger_than_batch_size__split_into_chunks(self):
        encoder = StandInEncoder()
        features, labels = extract_features(
            encoder, numpy_batches(self.images, self.labels, 10), batch_size=4, verbose=0
        )
        expected = to_numpy(ops.mean(encoder(self.images), axis=1))
        self.assertAllClose(features, expected, atol=1e-5, rtol=1e-5)
        self.assertEqual(labels.shape, (23,))

    def test_steps__stops_early(self):
        features, labels = extract_features(
            StandInEncoder(), numpy_batches(self.images, self.labels, 4), steps=2, verbose=0
        )
        self.assertEqual((features.shape[0], labels.shape[0]), (8, 8))

    def test_mixed_precision_encoder__float32_features(self):
        self.skip_if_no_mixed_precision()
        encoder = StandInEncoder(dtype="mixed_bfloat16")
        features, _ = extract_features(encoder, numpy_batches(self.images, self.labels, 8), verbose=0)
        self.assertEqual(features.dtype, np.float32)
        self.assertTrue(np.all(np.isfinite(features)))

    def test_weights__unchanged(self):
        encoder = StandInEncoder()
        encoder(self.images[:1])
        before = [to_numpy(w) for w in encoder.weights]
        extract_features(encoder, numpy_batches(self.images, self.labels, 8), verbose=0)
        self.assertAllClose([to_numpy(w) for w in encoder.weights], before, atol=0, rtol=0)

    def test_bad_input__raises_naming_value(self):
        encoder = StandInEncoder()
        batches = numpy_batches(self.images, self.labels, 8)
        with self.assertRaisesRegex(ValueError, "pooling='cls'"):
            extract_features(encoder, batches, pooling="cls", verbose=0)
        with self.assertRaisesRegex(ValueError, "last_n_layers=0"):
            extract_features(encoder, batches, last_n_layers=0, verbose=0)
        with self.assertRaisesRegex(ValueError, r"labels.shape=\(7,\)"):
            extract_features(encoder, [(self.images[:8], self.labels[:7])], verbose=0)
        with self.assertRaisesRegex(ValueError, "with 3 elements"):
            extract_features(encoder, [(self.images[:8], self.labels[:8], self.labels[:8])], verbose=0)
        with self.assertRaisesRegex(ValueError, "empty dataset"):
            extract_features(encoder, [], verbose=0)
        with self.assertRaisesRegex(ValueError, r"images.shape=\(4, 16, 16, 3\)"):
            extract_features(
                encoder, [(self.images[:4], self.labels[:4]), (np.zeros((4, 16, 16, 3), "float32"), self.labels[:4])],
                verbose=0,
            )

    def test_encoder_returning_wrong_layer_count__raises(self):
        class OneLayerOnly(keras.layers.Layer):
            def call(self, images, last_n_layers=1, training=None):
                return ops.reshape(images, (-1, 16, 12))

        with self.assertRaisesRegex(ValueError, "last_n_layers=4"):
            extract_features(OneLayerOnly(), numpy_batches(self.images, self.labels, 8), last_n_layers=4, verbose=0)
