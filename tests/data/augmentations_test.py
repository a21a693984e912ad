import math

import numpy as np
import tensorflow as tf

from keras_flexpredict.data import IMAGENET_MEAN
from keras_flexpredict.data import IMAGENET_STD
from keras_flexpredict.data import add_element_seeds
from keras_flexpredict.data import color_jitter
from keras_flexpredict.data import eval_transform
from keras_flexpredict.data import gaussian_blur
from keras_flexpredict.data import ijepa_train_transform
from keras_flexpredict.data import normalize_image
from keras_flexpredict.data import sample_crop_parameters
from keras_flexpredict.data import stop_train_transform
from keras_flexpredict.data import vissl_train_transform
from keras_flexpredict.data._pipeline import resolve_transform
from keras_flexpredict.testing import TestCase

MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def _denormalize(x):
    return (np.asarray(x) * STD + MEAN) * 255.0


def _apply_many(transform, image, num, seed=0):
    """`transform` on `num` copies of `image`, each with its own element seed, via tf.data."""
    ds = tf.data.Dataset.from_tensors(tf.constant(image)).repeat(num)
    ds = add_element_seeds(ds, seed).map(transform, num_parallel_calls=2).batch(num)
    return next(iter(ds)).numpy()


def _sample_crops(image_shape, num, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)):
    seeds = tf.stack([tf.range(num, dtype=tf.int64), tf.fill([num], tf.constant(5, tf.int64))], axis=1)
    fn = tf.function(
        lambda s: tf.map_fn(
            lambda one: tf.stack(sample_crop_parameters(image_shape, one, scale, ratio)),
            s,
            fn_output_signature=tf.int32,
        )
    )
    return fn(seeds).numpy()


