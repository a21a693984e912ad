import logging
import os

import numpy as np
from PIL import Image

from keras_flexpredict.data import IMAGENET_MEAN
from keras_flexpredict.data import IMAGENET_STD
from keras_flexpredict.data import SkippedImageCounter
from keras_flexpredict.data import image_folder_dataset
from keras_flexpredict.data import list_image_folder
from keras_flexpredict.testing import TestCase


def _write_image(path, value, size=(20, 28)):
    """A flat image of grey level `value`; PNG or JPEG by the file's extension."""
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path, quality=100 if path.lower().endswith("jpeg") else None)


def _make_folder(root, classes=("cat", "dog"), per_class=3, split="train"):
    """Images with grey levels 10, 20, 30, ... so each can be recognised after decoding."""
    value = 0
    for name in classes:
        os.makedirs(os.path.join(root, split, name), exist_ok=True)
        for i in range(per_class):
            value += 10
            ext = "png" if i % 2 else "JPEG"
            _write_image(os.path.join(root, split, name, f"{name}_{i}.{ext}"), value)
    return value // 10


def _grey_levels(images):
    """Mean grey level (0-255) of each normalised image."""
    pixels = np.asarray(images) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.round(pixels.mean(axis=(-3, -2, -1)) * 255.0).astype(int)


class ListImageFolderTest(TestCase):
    def test_list__sorted_classes_images_and_labels(self):
        root = self.get_temp_dir()
        _make_folder(root, classes=("zebra", "ant"), per_class=2)
        open(os.path.join(root, "train", "ant", "notes.txt"), "w").close()
        open(os.path.join(root, "train", "ant", ".hidden.png"), "w").close()
        os.makedirs(os.path.join(root, "train", ".cache"))
        paths, labels, classes = list_image_folder(root, "train")
        self.assertEqual(classes, ["ant", "zebra"])
        self.assertEqual([os.path.basename(p) for p in paths], ["ant_0.JPEG", "ant_1.png", "zebra_0.JPEG", "zebra_1.png"])
        self.assertAllEqual(labels, [0, 0, 1, 1])

    def test_list__missing_root_raises_naming_it(self):
        missing = os.path.join(self.get_temp_dir(), "nowhere")
        with self.assertRaisesRegex(FileNotFoundError, "nowhere"):
            list_image_folder(missing)

    def test_list__missing_split_raises_naming_it(self):
        root = self.get_temp_dir()
        _make_folder(root)
        with self.assertRaisesRegex(FileNotFoundError, "val"):
            list_image_folder(root, "val")

    def test_list__no_class_folder_raises(self):
        root = self.get_temp_dir()
        os.makedirs(os.path.join(root, "train"))
        _write_image(os.path.join(root, "train", "loose.png"), 5)
        with self.assertRaisesRegex(ValueError, "No class folders"):
            list_image_folder(root)

    def test_list__class_folder_without_images_raises_naming_it(self):
        root = self.get_temp_dir()
        _make_folder(root)
        os.makedirs(os.path.join(root, "train", "empty_class"))
        open(os.path.join(root, "train", "empty_class", "readme.txt"), "w").close()
        with self.assertRaisesRegex(ValueError, "empty_class"):
            list_image_folder(root)
        # The dataset builder fails the same way, before reading any image.
        with self.assertRaisesRegex(ValueError, "empty_class"):
            image_folder_dataset(root, image_size=16)


