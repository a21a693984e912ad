import keras

from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils.model_config import model_config


class ModelConfigTest(TestCase):
    def test_model_config__base_keys_then_arguments_with_layers_serialised(self):
        class Head(keras.Model):
            def __init__(self, body, units, **kwargs):
                super().__init__(**kwargs)
                self.body = body
                self.units = units

        model = Head(keras.layers.Dense(2, name="body"), 3, name="head", trainable=False)
        config = model_config(model, "body", "units")
        self.assertEqual(list(config), ["name", "trainable", "dtype", "body", "units"])
        self.assertEqual((config["name"], config["trainable"], config["units"]), ("head", False, 3))
        self.assertEqual(config["body"], keras.saving.serialize_keras_object(model.body))
        self.assertIsInstance(keras.saving.deserialize_keras_object(config["body"]), keras.layers.Dense)