def _test_image(height=32, width=32, seed=0):
    """An image whose left and right halves, and channels, all differ."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3)).astype(np.uint8)


class CropParameterTest(TestCase):
    def test_sample_crop_parameters__area_and_aspect_within_range(self):
        height, width = 120, 160
        crops = _sample_crops((height, width), 600)
        y, x, h, w = crops.T
        self.assertTrue(np.all((y >= 0) & (x >= 0) & (y + h <= height) & (x + w <= width)))
        area = h * w / (height * width)
        aspect = w / h
        # Rounding h and w to whole pixels moves area and aspect a little.
        self.assertGreaterEqual(area.min(), 0.3 - 0.02)
        self.assertLessEqual(area.max(), 1.0)
        self.assertGreaterEqual(aspect.min(), 0.75 - 0.02)
        self.assertLessEqual(aspect.max(), 4 / 3 + 0.02)
        # The whole ranges are used.
        self.assertLess(area.min(), 0.35)
        self.assertGreater(area.max(), 0.9)
        self.assertLess(aspect.min(), 0.8)
        self.assertGreater(aspect.max(), 1.25)
        # Positions spread over the image.
        self.assertGreater(len(np.unique(x)), 20)

    def test_sample_crop_parameters__uniform_area_log_uniform_aspect(self):
        # Every window of area <= 0.5 fits a square image: nothing is rejected.
        crops = _sample_crops((200, 200), 600, scale=(0.3, 0.5))
        area = crops[:, 2] * crops[:, 3] / 200**2
        log_aspect = np.log(crops[:, 3] / crops[:, 2])
        # Means of U(0.3, 0.5) and U(log 3/4, log 4/3); standard errors 0.0024 and 0.0067.
        self.assertAlmostEqual(float(area.mean()), 0.4, delta=0.01)
        self.assertAlmostEqual(float(log_aspect.mean()), 0.0, delta=0.025)
        self.assertAlmostEqual(float(np.mean(log_aspect < 0)), 0.5, delta=0.07)

    def test_sample_crop_parameters__falls_back_to_centre_crop(self):
        # No window of area >= 90% fits a 10 x 1000 image with aspect <= 4/3.
        crops = _sample_crops((10, 1000), 4, scale=(0.9, 1.0))
        for y, x, h, w in crops:
            self.assertEqual((h, w), (10, 13))
            self.assertEqual((y, x), (0, (1000 - 13) // 2))

    def test_sample_crop_parameters__deterministic_by_seed(self):
        a = sample_crop_parameters((50, 70), tf.constant([3, 4]))
        b = sample_crop_parameters((50, 70), tf.constant([3, 4]))
        self.assertEqual([int(v) for v in a], [int(v) for v in b])
        others = {tuple(int(v) for v in sample_crop_parameters((50, 70), tf.constant([3, i]))) for i in range(10)}
        self.assertGreater(len(others), 5)

    def test_sample_crop_parameters__invalid_range_raises(self):
        with self.assertRaisesRegex(ValueError, "scale"):
            sample_crop_parameters((10, 10), tf.constant([0, 0]), scale=(0.8, 0.3))
        with self.assertRaisesRegex(ValueError, "scale"):
            sample_crop_parameters((10, 10), tf.constant([0, 0]), scale=(0.3, 1.5))


class TrainTransformTest(TestCase):
    def test_stop_transform__shape_dtype_and_normalised_range(self):
        transform = stop_train_transform(24)
        for image in (tf.constant(_test_image(40, 56)), tf.cast(_test_image(40, 56), tf.float32)):
            out = transform(image, tf.constant([1, 2]))
            self.assertEqual(out.shape.as_list(), [24, 24, 3])
            self.assertEqual(out.dtype, tf.float32)
            low, high = (0.0 - MEAN) / STD, (1.0 - MEAN) / STD
            self.assertTrue(np.all(out.numpy() >= low - 1e-5))
            self.assertTrue(np.all(out.numpy() <= high + 1e-5))

    def test_stop_transform__flip_and_grayscale_with_their_probabilities(self):
        image = _test_image(16, 16)
        # Full-image crops, no blur: the output is the input, flipped or grey or both.
        transform = stop_train_transform(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_probability=0.0)
        out = _denormalize(_apply_many(transform, image, 500))
        gray = np.all(np.abs(out[..., 0] - out[..., 1]) < 1e-2, axis=(1, 2)) & np.all(
            np.abs(out[..., 1] - out[..., 2]) < 1e-2, axis=(1, 2)
        )
        flipped_image = image[:, ::-1].astype(np.float32)
        flipped_gray = np.tile(tf.image.rgb_to_grayscale(flipped_image).numpy(), [1, 1, 3])
        flipped = np.where(
            gray, np.abs(out - flipped_gray).max(axis=(1, 2, 3)) < 0.05, np.abs(out - flipped_image).max(axis=(1, 2, 3)) < 0.05
        )
        unflipped_gray = np.tile(tf.image.rgb_to_grayscale(image.astype(np.float32)).numpy(), [1, 1, 3])
        unflipped = np.where(
            gray, np.abs(out - unflipped_gray).max(axis=(1, 2, 3)) < 0.05, np.abs(out - image).max(axis=(1, 2, 3)) < 0.05
        )
        # Every output is exactly one of the two orientations.
        self.assertTrue(np.all(flipped ^ unflipped))
        # 500 draws: binomial standard deviations are 0.022 (p 0.5) and 0.018 (p 0.2).
        self.assertAlmostEqual(float(flipped.mean()), 0.5, delta=0.08)
        self.assertAlmostEqual(float(gray.mean()), 0.2, delta=0.07)

    def test_stop_transform__blur_with_its_probability(self):
        image = _test_image(32, 32)
        sharp = stop_train_transform(
            32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_probability=0.0, grayscale_probability=0.0, flip=False
        )
        blurry = stop_train_transform(
            32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), grayscale_probability=0.0, flip=False,
            blur_reference_size=None,
        )
        reference = sharp(tf.constant(image), tf.constant([0, 0])).numpy()
        out = _apply_many(blurry, image, 400)
        changed = np.abs(out - reference).max(axis=(1, 2, 3)) > 1e-3
        self.assertAlmostEqual(float(changed.mean()), 0.5, delta=0.09)
        # Blurring a noise image lowers its variance.
        self.assertTrue(np.all(out[changed].std(axis=(1, 2)) < reference.std(axis=(0, 1))))

    def test_ijepa_transform__crop_only(self):
        image = _test_image(16, 16)
        transform = ijepa_train_transform(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
        out = _apply_many(transform, image, 50)
        expected = normalize_image(image).numpy()
        self.assertAllClose(out, np.broadcast_to(expected, out.shape), atol=1e-4)

    def test_ijepa_transform__defaults_are_its_configs_crop_and_normalise_only(self):
        # Every released I-JEPA config: crop_scale [0.3, 1.0], no flip, no colour
        # distortion, no blur. With a full-image crop the output is the input.
        image = _test_image(16, 16)
        transform = ijepa_train_transform(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
        out = _apply_many(transform, image, 200)
        self.assertAllClose(out, np.broadcast_to(normalize_image(image).numpy(), out.shape), atol=1e-4)
        # Random crops of the default scale still vary.
        varied = _apply_many(ijepa_train_transform(16), _test_image(40, 40), 8)
        self.assertGreater(np.abs(varied[0] - varied[1]).max(), 0.1)

    def test_ijepa_transform__flags_switch_on_flip_colour_and_blur(self):
        image = _test_image(16, 16)
        full = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
        reference = normalize_image(image).numpy()
        flipped_reference = normalize_image(image[:, ::-1]).numpy()

        def changed(out, ref):
            return np.abs(out - ref).max(axis=(1, 2, 3)) > 1e-3

        flips = _apply_many(ijepa_train_transform(16, horizontal_flip=True, **full), image, 300)
        is_flipped = ~changed(flips, flipped_reference)
        self.assertTrue(np.all(is_flipped ^ ~changed(flips, reference)))
        self.assertAlmostEqual(float(is_flipped.mean()), 0.5, delta=0.09)
        # Colour distortion at strength 0 is grayscale (p 0.2) only, as the code.
        greys = _denormalize(_apply_many(ijepa_train_transform(16, color_distortion=True, **full), image, 300))
        gray = np.all(np.abs(greys - greys[..., :1]) < 1e-2, axis=(1, 2, 3))
        self.assertAlmostEqual(float(gray.mean()), 0.2, delta=0.07)
        self.assertTrue(np.all(~changed(greys[~gray], image.astype(np.float32))))
        # At strength 1 colours change in 1 - 0.2 * 0.2 of the draws (jitter p 0.8
        # or grayscale p 0.2).
        jittered = _apply_many(
            ijepa_train_transform(16, color_distortion=True, color_jitter_strength=1.0, **full), image, 300
        )
        self.assertAlmostEqual(float(changed(jittered, reference).mean()), 0.84, delta=0.07)
        blurred = _apply_many(
            ijepa_train_transform(16, gaussian_blur=True, blur_reference_size=None, **full), image, 300
        )
        self.assertAlmostEqual(float(changed(blurred, reference).mean()), 0.5, delta=0.09)

    def test_color_jitter__each_component_as_torchvision(self):
        image = tf.constant(_test_image(8, 8), tf.float32)
        x = image.numpy() / 255.0
        gray = x @ np.array([0.2989, 0.587, 0.114])
        seed = tf.constant([3, 4])
        # Strength 0 everywhere: the identity.
        self.assertAllClose(color_jitter(image, seed).numpy() / 255.0, x, atol=1e-5)
        # Brightness factor within [1 - b, 1 + b]: the image scales by one factor.
        out = color_jitter(image, seed, brightness=0.5).numpy() / 255.0
        inside = (x > 0.05) & (out < 0.999)
        ratio = out[inside] / x[inside]
        self.assertLess(np.ptp(ratio), 1e-3)
        self.assertTrue(0.5 <= ratio.mean() <= 1.5)
        # Saturation: a blend of the image with its grey version.
        out = color_jitter(image, seed, saturation=0.5).numpy() / 255.0
        spread = x - gray[..., None]
        unclipped = (np.abs(spread) > 0.05) & (out > 1e-3) & (out < 1 - 1e-3)
        factor = (out - gray[..., None]) / np.where(unclipped, spread, np.nan)
        self.assertLess(np.nanmax(factor) - np.nanmin(factor), 1e-2)
        self.assertTrue(0.5 <= np.nanmean(factor) <= 1.5)
        # Contrast: a blend of the image with the mean of its grey version.
        out = color_jitter(image, seed, contrast=0.5).numpy() / 255.0
        spread = x - gray.mean()
        unclipped = (np.abs(spread) > 0.05) & (out > 1e-3) & (out < 1 - 1e-3)
        factor = (out - gray.mean()) / np.where(unclipped, spread, np.nan)
        self.assertLess(np.nanmax(factor) - np.nanmin(factor), 1e-2)
        # Hue turns keep the grey image of a grey input.
        grey_image = tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])
        self.assertAllClose(color_jitter(grey_image, seed, hue=0.5), grey_image, atol=1e-2)
        with self.assertRaisesRegex(ValueError, "hue=0.7"):
            color_jitter(image, seed, hue=0.7)

    def test_train_transforms__deterministic_by_seed(self):
        image = tf.constant(_test_image(40, 40))
        transform = stop_train_transform(24)
        a = transform(image, tf.constant([5, 6]))
        b = transform(image, tf.constant([5, 6]))
        c = transform(image, tf.constant([5, 7]))
        self.assertAllEqual(a, b)
        self.assertFalse(np.array_equal(a.numpy(), c.numpy()))

    def test_train_transforms__invalid_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "grayscale_probability"):
            stop_train_transform(32, grayscale_probability=1.5)
        with self.assertRaisesRegex(ValueError, "crop_scale"):
            stop_train_transform(32, crop_scale=(0.9, 0.1))
        with self.assertRaisesRegex(ValueError, "image_size"):
            ijepa_train_transform((32, 32, 3))
        with self.assertRaisesRegex(ValueError, "horizontal_flip='yes'"):
            ijepa_train_transform(32, horizontal_flip="yes")
        with self.assertRaisesRegex(ValueError, "color_jitter_strength=-1"):
            ijepa_train_transform(32, color_jitter_strength=-1)


class GaussianBlurTest(TestCase):
    def test_gaussian_blur__impulse_response_has_the_given_sigma(self):
        impulse = np.zeros((31, 31, 1), np.float32)
        impulse[15, 15] = 1.0
        for sigma in (1.0, 2.0):
            out = gaussian_blur(impulse, sigma, kernel_radius=int(math.ceil(3 * sigma))).numpy()[..., 0]
            self.assertAlmostEqual(float(out.sum()), 1.0, places=4)
            offsets = np.arange(31) - 15
            variance = float((out.sum(axis=0) * offsets**2).sum())
            self.assertAlmostEqual(variance, sigma**2, delta=0.05 * sigma**2 + 0.01)

    def test_gaussian_blur__keeps_a_constant_image(self):
        image = np.full((8, 8, 3), 100.0, np.float32)
        self.assertAllClose(gaussian_blur(image, 1.5, 5), image, atol=1e-3)


class EvalTransformTest(TestCase):
    def test_eval_transform__resizes_shorter_side_then_centre_crops(self):
        image = _test_image(40, 80)
        out = eval_transform(32, crop_fraction=0.875)(tf.constant(image))
        self.assertEqual(out.shape.as_list(), [32, 32, 3])
        # Shorter side 40 -> round(32 / 0.875) = 37, so 80 -> 74; then the centre 32 x 32.
        resized = tf.image.resize(image.astype(np.float32), (37, 74), antialias=True).numpy()
        expected = normalize_image(np.clip(resized[2:34, 21:53], 0, 255)).numpy()
        self.assertAllClose(out, expected, atol=1e-4)

    def test_eval_transform__identity_at_full_crop_of_the_same_size(self):
        image = _test_image(24, 24)
        out = eval_transform(24, crop_fraction=1.0)(tf.constant(image), tf.constant([0, 0]))
        self.assertAllClose(out, normalize_image(image), atol=1e-5)

    def test_eval_transform__invalid_crop_fraction_raises(self):
        with self.assertRaisesRegex(ValueError, "crop_fraction"):
            eval_transform(32, crop_fraction=0.0)
        with self.assertRaisesRegex(ValueError, "interpolation='nearest'"):
            eval_transform(32, interpolation="nearest")

    def test_lowshot_eval__shorter_side_to_size_then_centre_crop(self):
        # StoP's logistic_eval.py: Resize(224) + CenterCrop(224), bilinear.
        image = _test_image(40, 80)
        transform, needs_seed = resolve_transform("lowshot_eval", 32, training=False)
        self.assertFalse(needs_seed)
        resized = tf.image.resize(image.astype(np.float32), (32, 64), antialias=True).numpy()
        expected = normalize_image(np.clip(resized[:, 16:48], 0, 255)).numpy()
        self.assertAllClose(transform(tf.constant(image)), expected, atol=1e-4)

    def test_vissl_eval__bicubic_256_over_224(self):
        image = _test_image(40, 80)
        transform, _ = resolve_transform("vissl_eval", 32, training=False)
        resized = tf.image.resize(image.astype(np.float32), (37, 74), method="bicubic", antialias=True).numpy()
        expected = normalize_image(np.clip(resized[2:34, 21:53], 0, 255)).numpy()
        self.assertAllClose(transform(tf.constant(image)), expected, atol=1e-4)


class VisslTrainTransformTest(TestCase):
    def test_vissl_train__random_crop_and_flip_deterministic_by_seed(self):
        image = tf.constant(_test_image(40, 48))
        transform, needs_seed = resolve_transform("vissl_train", 24, training=True)
        self.assertTrue(needs_seed)
        a = transform(image, tf.constant([1, 2]))
        self.assertEqual(a.shape.as_list(), [24, 24, 3])
        self.assertAllEqual(a, transform(image, tf.constant([1, 2])))
        self.assertFalse(np.array_equal(a.numpy(), transform(image, tf.constant([1, 3])).numpy()))
        # Full-area crops of a square image: the output is the image or its mirror.
        square = _test_image(16, 16)
        full = vissl_train_transform(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
        out = _apply_many(full, square, 40)
        plain = normalize_image(square).numpy()
        flipped = plain[:, ::-1]
        is_plain = np.all(np.isclose(out, plain, atol=1e-4), axis=(1, 2, 3))
        is_flipped = np.all(np.isclose(out, flipped, atol=1e-4), axis=(1, 2, 3))
        self.assertTrue(np.all(is_plain | is_flipped))
        self.assertTrue(5 < is_flipped.sum() < 35)


class ElementSeedTest(TestCase):
    def test_add_element_seeds__same_per_run_new_per_epoch(self):
        ds = add_element_seeds(tf.data.Dataset.range(4), seed=11)
        first = [s for _, s in ds.as_numpy_iterator()]
        second = [s for _, s in ds.as_numpy_iterator()]
        again = [s for _, s in add_element_seeds(tf.data.Dataset.range(4), seed=11).as_numpy_iterator()]
        self.assertAllEqual(np.stack(first), np.stack(again))
        self.assertFalse(np.array_equal(np.stack(first), np.stack(second)))
        self.assertEqual(len({tuple(s) for s in first}), 4)
