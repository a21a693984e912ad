"""Preset folders (keras-hub layout) for ViTEncoder, FlexPredict and ViTClassifier."""

import json
import os

import numpy as np
from keras import ops

import keras_flexpredict as kfp
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


class PresetFolderTest(TestCase):
    def test_encoder__round_trip_files_and_metadata(self):
        encoder = kfp.models.ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        images = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype("float32")
        expected = _np(encoder(images))
        folder = os.path.join(self.get_temp_dir(), "enc")
        encoder.save_to_preset(folder)
        self.assertEqual(sorted(os.listdir(folder)), ["config.json", "metadata.json", "model.weights.h5"])
        with open(os.path.join(folder, "metadata.json")) as f:
            metadata = json.load(f)
        self.assertEqual(metadata["class_name"], "ViTEncoder")
        self.assertEqual(metadata["parameter_count"], encoder.count_params())
        self.assertIn("keras_version", metadata)
        loaded = kfp.models.ViTEncoder.from_preset(folder)
        self.assertAllClose(loaded(images), expected, atol=1e-6)
        # Saving again replaces the preset in one rename; no temporary folder is left.
        encoder.save_to_preset(folder)
        self.assertEqual(os.listdir(os.path.dirname(folder)), ["enc"])

    def test_existing_folder_with_other_files__refused(self):
        folder = self.get_temp_dir()
        open(os.path.join(folder, "notes.txt"), "w").close()
        encoder = kfp.models.ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        with self.assertRaisesRegex(ValueError, "not a preset; refusing to replace"):
            encoder.save_to_preset(folder)
        self.assertEqual(os.listdir(folder), ["notes.txt"])

    def test_flexpredict__round_trip_and_encoder_from_it(self):
        model = tiny_flexpredict()
        images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
        model.target_encoder.norm.gamma.assign(np.full((32,), 1.5, "float32"))  # teacher != student
        folder = os.path.join(self.get_temp_dir(), "flex")
        model.save_to_preset(folder)
        loaded = kfp.models.FlexPredict.from_preset(folder)
        self.assertIsInstance(loaded, kfp.models.FlexPredict)
        for a, b in zip(model.weights, loaded.weights):
            self.assertAllClose(a, b, atol=0)
        # The encoder of a FlexPredict preset is its target encoder, as a trainable copy.
        encoder = kfp.models.ViTEncoder.from_preset(folder)
        self.assertAllClose(encoder(images), model.target_encoder(images), atol=1e-6)
        self.assertTrue(all(v.trainable for v in encoder.trainable_weights) and encoder.trainable_weights)
        context = kfp.models.ViTEncoder.from_preset(folder, which="encoder")
        self.assertAllClose(context(images), model.encoder(images), atol=1e-6)

    def test_encoder_with_image_size__sincos_recomputed(self):
        encoder = kfp.models.ViTEncoder(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)
        folder = encoder.save_to_preset(os.path.join(self.get_temp_dir(), "enc"))
        bigger = kfp.models.ViTEncoder.from_preset(folder, image_size=32)
        self.assertEqual(bigger.grid_size, (4, 4))
        self.assertAllClose(bigger.blocks[0].qkv.kernel, encoder.blocks[0].qkv.kernel, atol=0)
        self.assertAllClose(
            bigger.positional_embedding.embeddings,
            kfp.layers.sincos_positional_embedding.sincos_2d_positional_embedding((4, 4), 8),
        )

    def test_unknown_source__lists_what_is_accepted(self):
        with self.assertRaisesRegex(ValueError, "Unknown model source.*preset folder.*Preset names"):
            kfp.models.ViTEncoder.from_preset("no_such_thing")
        with self.assertRaisesRegex(ValueError, "Unknown preset.*official checkpoint"):
            kfp.models.FlexPredict.from_preset("no_such_thing")
