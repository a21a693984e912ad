import keras
import numpy as np
from keras import ops

from keras_flexpredict.models import ViTEncoder
from keras_flexpredict.models.vit_presets import VIT_PRESETS
from keras_flexpredict.testing import TestCase

TINY = dict(image_size=16, patch_size=4, hidden_dim=16, depth=2, num_heads=2)  # 4x4 grid

# Standard ViT sizes (Dosovitskiy et al.; ViT-G as I-JEPA's `vit_giant`).
STANDARD_SIZES = {
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "giant": (1408, 40, 16, 48 / 11),
}


def to_np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), dtype=np.float64)


def randomize_trainable(model, seed=0, scale=0.2):
    rng = np.random.RandomState(seed)
    for w in model.trainable_weights:
        value = rng.randn(*w.shape) * scale
        if "gamma" in w.path:
            value = 1.0 + value
        w.assign(value.astype("float32"))


def masks_with_padding():
    """Context slots for a batch of 2 on a 4x4 grid; row 0 has two padding slots."""
    indices = np.array([[0, 5, 7, 9, 3, 3], [15, 1, 2, 8, 4, 11]], "int32")
    mask = np.array([[True, True, True, True, False, False], [True] * 6])
    return indices, mask


class ViTEncoderTest(TestCase):
    def setUp(self):
        super().setUp()
        self.images = np.random.RandomState(1).randn(2, 16, 16, 3).astype("float32")

    def _encoder(self, **kwargs):
        encoder = ViTEncoder(**{**TINY, **kwargs})
        encoder(self.images)
        randomize_trainable(encoder)
        return encoder

    # ---------------------------------------------------------------- presets
    def test_presets__standard_sizes_at_patch_14_and_16(self):
        expected_names = sorted(
            f"vit_{size}_patch{patch}_224" for size in STANDARD_SIZES for patch in (14, 16)
        )
        self.assertEqual(ViTEncoder.presets(), expected_names)
        for size, (width, depth, heads, mlp_ratio) in STANDARD_SIZES.items():
            for patch in (14, 16):
                encoder = ViTEncoder.from_preset(f"vit_{size}_patch{patch}_224")
                self.assertFalse(encoder.built)  # config only: nothing is allocated
                config = encoder.get_config()
                self.assertEqual(config["image_size"], (224, 224))
                self.assertEqual(config["patch_size"], patch)
                self.assertEqual(config["hidden_dim"], width, size)
                self.assertEqual(config["depth"], depth, size)
                self.assertEqual(config["num_heads"], heads, size)
                self.assertAlmostEqual(config["mlp_ratio"], mlp_ratio, places=6)
                self.assertFalse(config["depth_scaled_init"])
                self.assertEqual(encoder.grid_size, (224 // patch,) * 2)

    def test_from_preset__kwargs_override_and_unknown_name_raises(self):
        encoder = ViTEncoder.from_preset("vit_tiny_patch16_224", image_size=32, depth=1)
        self.assertEqual((encoder.image_size, encoder.depth, encoder.hidden_dim), ((32, 32), 1, 192))
        self.assertEqual(len(VIT_PRESETS["vit_tiny_patch16_224"]), 5)  # not mutated
        with self.assertRaisesRegex(ValueError, "vit_nano_patch16_224"):
            ViTEncoder.from_preset("vit_nano_patch16_224")

    # ---------------------------------------------------------------- calls
    def test_call__full_sequence_shape_and_dtype(self):
        encoder = self._encoder()
        out = encoder(self.images)
        self.assertEqual(tuple(out.shape), (2, 16, 16))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        self.assertEqual(encoder.num_patches, 16)

    def test_symbolic_call__shapes_and_dtypes(self):
        encoder = ViTEncoder(**TINY)
        self.run_symbolic_call_test(
            encoder, [((None, 16, 16, 3), "float32")], [(None, 16, 16)], ["float32"]
        )
        self.run_symbolic_call_test(
            encoder, [((None, 16, 16, 3), "float32"), ((None, 5), "int32"), ((None, 5), "bool")],
            [(None, 5, 16)], ["float32"],
        )
        self.run_symbolic_call_test(
            encoder, [((None, 16, 16, 3), "float32")], [(None, 16, 16)] * 2, ["float32"] * 2,
            last_n_layers=2,
        )

    def test_call__context_is_gathered_after_the_positional_embedding(self):
        encoder = self._encoder()
        indices, mask = masks_with_padding()
        out = encoder(self.images, context_indices=indices, context_mask=mask)
        self.assertEqual(tuple(out.shape), (2, 6, 16))
        # The same computation through the layer internals: full patch + PE, then gather.
        full = encoder.positional_embedding(encoder.patch_embedding(self.images))
        x = ops.take_along_axis(full, ops.convert_to_tensor(indices)[..., None], axis=1)
        for block in encoder.blocks:
            x = block(x, padding_mask=mask)
        expected = np.where(mask[..., None], to_np(encoder.norm(x)), 0.0)
        self.assertAllClose(out, expected, atol=1e-5, rtol=1e-5)

    def test_call__gathered_tokens_keep_their_position(self):
        encoder = self._encoder()
        flat = np.ones((1, 16, 16, 3), "float32")  # every patch has the same content
        one = encoder(flat, context_indices=np.array([[0]], "int32"))
        other = encoder(flat, context_indices=np.array([[10]], "int32"))
        self.assertFalse(np.allclose(to_np(one), to_np(other), atol=1e-3))

    def test_call__all_indices_in_order_equals_full_sequence(self):
        encoder = self._encoder()
        indices = np.tile(np.arange(16, dtype="int32"), (2, 1))
        self.assertAllClose(
            encoder(self.images, context_indices=indices, context_mask=np.ones((2, 16), bool)),
            encoder(self.images), atol=1e-5, rtol=1e-5,
        )

    def test_call__padded_context_slots_never_attend_or_are_attended(self):
        encoder = self._encoder()
        indices, mask = masks_with_padding()
        out = to_np(encoder(self.images, context_indices=indices, context_mask=mask))
        np.testing.assert_array_equal(out[~mask], 0.0)
        # Change the image content at a padded slot's index (patch 3 = row 0, cols 12..15),
        # which no real slot of that row uses.
        changed = self.images.copy()
        changed[0, 0:4, 12:16, :] = 50.0
        out_changed = to_np(encoder(changed, context_indices=indices, context_mask=mask))
        self.assertFalse(np.allclose(to_np(encoder(changed)[0, 3]), to_np(encoder(self.images)[0, 3])))
        np.testing.assert_allclose(out_changed[mask], out[mask], atol=1e-5, rtol=1e-5)
        # Point the padded slots at other patches: real outputs stay the same.
        moved = indices.copy()
        moved[0, 4:] = [12, 14]
        out_moved = to_np(encoder(self.images, context_indices=moved, context_mask=mask))
        np.testing.assert_allclose(out_moved[mask], out[mask], atol=1e-5, rtol=1e-5)
        # And the real tokens equal a run on the real tokens alone.
        alone = to_np(encoder(self.images[:1], context_indices=indices[:1, :4]))
        np.testing.assert_allclose(out[0, :4], alone[0], atol=1e-5, rtol=1e-5)

    def test_call__last_n_layers(self):
        encoder = self._encoder(depth=3)
        outputs = encoder(self.images, last_n_layers=2)
        self.assertIsInstance(outputs, list)
        self.assertEqual(len(outputs), 2)
        self.assertAllClose(outputs[-1], encoder(self.images), atol=1e-6)
        # Earliest first: block 1's tokens (of 0, 1, 2) through the final norm.
        x = encoder.positional_embedding(encoder.patch_embedding(self.images))
        for block in encoder.blocks[:2]:
            x = block(x)
        self.assertAllClose(outputs[0], encoder.norm(x), atol=1e-5, rtol=1e-5)
        # With context padding every returned layer has zeros at the padded slots.
        indices, mask = masks_with_padding()
        for out in encoder(self.images, context_indices=indices, context_mask=mask, last_n_layers=3):
            self.assertEqual(tuple(out.shape), (2, 6, 16))
            np.testing.assert_array_equal(to_np(out)[~mask], 0.0)
        for bad in (0, 4):
            with self.assertRaisesRegex(ValueError, f"last_n_layers={bad}"):
                encoder(self.images, last_n_layers=bad)

    # ---------------------------------------------------------------- init
    def _output_kernel_stds(self, encoder):
        return [
            {name: float(to_np(getattr(b, name).kernel).std())
             for name in ("qkv", "attention_output", "mlp_hidden", "mlp_output")}
            for b in encoder.blocks
        ]

    def test_init__depth_scaled_init_divides_output_kernels_by_sqrt_2l(self):
        encoder = ViTEncoder(
            image_size=16, patch_size=8, hidden_dim=128, depth=3, num_heads=2, depth_scaled_init=True
        )
        encoder.build((None, 16, 16, 3))
        for layer_id, stds in enumerate(self._output_kernel_stds(encoder), start=1):
            scaled = 0.02 / np.sqrt(2 * layer_id)
            # 16k / 65k draws: the std estimate is within ~1%; 4% is a safe bound.
            self.assertAlmostEqual(stds["attention_output"], scaled, delta=0.04 * scaled)
            self.assertAlmostEqual(stds["mlp_output"], scaled, delta=0.04 * scaled)
            self.assertAlmostEqual(stds["qkv"], 0.02, delta=0.04 * 0.02)
            self.assertAlmostEqual(stds["mlp_hidden"], 0.02, delta=0.04 * 0.02)

    def test_init__depth_scaled_init_is_off_by_default(self):
        encoder = ViTEncoder(image_size=16, patch_size=8, hidden_dim=128, depth=3, num_heads=2)
        self.assertFalse(encoder.get_config()["depth_scaled_init"])
        encoder.build((None, 16, 16, 3))
        for stds in self._output_kernel_stds(encoder):
            for name, std in stds.items():
                self.assertAlmostEqual(std, 0.02, delta=0.04 * 0.02, msg=name)

    # ---------------------------------------------------------------- errors
    def test_init__image_size_not_divisible_raises_naming_both(self):
        with self.assertRaisesRegex(ValueError, r"image_size=\(30, 32\), patch_size=8"):
            ViTEncoder(image_size=(30, 32), patch_size=8, hidden_dim=16, depth=1, num_heads=2)
        with self.assertRaisesRegex(ValueError, "depth=0"):
            ViTEncoder(**{**TINY, "depth": 0})

    def test_call__bad_inputs_raise(self):
        encoder = ViTEncoder(**TINY)
        with self.assertRaisesRegex(ValueError, "16, 16, 3"):
            encoder(np.zeros((1, 32, 32, 3), "float32"))
        encoder(self.images)
        with self.assertRaisesRegex(ValueError, "context_mask"):
            encoder(self.images, context_mask=np.ones((2, 16), bool))

    # ---------------------------------------------------------------- shared checks
    def test_config_round_trip(self):
        encoder = ViTEncoder(
            image_size=(16, 24), patch_size=8, hidden_dim=16, depth=2, num_heads=4, mlp_ratio=2.0,
            qkv_bias=False, layer_norm_epsilon=1e-5, depth_scaled_init=True, num_channels=1,
            name="enc",
        )
        clone = self.run_config_round_trip_test(encoder)
        self.assertEqual(clone.grid_size, (2, 3))
        self.assertTrue(clone.depth_scaled_init)

    def test_saving__keras_file_gives_equal_outputs(self):
        encoder = self._encoder()
        indices, mask = masks_with_padding()

        def call(model):
            return [
                model(self.images),
                model(self.images, context_indices=indices, context_mask=mask),
            ]

        self.run_saving_test(encoder, call, atol=1e-5)

    def test_fit__one_step_in_a_model(self):
        encoder = ViTEncoder(**TINY)
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.GlobalAveragePooling1D()(encoder(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
        self.run_one_step_fit_test(
            model, self.images, np.ones((2, 1), "float32"),
            check_variables=[
                encoder.patch_embedding.projection.kernel,
                encoder.blocks[0].qkv.kernel,
                encoder.blocks[-1].mlp_output.kernel,
            ],
        )

    def test_mixed_precision__bfloat16_outputs(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        encoder = ViTEncoder(**TINY)
        indices, mask = masks_with_padding()
        for out in (
            encoder(self.images),
            encoder(self.images, context_indices=indices, context_mask=mask),
        ):
            self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
            self.assertTrue(np.all(np.isfinite(to_np(out))))
        self.assertEqual(
            keras.backend.standardize_dtype(encoder.blocks[0].qkv.kernel.dtype), "float32"
        )
