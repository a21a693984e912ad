import numpy as np

from keras_flexpredict.data import procedural_shapes_class_labels
from keras_flexpredict.data import procedural_shapes_dataset
from keras_flexpredict.data.augmentations import IMAGENET_MEAN
from keras_flexpredict.data.augmentations import IMAGENET_STD
from keras_flexpredict.data.procedural_shapes import _PALETTE
from keras_flexpredict.data.procedural_shapes import SHAPE_NAMES
from keras_flexpredict.data.procedural_shapes import make_procedural_shapes
from keras_flexpredict.testing import TestCase


class MakeProceduralShapesTest(TestCase):
    def test_make__shapes_dtypes_and_label_ranges(self):
        data = make_procedural_shapes(64, image_size=32, seed=3, max_count=4, grid_size=3)
        images, labels = data["images"], data["labels"]
        self.assertEqual(images.shape, (64, 32, 32, 3))
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(data["num_classes"], {"shape": 5, "count": 4, "position": 9, "color": 6})
        for key in ("shape", "count", "position", "color"):
            self.assertEqual(labels[key].shape, (64,))
            self.assertEqual(labels[key].dtype, np.int32)
        self.assertTrue(np.all((labels["shape"] >= 0) & (labels["shape"] < len(SHAPE_NAMES))))
        self.assertTrue(np.all((labels["count"] >= 1) & (labels["count"] <= 4)))
        self.assertTrue(np.all((labels["position"] >= 0) & (labels["position"] < 9)))
        # Every class of every label occurs in a set this size.
        self.assertEqual(len(np.unique(labels["shape"])), 5)
        self.assertEqual(len(np.unique(labels["count"])), 4)
        # The images are not flat: backgrounds are textured, objects drawn.
        self.assertGreater(images.reshape(64, -1).std(axis=1).min(), 3.0)

    def test_make__main_center_lies_in_the_position_cell(self):
        data = make_procedural_shapes(200, image_size=48, seed=1, grid_size=3)
        labels = data["labels"]
        row, col = np.divmod(labels["position"], 3)
        cell = np.floor(labels["main_center"] * 3).astype(int)
        self.assertAllEqual(cell[:, 0], row)
        self.assertAllEqual(cell[:, 1], col)

    def test_make__main_object_has_its_labelled_colour_at_its_centre(self):
        data = make_procedural_shapes(200, image_size=64, seed=2)
        labels = data["labels"]
        filled = labels["shape"] != SHAPE_NAMES.index("ring")  # a ring is hollow
        centre = np.floor(labels["main_center"] * 64).astype(int)
        pixels = data["images"][np.arange(200), centre[:, 0], centre[:, 1]].astype(np.float32)
        expected = _PALETTE[labels["color"]]
        # Colour jitter is at most 25 per channel, plus pixel noise (std 4).
        error = np.abs(pixels - expected).max(axis=1)
        self.assertLess(np.max(error[filled]), 45.0)

    def test_make__deterministic_by_seed(self):
        a = make_procedural_shapes(20, image_size=32, seed=7)
        b = make_procedural_shapes(20, image_size=32, seed=7)
        c = make_procedural_shapes(20, image_size=32, seed=8)
        self.assertAllEqual(a["images"], b["images"])
        for key in a["labels"]:
            self.assertAllEqual(a["labels"][key], b["labels"][key])
        self.assertFalse(np.array_equal(a["images"], c["images"]))

    def test_make__image_depends_on_seed_and_index_only(self):
        # Sets of different sizes share their prefix, across a generation block.
        small = make_procedural_shapes(5, image_size=32, seed=4)
        large = make_procedural_shapes(300, image_size=32, seed=4)
        cut = make_procedural_shapes(261, image_size=32, seed=4)
        self.assertAllEqual(small["images"], large["images"][:5])
        self.assertAllEqual(cut["images"][256:], large["images"][256:261])
        self.assertAllEqual(cut["labels"]["shape"], large["labels"]["shape"][:261])

    def test_make__same_layout_at_every_resolution(self):
        a = make_procedural_shapes(30, image_size=32, seed=5)
        b = make_procedural_shapes(30, image_size=64, seed=5)
        for key in a["labels"]:
            self.assertAllClose(a["labels"][key], b["labels"][key])

    def test_make__rotation_changes_pixels_not_layout(self):
        upright = make_procedural_shapes(20, image_size=32, seed=6, max_rotation=0.0)
        turned = make_procedural_shapes(20, image_size=32, seed=6, max_rotation=180.0)
        for key in upright["labels"]:
            self.assertAllEqual(upright["labels"][key], turned["labels"][key])
        self.assertFalse(np.array_equal(upright["images"], turned["images"]))

    def test_make__invalid_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "max_count"):
            make_procedural_shapes(4, image_size=32, max_count=5, grid_size=2)
        with self.assertRaisesRegex(ValueError, "image_size"):
            make_procedural_shapes(4, image_size=8)
        with self.assertRaisesRegex(ValueError, "num_images"):
            make_procedural_shapes(0)
        with self.assertRaisesRegex(ValueError, "grid_size"):
            make_procedural_shapes(4, image_size=32, grid_size=5)
        with self.assertRaisesRegex(ValueError, "max_rotation"):
            make_procedural_shapes(4, image_size=32, max_rotation=-1.0)


