import os

import numpy as np
import tensorflow as tf

from keras_flexpredict.data import filter_by_file_name
from keras_flexpredict.data import tfds_imagenet_dataset
from keras_flexpredict.testing import TestCase


def _tiny_builder(data_dir):
    """A TFDS builder with ImageNet's features (JPEG image, label, file name), 9 + 3 images."""
    import tensorflow_datasets as tfds

    class TinyImagenetLike(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=3),
                    "file_name": tfds.features.Text(),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9), "validation": self._generate_examples(3)}

        def _generate_examples(self, n):
            for i in range(n):
                image = np.full((24 + i, 30, 3), 20 * i, np.uint8)
                yield i, {"image": image, "label": i % 3, "file_name": f"n0{i % 3}_{i}.JPEG"}

    builder = TinyImagenetLike(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder.name


class TfdsImagenetDatasetTest(TestCase):
    def test_not_prepared_without_manual_dir_raises_before_any_download(self):
        data_dir = self.get_temp_dir()
        with self.assertRaisesRegex(FileNotFoundError, "not prepared.*no `manual_dir`"):
            tfds_imagenet_dataset("train", data_dir=data_dir)
        self.assertFalse(os.path.exists(os.path.join(data_dir, "downloads")))

    def test_manual_dir_without_archive_raises_naming_it(self):
        data_dir, manual_dir = self.get_temp_dir(), self.get_temp_dir()
        with self.assertRaisesRegex(FileNotFoundError, "ILSVRC2012_img_val.tar"):
            tfds_imagenet_dataset("validation", data_dir=data_dir, manual_dir=manual_dir)

    def test_prepared_builder_gives_decoded_batches(self):
        data_dir = self.get_temp_dir()
        name = _tiny_builder(data_dir)
        ds = tfds_imagenet_dataset("train", data_dir=data_dir, name=name, image_size=16, batch_size=4)
        batches = list(ds.as_numpy_iterator())
        self.assertEqual([b[0].shape for b in batches], [(4, 16, 16, 3)] * 2)
        self.assertEqual(batches[0][0].dtype, np.float32)
        ds = tfds_imagenet_dataset(
            "validation", data_dir=data_dir, name=name, image_size=16, batch_size=2, with_labels=False
        )
        self.assertEqual([b.shape[0] for b in ds.as_numpy_iterator()], [2, 1])

    def test_filter_by_file_name__keeps_subset(self):
        ds = tf.data.Dataset.from_tensor_slices({"file_name": ["n0_1.JPEG", "n1_2.JPEG", "n0_3.JPEG"], "label": [0, 1, 0]})
        kept = [e["label"] for e in filter_by_file_name(ds, ["n0_3.JPEG", "n1_2.JPEG"]).as_numpy_iterator()]
        self.assertEqual(kept, [1, 0])