class ImageFolderDatasetTest(TestCase):
    def test_dataset__training_batches_shapes_and_dtypes(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=5)
        ds = image_folder_dataset(root, image_size=16, batch_size=4, training=True, seed=0)
        batches = list(ds.as_numpy_iterator())
        # 10 images, batch 4, the last partial batch dropped.
        self.assertEqual(len(batches), 2)
        images, labels = batches[0]
        self.assertEqual(images.shape, (4, 16, 16, 3))
        self.assertEqual(images.dtype, np.float32)
        self.assertEqual(labels.dtype, np.int32)
        self.assertTrue(set(labels.tolist()) <= {0, 1})

    def test_dataset__evaluation_keeps_order_and_every_image(self):
        root = self.get_temp_dir()
        n = _make_folder(root, per_class=3)
        ds = image_folder_dataset(root, image_size=16, batch_size=4, training=False)
        batches = list(ds.as_numpy_iterator())
        self.assertEqual([b[0].shape[0] for b in batches], [4, 2])
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        self.assertAllEqual(_grey_levels(images), 10 * np.arange(1, n + 1))
        self.assertAllEqual(labels, [0, 0, 0, 1, 1, 1])

    def test_dataset__corrupt_images_skipped_and_counted(self):
        root = self.get_temp_dir()
        n = _make_folder(root, per_class=3)
        with open(os.path.join(root, "train", "cat", "cat_1b_garbage.JPEG"), "wb") as f:
            f.write(b"this is not an image" * 20)
        good_jpeg = open(os.path.join(root, "train", "dog", "dog_0.JPEG"), "rb").read()
        # Truncated in the middle of its data, and last in the listing.
        with open(os.path.join(root, "train", "dog", "dog_9_truncated.JPEG"), "wb") as f:
            f.write(good_jpeg[: len(good_jpeg) // 3])
        counter = SkippedImageCounter(name="test folder")
        ds = image_folder_dataset(root, image_size=16, batch_size=None, training=False, skipped_counter=counter)
        with self.assertLogs("keras_flexpredict.data", level=logging.WARNING) as logs:
            images = np.stack([x for x, _ in ds.as_numpy_iterator()])
        self.assertAllEqual(_grey_levels(images), 10 * np.arange(1, n + 1))
        self.assertEqual(counter.count, 2)
        self.assertIn("test folder", logs.output[-1])
        self.assertIn("2 skipped so far", logs.output[-1])
        # A training run goes on past them, every epoch, and counts them again.
        ds = image_folder_dataset(root, image_size=16, batch_size=2, training=True, skipped_counter=counter)
        with self.assertLogs("keras_flexpredict.data", level=logging.WARNING):
            for _ in range(2):
                self.assertEqual(sum(b[0].shape[0] for b in ds.as_numpy_iterator()), n)
        self.assertEqual(counter.count, 6)

    def test_dataset__deterministic_by_seed(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=4)

        def run(seed):
            ds = image_folder_dataset(root, image_size=16, batch_size=4, training=True, seed=seed)
            return np.concatenate([b[0] for b in ds.as_numpy_iterator()])

        first = run(3)
        self.assertAllEqual(run(3), first)
        self.assertFalse(np.array_equal(run(4), first))

    def test_dataset__shards_partition_the_images(self):
        root = self.get_temp_dir()
        n = _make_folder(root, per_class=3)
        seen = []
        for index in range(2):
            ds = image_folder_dataset(
                root, image_size=16, batch_size=None, training=False, shard_index=index, num_shards=2
            )
            seen.append(set(_grey_levels(np.stack([x for x, _ in ds.as_numpy_iterator()])).tolist()))
        self.assertEqual(len(seen[0]), 3)
        self.assertFalse(seen[0] & seen[1])
        self.assertEqual(seen[0] | seen[1], set(10 * np.arange(1, n + 1)))

    def test_dataset__subset_file_keeps_listed_images(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=3)
        subset = os.path.join(root, "subset.txt")
        with open(subset, "w") as f:
            f.write("# two images\ncat_2.JPEG\n\ndog_1.png\n")
        ds = image_folder_dataset(root, image_size=16, batch_size=None, training=False, subset_file=subset)
        images, labels = zip(*ds.as_numpy_iterator())
        self.assertAllEqual(_grey_levels(np.stack(images)), [30, 50])
        self.assertAllEqual(labels, [0, 1])

    def test_dataset__images_only_and_transform_choice(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=2)
        ds = image_folder_dataset(root, image_size=12, batch_size=2, with_labels=False, transform="ijepa")
        batch = next(iter(ds))
        self.assertEqual(batch.shape.as_list(), [2, 12, 12, 3])

    def test_dataset__invalid_arguments_raise(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=1)
        with self.assertRaisesRegex(ValueError, "shard_index"):
            image_folder_dataset(root, shard_index=2, num_shards=2)
        with self.assertRaisesRegex(ValueError, "transform"):
            image_folder_dataset(root, transform="simclr")
        with self.assertRaisesRegex(ValueError, "batch_size"):
            image_folder_dataset(root, batch_size=0)
        with self.assertRaisesRegex(ValueError, "holds no image"):
            image_folder_dataset(root, shard_index=2, num_shards=3)


class EndlessImageFolderDatasetTest(TestCase):
    def test_endless__epochs_are_a_function_of_seed_and_epoch_with_skipped_images(self):
        root = self.get_temp_dir()
        _make_folder(root, per_class=4)
        with open(os.path.join(root, "train", "cat", "cat_1b_garbage.JPEG"), "wb") as f:
            f.write(b"this is not an image" * 20)
        counter = SkippedImageCounter(name="endless")

        def epochs(initial_epoch, count):
            ds = image_folder_dataset(
                root, image_size=16, batch_size=2, training=True, seed=3, skipped_counter=counter,
                steps_per_epoch=3, initial_epoch=initial_epoch,
            )
            batches = list(ds.take(3 * count).as_numpy_iterator())
            return [
                (_grey_levels(np.concatenate([b[0] for b in batches[3 * i : 3 * i + 3]])).tolist(),
                 np.concatenate([b[1] for b in batches[3 * i : 3 * i + 3]]).tolist())
                for i in range(count)
            ]

        with self.assertLogs("keras_flexpredict.data", level=logging.WARNING):
            straight = epochs(0, 4)
            resumed = epochs(2, 2)
        self.assertEqual(resumed, straight[2:])
        self.assertEqual(len(straight[0][0]), 6)
        self.assertTrue(set(straight[0][0]) <= set(10 * np.arange(1, 9)))
        self.assertGreater(counter.count, 0)

    def test_endless__folder_without_a_decodable_image_raises_naming_files(self):
        root = self.get_temp_dir()
        os.makedirs(os.path.join(root, "train", "cat"))
        for name in ("a.png", "b.JPEG"):
            with open(os.path.join(root, "train", "cat", name), "wb") as f:
                f.write(b"\x89PNG broken" if name.endswith("png") else b"garbage")
        with self.assertRaisesRegex(ValueError, r"No image in .*train can be decoded: all 2 files.*a\.png.*b\.JPEG"):
            image_folder_dataset(root, image_size=16, batch_size=2, training=True, steps_per_epoch=1)


class SkippedImageCounterTest(TestCase):
    def test_counter__adds_warns_and_round_trips_config(self):
        counter = SkippedImageCounter(name="x")
        with self.assertLogs("keras_flexpredict.data", level=logging.WARNING) as logs:
            self.assertEqual(counter.add(3), 3)
        self.assertIn("Skipped 3", logs.output[0])
        self.assertEqual(counter.count, 3)
        counter.reset()
        self.assertEqual(counter.count, 0)
        self.assertEqual(SkippedImageCounter.from_config(counter.get_config()).name, "x")
        with self.assertRaisesRegex(ValueError, "n"):
            counter.add(-1)