class ProceduralShapesDatasetTest(TestCase):
    def test_class_labels__combination_is_mixed_radix(self):
        labels = {"shape": np.array([0, 4, 2]), "count": np.array([1, 4, 3]), "position": np.array([8, 0, 5])}
        y, n = procedural_shapes_class_labels(labels, ("shape", "count"), max_count=4)
        self.assertEqual(n, 20)
        self.assertAllEqual(y, [0, 19, 10])
        y, n = procedural_shapes_class_labels(labels, "count", max_count=4)
        self.assertEqual(n, 4)
        self.assertAllEqual(y, [0, 3, 2])
        with self.assertRaisesRegex(ValueError, "label"):
            procedural_shapes_class_labels(labels, "size")

    def test_dataset__batches_normalised_images_and_labels(self):
        ds = procedural_shapes_dataset(10, image_size=32, seed=0, batch_size=4)
        batches = list(ds.as_numpy_iterator())
        self.assertEqual([b[0].shape for b in batches], [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)])
        images, labels = batches[0]
        self.assertEqual(images.dtype, np.float32)
        self.assertEqual(labels.dtype, np.int32)
        data = make_procedural_shapes(10, image_size=32, seed=0)
        expected = (data["images"][:4] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        self.assertAllClose(images, expected, atol=1e-5)
        self.assertAllEqual(labels, data["labels"]["shape"][:4])

    def test_dataset__training_drops_remainder_and_images_only_without_label(self):
        ds = procedural_shapes_dataset(10, image_size=32, label=None, batch_size=4, training=True)
        shapes = [b.shape for b in ds.as_numpy_iterator()]
        self.assertEqual(shapes, [(4, 32, 32, 3), (4, 32, 32, 3)])

    def test_dataset__augmented_pipeline_deterministic_by_seed(self):
        def run(seed, epochs=1):
            ds = procedural_shapes_dataset(
                12, image_size=32, seed=seed, batch_size=4, training=True, transform="stop", output_size=24
            )
            return [np.concatenate([b[0] for b in ds.as_numpy_iterator()]) for _ in range(epochs)]

        first, second = run(1, epochs=2)
        self.assertEqual(first.shape, (12, 24, 24, 3))
        self.assertAllEqual(run(1)[0], first)
        self.assertFalse(np.array_equal(run(2)[0], first))
        # A new epoch draws a new order and new augmentations.
        self.assertFalse(np.array_equal(first, second))

    def test_dataset__endless_epochs_are_a_function_of_seed_and_epoch(self):
        # 3 batches of 4 per epoch over 10 images: epochs start mid-pass.
        def epochs(initial_epoch, count, seed=1):
            ds = procedural_shapes_dataset(
                10, image_size=32, seed=seed, label="shape", batch_size=4, training=True, transform="stop",
                output_size=24, steps_per_epoch=3, initial_epoch=initial_epoch,
            )
            batches = list(ds.take(3 * count).as_numpy_iterator())
            return [np.concatenate([b[0] for b in batches[3 * i : 3 * i + 3]]) for i in range(count)]

        straight = epochs(0, 4)
        resumed = epochs(2, 2)
        self.assertAllEqual(resumed[0], straight[2])
        self.assertAllEqual(resumed[1], straight[3])
        self.assertEqual(straight[0].shape, (12, 24, 24, 3))
        self.assertFalse(np.array_equal(straight[0], straight[1]))
        self.assertFalse(np.array_equal(epochs(2, 1, seed=2)[0], straight[2]))

    def test_dataset__endless_passes_visit_every_image_once(self):
        ds = procedural_shapes_dataset(
            8, image_size=32, seed=0, label=None, batch_size=4, training=True, steps_per_epoch=1
        )
        data = make_procedural_shapes(8, image_size=32, seed=0)
        expected = (data["images"] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        seen = np.concatenate(list(ds.take(4).as_numpy_iterator()))  # two passes

        def index(image):
            return int(np.argmin(np.abs(expected - image).reshape(8, -1).max(axis=1)))

        passes = [sorted(index(x) for x in seen[:8]), sorted(index(x) for x in seen[8:])]
        self.assertEqual(passes, [list(range(8))] * 2)
        self.assertNotEqual([index(x) for x in seen[:8]], [index(x) for x in seen[8:]])

    def test_dataset__endless_arguments_are_checked(self):
        with self.assertRaisesRegex(ValueError, "training=True"):
            procedural_shapes_dataset(8, image_size=32, batch_size=4, steps_per_epoch=2)
        with self.assertRaisesRegex(ValueError, "steps_per_epoch=0"):
            procedural_shapes_dataset(8, image_size=32, batch_size=4, training=True, steps_per_epoch=0)
        with self.assertRaisesRegex(ValueError, "initial_epoch=-1"):
            procedural_shapes_dataset(8, image_size=32, batch_size=4, training=True, steps_per_epoch=2, initial_epoch=-1)
        with self.assertRaisesRegex(ValueError, "initial_epoch"):
            procedural_shapes_dataset(8, image_size=32, batch_size=4, training=True, initial_epoch=2)
        with self.assertRaisesRegex(ValueError, "batch_size"):
            procedural_shapes_dataset(8, image_size=32, training=True, steps_per_epoch=2)
