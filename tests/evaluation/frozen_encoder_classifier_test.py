import keras
import numpy as np

from evaluation_test_utils import StandInEncoder
from keras_flexpredict.evaluation import FrozenEncoderClassifier
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy


class FrozenEncoderClassifierTest(TestCase):
    def setUp(self):
        super().setUp()
        self.images = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")

    def make(self, **kwargs):
        encoder = StandInEncoder(image_size=8, patch_size=4, hidden_dim=8, depth=3)
        model = FrozenEncoderClassifier(encoder, num_classes=5, **kwargs)
        model(self.images)
        return model

    def test_head__batch_norm_then_linear_with_torch_init_and_only_head_trainable(self):
        model = self.make()
        self.assertEqual(tuple(model(self.images).shape), (6, 5))
        self.assertFalse(model.encoder.trainable)
        names = sorted(v.path.split("/")[-1] for v in model.trainable_weights)
        self.assertEqual(names, ["beta", "bias", "gamma", "kernel"])
        bound = 1.0 / np.sqrt(8)
        for weights in (model.classifier.kernel, model.classifier.bias):
            values = to_numpy(weights)
            self.assertLessEqual(np.abs(values).max(), bound)
            self.assertGreater(np.abs(values).max(), 0.5 * bound)
        self.assertEqual(model.feature_norm.epsilon, 1e-5)
        self.assertEqual(model.feature_norm.momentum, 0.9)

    def test_weight_decay__coupled_l2_on_linear_weight_and_bias_only(self):
        model = self.make(weight_decay=0.01)
        expected = 0.005 * sum(float(np.sum(to_numpy(w) ** 2)) for w in (model.classifier.kernel, model.classifier.bias))
        self.assertAllClose(float(sum(to_numpy(l) for l in model.losses)), expected, atol=1e-6)
        self.assertEqual(len(self.make(weight_decay=0.0).losses), 0)

    def test_last_four_layers_without_batch_norm__concatenated_features(self):
        model = self.make(last_n_layers=3, batch_norm=False, pooling="max")
        self.assertIsNone(model.feature_norm)
        self.assertEqual(tuple(model.classifier.kernel.shape), (24, 5))

    def test_fit__moves_head_not_encoder(self):
        model = self.make()
        before = [to_numpy(w) for w in model.encoder.weights]
        kernel = to_numpy(model.classifier.kernel)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(self.images, np.arange(6) % 5, epochs=1, batch_size=6, verbose=0)
        for old, new in zip(before, model.encoder.weights):
            self.assertAllEqual(old, to_numpy(new))
        self.assertFalse(np.allclose(kernel, to_numpy(model.classifier.kernel)))

    def test_config_round_trip_and_saving(self):
        model = self.make(last_n_layers=2, weight_decay=1e-3, seed=3)
        self.run_config_round_trip_test(model)
        self.run_saving_test(model, lambda m: m(self.images, training=False), atol=1e-5)

    def test_bad_arguments__raise_naming_value(self):
        encoder = StandInEncoder()
        with self.assertRaisesRegex(ValueError, "num_classes=0"):
            FrozenEncoderClassifier(encoder, num_classes=0)
        with self.assertRaisesRegex(ValueError, "pooling='cls'"):
            FrozenEncoderClassifier(encoder, num_classes=3, pooling="cls")
        with self.assertRaisesRegex(ValueError, "last_n_layers=0"):
            FrozenEncoderClassifier(encoder, num_classes=3, last_n_layers=0)
        with self.assertRaisesRegex(ValueError, "weight_decay=-1"):
            FrozenEncoderClassifier(encoder, num_classes=3, weight_decay=-1)
